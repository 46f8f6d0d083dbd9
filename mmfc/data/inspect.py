"""`mmfc inspect`: what mmfc reads from one file or dataset root, as a JSON-able dict."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmfc.data.ntu import (
    JOINT_FIELDS,
    SKELETON_DIR,
    TRACKING_STATE,
    folder_names,
    parse_name,
    parse_skeleton,
    protocol_side,
    select_bodies,
)
from mmfc.data.ntu_names import ntu_class_names
from mmfc.data.pose_pickle import describe_pose_pickle
from mmfc.data.decoding import probe_video
from mmfc.errors import DataError

VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v"}
PICKLE_SUFFIXES = {".pkl", ".pickle"}
# Joint fields whose value ranges are reported, with their column in the 12-field joint line.
RANGE_FIELDS = {"x": 0, "y": 1, "z": 2, "colorX": 5, "colorY": 6}


def inspect_path(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        return inspect_dataset_root(path)
    if not path.exists():
        raise DataError(path, "no such file or directory")
    suffix = path.suffix.lower()
    if suffix == ".skeleton":
        return inspect_skeleton(path)
    if suffix in VIDEO_SUFFIXES:
        return inspect_video(path)
    if suffix in PICKLE_SUFFIXES:
        return describe_pose_pickle(path)
    known = ", ".join([".skeleton", *sorted(VIDEO_SUFFIXES), *sorted(PICKLE_SUFFIXES)])
    kind = suffix or "(no suffix)"
    raise DataError(path, f"unknown file type {kind!r}; known: {known}, or a dataset root folder")


def inspect_skeleton(path: Path, max_bodies: int = 2) -> dict:
    raw = parse_skeleton(path)
    report: dict = {
        "kind": "ntu_skeleton",
        "path": str(path),
        "frames": raw.num_frames,
        "frames_without_body": int((raw.bodies_per_frame == 0).sum()),
        "max_bodies_in_a_frame": int(raw.bodies_per_frame.max(initial=0)),
        "bodies": [{"body_id": b.body_id, "frames": b.num_frames} for b in raw.bodies.values()],
    }
    try:
        name = parse_name(path.stem)
        report["name"] = {**name.meta, "action": name.action, "label": name.label}
    except DataError:
        pass
    if not raw.bodies:
        report["selection"] = "no body in any frame: the sample is unusable"
        return report
    report["selection"] = select_bodies(raw, max_bodies).to_dict()
    joints = np.concatenate([b.joints for b in raw.bodies.values()])
    joints = joints.reshape(-1, JOINT_FIELDS)  # [sum T_b * 25, 12]
    report["ranges"] = {
        field: [round(float(joints[:, col].min()), 4), round(float(joints[:, col].max()), 4)]
        for field, col in RANGE_FIELDS.items()
    }
    state = joints[:, TRACKING_STATE]
    report["tracking"] = {
        "tracked": round(float((state == 2).mean()), 4),
        "inferred": round(float((state == 1).mean()), 4),
        "not_tracked": round(float((state == 0).mean()), 4),
    }
    return report


def inspect_video(path: Path) -> dict:
    info = probe_video(path)
    return {
        "kind": "video",
        "path": str(path),
        "frames": info.frames,
        "fps": round(info.fps, 3),
        "width": info.width,
        "height": info.height,
        "seconds": round(info.frames / info.fps, 3) if info.fps > 0 else None,
    }


def inspect_dataset_root(root: Path) -> dict:
    """An NTU release root: samples per protocol side and per class (no missing list applied)."""
    skeleton_dir = root / SKELETON_DIR
    if not skeleton_dir.is_dir():
        raise DataError(root, f"not a dataset root: no {SKELETON_DIR}/ folder")
    names = []
    unnamed = 0
    for file_name in sorted(folder_names(skeleton_dir)):
        if file_name.endswith(".skeleton"):
            try:
                names.append(parse_name(file_name))
            except DataError:
                unnamed += 1
    videos = sum(f.endswith("_rgb.avi") for f in folder_names(root / "nturgb+d_rgb"))
    ntu120 = any(n.action > 60 for n in names)
    protocols = ("xsub", "xset") if ntu120 else ("xsub", "xview")
    # A dataset written by `mmfc synth` names its classes in class_names.txt.
    own_names = root / "class_names.txt"
    if own_names.is_file():
        class_names = own_names.read_text(encoding="utf-8").splitlines()
    else:
        class_names = ntu_class_names(120 if ntu120 else 60)
    per_class: dict[str, int] = {}
    for n in names:
        key = f"A{n.action:03d}"
        if n.label < len(class_names):
            key += f" {class_names[n.label]}"
        per_class[key] = per_class.get(key, 0) + 1
    return {
        "kind": "ntu_root",
        "path": str(root),
        "dataset": "NTU RGB+D 120" if ntu120 else "NTU RGB+D 60",
        "skeleton_files": len(names),
        "unrecognised_names": unnamed,
        "videos": videos,
        "protocols": {
            p: {side: sum(protocol_side(n, p) == side for n in names) for side in ("train", "test")}
            for p in protocols
        },
        "classes": dict(sorted(per_class.items())),
    }
