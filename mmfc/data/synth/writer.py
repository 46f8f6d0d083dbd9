"""Writing the dataset in the NTU RGB+D raw release layout (docs/method.md, section 6).

out/nturgb+d_skeletons/<name>.skeleton   the Kinect text format, matched to real NTU files
out/nturgb+d_rgb/<name>_rgb.avi          MPEG-4 (XVID) video, downscaled from 1920x1080, 30 fps
out/class_names.txt, out/README.txt      the classes
out/.complete                            written last: the arguments and counts

Every file is written under a temporary name and renamed into place (mmfc.atomic), so a reader
never sees half a file; a rerun clears what an interrupted run left unfinished.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from joblib import Parallel, delayed

from mmfc import atomic
from mmfc.data.synth import body as B
from mmfc.data.synth.actions import ACTIONS, FPS
from mmfc.data.synth.camera import project_color, project_depth
from mmfc.data.synth.clip import Clip, SampleKey, TrackedBody, compose_clip
from mmfc.data.synth.render import render_clip
from mmfc.errors import DataError

SKELETON_DIR = "nturgb+d_skeletons"
RGB_DIR = "nturgb+d_rgb"
COMPLETE = ".complete"
FORMAT_VERSION = 1

# X-Sub: 1 2 4 5 8 9 13 14 15 16 on the training side, 3 6 7 10 11 12 on the test side. Many
# performers matter for the RGB branch: with few, it learns their clothes, not the actions.
PERFORMERS = tuple(range(1, 17))
CAMERAS = (1, 2, 3)
DEFAULT_FRAME_SIZE = (480, 270)
_NAME = re.compile(r"^S\d{3}C\d{3}P\d{3}R\d{3}A\d{3}(\.skeleton|_rgb\.avi)$")

# Kinect bone orientation: a joint's orientation turns +y onto the bone to its child. Joints
# without a child (head, feet, hand tips, thumbs) have a zero quaternion in NTU files.
_CHILD = {
    B.SPINE_BASE: B.SPINE_MID, B.SPINE_MID: B.SPINE_SHOULDER, B.SPINE_SHOULDER: B.NECK,
    B.NECK: B.HEAD, B.L_SHOULDER: B.L_ELBOW, B.L_ELBOW: B.L_WRIST, B.L_WRIST: B.L_HAND,
    B.L_HAND: B.L_HAND_TIP, B.R_SHOULDER: B.R_ELBOW, B.R_ELBOW: B.R_WRIST, B.R_WRIST: B.R_HAND,
    B.R_HAND: B.R_HAND_TIP, B.L_HIP: B.L_KNEE, B.L_KNEE: B.L_ANKLE, B.L_ANKLE: B.L_FOOT,
    B.R_HIP: B.R_KNEE, B.R_KNEE: B.R_ANKLE, B.R_ANKLE: B.R_FOOT,
}


def bone_orientations(joints: np.ndarray) -> np.ndarray:
    """Shortest-arc quaternions (w, x, y, z) from +y to each joint's child bone. [T, 25, 3] -> [T, 25, 4]"""
    quats = np.zeros(joints.shape[:2] + (4,))
    parents, children = list(_CHILD), list(_CHILD.values())
    bone = joints[:, children] - joints[:, parents]
    d = bone / np.maximum(np.linalg.norm(bone, axis=-1, keepdims=True), 1e-9)
    # q = (1 + y.d, y x d) normalised; y x d = (d_z, 0, -d_x).
    q = np.stack([1.0 + d[..., 1] + 1e-9, d[..., 2], np.zeros_like(d[..., 0]), -d[..., 0]], axis=-1)
    quats[:, parents] = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return quats


def _num(value: float) -> str:
    # Real NTU files print 7 significant digits ("0.2181153", "3.785547", "1036.233").
    return f"{value:.7g}"


def _body_lines(body: TrackedBody, t: int, table: np.ndarray) -> list[str]:
    joints = body.joints[t]
    spine = joints[B.SPINE_SHOULDER] - joints[B.SPINE_BASE]
    lean_x = np.clip(spine[0] / max(spine[1], 1e-6), -1.0, 1.0)
    lean_y = np.clip(-spine[2] / max(spine[1], 1e-6), -1.0, 1.0)
    # bodyID clippedEdges handLeftConfidence handLeftState handRightConfidence handRightState
    # isRestricted leanX leanY trackingState
    lines = [f"{body.body_id} 0 1 1 1 1 0 {_num(lean_x)} {_num(lean_y)} 2", str(B.NUM_JOINTS)]
    for v in range(B.NUM_JOINTS):
        values = " ".join(_num(x) for x in table[t, v])
        lines.append(f"{values} {body.tracking[t, v]}")
    return lines


def skeleton_text(clip: Clip) -> str:
    """The clip's bodies in the NTU .skeleton text format."""
    tables = []
    for body in clip.bodies:
        # x y z depthX depthY colorX colorY orientationW..Z  [T, 25, 11]
        tables.append(np.concatenate([body.joints, project_depth(body.joints), project_color(body.joints),
                                      bone_orientations(body.joints)], axis=-1))
    lines = [str(clip.num_frames)]
    for t in range(clip.num_frames):
        present = [i for i, body in enumerate(clip.bodies) if body.present[t]]
        lines.append(str(len(present)))
        for i in present:
            lines.extend(_body_lines(clip.bodies[i], t, tables[i]))
    return "\n".join(lines) + "\n"


def write_video(final: Path, frames: np.ndarray) -> None:
    """MPEG-4 Part 2 (XVID) in AVI, which opencv-python-headless writes and reads everywhere.

    Its output is byte-identical for the same frames (also with one CPU or several), and it is a
    third the size of MJPG on these cluttered frames. frames [T, H, W, 3] BGR uint8
    """
    height, width = frames.shape[1:3]
    # The temporary name keeps the .avi extension: OpenCV picks the container by it.
    with atomic.atomic_path(final) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"XVID"), FPS, (width, height))
        if not writer.isOpened():
            raise DataError(final, "OpenCV cannot open an MPEG-4 (XVID) video writer here")
        for frame in frames:
            writer.write(frame)
        writer.release()


def write_sample(out: Path, key: SampleKey, seed: int, frame_size: tuple[int, int]) -> tuple[int, int]:
    """Write one sample's .skeleton and _rgb.avi; returns (frames, bytes)."""
    clip = compose_clip(key, seed)
    skeleton = out / SKELETON_DIR / f"{key.name}.skeleton"
    video = out / RGB_DIR / f"{key.name}_rgb.avi"
    atomic.write_text(skeleton, skeleton_text(clip))
    write_video(video, render_clip(clip, frame_size, seed))
    return clip.num_frames, skeleton.stat().st_size + video.stat().st_size


def sample_keys(per_class: int, actions, performers, cameras) -> list[SampleKey]:
    # Two replications per setup, as NTU records R001 and R002 in one setup.
    return [SampleKey(setup=1 + (r - 1) // 2, camera=c, performer=p, replication=r, action=a)
            for a in actions for p in performers for r in range(1, per_class + 1) for c in cameras]


def _readme(names: list[str]) -> str:
    lines = [
        "mmfc synthetic fine-grained action dataset (written by `mmfc synth`), NTU RGB+D raw layout.",
        "Files: nturgb+d_skeletons/SsssCcccPpppRrrrAaaa.skeleton (Kinect v2 text format, colour",
        "coordinates in 1920x1080) and nturgb+d_rgb/SsssCcccPpppRrrrAaaa_rgb.avi (MPEG-4, downscaled,",
        "30 fps, as many frames as the skeleton file). Label = action - 1.",
        "Performers 1 2 4 5 8 9 13 14 15 16 are on the NTU60 X-Sub training side, 3 6 7 10 11 12 on the test side.",
        "Cameras: C001 front, C002 +45 degrees, C003 -45 degrees (the same performance).",
        "",
        "Classes come in four families of three that differ subtly:",
    ]
    for index, spec in enumerate(ACTIONS):
        held = f" [holds: {spec.held}]" if spec.held else ""
        lines.append(f"A{index + 1:03d} {names[index]:<14} ({spec.family}): {spec.description}{held}")
    lines += [
        "",
        "hand to mouth: identical motion, only the held object differs (RGB only).",
        "hand forward: push forward vs raise palm differ mostly in depth (skeleton z).",
        "raised hand: amplitude and frequency of the wrist oscillation (small motion details).",
        "hand at ear: phone call vs touch ear differ only in the phone; scratch head in motion.",
    ]
    return "\n".join(lines) + "\n"


def _check_subset(out: Path, what: str, chosen, allowed) -> tuple[int, ...]:
    chosen = tuple(allowed if chosen is None else chosen)
    if not chosen or not set(chosen) <= set(allowed) or len(set(chosen)) != len(chosen):
        raise DataError(out, f"{what} must be distinct values from {list(allowed)}, got {list(chosen)}")
    return chosen


def _remove_stale(folder: Path, expected: set[str]) -> None:
    for path in folder.iterdir():
        if _NAME.match(path.name) and path.name not in expected:
            path.unlink()


def _read_complete(path: Path) -> dict:
    """The record of a finished run; {} when there is none (or it cannot be read: redo)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _dataset_bytes(out: Path) -> int:
    return sum(p.stat().st_size for d in (SKELETON_DIR, RGB_DIR) for p in (out / d).iterdir())


def generate(
    out: Path,
    per_class: int | None = None,
    seed: int = 0,
    *,
    actions: list[int] | None = None,
    performers: list[int] | None = None,
    cameras: list[int] | None = None,
    frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE,
    n_jobs: int = -1,
) -> dict:
    """Write the synthetic dataset into `out` and return a JSON-able summary.

    per_class replications (default 1) of every action x performer x camera. `actions`,
    `performers` and `cameras` pick subsets (1-based ids), `frame_size` is the video (width,
    height). Re-running with the same arguments into a complete folder does nothing.
    """
    start = time.perf_counter()
    out = Path(out)
    per_class = 1 if per_class is None else per_class
    if per_class < 1:
        raise DataError(out, f"per_class must be at least 1, got {per_class}")
    actions = _check_subset(out, "actions", actions, range(1, len(ACTIONS) + 1))
    performers = _check_subset(out, "performers", performers, PERFORMERS)
    cameras = _check_subset(out, "cameras", cameras, CAMERAS)
    width, height = frame_size
    if width < 32 or height < 18 or width % 2 or height % 2:
        raise DataError(out, f"frame_size {frame_size}: need even sides (MPEG-4), at least 32x18")
    params = {"format": FORMAT_VERSION, "per_class": per_class, "seed": seed, "actions": list(actions),
              "performers": list(performers), "cameras": list(cameras), "frame_size": [width, height]}
    keys = sample_keys(per_class, actions, performers, cameras)
    summary = {"out": str(out), "classes": len(actions), "samples": len(keys),
               "performers": len(performers), "cameras": len(cameras)}

    complete = out / COMPLETE
    done = _read_complete(complete)
    if done.get("params") == params:
        return {**summary, "frames": done["frames"], "skipped": True,
                "seconds": round(time.perf_counter() - start, 2), "bytes": _dataset_bytes(out)}
    complete.unlink(missing_ok=True)
    for folder in (out, out / SKELETON_DIR, out / RGB_DIR):
        folder.mkdir(parents=True, exist_ok=True)
        atomic.remove_leftovers(folder)  # what an interrupted earlier run left half-written

    names = [spec.name for spec in ACTIONS]
    atomic.write_text(out / "class_names.txt", "\n".join(names) + "\n")
    atomic.write_text(out / "README.txt", _readme(names))
    written = Parallel(n_jobs=n_jobs)(delayed(write_sample)(out, key, seed, (width, height)) for key in keys)
    _remove_stale(out / SKELETON_DIR, {f"{k.name}.skeleton" for k in keys})
    _remove_stale(out / RGB_DIR, {f"{k.name}_rgb.avi" for k in keys})
    frames = sum(f for f, _ in written)
    record = {"params": params, "samples": len(keys), "frames": frames}
    atomic.write_text(complete, json.dumps(record, indent=2) + "\n")
    return {**summary, "frames": frames, "skipped": False,
            "seconds": round(time.perf_counter() - start, 2), "bytes": _dataset_bytes(out)}


def write_sequence(out: Path, keys: list[SampleKey], seed: int = 0,
                   frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE) -> dict:
    """An untrimmed video: the clips of `keys` one after another (each with its own scene), with
    one .skeleton file in which the actor is one body throughout; and each clip alone, with the
    actor alone, in out/parts/. -> {"video", "skeleton", "parts": [{"name", "label", "start",
    "stop", "video", "skeleton"}]} (frames [start, stop) of the sequence; label = action - 1)."""
    out = Path(out)
    clips = [compose_clip(key, seed) for key in keys]
    frames = [render_clip(clip, frame_size, seed) for clip in clips]
    first = clips[0].bodies[0].body_id
    actors = [replace(clip.bodies[0], body_id=first) for clip in clips]
    parts, start = [], 0
    for key, clip, actor, video in zip(keys, clips, actors, frames):
        alone = replace(clip, bodies=[actor], bystander=None)
        part = {"name": key.name, "label": key.action - 1, "start": start, "stop": start + clip.num_frames,
                "video": str(out / "parts" / f"{key.name}.avi"), "skeleton": str(out / "parts" / f"{key.name}.skeleton")}
        atomic.write_text(part["skeleton"], skeleton_text(alone))
        write_video(Path(part["video"]), video)
        parts.append(part)
        start += clip.num_frames
    whole = replace(clips[0], num_frames=start, true_joints=np.concatenate([c.true_joints for c in clips]),
                    bodies=[TrackedBody(first, np.concatenate([a.joints for a in actors]),
                                        np.concatenate([a.tracking for a in actors]),
                                        np.concatenate([a.present for a in actors]))], bystander=None)
    name = "sequence-" + "-".join(f"A{k.action:03d}" for k in keys)
    atomic.write_text(out / f"{name}.skeleton", skeleton_text(whole))
    write_video(out / f"{name}.avi", np.concatenate(frames))
    return {"video": str(out / f"{name}.avi"), "skeleton": str(out / f"{name}.skeleton"), "parts": parts}
