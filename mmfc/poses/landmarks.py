"""The BlazePose landmark model's outputs, decoded into frame pixels (MediaPipe's
pose_landmark_by_roi graph: TensorsToLandmarks, RefineLandmarksFromHeatmap, LandmarkProjection,
WorldLandmarkProjection).

The model sees a 256x256 crop of a person's region and outputs, per landmark (33 body points
plus 6 auxiliary ones, of which 33 and 34 are the next frame's alignment points), x, y, z,
visibility and presence logits; a pose-presence flag; a 64x64 heatmap per landmark that
refines x and y; and 3D world landmarks in metres with the origin between the hips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmfc.poses.region import Region

INPUT_SIZE = 256
NUM_LANDMARKS = 39  # 33 body points, then 6 auxiliary ones
NUM_BODY = 33
ALIGNMENT = (33, 34)  # auxiliary: mid-hip centre and the full-body size/rotation point
HEATMAP_KERNEL = 7
HEATMAP_MIN_CONFIDENCE = 0.5


@dataclass
class Pose:
    """One person's landmarks on one frame."""

    pixels: np.ndarray  # [39, 2] frame pixels, all 39 landmarks
    depth: np.ndarray  # [39] z relative to the hips, in the pixel scale
    visibility: np.ndarray  # [39] in [0, 1]: present and not occluded
    presence: np.ndarray  # [39] in [0, 1]: inside the frame
    world: np.ndarray  # [33, 3] metres, origin between the hips, y down
    score: float  # the pose-presence flag in [0, 1]
    region: Region  # where the landmark model looked


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def refine_with_heatmap(xy: np.ndarray, heatmap: np.ndarray, kernel: int = HEATMAP_KERNEL,
                        min_confidence: float = HEATMAP_MIN_CONFIDENCE) -> np.ndarray:
    """Replace each landmark by the confidence-weighted mean position of its heatmap around it,
    where the heatmap is confident there (its peak in the window at least min_confidence).
    The window is cut at the heatmap's edges; a landmark outside the heatmap is kept as is.

    xy [L, 2] in [0, 1] crop coordinates, heatmap [H, W, L] logits -> [L, 2]
    """
    height, width, count = heatmap.shape
    half = (kernel - 1) // 2
    cols = np.floor(xy[:, 0] * width).astype(np.int64)
    rows = np.floor(xy[:, 1] * height).astype(np.int64)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    offsets = np.arange(kernel) - half
    window_rows = np.clip(rows, 0, height - 1)[:, None] + offsets  # [L, k], some beyond the edge
    window_cols = np.clip(cols, 0, width - 1)[:, None] + offsets
    in_rows = (window_rows >= 0) & (window_rows < height)
    in_cols = (window_cols >= 0) & (window_cols < width)
    window = heatmap[np.clip(window_rows, 0, height - 1)[:, :, None], np.clip(window_cols, 0, width - 1)[:, None, :],
                     np.arange(count)[:, None, None]]
    # The cells beyond the edge have a confidence of 0: the cut window.
    confidence = sigmoid(window.astype(np.float64)) * (in_rows[:, :, None] & in_cols[:, None, :])  # [L, k, k]
    total = confidence.sum(axis=(1, 2))
    # MediaPipe places a heatmap cell at its top-left corner (col / width), which is what the
    # model was trained against.
    mean_col = (confidence.sum(axis=1) * window_cols).sum(axis=1) / np.maximum(total, 1e-12)
    mean_row = (confidence.sum(axis=2) * window_rows).sum(axis=1) / np.maximum(total, 1e-12)
    refine = inside & (confidence.max(axis=(1, 2)) >= min_confidence) & (total > 0)
    out = xy.astype(np.float64).copy()
    out[refine] = np.stack([mean_col / width, mean_row / height], axis=1)[refine]
    return out


def decode_pose(landmarks: np.ndarray, flag: float, heatmap: np.ndarray, world: np.ndarray,
                region: Region) -> Pose:
    """landmarks [195] (39 x: x, y, z in crop pixels, visibility, presence logits), flag (the
    presence probability), heatmap [64, 64, 39], world [117] (39 x 3 metres) -> Pose."""
    values = landmarks.reshape(NUM_LANDMARKS, 5).astype(np.float64)
    xy = refine_with_heatmap(values[:, :2] / INPUT_SIZE, heatmap)
    pixels = region.to_frame(xy)
    depth = values[:, 2] / INPUT_SIZE * region.size
    # World landmarks are in the crop's frame: turn them by the region's rotation about the
    # view axis, as WorldLandmarkProjectionCalculator does.
    cos, sin = np.cos(region.rotation), np.sin(region.rotation)
    w = world.reshape(NUM_LANDMARKS, 3)[:NUM_BODY].astype(np.float64)
    world_xy = w[:, :2] @ np.array([[cos, sin], [-sin, cos]])
    return Pose(
        pixels=pixels.astype(np.float32),
        depth=depth.astype(np.float32),
        visibility=sigmoid(values[:, 3]).astype(np.float32),
        presence=sigmoid(values[:, 4]).astype(np.float32),
        world=np.concatenate([world_xy, w[:, 2:]], axis=1).astype(np.float32),
        score=float(flag),
        region=region,
    )
