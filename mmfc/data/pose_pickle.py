"""PYSKL / MMAction2 pose pickles: {'split': {name: [frame_dir, ...]}, 'annotations': [...]}.

Each annotation holds `keypoint` [M, T, V, C] (C = 2 pixels, or 3 with a score or depth) and
optionally `keypoint_score` [M, T, V]. A bare annotation dict or a plain list of them (as
PaddleVideo ships its example) is accepted too; having no split table, all of its samples are
test samples, the case of scoring a handful of clips.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmfc.config import ConfigError, DataConfig
from mmfc.data.layouts import LAYOUTS, Layout, layout_of
from mmfc.data.ntu import folder_names, parse_name
from mmfc.data.ntu_names import read_class_names
from mmfc.data.pickles import load_pickle
from mmfc.data.sample import UNRECORDED, Sample, Skeleton
from mmfc.errors import DataError


@dataclass
class PosePickle:
    path: Path
    split: dict[str, list[str]]  # empty when the pickle has no split table
    annotations: list[dict]

    @property
    def pose_source(self) -> str:
        """The estimator every annotation names in "pose_source" (mmfc.data.sample), else UNRECORDED."""
        named = {str(ann.get("pose_source", UNRECORDED)) for ann in self.annotations}
        return named.pop() if len(named) == 1 else UNRECORDED


def read_pose_pickle(path: str | Path) -> PosePickle:
    """Load and normalise a pose pickle; anything that is not one raises DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such pose pickle")
    data = load_pickle(path)  # refuses any global but numpy's arrays: a pickle can run code
    if isinstance(data, dict) and "annotations" in data:
        split, annotations = data.get("split") or {}, data["annotations"]
    elif isinstance(data, dict) and "frame_dir" in data:
        split, annotations = {}, [data]
    elif isinstance(data, list):
        split, annotations = {}, data
    else:
        kind = type(data).__name__
        raise DataError(path, f"not a pose pickle: a {kind} without 'annotations' or 'frame_dir'")
    if not isinstance(split, dict) or not all(isinstance(v, (list, tuple)) for v in split.values()):
        raise DataError(path, "'split' must map split names to lists of frame_dir names")
    for index, ann in enumerate(annotations):
        if not isinstance(ann, dict) or "frame_dir" not in ann or "label" not in ann:
            raise DataError(path, f"annotation {index} is not a dict with 'frame_dir' and 'label'")
    return PosePickle(path, {k: list(v) for k, v in split.items()}, list(annotations))


def source_group(frame_dir: str) -> str:
    """The source video of a clip: FineGym '<youtube_id>_E_<event>_A_<action>' -> '<youtube_id>'."""
    return frame_dir.split("_E_", 1)[0]


def seeded_position(group: str, seed: int) -> float:
    """A group's place in [0, 1), fixed by a seeded hash: the same on every run and machine."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_val_fraction(group: str, fraction: float, seed: int) -> bool:
    """A seeded hash puts ~fraction of the groups in validation, the same ones on every run."""
    return seeded_position(group, seed) < fraction


class PosePickleSource:
    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.path = Path(cfg.root)
        self.layout: Layout = layout_of(cfg)
        self.group_kind = "performer" if cfg.val_by == "performer" else "source video"
        self.num_classes = cfg.num_classes
        self.class_names = (
            read_class_names(cfg.class_names, cfg.num_classes)
            if cfg.class_names
            else [f"class {i}" for i in range(cfg.num_classes)]
        )
        self.pickle = read_pose_pickle(self.path)
        without = [a["frame_dir"] for a in self.pickle.annotations if "keypoint" not in a]
        if without:
            raise DataError(
                self.path,
                f"keypoints are missing: {len(without)} of {len(self.pickle.annotations)} annotations "
                f"(first {without[0]!r}) have no 'keypoint' array",
            )
        self._by_id = {a["frame_dir"]: a for a in self.pickle.annotations}
        self.pose_source = self.pickle.pose_source
        self.excluded: dict[str, int] = {}
        self.notes: dict[str, int] = {}
        self.unreadable: dict[str, str] = {}  # one pickle, read whole when opened
        self._samples = self._select()

    def samples(self) -> list[Sample]:
        return list(self._samples)

    def load_skeleton(self, sample: Sample) -> Skeleton:
        ann = self._by_id[sample.id]
        return annotation_skeleton(ann, self.path, self.layout, self.cfg.skeleton_frame_size)

    def _select(self) -> list[Sample]:
        train, test = self._split_members()
        videos = folder_names(Path(self.cfg.video_root)) if self.cfg.video_root else set()
        samples = []
        for ann in self.pickle.annotations:
            frame_dir, label = ann["frame_dir"], int(ann["label"])
            if label >= self.num_classes:
                self._exclude(f"label beyond num_classes ({self.num_classes})")
                continue
            if train is None or frame_dir in test:
                split = "test"
            elif frame_dir in train:
                split = "val" if self._is_val(frame_dir) else "train"
            else:
                self._exclude(f"in neither split {self.cfg.train_split!r} nor {self.cfg.test_split!r}")
                continue
            video = frame_dir + self.cfg.video_ext
            samples.append(
                Sample(
                    id=frame_dir,
                    label=label,
                    split=split,
                    skeleton_path=self.path,
                    video_path=Path(self.cfg.video_root) / video if video in videos else None,
                    group=self._group(frame_dir),
                    meta={"total_frames": ann.get("total_frames")},
                )
            )
        return samples

    def _split_members(self) -> tuple[set[str] | None, set[str]]:
        split = self.pickle.split
        if not split:
            return None, set()
        for name in (self.cfg.train_split, self.cfg.test_split):
            if name not in split:
                available = ", ".join(split)
                raise ConfigError(f"{self.path}: no split {name!r} in the pickle; its splits: {available}")
        return set(split[self.cfg.train_split]), set(split[self.cfg.test_split])

    def _group(self, frame_dir: str) -> str:
        """What validation is carved by: the performer of an NTU name (val_by "performer"; the
        clip itself for another name) or the clip's source video."""
        if self.cfg.val_by != "performer":
            return source_group(frame_dir)
        try:
            return parse_name(frame_dir).group
        except DataError:
            return frame_dir

    def _is_val(self, frame_dir: str) -> bool:
        if self.cfg.val_by == "performer":
            return parse_name(frame_dir).performer in self.cfg.val_performers
        return in_val_fraction(source_group(frame_dir), self.cfg.val_fraction, self.cfg.val_seed)

    def _exclude(self, reason: str) -> None:
        self.excluded[reason] = self.excluded.get(reason, 0) + 1


def annotation_skeleton(ann: dict, path: Path, layout: Layout, default_size: list[int]) -> Skeleton:
    """One annotation as a Skeleton; malformed arrays raise DataError naming the pickle and clip."""
    where = str(ann["frame_dir"])
    if "keypoint" not in ann:
        raise DataError(path, f"{where}: keypoints are missing (keys: {', '.join(ann)})")
    keypoint = np.asarray(ann["keypoint"], dtype=np.float32)
    if keypoint.ndim != 4 or keypoint.shape[-1] not in (2, 3) or keypoint.shape[2] != layout.num_joints:
        raise DataError(
            path,
            f"{where}: keypoint shape {keypoint.shape}, expected [M, T, {layout.num_joints}, 2 or 3]",
        )
    persons, frames = keypoint.shape[:2]
    if "keypoint_score" in ann:
        score = np.asarray(ann["keypoint_score"], dtype=np.float32)
        if score.shape != keypoint.shape[:3]:
            raise DataError(path, f"{where}: keypoint_score shape {score.shape} != {keypoint.shape[:3]}")
    else:
        score = np.ones((persons, frames, layout.num_joints), dtype=np.float32)
    if "frame_inds" in ann:
        frame_indices = np.asarray(ann["frame_inds"], dtype=np.int64)
        if frame_indices.shape != (frames,):
            raise DataError(path, f"{where}: {len(frame_indices)} frame_inds for {frames} frames")
    else:
        frame_indices = np.arange(frames, dtype=np.int64)
    if "img_shape" in ann:
        height, width = ann["img_shape"][:2]
    else:
        width, height = default_size
    return Skeleton(
        points=keypoint,
        pixels=np.ascontiguousarray(keypoint[..., :2]),
        score=score,
        frame_indices=frame_indices,
        frame_size=(int(width), int(height)),
        layout=layout.name,
        total_frames=int(ann.get("total_frames", frames)),
    )


def describe_pose_pickle(path: str | Path) -> dict:
    """What a pose pickle holds, keypoints or not (the Kinetics index pickle has none)."""
    pk = read_pose_pickle(path)
    keys = sorted({k for a in pk.annotations for k in a})
    with_keypoints = [a for a in pk.annotations if "keypoint" in a]
    report = {
        "kind": "pose_pickle",
        "path": str(pk.path),
        "samples": len(pk.annotations),
        "splits": {name: len(members) for name, members in pk.split.items()},
        "keys": keys,
        "labels": len({int(a["label"]) for a in pk.annotations}),
        "with_keypoints": len(with_keypoints),
    }
    if with_keypoints:
        shapes = [np.shape(a["keypoint"]) for a in with_keypoints]
        report["keypoint"] = {
            "dtype": str(np.asarray(with_keypoints[0]["keypoint"]).dtype),
            "joints": sorted({s[2] for s in shapes}),
            "channels": sorted({s[3] for s in shapes}),
            "persons": sorted({s[0] for s in shapes}),
            "frames": [min(s[1] for s in shapes), max(s[1] for s in shapes)],
            "layout_guess": " or ".join(name for name, layout in LAYOUTS.items() if layout.num_joints == shapes[0][2]) or "unknown",
            "has_score": sum("keypoint_score" in a for a in with_keypoints),
        }
    return report
