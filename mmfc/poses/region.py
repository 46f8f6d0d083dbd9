"""The rotated square region of a person that the landmark model looks at, in frame pixels.

MediaPipe derives it from two alignment points, both from the detector (mid-hip centre and
the full-body size/rotation point) and, on the next frame, from the landmark model's two
auxiliary landmarks (the same two points, predicted more precisely): the region is centred on
the first point, its side is twice their distance, it is turned so the second point is straight
above the first, then enlarged by 1.25 (the margin the model was trained with)
(AlignmentPointsRectsCalculator, RectTransformationCalculator with square_long).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MARGIN = 1.25
MIN_SIZE = 8.0  # pixels


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

    def corners(self) -> np.ndarray:
        """The four corners in frame pixels (for drawing). -> [4, 2]"""
        unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
        matrix = self.frame_matrix(1)
        return unit @ matrix[:, :2].T + matrix[:, 2]


def normalize_angle(angle: float) -> float:
    """An angle in [-pi, pi)."""
    return float(angle - 2 * np.pi * np.floor((angle + np.pi) / (2 * np.pi)))


def region_from_points(centre: np.ndarray, scale_point: np.ndarray, margin: float = MARGIN) -> Region:
    """The region from the two alignment points, in frame pixels ([2] each).

    The rotation turns the centre -> scale-point vector to point straight up (90 degrees, with
    the image y axis flipped to point up), as rotation_vector_target_angle_degrees = 90 does.
    """
    dx, dy = (scale_point - centre).astype(np.float64)
    # Never empty: a degenerate region (the two points on top of each other) still gives the
    # model an input, on which it finds nobody, rather than a matrix that cannot be inverted.
    size = max(2.0 * float(np.hypot(dx, dy)) * margin, MIN_SIZE)
    rotation = normalize_angle(np.pi / 2 - np.arctan2(-dy, dx))
    return Region((float(centre[0]), float(centre[1])), size, rotation)


def region_box(region: Region) -> np.ndarray:
    """The axis-aligned box around a region. -> [4] x0, y0, x1, y1"""
    corners = region.corners()
    return np.concatenate([corners.min(axis=0), corners.max(axis=0)])
