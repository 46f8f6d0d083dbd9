"""Viewpoints, and the Kinect v2 projection of camera-space joints to colour and depth pixels.

The projection constants were fitted (least squares, residual under 5 px in x) to the tracked
joints of the real NTU .skeleton files: colour = c + f * x / z + b / z, where the b / z term is
the offset between the depth sensor (whose camera space the joints are in) and the colour camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmfc.data.synth import body as B

COLOR_SIZE = (1920, 1080)
DEPTH_SIZE = (512, 424)

# (centre, focal, sensor offset) for colour x, colour y, depth x, depth y.
_COLOR_X = (962.5, 1058.8, 43.1)
_COLOR_Y = (575.9, -1048.9, -56.9)
_DEPTH_X = (253.5, 368.0, 15.4)
_DEPTH_Y = (208.1, -367.2, 2.7)
COLOR_FOCAL = 1054.0  # mean |focal| of the colour axes, for sizes in pixels

# NTU cameras 1-3 watch the performer from the front, from +45 degrees and from -45 degrees.
CAMERA_YAW = {1: 0.0, 2: 45.0, 3: -45.0}


@dataclass(frozen=True)
class View:
    """Where one clip's performer stands as seen by its camera."""

    yaw: float  # degrees the performer is turned, as seen by this camera
    position: np.ndarray  # camera-space metres of the body origin (the spine base) [3]


def sample_view(
    camera: int, performer: B.Performer, camera_height: float, rng: np.random.Generator
) -> View:
    """A viewpoint that keeps the person small (30-45% of the frame height) and off-centre."""
    depth = performer.scale * rng.uniform(3.9, 4.8)
    # Horizontal position as a fraction of depth, never close to the image centre.
    side = rng.choice([-1.0, 1.0]) * rng.uniform(0.12, 0.40)
    floor = -camera_height
    position = np.array([side * depth, floor + B.HIP_HEIGHT * performer.scale, depth])
    return View(yaw=CAMERA_YAW[camera] + rng.uniform(-6.0, 6.0), position=position)


def to_camera(pose: np.ndarray, view: View) -> np.ndarray:
    """Body-frame joints to camera space: turn by the view's yaw, then place. [..., 3]"""
    return pose @ B.yaw_matrix(view.yaw).T + view.position


def _axis(values: np.ndarray, z: np.ndarray, constants: tuple[float, float, float]) -> np.ndarray:
    centre, focal, offset = constants
    return centre + (focal * values + offset) / z


def project_color(points: np.ndarray) -> np.ndarray:
    """Camera-space metres to 1920x1080 colour pixels. [..., 3] -> [..., 2]"""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([_axis(x, z, _COLOR_X), _axis(y, z, _COLOR_Y)], axis=-1)


def project_depth(points: np.ndarray) -> np.ndarray:
    """Camera-space metres to 512x424 depth-image pixels. [..., 3] -> [..., 2]"""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([_axis(x, z, _DEPTH_X), _axis(y, z, _DEPTH_Y)], axis=-1)
