"""Skeleton-guided crop boxes (docs/method.md, section 1) and applying them to frames.

All coordinates here are pixels of the decoded video; the caller scales the skeleton's pixels
from its own frame size first. A box is (x0, y0, x1, y1), x1/y1 exclusive, and may leave the
image when padding is allowed (the outside is filled with zeros).

A crop is made of panels: "clip" and "frame" modes have one panel filling the output, "person"
mode puts one panel per person side by side. `CropPlan` holds the box of every panel at every
stored frame, so rendering and keypoint mapping are the same code for every mode.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

import cv2
import numpy as np

from mmfc.config import CropMode

MODES: tuple[str, ...] = typing.get_args(CropMode)


@dataclass(frozen=True)
class BoxParams:
    padding: float = 0.25
    # Height/width ratio; 0 keeps the box shape.
    hw_ratio: float = 1.0
    min_box: float = 10.0
    allow_pad: bool = True


@dataclass
class CropPlan:
    boxes: np.ndarray  # [F, P, 4] float64: box of panel p at stored frame f (video pixels)
    person_panel: np.ndarray  # [M] int: panel of each person, -1 for a person never seen
    size: int  # side of the square output

    @property
    def num_panels(self) -> int:
        return self.boxes.shape[1]

    def envelope(self) -> tuple[float, float, float, float]:
        """The smallest box holding every panel box of every frame."""
        b = self.boxes.reshape(-1, 4)
        return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def kept_joints(pixels: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Joints that locate the actor: finite, not at (0, 0), and with a score above 0.

    pixels [..., 2], score [...] -> bool [...]
    """
    finite = np.isfinite(pixels).all(axis=-1)
    at_origin = (np.nan_to_num(pixels) == 0).all(axis=-1)
    return finite & ~at_origin & (np.nan_to_num(score) > 0)


def whole_frame(frame_size: tuple[int, int]) -> np.ndarray:
    return np.array([0.0, 0.0, float(frame_size[0]), float(frame_size[1])])


def extent(pixels: np.ndarray, keep: np.ndarray) -> np.ndarray | None:
    """Min/max of the kept joints as [x0, y0, x1, y1], or None when no joint is kept."""
    pts = pixels[keep]
    if len(pts) == 0:
        return None
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()], dtype=np.float64)


def expand_box(raw: np.ndarray | None, frame_size: tuple[int, int], p: BoxParams) -> np.ndarray:
    """Steps 3-6 of the method: too small -> whole frame, padding, aspect, pad or clip."""
    width, height = frame_size
    if raw is None or raw[2] - raw[0] < p.min_box or raw[3] - raw[1] < p.min_box:
        return whole_frame(frame_size)
    cx, cy = (raw[0] + raw[2]) / 2, (raw[1] + raw[3]) / 2
    half_w = (raw[2] - raw[0]) / 2 * (1 + p.padding)
    half_h = (raw[3] - raw[1]) / 2 * (1 + p.padding)
    if p.hw_ratio > 0:
        # PYSKL's PoseCompact: grow the shorter side, never shrink the longer one.
        half_h = max(p.hw_ratio * half_w, half_h)
        half_w = max(half_h / p.hw_ratio, half_w)
    box = np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h])
    if not p.allow_pad:
        box = np.clip(box, 0, [width, height, width, height])
    return box


def clip_box(pixels: np.ndarray, score: np.ndarray, frame_size: tuple[int, int], p: BoxParams) -> np.ndarray:
    """One box over all kept joints of all persons and frames. pixels [M,T,V,2] -> [4]."""
    return expand_box(extent(pixels, kept_joints(pixels, score)), frame_size, p)


def frame_boxes(
    pixels: np.ndarray, score: np.ndarray, frame_size: tuple[int, int], p: BoxParams, smooth: float
) -> np.ndarray:
    """Per-frame boxes, centre and size smoothed exponentially over time. -> [T, 4]

    A frame with no kept joint takes the nearest frame's raw box; a clip with none at all gets
    the whole frame everywhere.
    """
    keep = kept_joints(pixels, score)  # [M, T, V]
    num_frames = pixels.shape[1]
    raw = [extent(pixels[:, t], keep[:, t]) for t in range(num_frames)]
    seen = [t for t, r in enumerate(raw) if r is not None]
    if not seen:
        return np.tile(whole_frame(frame_size), (num_frames, 1))
    seen_arr = np.array(seen)
    filled = np.stack([raw[seen_arr[np.abs(seen_arr - t).argmin()]] for t in range(num_frames)])
    # Smooth centre and half-size rather than corners, so the box does not drift sideways
    # when only its size changes.
    centre_size = np.concatenate([(filled[:, :2] + filled[:, 2:]) / 2, (filled[:, 2:] - filled[:, :2]) / 2], 1)
    state = centre_size[0].copy()
    for t in range(num_frames):
        state = smooth * state + (1 - smooth) * centre_size[t]
        centre_size[t] = state
    smoothed = np.concatenate([centre_size[:, :2] - centre_size[:, 2:], centre_size[:, :2] + centre_size[:, 2:]], 1)
    return np.stack([expand_box(b, frame_size, p) for b in smoothed])


def plan_crop(
    pixels: np.ndarray,
    score: np.ndarray,
    stored_t: np.ndarray,
    frame_size: tuple[int, int],
    size: int,
    mode: str,
    p: BoxParams,
    smooth: float = 0.8,
) -> CropPlan:
    """The boxes of every stored frame.

    pixels [M,T,V,2] in video pixels, score [M,T,V], stored_t [F]: the skeleton frame nearest to
    each stored frame.
    """
    num_stored = len(stored_t)
    num_persons = pixels.shape[0]
    if mode == "none":
        boxes = np.tile(whole_frame(frame_size), (num_stored, 1, 1))
        return CropPlan(boxes, np.zeros(num_persons, dtype=int), size)
    if mode == "clip":
        box = clip_box(pixels, score, frame_size, p)
        return CropPlan(np.tile(box, (num_stored, 1, 1)), np.zeros(num_persons, dtype=int), size)
    if mode == "frame":
        per_frame = frame_boxes(pixels, score, frame_size, p, smooth)  # [T, 4]
        return CropPlan(per_frame[stored_t][:, None, :], np.zeros(num_persons, dtype=int), size)
    if mode == "person":
        return _person_plan(pixels, score, num_stored, frame_size, size, p)
    raise ValueError(f"unknown crop mode {mode!r}; known: {', '.join(MODES)}")


def _person_plan(
    pixels: np.ndarray, score: np.ndarray, num_stored: int, frame_size: tuple[int, int], size: int, p: BoxParams
) -> CropPlan:
    keep = kept_joints(pixels, score)
    seen = [m for m in range(pixels.shape[0]) if keep[m].any()]
    person_panel = np.full(pixels.shape[0], -1, dtype=int)
    if not seen:
        return CropPlan(np.tile(whole_frame(frame_size), (num_stored, 1, 1)), person_panel, size)
    # Panels are size/P wide and size tall, so a box P times taller than wide keeps its shape.
    panel_params = BoxParams(p.padding, p.hw_ratio * len(seen), p.min_box, p.allow_pad)
    boxes = []
    for panel, m in enumerate(seen):
        boxes.append(clip_box(pixels[m : m + 1], score[m : m + 1], frame_size, panel_params))
        person_panel[m] = panel
    return CropPlan(np.tile(np.stack(boxes), (num_stored, 1, 1)), person_panel, size)


def panel_columns(num_panels: int, size: int) -> np.ndarray:
    """Integer column boundaries of the panels in the output. -> [P + 1]"""
    return np.round(np.linspace(0, size, num_panels + 1)).astype(int)


def crop_resize(frame: np.ndarray, box: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Cut `box` out of `frame` [H,W,3] (zeros outside the image) and resize to [out_h,out_w,3]."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if ix0 == x0 and iy0 == y0 and ix1 == x1 and iy1 == y1:
        region = frame[y0:y1, x0:x1]
    else:
        region = np.zeros((y1 - y0, x1 - x0, 3), dtype=frame.dtype)
        if ix1 > ix0 and iy1 > iy0:
            region[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = frame[iy0:iy1, ix0:ix1]
    shrinking = region.shape[1] > out_w or region.shape[0] > out_h
    # INTER_AREA averages when shrinking (no aliasing); it degrades to nearest when growing.
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(region), (out_w, out_h), interpolation=interp)


def render(frames: np.ndarray, plan: CropPlan) -> np.ndarray:
    """Apply the plan to the decoded stored frames. [F,H,W,3] -> [F,S,S,3] uint8"""
    size = plan.size
    cols = panel_columns(plan.num_panels, size)
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for f, frame in enumerate(frames):
        for panel in range(plan.num_panels):
            c0, c1 = cols[panel], cols[panel + 1]
            out[f, :, c0:c1] = crop_resize(frame, plan.boxes[f, panel], c1 - c0, size)
    return out


def crop_keypoints(
    pixels: np.ndarray, score: np.ndarray, stored_t: np.ndarray, present: np.ndarray, plan: CropPlan
) -> np.ndarray:
    """Keypoints at the stored frames in crop coordinates, [0, 1] of the output side.

    pixels [M,T,V,2] video pixels; present [F]: whether stored frame f has a skeleton frame of
    its own. Missing joints, persons and frames are 0. -> [M, F, V, 2] float32
    """
    size = plan.size
    cols = panel_columns(plan.num_panels, size)
    at = pixels[:, stored_t]  # [M, F, V, 2]
    keep = kept_joints(at, score[:, stored_t]) & present[None, :, None]
    out = np.zeros(at.shape, dtype=np.float32)
    for m in range(pixels.shape[0]):
        panel = plan.person_panel[m]
        if panel < 0:
            continue
        # Rounded like crop_resize rounds, so a keypoint lands on the pixel it marks.
        box = np.round(plan.boxes[:, panel])  # [F, 4]
        wh = np.maximum(box[:, 2:] - box[:, :2], 1)
        rel = (at[m] - box[:, None, :2]) / wh[:, None, :]  # [F, V, 2] in [0, 1] of the box
        x = (cols[panel] + rel[..., 0] * (cols[panel + 1] - cols[panel])) / size
        y = rel[..., 1]
        out[m] = np.where(keep[m][..., None], np.stack([x, y], -1), 0)
    return out
