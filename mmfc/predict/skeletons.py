"""Where a predicted video's skeleton comes from, and whether the skeleton branch can read it.

A skeleton file (`--skeleton`: an NTU `.skeleton`, or a PYSKL pose pickle) is read as the run's
data source reads its own (mmfc.data), so a clip of the dataset is cropped and scored exactly as
stages 1 to 3 did. Without one, the pose stage's estimator (BlazePose) finds the people; its
tracks become a Skeleton through the same PYSKL annotation stage 0 writes.

The estimator gives 2D keypoints in video pixels and 3D keypoints in metres, in COCO-17 or
NTU-25 (mmfc.poses.joints). A run trained on 2D keypoints (stage 0 videos, 2D pose pickles)
reads the 2D ones. A run trained on Kinect's 3D camera-space joints (NTU) reads the 3D ones
turned onto Kinect's axes: BlazePose's world keypoints have y down and x, z as Kinect's (x
toward the image's right, z away from the camera); Kinect's camera space has y up. Stage 1
moves every skeleton to its centre joint, so the two origins do not matter. Such a skeleton
branch sees estimated joints, not the sensor's, and the prediction says so. A layout the
estimator has no mapping to leaves the skeleton branch out: the RGB branch alone, and the
prediction says that too.

A skeleton branch learns the joints of one sensor or estimator, and on another's it can be wrong
at a probability near 1 (a small synthetic run trained on Kinect-style joints, README "Predicting
from plain videos": 0 of 11 test clips right at a mean fused probability of 0.96 from BlazePose's
joints, 5 of 12 at 0.55 from the clips' own). Each skeleton therefore carries its pose source
(mmfc.data.sample), and a prediction from poses of another source than the run was trained on
carries a warning (pose_source_warning).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mmfc.config import Pipeline
from mmfc.data.layouts import LAYOUTS, Layout, get_layout
from mmfc.data.ntu import load_skeleton as load_ntu_skeleton
from mmfc.data.pose_pickle import annotation_skeleton, read_pose_pickle
from mmfc.data.sample import BLAZEPOSE, KINECT, UNRECORDED, Skeleton, describe_pose_source
from mmfc.errors import DataError
from mmfc.poses.video_poses import PoseTracks
from mmfc.poses.joints import MAPPINGS

# BlazePose world (x right, y down, z away) -> Kinect camera space (x right, y up, z away).
BLAZEPOSE_TO_KINECT = np.array([1.0, -1.0, 1.0], dtype=np.float32)


@dataclass
class SkeletonInput:
    # The skeleton the crops are planned on and (when `usable`) the skeleton branch reads.
    skeleton: Skeleton
    # Its joint layout, whole: the run's own, or the built-in one it came in.
    layout: Layout
    # Where it came from, in words: "file S001C001P001R001A001.skeleton", "estimated (BlazePose)".
    origin: str
    # False: the skeleton branch cannot read it (another layout or coordinates); RGB alone.
    usable: bool = True
    # What the user must be told about it; "" when the skeleton is what the run trained on.
    note: str = ""
    # Which sensor or estimator it comes from (mmfc.data.sample: KINECT, BLAZEPOSE, ...).
    pose_source: str = UNRECORDED


def skeleton_channels(cfg: Pipeline, layout: Layout) -> int:
    """Coordinates per joint the skeleton branch reads: skel.model.in_channels, else the layout's."""
    return cfg.skel.model.in_channels or layout.channels


def read_skeleton_file(path: Path, cfg: Pipeline, layout: Layout, video: Path) -> SkeletonInput:
    """An NTU .skeleton file, or a pose pickle (its one annotation, or the one named after the
    video), read as the run's data source reads them. DataError naming the file otherwise."""
    path = Path(path)
    size = cfg.data.skeleton_frame_size
    if not path.is_file():
        raise DataError(path, "no such skeleton file")
    if path.suffix == ".skeleton":
        skeleton, _ = load_ntu_skeleton(path, cfg.data.max_bodies, (size[0], size[1]))
        found = get_layout(skeleton.layout)
        pose_source = KINECT
    else:
        annotations = read_pose_pickle(path).annotations
        if len(annotations) != 1:
            named = [a for a in annotations if Path(str(a["frame_dir"])).name == video.stem]
            if len(named) != 1:
                raise DataError(path, f"holds {len(annotations)} annotations and {len(named)} named after "
                                      f"{video.stem!r}: give a pickle of this video alone")
            annotations = named
        ann = annotations[0]
        ann_layout = str(ann.get("layout", layout.name))
        found = layout if ann_layout == layout.name else LAYOUTS.get(ann_layout)
        if found is None:
            raise DataError(path, f"annotation layout {ann_layout!r} is neither the run's ({layout.name!r}) nor "
                                  f"a built-in one ({', '.join(LAYOUTS)})")
        skeleton = annotation_skeleton(ann, path, found, size)
        pose_source = str(ann.get("pose_source", UNRECORDED))
    return _checked(SkeletonInput(skeleton, found, f"file {path.name}", pose_source=pose_source), cfg, layout)


def fit_to_video(found: SkeletonInput, path: Path, video_frames: int, min_fraction: float) -> SkeletonInput:
    """A skeleton file checked against the video it is given for: its frames are matched to the
    video's by time, so one of another length would be stretched over the video unseen. Below
    `min_fraction` (crops.min_video_fraction, stage 1's bound between a video and its skeleton)
    of the longer of the two it is refused; a difference of more than a frame is noted."""
    frames = found.skeleton.total_frames
    if abs(frames - video_frames) <= 1:
        return found
    fraction = min(frames, video_frames) / max(frames, video_frames, 1)
    counts = f"the skeleton has {frames} frames, the video {video_frames}"
    if fraction < min_fraction:
        raise DataError(path, f"{counts}: not the skeleton of this video, or of another stretch of it (stage 1 "
                              f"refuses lengths under crops.min_video_fraction = {min_fraction} of each other)")
    note = f"{counts}; its frames were matched to the video's by time"
    return replace(found, note="; ".join(filter(None, [found.note, note])))


def estimator_layout(layout: Layout) -> str:
    """The layout to ask the estimator for: the run's own when it maps to it, else COCO-17
    (whose boxes still guide the RGB crops)."""
    return layout.name if layout.name in MAPPINGS else "coco17"


def from_tracks(tracks: PoseTracks, cfg: Pipeline, layout: Layout, video_id: str, fps: float) -> SkeletonInput:
    """The estimator's tracks as the skeleton the run's branch reads, through stage 0's annotation."""
    if tracks.num_persons == 0:
        raise DataError(video_id, f"the pose estimator found nobody in any of its {tracks.total_frames} frames")
    ann = tracks.annotation(video_id, 0, fps)
    channels = skeleton_channels(cfg, layout)
    note = ""
    if tracks.layout == layout.name and channels == 3:
        ann["keypoint"] = tracks.keypoint_3d * BLAZEPOSE_TO_KINECT
        note = (f"the skeleton branch saw estimated joints: BlazePose's 3D keypoints mapped to {layout.name} "
                "(the run was trained on a depth sensor's 3D joints)")
    found = get_layout(tracks.layout)
    skeleton = annotation_skeleton(ann, Path(video_id), found, list(tracks.frame_size))
    if channels == 3:
        # The crops are planned on the 2D keypoints whatever the branch reads.
        skeleton = replace(skeleton, pixels=np.ascontiguousarray(tracks.keypoint))
    return _checked(SkeletonInput(skeleton, found, "estimated (BlazePose)", note=note, pose_source=BLAZEPOSE), cfg, layout)


def pose_source_warning(trained_on: str, found: SkeletonInput) -> str:
    """What to tell when the skeleton branch reads poses of another source than it was trained
    on (`trained_on`, the run's; "" for a run made before mmfc recorded it: not known); ""
    when they are alike or the branch does not read them."""
    if not found.usable or not trained_on or found.pose_source == trained_on:
        return ""
    return (f"the run's skeleton branch was trained on {describe_pose_source(trained_on)}, and these poses come "
            f"from {describe_pose_source(found.pose_source)}: its scores, and the fused ones, can be wrong at a "
            "probability near 1; to predict from such poses, train on them (README, \"Predicting from plain videos\")")


def _checked(found: SkeletonInput, cfg: Pipeline, layout: Layout) -> SkeletonInput:
    """Mark a skeleton the branch cannot read (another layout or number of coordinates)."""
    channels = skeleton_channels(cfg, layout)
    have = found.skeleton.points.shape[-1]
    if found.layout.joints != layout.joints or have != channels:
        reason = (f"the run's skeleton branch reads {layout.name} joints with {channels} coordinates, the skeleton "
                  f"({found.origin}) has {found.skeleton.layout} with {have}, and no mapping between them exists")
        return replace(found, usable=False, note=f"RGB branch alone: {reason}")
    return found
