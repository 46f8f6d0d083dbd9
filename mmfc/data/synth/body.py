"""A 3D articulated 25-joint body in the NTU (Kinect v2) layout, with per-performer proportions.

Body frame, metres: origin at the spine base, +x towards the performer's right, +y up, and the
performer faces -z. Kinect camera space uses the same axes for a performer facing the sensor
(the left shoulder has the smaller x in real NTU files), so the front camera needs no flip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_JOINTS = 25

# 0-based NTU-25 indices (docs/method.md, section 4, lists them 1-based).
SPINE_BASE, SPINE_MID, NECK, HEAD = 0, 1, 2, 3
L_SHOULDER, L_ELBOW, L_WRIST, L_HAND = 4, 5, 6, 7
R_SHOULDER, R_ELBOW, R_WRIST, R_HAND = 8, 9, 10, 11
L_HIP, L_KNEE, L_ANKLE, L_FOOT = 12, 13, 14, 15
R_HIP, R_KNEE, R_ANKLE, R_FOOT = 16, 17, 18, 19
SPINE_SHOULDER = 20
L_HAND_TIP, L_THUMB, R_HAND_TIP, R_THUMB = 21, 22, 23, 24

# Rest pose of a 1.70 m adult before per-performer proportions; arms are placed by `arm_ik`.
_TORSO_AND_LEGS = {
    SPINE_BASE: (0.0, 0.0, 0.0),
    SPINE_MID: (0.0, 0.28, 0.01),
    SPINE_SHOULDER: (0.0, 0.50, 0.0),
    NECK: (0.0, 0.58, 0.0),
    HEAD: (0.0, 0.72, -0.01),
    L_SHOULDER: (-0.18, 0.47, 0.01),
    R_SHOULDER: (0.18, 0.47, 0.01),
    L_HIP: (-0.09, -0.03, 0.0),
    R_HIP: (0.09, -0.03, 0.0),
    L_KNEE: (-0.10, -0.46, -0.02),
    R_KNEE: (0.10, -0.46, -0.02),
    L_ANKLE: (-0.10, -0.86, 0.02),
    R_ANKLE: (0.10, -0.86, 0.02),
    L_FOOT: (-0.11, -0.92, -0.09),
    R_FOOT: (0.11, -0.92, -0.09),
}
UPPER_ARM, FOREARM, HAND, HAND_TIP = 0.28, 0.25, 0.07, 0.07
HIP_HEIGHT = 0.93  # spine base above the floor, metres, for a 1.70 m body


@dataclass(frozen=True)
class Performer:
    """What stays the same for one performer across all of their clips."""

    id: int
    scale: float  # body height / 1.70 m
    shoulder_width: float  # factor on the shoulder span
    arm_length: float  # factor on upper arm and forearm
    speed: float  # > 1 acts faster: shorter clips, higher oscillation frequency
    amplitude: float  # factor on gesture amplitudes
    # BGR colours for rendering.
    shirt: tuple[int, int, int]
    trousers: tuple[int, int, int]
    skin: tuple[int, int, int]
    thickness: float  # factor on limb thickness


def sample_performer(performer_id: int, rng: np.random.Generator) -> Performer:
    def colour() -> tuple[int, int, int]:
        return tuple(int(c) for c in rng.integers(30, 230, size=3))

    skin_tone = rng.uniform(0.35, 1.0)
    skin = (int(60 + 110 * skin_tone), int(90 + 110 * skin_tone), int(120 + 115 * skin_tone))
    return Performer(
        id=performer_id,
        scale=float(rng.uniform(1.52, 1.86) / 1.70),
        shoulder_width=float(rng.uniform(0.88, 1.12)),
        arm_length=float(rng.uniform(0.93, 1.07)),
        speed=float(rng.uniform(0.85, 1.2)),
        amplitude=float(rng.uniform(0.85, 1.18)),
        shirt=colour(),
        trousers=colour(),
        skin=skin,
        thickness=float(rng.uniform(0.85, 1.25)),
    )


def rest_pose(performer: Performer) -> np.ndarray:
    """Torso, head and legs of the performer in the body frame; arm joints left at zero. [25, 3]"""
    pose = np.zeros((NUM_JOINTS, 3))
    for joint, xyz in _TORSO_AND_LEGS.items():
        pose[joint] = xyz
    pose[[L_SHOULDER, R_SHOULDER], 0] *= performer.shoulder_width
    return pose * performer.scale


def arm_lengths(performer: Performer) -> tuple[float, float]:
    factor = performer.scale * performer.arm_length
    return UPPER_ARM * factor, FOREARM * factor


def arm_ik(
    shoulder: np.ndarray, wrist_target: np.ndarray, upper: float, fore: float, pole: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two-link inverse kinematics, vectorised over frames: (elbow, wrist), each [T, 3].

    A target out of reach is pulled onto the reachable shell; the elbow bends towards `pole`
    (a direction in the body frame, e.g. down and outwards), as a relaxed arm does.
    """
    offset = wrist_target - shoulder
    dist = np.linalg.norm(offset, axis=-1, keepdims=True)
    direction = offset / np.maximum(dist, 1e-9)
    dist = np.clip(dist, abs(upper - fore) + 1e-3, upper + fore - 1e-3)
    wrist = shoulder + direction * dist
    # Distance from the shoulder along the shoulder-wrist line to the elbow's foot point.
    along = (upper**2 - fore**2 + dist**2) / (2 * dist)
    radius = np.sqrt(np.maximum(upper**2 - along**2, 0.0))
    bend = pole - np.sum(pole * direction, axis=-1, keepdims=True) * direction
    bend /= np.maximum(np.linalg.norm(bend, axis=-1, keepdims=True), 1e-9)
    elbow = shoulder + direction * along + bend * radius
    return elbow, wrist


def hand_joints(
    elbow: np.ndarray, wrist: np.ndarray, scale: float, side: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hand, hand tip and thumb continuing the forearm; `side` is +1 right, -1 left. Each [T, 3]."""
    along = wrist - elbow
    along /= np.maximum(np.linalg.norm(along, axis=-1, keepdims=True), 1e-9)
    hand = wrist + along * HAND * scale
    tip = hand + along * HAND_TIP * scale
    # The thumb points inwards and forwards of the hand, perpendicular to the forearm.
    inward = np.array([-side, 0.0, -1.0]) / np.sqrt(2.0)
    thumb_dir = inward - np.sum(inward * along, axis=-1, keepdims=True) * along
    thumb_dir /= np.maximum(np.linalg.norm(thumb_dir, axis=-1, keepdims=True), 1e-9)
    thumb = hand + thumb_dir * 0.045 * scale
    return hand, tip, thumb


def yaw_matrix(degrees: float) -> np.ndarray:
    """Rotation about the vertical axis; positive turns the performer's front towards +x."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])
