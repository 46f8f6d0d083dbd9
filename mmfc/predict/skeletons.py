"""Where a predicted clip's skeleton comes from, and whether the run's skeleton branches can read it.

A skeleton file (an NTU `.skeleton`, a PYSKL pose pickle's annotation, an NW-UCLA JSON sequence,
a Penn Action `.mat` label file) is read by the reader of the data source that reads such files
(mmfc.data), so a clip of the dataset is cropped and scored exactly as stages 1 to 3 did. It is
given with a video (`--skeleton`) or alone (a run without a video branch predicts from
skeleton files with no video). Without one, the pose stage's estimator (BlazePose) finds the
people in the video; its tracks become a Skeleton through the same PYSKL annotation stage 0
writes.

The estimator gives 2D keypoints in video pixels and 3D keypoints in metres, in COCO-17 or
NTU-25 (mmfc.poses.joints). A run trained on 2D keypoints (stage 0 videos, 2D pose pickles)
reads the 2D ones. A run trained on Kinect's 3D camera-space joints (NTU) reads the 3D ones
turned onto Kinect's axes: BlazePose's world keypoints have y down and x, z as Kinect's (x
toward the image's right, z away from the camera); Kinect's camera space has y up. Stage 1
moves every skeleton to its centre joint, so the two origins do not matter. Such a skeleton
branch sees estimated joints, not the sensor's, and the prediction says so. A layout the
estimator has no mapping to leaves the skeleton branches out: the RGB branch alone, and the
prediction says that too.

A skeleton branch learns the joints of one sensor or estimator, and on another's it can be wrong
at a probability near 1 (a small synthetic run trained on Kinect-style joints, predicted from
BlazePose's joints and from the clips' own: docs/benchmarks.md, section 8). Each skeleton
therefore carries its pose source
(mmfc.data.sample), and a prediction from poses of another source than the run was trained on
carries a warning (pose_source_warning).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from mmfc.data.layouts import LAYOUTS, Layout, get_layout
from mmfc.data.ntu import load_skeleton as load_ntu_skeleton
from mmfc.data.nw_ucla import read_sequence, sequence_skeleton
from mmfc.data.penn_action import read_clip as read_penn_clip
from mmfc.data.pose_pickle import annotation_skeleton, read_pose_pickle
from mmfc.data.sample import ANNOTATED, BLAZEPOSE, KINECT, KINECT_V1, UNRECORDED, Skeleton, describe_pose_source
from mmfc.errors import DataError
from mmfc.poses.video_poses import PoseTracks
from mmfc.poses.joints import MAPPINGS
from mmfc.run_folder import TrainedRun

# BlazePose world (x right, y down, z away) -> Kinect camera space (x right, y up, z away).
BLAZEPOSE_TO_KINECT = np.array([1.0, -1.0, 1.0], dtype=np.float32)
# The files a skeleton is read from, by suffix, with what reads them.
SKELETON_FILES = {
    ".skeleton": "an NTU RGB+D skeleton file",
    ".json": "an NW-UCLA JSON sequence",
    ".mat": "a Penn Action label file",
    ".pkl": "a PYSKL pose pickle",
    ".pickle": "a PYSKL pose pickle",
}
POSE_PICKLES = (".pkl", ".pickle")
# The frame rate of a skeleton file that states none (all but stage 0's pickles): Kinect v1 and
# v2 both record at 30 fps. It places --window's seconds on the sequence and times the outputs.
SKELETON_FPS = 30.0
# Names of a pickle's annotations shown in a message that asks to choose one.
SHOWN_NAMES = 5


@dataclass
class SkeletonInput:
    # The skeleton the crops are planned on and (when usable) the skeleton branches read.
    skeleton: Skeleton
    # Its joint layout, whole: the run's own, or the built-in one it came in.
    layout: Layout
    # Where it came from, in words: "file S001C001P001R001A001.skeleton", "estimated (BlazePose)".
    origin: str
    # Why the run's skeleton branches cannot read it (another layout or number of coordinates);
    # "" when they can.
    unreadable: str = ""
    # What the user must be told about it; "" when the skeleton is what the run trained on.
    note: str = ""
    # Which sensor or estimator it comes from (mmfc.data.sample: KINECT, BLAZEPOSE, ...).
    pose_source: str = UNRECORDED
    # Frames per second of its sequence, as its file states it (stage 0's pickles); None: unknown.
    fps: float | None = None

    @property
    def usable(self) -> bool:
        return not self.unreadable


def is_skeleton_file(path: Path) -> bool:
    return path.suffix.lower() in SKELETON_FILES


def read_skeleton_file(run: TrainedRun, path: Path, video_name: str | None = None,
                       entry: str | None = None) -> SkeletonInput:
    """A skeleton file read as the data source of its kind reads it (SKELETON_FILES). A pose
    pickle gives the annotation named `entry`, else its only one, else the one named after the
    video `video_name`. DataError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such skeleton file")
    suffix = path.suffix.lower()
    fps = None
    if suffix == ".skeleton":
        size = run.cfg.data.skeleton_frame_size
        skeleton, _ = load_ntu_skeleton(path, run.cfg.data.max_bodies, (size[0], size[1]))
        pose_source = KINECT
    elif suffix == ".json":
        skeleton, pose_source = sequence_skeleton(read_sequence(path)[1]), KINECT_V1
    elif suffix == ".mat":
        skeleton, pose_source = read_penn_clip(path), ANNOTATED
    elif suffix in POSE_PICKLES:
        ann = pickle_annotation(path, entry, video_name)
        ann_layout = str(ann.get("layout", run.layout.name))
        skeleton = annotation_skeleton(ann, path, _built_in_or(run.layout, ann_layout, path),
                                       run.cfg.data.skeleton_frame_size)
        pose_source, fps = str(ann.get("pose_source", UNRECORDED)), ann.get("fps")
    else:
        known = "; ".join(f"{ext}: {kind}" for ext, kind in SKELETON_FILES.items())
        raise DataError(path, f"not a skeleton file mmfc reads ({known})")
    found = SkeletonInput(skeleton, _built_in_or(run.layout, skeleton.layout, path), f"file {path.name}",
                          pose_source=pose_source, fps=float(fps) if fps else None)
    return _checked(found, run)


def _built_in_or(own: Layout, name: str, path: Path) -> Layout:
    """The run's layout where the file names it, else the built-in layout of that name."""
    found = own if name == own.name else LAYOUTS.get(name)
    if found is None:
        raise DataError(path, f"joint layout {name!r} is neither the run's ({own.name!r}) nor a built-in one "
                              f"({', '.join(LAYOUTS)})")
    return found


def pickle_entries(path: Path) -> list[str]:
    """The names (frame_dir) of a pose pickle's annotations, in its order."""
    return [str(ann["frame_dir"]) for ann in _annotations(Path(path))]


def pickle_annotation(path: Path, entry: str | None = None, video_name: str | None = None) -> dict:
    """The annotation named `entry` (its frame_dir, or the last part of it), else the pickle's
    only one, else the one named after `video_name`; DataError naming the pickle, with some of
    its names, when none or several are."""
    annotations = _annotations(Path(path))
    names = [str(ann["frame_dir"]) for ann in annotations]
    shown = ", ".join(names[:SHOWN_NAMES]) + (", ..." if len(names) > SHOWN_NAMES else "")
    wanted = entry if entry is not None else video_name
    if entry is None and len(annotations) == 1:
        return annotations[0]
    exact = [ann for ann, name in zip(annotations, names) if name == wanted]
    named = exact or [ann for ann, name in zip(annotations, names) if Path(name).name == wanted]
    if len(named) == 1:
        return named[0]
    if entry is not None:
        raise DataError(path, f"holds {len(named) or 'no'} annotations named {entry!r} among its {len(names)} "
                              f"({shown})")
    if video_name is None:
        raise DataError(path, f"holds {len(names)} annotations ({shown}): name the one to predict with --entry")
    raise DataError(path, f"holds {len(annotations)} annotations and {len(named)} named after {video_name!r}: give "
                          "a pickle of this video alone")


def _annotations(path: Path) -> list[dict]:
    stat = path.stat()
    return _read_annotations(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=1)
def _read_annotations(path: Path, size: int, mtime_ns: int) -> list[dict]:
    """A pose pickle's annotations, read once while the file is unchanged (size, mtime): a batch
    predicts its annotations one by one, one pickle after another, so the last one is kept."""
    return read_pose_pickle(path).annotations


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


def from_tracks(run: TrainedRun, tracks: PoseTracks, video_id: str, fps: float) -> SkeletonInput:
    """The estimator's tracks as the skeleton the run's branches read, through stage 0's annotation."""
    if tracks.num_persons == 0:
        raise DataError(video_id, f"the pose estimator found nobody in any of its {tracks.total_frames} frames")
    ann = tracks.annotation(video_id, 0, fps)
    channels, layout = run.skeleton_channels, run.layout
    note = ""
    if tracks.layout == layout.name and channels == 3:
        ann["keypoint"] = tracks.keypoint_3d * BLAZEPOSE_TO_KINECT
        note = (f"the skeleton branches saw estimated joints: BlazePose's 3D keypoints mapped to {layout.name} "
                "(the run was trained on a depth sensor's 3D joints)")
    found = get_layout(tracks.layout)
    skeleton = annotation_skeleton(ann, Path(video_id), found, list(tracks.frame_size))
    if channels == 3:
        # The crops are planned on the 2D keypoints whatever the branches read.
        skeleton = replace(skeleton, pixels=np.ascontiguousarray(tracks.keypoint))
    return _checked(SkeletonInput(skeleton, found, "estimated (BlazePose)", note=note, pose_source=BLAZEPOSE,
                                  fps=fps), run)


def pose_source_warning(trained_on: str, found: SkeletonInput) -> str:
    """What to tell when the skeleton branches read poses of another source than they were
    trained on (`trained_on`, the run's; "" for a run made before mmfc recorded it: not known);
    "" when they are alike or the branches do not read them."""
    if not found.usable or not trained_on or found.pose_source == trained_on:
        return ""
    return (f"the run's skeleton branches were trained on {describe_pose_source(trained_on)}, and these poses come "
            f"from {describe_pose_source(found.pose_source)}: their scores, and the fused ones, can be wrong at a "
            "probability near 1; to predict from such poses, train on them (docs/predict.md, \"Predicting from plain videos\")")


def _checked(found: SkeletonInput, run: TrainedRun) -> SkeletonInput:
    """Mark a skeleton the run's skeleton branches cannot read (another layout or number of
    coordinates), saying why."""
    channels, layout = run.skeleton_channels, run.layout
    have = found.skeleton.points.shape[-1]
    if found.layout.joints != layout.joints or have != channels:
        return replace(found, unreadable=(
            f"the run's skeleton branches read {layout.name} joints with {channels} coordinates, the skeleton "
            f"({found.origin}) has {found.skeleton.layout} joints with {have}, and no mapping between them exists"))
    return found
