"""The rotated square region of a person that the landmark model looks at, in frame pixels.

MediaPipe derives it from two alignment points, both from the detector (mid-hip centre and
the full-body size/rotation point) and, on the next frame, from the landmark model's two
auxiliary landmarks (the same two points, predicted more precisely): the region is centred on
the first point, its side is twice their distance, it is turned so the second point is straight
above the first, then enlarged by 1.25 (the margin the model was trained with)
(AlignmentPointsRectsCalculator, RectTransformationCalculator with square_long). The face and
hand models of the close-up path (face.py, hands.py) look at regions of the same kind, built
from a box of points (`region_around`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MARGIN = 1.25
MIN_SIZE = 8.0  # pixels
# Two regions whose centres are this close (in region sizes), at sizes this close, show the
# model the same thing: it need not run on both.
SAME_REGION = 0.1


@dataclass(frozen=True)
class Region:
    centre: tuple[float, float]  # x, y in frame pixels
    size: float  # side of the square in pixels
    rotation: float  # radians, counter-clockwise turn of the person from upright

    def crop_matrix(self, out_size: int) -> np.ndarray:
        """Affine map from frame pixels to a out_size x out_size crop of the region. -> [2, 3]"""
        return np.linalg.inv(np.vstack([self.frame_matrix(out_size), [0, 0, 1]]))[:2]

    def frame_matrix(self, out_size: int) -> np.ndarray:
        """Affine map from crop pixels (0..out_size) back to frame pixels. -> [2, 3]

        A crop point u (centred, in units of the side) lands at centre + size * R(rotation) u,
        with the y axis pointing down as in images.
        """
        cos, sin = np.cos(self.rotation), np.sin(self.rotation)
        scale = self.size / out_size
        linear = scale * np.array([[cos, -sin], [sin, cos]])
        shift = np.array(self.centre) - linear @ np.array([out_size / 2, out_size / 2])
        return np.hstack([linear, shift[:, None]])

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Points [N, 2] in [0, 1] coordinates of the region (0, 0 its top-left corner as the
        crop sees it) -> frame pixels."""
        matrix = self.frame_matrix(1)
        return points @ matrix[:, :2].T + matrix[:, 2]

    def corners(self) -> np.ndarray:
        """The four corners in frame pixels (for drawing). -> [4, 2]"""
        return self.to_frame(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64))

    def model_input(self, frame: np.ndarray, bgr: bool, size: int, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
        """The region cut out of a frame (BGR or RGB uint8) and turned upright, as a model takes
        it: float32 RGB in [0, 1]. -> [1, size, size, 3]"""
        patch = cv2.warpAffine(frame, self.crop_matrix(size), (size, size), flags=cv2.INTER_LINEAR, borderMode=border)
        return model_tensor(patch, bgr)[None]


def model_tensor(image: np.ndarray, bgr: bool) -> np.ndarray:
    """uint8 [S, S, 3] -> float32 RGB in [0, 1], what the models take."""
    # OpenCV swaps the channels of a small patch several times faster than numpy converts a
    # reversed view.
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else image
    return np.multiply(rgb, np.float32(1 / 255), dtype=np.float32)


def normalize_angle(angle: float) -> float:
    """An angle in [-pi, pi)."""
    return float(angle - 2 * np.pi * np.floor((angle + np.pi) / (2 * np.pi)))


def rotation_between(start: np.ndarray, end: np.ndarray, target: float) -> float:
    """The turn that brings the start -> end vector to the target angle (radians, counter-
    clockwise from the x axis with the image y axis flipped to point up), as MediaPipe's
    rotation_vector_target_angle does."""
    dx, dy = (np.asarray(end, np.float64) - np.asarray(start, np.float64))
    return normalize_angle(target - np.arctan2(-dy, dx))


def region_from_points(centre: np.ndarray, scale_point: np.ndarray, margin: float = MARGIN) -> Region:
    """The region from the two alignment points, in frame pixels ([2] each).

    The rotation turns the centre -> scale-point vector to point straight up (90 degrees).
    """
    dx, dy = (scale_point - centre).astype(np.float64)
    # Never empty: a degenerate region (the two points on top of each other) still gives the
    # model an input, on which it finds nobody, rather than a matrix that cannot be inverted.
    size = max(2.0 * float(np.hypot(dx, dy)) * margin, MIN_SIZE)
    return Region((float(centre[0]), float(centre[1])), size, rotation_between(centre, scale_point, np.pi / 2))


def region_around(points: np.ndarray, rotation: float, scale: float, shift_y: float = 0.0) -> Region:
    """The square region around points [N, 2] as MediaPipe builds one from a detection: the
    axis-aligned box of the points, turned by `rotation`, moved by shift_y of its height along
    its own downward axis, its longer side times `scale` (RectTransformationCalculator with
    square_long)."""
    low, high = points.min(axis=0).astype(np.float64), points.max(axis=0).astype(np.float64)
    width, height = high - low
    centre = (low + high) / 2 + shift_y * height * np.array([-np.sin(rotation), np.cos(rotation)])
    size = max(scale * max(width, height), MIN_SIZE)
    return Region((float(centre[0]), float(centre[1])), size, rotation)


def inside_region(points: np.ndarray, region: Region, margin: float = 0.0) -> bool:
    """Whether all points [N, 2] lie in the region, its side first grown by `margin` (a
    negative margin shrinks it)."""
    matrix = region.crop_matrix(1)
    crop = points @ matrix[:, :2].T + matrix[:, 2]  # [0, 1] inside
    half = 0.5 * (1 + margin)
    return bool((np.abs(crop - 0.5) <= half).all())


def same_region(a: Region, b: Region) -> bool:
    """Whether two regions nearly coincide (SAME_REGION)."""
    offset = np.hypot(a.centre[0] - b.centre[0], a.centre[1] - b.centre[1])
    size = min(a.size, b.size)
    return offset <= SAME_REGION * size and max(a.size, b.size) <= (1 + 2 * SAME_REGION) * size


def region_box(region: Region) -> np.ndarray:
    """The axis-aligned box around a region. -> [4] x0, y0, x1, y1"""
    corners = region.corners()
    return np.concatenate([corners.min(axis=0), corners.max(axis=0)])
