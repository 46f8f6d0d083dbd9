"""What every data source yields: a sample's identity, and on demand its skeleton."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")

# Where a dataset's skeletons come from (each source's `pose_source`; stage 1 records it with the
# crops, stage 2 in each checkpoint). A skeleton branch learns one sensor's or estimator's joints
# and is confidently wrong on another's: `mmfc predict` warns when the poses it is given come from
# elsewhere. A pose pickle may name its estimator in each annotation's "pose_source" (stage 0
# writes BLAZEPOSE there); one that does not is UNRECORDED.
KINECT = "kinect"
BLAZEPOSE = "blazepose"
UNRECORDED = "unrecorded"
POSE_SOURCES = {
    KINECT: "Kinect v2 joints (NTU .skeleton files)",
    BLAZEPOSE: "stage 0's BlazePose estimator",
    UNRECORDED: "a pose pickle that does not record its estimator",
}


def describe_pose_source(pose_source: str) -> str:
    """A pose source in words, for messages."""
    return POSE_SOURCES.get(pose_source, f"the estimator {pose_source!r} (as its pose pickle records)")


@dataclass
class Sample:
    id: str
    label: int
    # "train", "val" (carved out of the training split) or "test".
    split: str
    skeleton_path: Path | None
    video_path: Path | None
    # Source-specific fields: NTU setup/camera/performer/replication, a FineGym source video...
    meta: dict = field(default_factory=dict)


@dataclass
class Skeleton:
    """A skeleton sequence of up to M persons over T frames with V joints.

    `points` holds the coordinates the skeleton branch learns from (NTU: camera-space metres,
    C = 3; 2D pose pickles: pixels, C = 2). `pixels` holds the 2D image coordinates that locate
    the actor in the video, in a frame of `frame_size` (width, height). `score` is the per-joint
    confidence, 0 for a joint that is missing. `frame_indices` maps each skeleton frame to its
    video frame: frames with no body are dropped from the sequence but keep their video index.
    """

    points: np.ndarray  # [M, T, V, C] float32
    pixels: np.ndarray  # [M, T, V, 2] float32
    score: np.ndarray  # [M, T, V] float32 in [0, 1]
    frame_indices: np.ndarray  # [T] int64
    frame_size: tuple[int, int]  # (width, height) of the space `pixels` is in
    layout: str  # "ntu25" or "coco17"
    total_frames: int  # frames of the clip, with or without a body

    @property
    def num_persons(self) -> int:
        return self.points.shape[0]

    @property
    def num_frames(self) -> int:
        return self.points.shape[1]
