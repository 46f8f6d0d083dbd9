"""How the pose stage is measured against real references (tests and bench/bench_poses.py):
pixel error against Kinect's colour joints, PCK against 2D keypoints of another estimator, and
whether tracks keep their people from frame to frame.
"""

from __future__ import annotations

import numpy as np

# NTU-25 limb joints (0-based): shoulders, elbows, wrists, hips, knees, ankles.
NTU_LIMBS = tuple(j - 1 for j in (5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19))


def median_limb_error(keypoint: np.ndarray, score: np.ndarray, reference: np.ndarray, frames: np.ndarray) -> float:
    """Median pixel distance over the 12 NTU limb joints of the frames where the estimate found
    the person. keypoint [T, 25, 2], score [T, 25] (estimate), reference [F, 25, 2] on video
    frames `frames` [F]."""
    found = (score[frames] > 0).any(axis=1)
    error = np.linalg.norm(keypoint[frames][:, NTU_LIMBS] - reference[:, NTU_LIMBS], axis=-1)
    return float(np.median(error[found]))


def pck(keypoint: np.ndarray, reference: np.ndarray, reference_score: np.ndarray,
        min_score: float = 0.5, fraction: float = 0.1) -> float:
    """Share of the confidently annotated joints (reference score >= min_score) estimated within
    `fraction` of the person box diagonal, the box around those joints on each frame.
    keypoint, reference [T, V, 2], reference_score [T, V]; a frame with no estimate counts as
    misses."""
    hits = total = 0
    for t in range(len(reference)):
        confident = reference_score[t] >= min_score
        if confident.sum() < 2:
            continue
        points = reference[t][confident]
        diagonal = np.linalg.norm(points.max(axis=0) - points.min(axis=0))
        error = np.linalg.norm(keypoint[t][confident] - points, axis=-1)
        hits += int((error <= fraction * diagonal).sum())
        total += int(confident.sum())
    return hits / max(total, 1)


def track_centres(keypoint: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per person and frame, the mean of its seen joints; NaN where it is not seen.
    keypoint [M, T, V, 2], score [M, T, V] -> [M, T, 2]"""
    seen = score > 0
    count = seen.sum(axis=-1, keepdims=True)
    total = (keypoint * seen[..., None]).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def identity_swaps(keypoint: np.ndarray, score: np.ndarray) -> int:
    """Neighbouring frames, both with two people, where exchanging the two tracks would make
    both move less: the frames where the tracks swapped who they follow."""
    centres = track_centres(keypoint[:2], score[:2])  # [2, T, 2]
    swaps = 0
    for t in range(centres.shape[1] - 1):
        a, b = centres[:, t], centres[:, t + 1]
        if np.isnan(a).any() or np.isnan(b).any():
            continue
        kept = np.linalg.norm(a - b, axis=1).sum()
        exchanged = np.linalg.norm(a - b[::-1], axis=1).sum()
        swaps += int(exchanged < kept)
    return swaps


def frames_with_persons(score: np.ndarray, count: int) -> int:
    """Frames on which at least `count` tracks see their person. score [M, T, V]"""
    return int(((score > 0).any(axis=-1).sum(axis=0) >= count).sum())
