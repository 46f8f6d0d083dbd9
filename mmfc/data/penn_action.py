"""Penn Action (Zhang, Zhu and Derpanis, ICCV 2013): the .mat label files of root/labels/.

Each NNNN.mat (MATLAB v5, read with scipy.io.loadmat) holds one clip's hand-annotated 2D pose:
`action` (one of 15 names), `pose` (the camera's side: front, back, left, right), `x` and `y`
[T, 13] in pixels, `visibility` [T, 13], `bbox`, `dimensions` [H, W, T], `nframes`, and `train`
(1 training, -1 test): the official split, kept as it is. The frames are not read (layout
"penn13": head, then left/right shoulders, elbows, wrists, hips, knees, ankles).

Joint confidence: a visible joint scores 1; an occluded one keeps the annotator's estimate at
0.5 (as NTU's "inferred" joints); an occluded joint parked at the image corner (both coordinates
under 2 px: 187,352 of the 469,501 occluded joints of the release) has no estimate and scores 0.

Penn Action names no source video or performer. Its official split flags whole runs of
consecutively numbered clips of one action (the 1,258 training clips come in 392 runs), which is
how clips cut from one source video sit; validation is therefore carved out of training by
those runs (the group: a maximal run of consecutive training clips of one action), never out of
test. Listing reads each file's `action` and `train`; a file without them readable is recorded
by stage 1 as a failure, as is one whose joints are unusable when stage 1 reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from mmfc.data.ntu import folder_names
from mmfc.data.pose_pickle import in_val_fraction
from mmfc.data.release import SkeletonRelease, one_person_skeleton
from mmfc.data.sample import ANNOTATED, Sample, Skeleton, check_joint_sequence
from mmfc.errors import DataError

# The action names as the files spell them, in the alphabetical order of the dataset's README.
CLASS_NAMES = (
    "baseball_pitch", "baseball_swing", "bench_press", "bowl", "clean_and_jerk", "golf_swing",
    "jump_rope", "jumping_jacks", "pullup", "pushup", "situp", "squat", "strum_guitar",
    "tennis_forehand", "tennis_serve",
)
NUM_JOINTS = 13
LABEL_DIR = "labels"
TRAIN_FLAGS = {1: "train", -1: "test"}
# Occluded joints without an estimate sit at (0.67, 0.67), (0.75, 0.75), ... (1, 1): under this.
CORNER_PIXELS = 2.0
VISIBLE_SCORE, OCCLUDED_SCORE = 1.0, 0.5


def load_mat(path: Path, fields: tuple[str, ...]) -> dict:
    """The named variables of a MAT-file; DataError when it is unreadable or lacks one."""
    try:
        data = scipy.io.loadmat(path, variable_names=fields)
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except Exception as exc:  # noqa: BLE001 (whatever scipy raises on a damaged file, the message names it)
        raise DataError(path, f"not a readable MAT-file ({type(exc).__name__}: {exc})") from None
    missing = [name for name in fields if name not in data]
    if missing:
        raise DataError(path, f"not a Penn Action label file: no {', '.join(repr(m) for m in missing)}")
    return data


def read_header(path: Path) -> tuple[str, str]:
    """(action name, "train" or "test") of a label file; DataError when they are unusable."""
    data = load_mat(path, ("action", "train"))
    action = np.asarray(data["action"]).ravel()
    flag = np.asarray(data["train"]).ravel()
    if action.size != 1 or str(action[0]) not in CLASS_NAMES:
        raise DataError(path, f"action {action.tolist()!r} is not one of Penn Action's {len(CLASS_NAMES)}")
    if flag.size != 1 or flag[0] not in TRAIN_FLAGS:
        raise DataError(path, f"train flag {flag.tolist()!r} is neither 1 (train) nor -1 (test)")
    return str(action[0]), TRAIN_FLAGS[int(flag[0])]


def read_clip(path: str | Path) -> Skeleton:
    """A label file's joints as a one-person 2D Skeleton in the clip's pixels; DataError when the
    arrays are missing, of the wrong shape, shorter than 2 frames or not finite."""
    path = Path(path)
    data = load_mat(path, ("x", "y", "visibility", "dimensions"))
    x, y, visibility = (np.asarray(data[k], dtype=np.float64) for k in ("x", "y", "visibility"))
    if x.ndim != 2 or x.shape[1] != NUM_JOINTS:
        raise DataError(path, f"x has shape {list(x.shape)}, expected [T, {NUM_JOINTS}]")
    for name, array in (("y", y), ("visibility", visibility)):
        if array.shape != x.shape:
            raise DataError(path, f"{name} has shape {list(array.shape)}, x {list(x.shape)}")
    points = np.stack([x, y], axis=-1)  # [T, 13, 2]
    check_joint_sequence(path, points)
    dimensions = np.asarray(data["dimensions"]).ravel()
    if dimensions.size < 2 or not (dimensions[:2] > 0).all():
        raise DataError(path, f"dimensions {dimensions.tolist()} give no frame height and width")
    corner = (points < CORNER_PIXELS).all(axis=-1)
    score = np.where(visibility > 0, VISIBLE_SCORE, np.where(corner, 0.0, OCCLUDED_SCORE))
    points = np.where(score[..., None] > 0, points, 0)
    return one_person_skeleton(points, points, score, (int(dimensions[1]), int(dimensions[0])), "penn13")


class PennActionSource(SkeletonRelease):
    dataset = "Penn Action"
    class_names_built_in = CLASS_NAMES
    files_folder = LABEL_DIR
    group_kind = "run of clips"  # consecutively numbered clips of one action on one side of the flag
    pose_source = ANNOTATED

    def load_skeleton(self, sample: Sample) -> Skeleton:
        return read_clip(sample.skeleton_path)

    def _scan(self, folder: Path) -> list[Sample]:
        clips = []
        for file_name in sorted(folder_names(folder)):
            if not file_name.endswith(".mat"):
                continue
            path = folder / file_name
            try:
                action, side = read_header(path)
            except DataError as exc:
                self.unreadable[str(path)] = exc.reason
                continue
            clips.append((path, action, side))
        if not clips:
            raise DataError(folder, "no readable Penn Action label files (NNNN.mat) here")
        samples, group = [], ""
        for number, (path, action, side) in enumerate(clips):
            if number == 0 or (action, side) != clips[number - 1][1:]:
                group = f"{action}-{path.stem}"  # a run starts: named after its first clip
            label = CLASS_NAMES.index(action)
            if label >= self.num_classes:
                self.excluded[f"action beyond num_classes ({self.num_classes})"] += 1
                continue
            if side == "train" and in_val_fraction(group, self.cfg.val_fraction, self.cfg.val_seed):
                side = "val"
            samples.append(Sample(id=path.stem, label=label, split=side, skeleton_path=path, video_path=None,
                                  group=group))
        return samples
