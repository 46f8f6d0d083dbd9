"""NTU RGB+D raw releases: the .skeleton parser, body selection, sample names and protocols.

The parser reads a whole file at once and converts every number in one compiled pass
(mmfc.data.numbers), then walks the small header structure with integer offsets and gathers
each body's joints straight into float32. That is over 10x faster than reading line by line in
Python (bench/bench_parse.py), which matters for a 56,578-file release.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

from mmfc.config import ConfigError, DataConfig
from mmfc.data.layouts import Layout, layout_of
from mmfc.data.ntu_names import ntu_class_names, read_class_names
from mmfc.data.numbers import FloatParser, NotANumber, parse_integers, token_at
from mmfc.data.sample import KINECT, Sample, Skeleton
from mmfc.errors import DataError

NUM_JOINTS = 25
# x y z depthX depthY colorX colorY orientationW orientationX orientationY orientationZ trackingState
JOINT_FIELDS = 12
# bodyID clippedEdges handLeftConfidence handLeftState handRightConfidence handRightState
# isRestricted leanX leanY trackingState
BODY_INFO_FIELDS = 10
XYZ = slice(0, 3)
COLOR_XY = slice(5, 7)
TRACKING_STATE = 11
# trackingState 0 (not tracked), 1 (inferred), 2 (tracked) -> joint confidence.
TRACKING_SCORE = np.array([0.0, 0.5, 1.0], dtype=np.float32)
FLOAT32_MAX = float(np.finfo(np.float32).max)  # joints are stored as float32

# Denoising thresholds of CTR-GCN's get_raw_denoised_data.py (the NTU preprocessing that
# CTR-GCN and PYSKL's 3D annotations follow).
MIN_BODY_FRAMES = 12  # a body seen in 11 frames or fewer is noise
SPREAD_RATIO = 0.8  # a frame is noisy when its x-span exceeds 0.8 of its y-span
NOISY_FRAME_FRACTION = 0.69754  # a body with this share of noisy frames or more is dropped


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass
class RawBody:
    """Everything the file holds about one body ID, over the frames where it is present."""

    body_id: int
    frames: np.ndarray  # [T_b] int64, frame indices (0-based) where the body is present
    joints: np.ndarray  # [T_b, 25, 12] float32, the 12 per-joint fields in file order
    info: np.ndarray  # [T_b, 10] float32, the body-info line (column 0, the ID, is rounded)

    @property
    def num_frames(self) -> int:
        return len(self.frames)


@dataclass
class RawSkeleton:
    path: Path
    num_frames: int
    # Body ID -> its data, in order of first appearance.
    bodies: dict[int, RawBody]
    # Body count of every frame, 0 for frames with no body.
    bodies_per_frame: np.ndarray  # [num_frames] int64


def parse_skeleton(path: str | Path) -> RawSkeleton:
    """Parse an NTU .skeleton file completely; any defect raises DataError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror or exc}") from None
    return parse_skeleton_bytes(data, path)


def parse_skeleton_bytes(data: bytes, path: str | Path = "<bytes>") -> RawSkeleton:
    path = Path(path)
    try:
        values, starts = _float_parser().parse(data)
    except NotANumber as bad:
        raise DataError(path, f"line {_line(data, bad.offset)}: {bad}") from None
    # One rule for every value that is no finite float32, however it is spelled: "nan", "inf",
    # 1e400 (float() accepts them) fail the sample as "1.#QNAN" (float() refuses it) does.
    structure = _walk(values, path)  # a non-finite count gets the count's message
    beyond = np.flatnonzero(~(np.abs(values) <= FLOAT32_MAX))
    if beyond.size:
        offset = int(starts[beyond[0]])
        raise DataError(path, f"line {_line(data, offset)}: value {token_at(data, offset).decode('latin-1')!r} "
                              "is not a finite number (NaN, infinite, or beyond float32)")
    return _assemble(path, *structure, values, starts, data)


def _line(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


_THREAD = threading.local()


def _float_parser() -> FloatParser:
    if not hasattr(_THREAD, "float_parser"):
        _THREAD.float_parser = FloatParser()
    return _THREAD.float_parser


def _walk(values: np.ndarray, path: Path) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Follow frame count / body count / info / joint count / joints through the token offsets.

    Returns the frame count, the body count per frame, and per body-frame its frame index and
    the token offset of its info line (its joints follow 11 tokens later). The loop only tests;
    messages are built in the helpers, when something is wrong.
    """
    n = len(values)
    if n == 0:
        raise DataError(path, "empty file")
    num_frames = _count(values, 0, path, "frame count")
    counts, frames, info_at = [], [], []
    at = 1
    for frame in range(num_frames):
        if at >= n:
            raise DataError(path, f"truncated: file ends before frame {frame + 1} of {num_frames}")
        value = values.item(at)
        if not (0 <= value < _MAX_COUNT and value == int(value)):
            _count(values, at, path, f"frame {frame + 1} of {num_frames}: body count")
        num_bodies = int(value)
        counts.append(num_bodies)
        at += 1
        for body in range(num_bodies):
            if at + _BODY_SIZE > n or values.item(at + BODY_INFO_FIELDS) != NUM_JOINTS:
                _body_error(values, at, path, f"frame {frame + 1} of {num_frames}", body + 1)
            frames.append(frame)
            info_at.append(at)
            at += _BODY_SIZE
    if at != n:
        raise DataError(path, f"{n - at} unexpected values after the last frame ({num_frames} frames)")
    as_array = lambda items: np.array(items, dtype=np.int64)  # noqa: E731
    return num_frames, as_array(counts), as_array(frames), as_array(info_at)


_BODY_SIZE = BODY_INFO_FIELDS + 1 + NUM_JOINTS * JOINT_FIELDS


def _body_error(values: np.ndarray, at: int, path: Path, frame: str, body: int) -> None:
    n = len(values)
    if at + BODY_INFO_FIELDS >= n:
        raise DataError(path, f"truncated: {frame} ends inside the info line of body {body}")
    joint_count = _count(values, at + BODY_INFO_FIELDS, path, f"{frame}, body {body}: joint count")
    if joint_count != NUM_JOINTS:
        raise DataError(path, f"{frame}, body {body}: {joint_count} joints, expected {NUM_JOINTS}")
    done = (n - at - BODY_INFO_FIELDS - 1) // JOINT_FIELDS
    raise DataError(path, f"truncated: {frame} ends after {done} of {NUM_JOINTS} joints")


_MAX_COUNT = 2**31  # also keeps NaN and inf out: both fail the comparison


def _count(values: np.ndarray, at: int, path: Path, what: str) -> int:
    value = values.item(at)
    if not (0 <= value < _MAX_COUNT and value == int(value)):
        raise DataError(path, f"{what} is {value!r}, not a non-negative integer")
    return int(value)


def _assemble(
    path: Path,
    num_frames: int,
    counts: np.ndarray,
    frames: np.ndarray,
    info_at: np.ndarray,
    values: np.ndarray,
    starts: np.ndarray,
    data: bytes,
) -> RawSkeleton:
    if not len(frames):
        return RawSkeleton(path, num_frames, {}, counts)
    # Body IDs exceed float64's exact integers (about 7.2e16), so they are read from the text.
    try:
        ids = parse_integers(data, starts[info_at])
    except NotANumber as bad:
        raise DataError(path, f"body ID {bad.token.decode('latin-1')!r} is not an integer") from None
    bodies: dict[int, RawBody] = {}
    unique_ids, first = np.unique(ids, return_index=True)
    for body_id in unique_ids[np.argsort(first)]:
        rows = np.flatnonzero(ids == body_id)
        joints = _gather_float32(values, info_at[rows] + BODY_INFO_FIELDS + 1, NUM_JOINTS * JOINT_FIELDS)
        info = _gather_float32(values, info_at[rows], BODY_INFO_FIELDS)
        joints = joints.reshape(-1, NUM_JOINTS, JOINT_FIELDS)
        bodies[int(body_id)] = RawBody(int(body_id), frames[rows], joints, info)
    return RawSkeleton(path, num_frames, bodies, counts)


def _gather_float32(values: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """values[offset : offset + width] for each offset, as rows of one float32 array."""
    rows = np.empty((len(offsets), width), dtype=np.float32)
    _gather_rows(values, offsets, rows)
    return rows


@numba.njit(cache=True, nogil=True)
def _gather_rows(values, offsets, rows):
    # One pass straight into float32; numpy would gather into float64 first, then cast.
    for row in range(offsets.size):
        rows[row] = values[offsets[row] : offsets[row] + rows.shape[1]]


# ---------------------------------------------------------------------------------------------
# Body selection and denoising (docs/method.md, section 6)


@dataclass
class BodyDecision:
    body_id: int
    num_frames: int
    # Sum over x, y, z of the variance of all joint positions of the body (CTR-GCN's "motion");
    # lowered to the value over non-noisy frames when some frames are noisy.
    motion: float
    # Share of frames whose x-span exceeds 0.8 of the y-span (3D camera coordinates).
    noisy_fraction: float
    kept: bool
    person: int | None  # the person slot the body fills, None when dropped
    reason: str


@dataclass
class Selection:
    decisions: list[BodyDecision]
    # Body IDs that make up each kept person, best (most motion) person first.
    persons: list[list[int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "persons": self.persons,
            "bodies": [
                {
                    "body_id": d.body_id,
                    "frames": d.num_frames,
                    "motion": round(d.motion, 6),
                    "noisy_fraction": round(d.noisy_fraction, 4),
                    "kept": d.kept,
                    "person": d.person,
                    "reason": d.reason,
                }
                for d in self.decisions
            ],
        }


def select_bodies(raw: RawSkeleton, max_bodies: int = 2) -> Selection:
    """CTR-GCN's denoising, generalised to `max_bodies` persons.

    1. Bodies seen in 11 frames or fewer are dropped (unless every body is that short: then
       the longest is kept, so a short clip still yields a skeleton).
    2. While more than one body is left, a body is dropped when 69.754% or more of its frames
       are noisy (x-span > 0.8 * y-span of the 3D joints: a lying or sideways "body" that is
       usually furniture); otherwise its motion becomes that of its clean frames if lower.
    3. Bodies are ranked by motion. Each one joins the first person whose frames it does not
       overlap (a body ID that Kinect re-assigned mid-clip continues the same person), opens a
       new person while fewer than `max_bodies` exist, or is dropped.
    """
    if not raw.bodies:
        raise DataError(raw.path, "no body in any frame")
    bodies = list(raw.bodies.values())
    motion = {b.body_id: _motion(b.joints[..., XYZ]) for b in bodies}
    noisy = {b.body_id: _noisy_frames(b.joints[..., XYZ]) for b in bodies}
    reasons: dict[int, str] = {}

    long_enough = [b for b in bodies if b.num_frames >= MIN_BODY_FRAMES]
    for b in bodies:
        if b.num_frames < MIN_BODY_FRAMES:
            reasons[b.body_id] = f"dropped: seen in {b.num_frames} frames (<= {MIN_BODY_FRAMES - 1})"
    rescued = None
    if not long_enough:
        rescued = max(bodies, key=lambda b: b.num_frames)
        long_enough = [rescued]

    candidates = list(long_enough)
    for b in long_enough:
        if len(candidates) == 1:
            break
        mask = noisy[b.body_id]
        fraction = float(mask.mean())
        if fraction >= NOISY_FRAME_FRACTION:
            candidates.remove(b)
            reasons[b.body_id] = f"dropped: x-span > {SPREAD_RATIO} y-span in {fraction:.0%} of frames"
        elif mask.any():
            motion[b.body_id] = min(motion[b.body_id], _motion(b.joints[~mask][..., XYZ]))

    persons: list[list[int]] = []
    person_frames: list[np.ndarray] = []
    person_of: dict[int, int] = {}
    for b in sorted(candidates, key=lambda b: motion[b.body_id], reverse=True):
        slot = next((p for p, used in enumerate(person_frames) if not used[b.frames].any()), None)
        if slot is None and len(persons) < max_bodies:
            slot = len(persons)
            persons.append([])
            person_frames.append(np.zeros(raw.num_frames, dtype=np.bool_))
        if slot is None:
            reasons[b.body_id] = f"dropped: overlaps all {max_bodies} kept persons and moves less"
            continue
        joined = bool(persons[slot])
        persons[slot].append(b.body_id)
        person_frames[slot][b.frames] = True
        person_of[b.body_id] = slot
        reasons[b.body_id] = (
            f"kept: person {slot}, continues body {persons[slot][0]} (no shared frames)"
            if joined
            else f"kept: person {slot} (rank {slot + 1} by motion)"
        )
    if rescued is not None:
        short = MIN_BODY_FRAMES - 1
        reasons[rescued.body_id] += f"; every body is seen in <= {short} frames, the longest is kept"

    decisions = [
        BodyDecision(
            body_id=b.body_id,
            num_frames=b.num_frames,
            motion=float(motion[b.body_id]),
            noisy_fraction=float(noisy[b.body_id].mean()),
            kept=b.body_id in person_of,
            person=person_of.get(b.body_id),
            reason=reasons[b.body_id],
        )
        for b in bodies
    ]
    return Selection(decisions, persons)


def _motion(xyz: np.ndarray) -> float:
    # xyz [T, 25, 3]: variance of every joint position over time and joints, summed over axes.
    return float(np.var(xyz.reshape(-1, 3), axis=0).sum())


def _noisy_frames(xyz: np.ndarray) -> np.ndarray:
    span = xyz.max(axis=1) - xyz.min(axis=1)  # [T, 3]
    return span[:, 0] > SPREAD_RATIO * span[:, 1]  # [T] bool


def to_skeleton(
    raw: RawSkeleton, selection: Selection, frame_size: tuple[int, int] = (1920, 1080)
) -> Skeleton:
    """The kept persons as a Skeleton; frames where none of them is present are left out."""
    present = np.zeros(raw.num_frames, dtype=np.bool_)
    for body_ids in selection.persons:
        for body_id in body_ids:
            present[raw.bodies[body_id].frames] = True
    frame_indices = np.flatnonzero(present)  # [T]
    row_of_frame = np.cumsum(present) - 1  # video frame -> row in the sequence
    num_persons, num_rows = len(selection.persons), len(frame_indices)
    points = np.zeros((num_persons, num_rows, NUM_JOINTS, 3), dtype=np.float32)
    pixels = np.zeros((num_persons, num_rows, NUM_JOINTS, 2), dtype=np.float32)
    score = np.zeros((num_persons, num_rows, NUM_JOINTS), dtype=np.float32)
    for person, body_ids in enumerate(selection.persons):
        for body_id in body_ids:
            body = raw.bodies[body_id]
            rows = row_of_frame[body.frames]
            points[person, rows] = body.joints[..., XYZ]
            pixels[person, rows] = body.joints[..., COLOR_XY]
            state = np.clip(body.joints[..., TRACKING_STATE], 0, 2).astype(np.int64)
            score[person, rows] = TRACKING_SCORE[state]
    return Skeleton(
        points=points,
        pixels=pixels,
        score=score,
        frame_indices=frame_indices.astype(np.int64),
        frame_size=(int(frame_size[0]), int(frame_size[1])),
        layout="ntu25",
        total_frames=raw.num_frames,
    )


def load_skeleton(
    path: str | Path, max_bodies: int = 2, frame_size: tuple[int, int] = (1920, 1080)
) -> tuple[Skeleton, Selection]:
    """Parse, select bodies and build the Skeleton; the Selection says why each body was kept."""
    raw = parse_skeleton(path)
    selection = select_bodies(raw, max_bodies)
    return to_skeleton(raw, selection, frame_size), selection


# ---------------------------------------------------------------------------------------------
# Sample names and protocols

_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")

# NTU120 cross-subject training performers; those up to 40 are exactly NTU60's X-Sub list, so
# one table serves both.
XSUB_TRAIN_PERFORMERS = frozenset((
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38, 45, 46, 47, 49, 50,
    52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93, 94, 95,
    97, 98, 100, 103,
))
XVIEW_TRAIN_CAMERAS = frozenset((2, 3))


@dataclass(frozen=True)
class NTUName:
    setup: int
    camera: int
    performer: int
    replication: int
    action: int  # 1-based action id

    @property
    def label(self) -> int:
        return self.action - 1

    @property
    def group(self) -> str:
        """The performer, as a sample's group: "P008"."""
        return f"P{self.performer:03d}"

    @property
    def meta(self) -> dict:
        return {
            "setup": self.setup,
            "camera": self.camera,
            "performer": self.performer,
            "replication": self.replication,
        }


def parse_name(name: str) -> NTUName:
    """SsssCcccPpppRrrrAaaa, alone or as the start of a file name (..._rgb.avi, .skeleton)."""
    match = _NAME.match(name)
    if match is None:
        raise DataError(name, "not an NTU sample name (SsssCcccPpppRrrrAaaa)")
    return NTUName(*(int(g) for g in match.groups()))


PROTOCOL_TRAIN_RULES = {
    "xsub": lambda n: n.performer in XSUB_TRAIN_PERFORMERS,
    "xview": lambda n: n.camera in XVIEW_TRAIN_CAMERAS,
    "xset": lambda n: n.setup % 2 == 0,
}


def protocol_side(name: str | NTUName, protocol: str) -> str:
    """'train' or 'test' under the official protocol (before a validation slice is carved)."""
    if isinstance(name, str):
        name = parse_name(name)
    try:
        is_train = PROTOCOL_TRAIN_RULES[protocol]
    except KeyError:
        valid = ", ".join(PROTOCOL_TRAIN_RULES)
        raise ConfigError(f"data.protocol {protocol!r} is not one of {valid}") from None
    return "train" if is_train(name) else "test"


# The official lists of samples without (usable) skeletons, shipped with the package because the
# dataset download does not contain them: shahroudy/NTURGB-D, Matlab/
# NTU_RGBD_samples_with_missing_skeletons.txt (302 names) and NTU_RGBD120_... (535 names),
# unchanged. data.missing_list names one of these, or the path of another list.
MISSING_LISTS = {
    "ntu60": Path(__file__).with_name("missing_skeletons") / "ntu60.txt",
    "ntu120": Path(__file__).with_name("missing_skeletons") / "ntu120.txt",
}


def load_missing_list(path: str | Path) -> set[str]:
    """Names from a missing-skeleton list: a name of MISSING_LISTS ("ntu60", "ntu120") or the
    path of a list file; its prose header (if any) is skipped."""
    path = MISSING_LISTS.get(str(path), Path(path))
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(path, f"cannot read missing-skeleton list: {exc.strerror or exc}") from None
    names: set[str] = set()
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if _NAME.fullmatch(text):
            names.add(text)
        elif text and names:
            raise DataError(path, f"line {number}: {text[:40]!r} is not a sample name")
    return names


# ---------------------------------------------------------------------------------------------
# The source

SKELETON_DIR = "nturgb+d_skeletons"
RGB_DIR = "nturgb+d_rgb"


class NTUSource:
    """An NTU RGB+D raw release: root/nturgb+d_skeletons/*.skeleton and root/nturgb+d_rgb/*.avi."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.root = Path(cfg.root)
        self.layout: Layout = layout_of(cfg)
        if self.layout.num_joints != NUM_JOINTS:
            raise ConfigError(f"data.layout = {cfg.layout!r} has {self.layout.num_joints} joints; NTU skeletons have {NUM_JOINTS}")
        self.group_kind = "performer"
        self.num_classes = cfg.num_classes
        if cfg.protocol == "xsub":
            bad = sorted(set(cfg.val_performers) - XSUB_TRAIN_PERFORMERS)
            if bad:
                raise ConfigError(
                    f"data.val_performers {bad} are X-Sub test performers; "
                    "validation comes from training"
                )
        if cfg.class_names:
            self.class_names = read_class_names(cfg.class_names, cfg.num_classes)
        else:
            try:
                self.class_names = ntu_class_names(cfg.num_classes)
            except ValueError as exc:
                raise ConfigError(f"data.num_classes: {exc}") from None
        # reason -> number of skeleton files left out
        self.excluded: dict[str, int] = {}
        self.notes: dict[str, int] = {}
        self.unreadable: dict[str, str] = {}  # every file is listed by name
        self.pose_source = KINECT
        self._samples = self._scan()

    def samples(self) -> list[Sample]:
        return list(self._samples)

    def load_skeleton(self, sample: Sample) -> Skeleton:
        if sample.skeleton_path is None:
            raise DataError(sample.id, "sample has no skeleton file")
        size = self.cfg.skeleton_frame_size
        skeleton, _ = load_skeleton(sample.skeleton_path, self.cfg.max_bodies, (size[0], size[1]))
        return skeleton

    def _scan(self) -> list[Sample]:
        skeleton_dir = self.root / SKELETON_DIR
        if not skeleton_dir.is_dir():
            raise DataError(self.root, f"no {SKELETON_DIR}/ folder: not an NTU RGB+D release root")
        missing = load_missing_list(self.cfg.missing_list) if self.cfg.missing_list else set()
        videos = folder_names(self.root / RGB_DIR)
        val_performers = set(self.cfg.val_performers)
        samples = []
        for file_name in sorted(folder_names(skeleton_dir)):
            if not file_name.endswith(".skeleton"):
                continue
            stem = file_name[: -len(".skeleton")]
            if not _NAME.fullmatch(stem):
                self._exclude("file name is not SsssCcccPpppRrrrAaaa")
                continue
            if stem in missing:
                self._exclude("in the missing-skeleton list")
                continue
            name = parse_name(stem)
            if name.label >= self.num_classes:
                self._exclude(f"action beyond num_classes ({self.num_classes})")
                continue
            split = protocol_side(name, self.cfg.protocol)
            if split == "train" and name.performer in val_performers:
                split = "val"
            video = f"{stem}_rgb.avi"
            samples.append(
                Sample(
                    id=stem,
                    label=name.label,
                    split=split,
                    skeleton_path=skeleton_dir / file_name,
                    video_path=self.root / RGB_DIR / video if video in videos else None,
                    group=name.group,
                    meta=name.meta,
                )
            )
        return samples

    def _exclude(self, reason: str) -> None:
        self.excluded[reason] = self.excluded.get(reason, 0) + 1


def folder_names(folder: Path) -> set[str]:
    """Names in a folder, read once (a stat per sample is slow on network disks); empty if absent."""
    try:
        with os.scandir(folder) as entries:
            return {entry.name for entry in entries}
    except FileNotFoundError:
        return set()
