"""What every data source yields: a sample's identity, and on demand its skeleton."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmfc.errors import DataError

SPLITS = ("train", "val", "test")
# A sequence needs motion: a single frame has none.
MIN_SEQUENCE_FRAMES = 2

# Where a dataset's skeletons come from (each source's `pose_source`; stage 1 records it with the
# crops, stage 2 in each checkpoint). A skeleton branch learns one sensor's or estimator's joints
# and is confidently wrong on another's: `mmfc predict` warns when the poses it is given come from
# elsewhere. A pose pickle may name its estimator in each annotation's "pose_source" (stage 0
# writes BLAZEPOSE there); one that does not is UNRECORDED.
KINECT = "kinect"
KINECT_V1 = "kinect-v1"
ANNOTATED = "hand-annotated"
BLAZEPOSE = "blazepose"
UNRECORDED = "unrecorded"
POSE_SOURCES = {
    KINECT: "Kinect v2 joints (NTU .skeleton files)",
    KINECT_V1: "Kinect v1 joints (NW-UCLA's sequences)",
    ANNOTATED: "2D joints annotated by hand (Penn Action)",
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
    # What validation is carved by and stage 4's folds keep apart: the performer (NTU), the
    # source video (FineGym), a CSV's group column or what data.group_pattern finds in a file
    # name; the clip itself where the dataset names none. Stage 1 writes it into the crop index.
    group: str
    # Source-specific fields: NTU setup/camera/performer/replication, a pickle's total frames...
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


def check_joint_sequence(path: str | Path, joints: np.ndarray) -> None:
    """DataError naming the file when a recorded sequence [T, V, C] has fewer than
    MIN_SEQUENCE_FRAMES frames or a value that is no finite number."""
    frames = joints.shape[0]
    if frames < MIN_SEQUENCE_FRAMES:
        raise DataError(path, f"{frames} frame{'s' if frames != 1 else ''}: a sequence needs at least {MIN_SEQUENCE_FRAMES}")
    bad = np.argwhere(~np.isfinite(joints).all(axis=-1))
    if len(bad):
        frame, joint = bad[0]
        values = ", ".join(f"{value:g}" for value in joints[frame, joint])
        raise DataError(path, f"frame {frame + 1}, joint {joint}: [{values}] is not finite (NaN or infinite)")
