"""The skeleton sequence as the skeleton branch reads it: normalised, fixed length, [C, T, V, M].

Follows CTR-GCN / PYSKL pre-normalisation: missing joints are zero, every joint is moved so the
centre joint (the layout's, or crops.center_joint) of the first frame with a body is at the
origin, optionally the body is rotated so the spine points along +z and the shoulders along +x
(3D skeletons only), and the frames that have a body are resampled uniformly to a fixed count,
or (crops.pad_skeleton) kept as they are and zero-padded to it.
"""

from __future__ import annotations

import numpy as np

from mmfc.data.sample import Skeleton


def present_joints(skel: Skeleton) -> np.ndarray:
    """Joints with a usable position. -> bool [M, T, V]"""
    finite = np.isfinite(skel.points).all(axis=-1)
    nonzero = (np.nan_to_num(skel.points) != 0).any(axis=-1)
    return finite & nonzero & (np.nan_to_num(skel.score) > 0)


def uniform_indices(count: int, length: int) -> np.ndarray:
    """`length` indices spread evenly over range(count), repeating when count < length."""
    return np.round(np.linspace(0, count - 1, length)).astype(np.int64)


def normalize_skeleton(skel: Skeleton, num_frames: int, max_bodies: int, center: int,
                       align_axes: tuple[tuple[int, int], tuple[int, int]] | None = None,
                       pad: bool = False) -> np.ndarray:
    """[M0, T0, V, C] skeleton -> float32 [C, num_frames, V, max_bodies], zero-padded.

    `center`: the joint moved to the origin; `align_axes`: the layout's, to turn a 3D body onto
    them, or None; `pad`: keep up to num_frames frames as they are, zeros after them."""
    present = present_joints(skel)  # [M0, T0, V]
    points = np.where(present[..., None], np.nan_to_num(skel.points), 0).astype(np.float64)
    points, present = points[:max_bodies], present[:max_bodies]
    channels, joints = points.shape[3], points.shape[2]
    out = np.zeros((channels, num_frames, joints, max_bodies), dtype=np.float32)
    with_body = np.flatnonzero(present.any(axis=(0, 2)))
    if len(with_body) == 0:
        return out
    points, present = points[:, with_body], present[:, with_body]
    points = points - _origin(points, present, center)
    if align_axes is not None and channels == 3:
        points = points @ _alignment(points, present, align_axes).T
    points = np.where(present[..., None], points, 0)
    kept = points.shape[1]
    picked = points if pad and kept <= num_frames else points[:, uniform_indices(kept, num_frames)]  # [M, T, V, C]
    out[:, : picked.shape[1], :, : picked.shape[0]] = picked.transpose(3, 1, 2, 0)
    return out


def _origin(points: np.ndarray, present: np.ndarray, center: int) -> np.ndarray:
    """The centre joint of the first frame where it is seen (any person, the first one first)."""
    for t in range(points.shape[1]):
        for m in range(points.shape[0]):
            if present[m, t, center]:
                return points[m, t, center]
    # No centre joint anywhere: the mean of the first frame's joints stands in for it.
    first = present[:, 0]
    return points[:, 0][first].mean(axis=0)


def _alignment(points: np.ndarray, present: np.ndarray, axes) -> np.ndarray:
    """Rotation taking the first person's first-frame spine to +z and left->right shoulder to +x. -> [3, 3]"""
    (base, spine), (right, left) = axes
    first = points[0, 0]
    if not present[0, 0, [base, spine, right, left]].all():
        return np.eye(3)
    z = first[spine] - first[base]
    x = first[right] - first[left]
    if np.linalg.norm(z) < 1e-6 or np.linalg.norm(x) < 1e-6:
        return np.eye(3)
    z = z / np.linalg.norm(z)
    # Make x orthogonal to z, then y completes a right-handed frame.
    x = x - z * (x @ z)
    if np.linalg.norm(x) < 1e-6:
        return np.eye(3)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])
