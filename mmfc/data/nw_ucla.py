"""NW-UCLA Multiview Action 3D, as the JSON sequences CTR-GCN's loader reads (root/all_sqe/).

Each file aXX_sYY_eZZ_vWW.json (action, subject, repetition, camera view) holds
{"file_name": its stem, "label": 1..10, "skeletons": [T][20][3]}: one person, Kinect v1's 20
joints (layout "kinect20") in camera-space metres. The cross-view protocol trains on views 1 and
2 and tests on view 3. Validation is carved out of training by whole recordings (aXX_sYY_eZZ,
filmed from every view at once: both training views of one recording land on one side), or by
subject (data.val_by = "performer", data.val_performers). The dataset has no usable RGB here, so
its samples have no video; stage 1 stores their skeletons alone.

Samples are listed from the file names, so a broken file is found when stage 1 reads it, and is
recorded there as a failure naming the file and the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmfc.data.ntu import folder_names
from mmfc.data.pose_pickle import in_val_fraction
from mmfc.data.release import SkeletonRelease, one_person_skeleton
from mmfc.data.sample import KINECT_V1, Sample, Skeleton, check_joint_sequence
from mmfc.errors import DataError

# The 10 actions in label order; the file names number them a01-a06, a08, a09, a11, a12.
CLASS_NAMES = (
    "pick up with one hand", "pick up with two hands", "drop trash", "walk around", "sit down",
    "stand up", "donning", "doffing", "throw", "carry",
)
ACTION_IDS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
TRAIN_VIEWS = frozenset((1, 2))
NUM_JOINTS = 20
SEQUENCE_DIR = "all_sqe"

# Kinect v1 gives no colour pixels with these files; the SDK's skeleton-to-depth-image
# projection (NuiTransformSkeletonToDepthImage: nominal focal length 285.63 px at 320x240,
# doubled at 640x480) places the joints in a 640x480 frame, which the crop box and the stage-1
# preview use. The skeleton branch reads the metres.
FRAME_SIZE = (640, 480)
FOCAL_PIXELS = 2 * 285.63

_NAME = re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})_v(\d{2})")


@dataclass(frozen=True)
class UCLAName:
    action: int  # the file name's action id (a01..a12, with gaps)
    subject: int
    repetition: int
    view: int

    @property
    def recording(self) -> str:
        """One performance, filmed from every view at once: aXX_sYY_eZZ."""
        return f"a{self.action:02d}_s{self.subject:02d}_e{self.repetition:02d}"


def parse_ucla_name(name: str) -> UCLAName | None:
    match = _NAME.fullmatch(name)
    return UCLAName(*(int(g) for g in match.groups())) if match else None


def read_sequence(path: str | Path) -> tuple[int, np.ndarray]:
    """One JSON sequence, checked. -> (label 0..9, float32 [T, 20, 3] metres); DataError when the
    file is unreadable, a field is missing, or the joints are not T >= 2 frames of 20 finite
    points (two of the release's 1,484 files are one frame long)."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not a JSON file: {exc}") from None
    if not isinstance(data, dict) or "skeletons" not in data or "label" not in data:
        raise DataError(path, "not an NW-UCLA sequence: expected an object with 'label' and 'skeletons'")
    label = data["label"]
    if isinstance(label, bool) or not isinstance(label, int) or not 1 <= label <= len(CLASS_NAMES):
        raise DataError(path, f"label {label!r} is not one of 1..{len(CLASS_NAMES)}")
    try:
        joints = np.asarray(data["skeletons"], dtype=np.float32)
    except (ValueError, TypeError):
        raise DataError(path, f"'skeletons' is not a [T][{NUM_JOINTS}][3] array of numbers "
                              "(frames of different sizes, or a value that is no number)") from None
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise DataError(path, f"'skeletons' has shape {list(joints.shape)}, expected [T, {NUM_JOINTS}, 3]")
    check_joint_sequence(path, joints)
    return label - 1, joints


def project_to_depth_image(points: np.ndarray) -> np.ndarray:
    """Kinect camera-space metres [..., 3] (x right, y up, z away) -> pixels [..., 2] of the
    640x480 depth image; joints at or behind the camera (z <= 0: missing) go to (0, 0)."""
    z = points[..., 2]
    ahead = z > 0
    safe = np.where(ahead, z, 1.0)
    u = FRAME_SIZE[0] / 2 + FOCAL_PIXELS * points[..., 0] / safe
    v = FRAME_SIZE[1] / 2 - FOCAL_PIXELS * points[..., 1] / safe
    return np.where(ahead[..., None], np.stack([u, v], axis=-1), 0).astype(np.float32)


def sequence_skeleton(joints: np.ndarray) -> Skeleton:
    """[T, 20, 3] metres -> a one-person Skeleton; an all-zero joint is a missing one."""
    present = (joints != 0).any(axis=-1)
    return one_person_skeleton(joints, project_to_depth_image(joints), present, FRAME_SIZE, "kinect20")


class NWUCLASource(SkeletonRelease):
    dataset = "NW-UCLA"
    class_names_built_in = CLASS_NAMES
    files_folder = SEQUENCE_DIR
    group_kind = "recording"  # aXX_sYY_eZZ: one performance, filmed from every view at once
    pose_source = KINECT_V1

    def load_skeleton(self, sample: Sample) -> Skeleton:
        label, joints = read_sequence(sample.skeleton_path)
        if label != sample.label:
            raise DataError(sample.skeleton_path, f"label {label + 1} ({CLASS_NAMES[label]}), but the file name's "
                                                  f"action a{sample.meta['action']:02d} is label {sample.label + 1}")
        return sequence_skeleton(joints)

    def _scan(self, folder: Path) -> list[Sample]:
        val_subjects = set(self.cfg.val_performers)
        samples = []
        for file_name in sorted(folder_names(folder)):
            if not file_name.endswith(".json"):
                continue
            name = parse_ucla_name(file_name[: -len(".json")])
            if name is None:
                self.excluded["file name is not aXX_sYY_eZZ_vWW.json"] += 1
                continue
            if name.action not in ACTION_IDS:
                self.excluded[f"action id not one of NW-UCLA's ({', '.join(f'a{a:02d}' for a in ACTION_IDS)})"] += 1
                continue
            label = ACTION_IDS.index(name.action)
            if label >= self.num_classes:
                self.excluded[f"action beyond num_classes ({self.num_classes})"] += 1
                continue
            split = "train" if name.view in TRAIN_VIEWS else "test"
            if split == "train" and self._is_val(name, val_subjects):
                split = "val"
            samples.append(Sample(
                id=file_name[: -len(".json")],
                label=label,
                split=split,
                skeleton_path=folder / file_name,
                video_path=None,
                group=name.recording,
                meta={"action": name.action, "subject": name.subject,
                      "repetition": name.repetition, "view": name.view},
            ))
        if not samples:
            raise DataError(folder, "no NW-UCLA sequences (aXX_sYY_eZZ_vWW.json) here")
        return samples

    def _is_val(self, name: UCLAName, val_subjects: set[int]) -> bool:
        if self.cfg.val_by == "performer":
            return name.subject in val_subjects
        return in_val_fraction(name.recording, self.cfg.val_fraction, self.cfg.val_seed)
