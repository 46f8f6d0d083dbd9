"""The 12 synthetic classes as right-wrist trajectories, and the body poses that perform them.

Four families of three. Within a family the classes differ subtly, each family in a different
way, so neither branch alone separates every class:
- "hand to mouth": the SAME motion; only the held object differs (cup / snack / nothing). The
  skeleton cannot tell these apart; the RGB pixels at the hand can.
- "hand forward": pushing towards the camera vs raising the palm near the body vs pushing
  sideways. From the front camera the first two project to nearly the same image path; the
  difference is mostly in depth (the z trajectory), which the skeleton has and the image lacks.
- "raised hand": the hand raised beside the head, oscillating sideways with a large slow, a small
  fast or an almost-still amplitude: small motion details.
- "hand at ear": phone call vs touching the ear (same motion, the phone differs) vs scratching
  the head (a little higher, with a small fast scratch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmfc.data.synth import body as B

FPS = 30.0


@dataclass(frozen=True)
class ActionSpec:
    name: str
    family: str
    description: str
    # Right-wrist target in the body frame of a 1.70 m performer, metres.
    target: tuple[float, float, float]
    # Oscillation about the target while it is held: amplitude (m), frequency (Hz), direction.
    amplitude: float = 0.0
    frequency: float = 0.0
    axis: tuple[float, float, float] = (1.0, 0.0, 0.0)
    # Where the elbow points while the arm bends (body frame).
    pole: tuple[float, float, float] = (0.5, -1.0, 0.3)
    # Object drawn in the right hand ("cup", "snack", "phone"); None: an empty hand.
    held: str | None = None


_MOUTH = (0.03, 0.55, -0.17)
_EAR = (0.17, 0.57, -0.03)
_RAISED = (0.33, 0.74, -0.08)

ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("drink water", "hand to mouth", "raise a cup to the mouth, sip, lower it",
               _MOUTH, 0.012, 0.8, (0.0, 1.0, 0.0), held="cup"),
    ActionSpec("eat snack", "hand to mouth", "raise a snack bar to the mouth, bite, lower it",
               _MOUTH, 0.012, 0.8, (0.0, 1.0, 0.0), held="snack"),
    ActionSpec("touch chin", "hand to mouth", "raise the empty hand to the mouth, lower it",
               _MOUTH, 0.012, 0.8, (0.0, 1.0, 0.0)),
    ActionSpec("push forward", "hand forward", "push the hand towards the camera at shoulder height",
               (0.16, 0.46, -0.55), pole=(0.4, -1.0, 0.0)),
    ActionSpec("raise palm", "hand forward", "raise the palm to shoulder height close to the body",
               (0.19, 0.50, -0.13)),
    ActionSpec("push sideways", "hand forward", "push the hand out to the right at shoulder height",
               (0.62, 0.44, -0.08), pole=(0.0, -1.0, 0.4)),
    ActionSpec("wave", "raised hand", "raise the hand beside the head, wave widely and slowly",
               _RAISED, 0.13, 1.2),
    ActionSpec("flutter hand", "raised hand", "raise the hand beside the head, shake it small and fast",
               _RAISED, 0.045, 2.7),
    ActionSpec("hold hand up", "raised hand", "raise the hand beside the head and keep it still",
               _RAISED, 0.01, 0.6),
    ActionSpec("phone call", "hand at ear", "hold a phone to the right ear",
               _EAR, 0.008, 0.5, (0.0, 1.0, 0.0), held="phone"),
    ActionSpec("touch ear", "hand at ear", "hold the empty hand to the right ear",
               _EAR, 0.008, 0.5, (0.0, 1.0, 0.0)),
    ActionSpec("scratch head", "hand at ear", "scratch the top of the head with small fast strokes",
               (0.13, 0.74, -0.02), 0.025, 3.0, (0.7, 0.7, 0.0)),
)

_REST_RIGHT = np.array([0.22, -0.02, -0.05])
_REST_LEFT = np.array([-0.22, -0.02, -0.05])


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _envelope(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """0 at rest, 1 while the gesture is held: rest, reach, hold, return, rest. [T]"""
    u = np.linspace(0.0, 1.0, num_frames)
    start = rng.uniform(0.05, 0.16)
    reach = rng.uniform(0.14, 0.22)
    release = rng.uniform(0.66, 0.78)
    back = rng.uniform(0.12, 0.18)
    return _smoothstep((u - start) / reach) * (1.0 - _smoothstep((u - release) / back))


def _lean_rotations(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Slow upper-body sway: small rotations about x (forward lean) and z (side lean). [T, 3, 3]"""
    t = np.arange(num_frames) / FPS

    def sway(low: float, high: float) -> np.ndarray:
        wave = rng.uniform(0.5, 2) * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6.3))
        return np.deg2rad(rng.uniform(low, high) + wave)

    fwd, side = sway(-2, 4), sway(-2, 2)
    cf, sf, cs, ss = np.cos(fwd), np.sin(fwd), np.cos(side), np.sin(side)
    one, zero = np.ones_like(t), np.zeros_like(t)
    # Leaning forward moves the shoulders towards -z (the performer's front).
    rot_x = np.stack([np.stack([one, zero, zero], -1),
                      np.stack([zero, cf, sf], -1),
                      np.stack([zero, -sf, cf], -1)], -2)
    rot_z = np.stack([np.stack([cs, -ss, zero], -1),
                      np.stack([ss, cs, zero], -1),
                      np.stack([zero, zero, one], -1)], -2)
    return rot_z @ rot_x


_UPPER_BODY = [B.SPINE_MID, B.SPINE_SHOULDER, B.NECK, B.HEAD,
               B.L_SHOULDER, B.L_ELBOW, B.L_WRIST, B.L_HAND, B.L_HAND_TIP, B.L_THUMB,
               B.R_SHOULDER, B.R_ELBOW, B.R_WRIST, B.R_HAND, B.R_HAND_TIP, B.R_THUMB]


def perform(
    spec: ActionSpec, performer: B.Performer, num_frames: int, rng: np.random.Generator
) -> np.ndarray:
    """Joint positions of `performer` doing `spec`, in the body frame. [T, 25, 3]

    Every class draws the same random numbers in the same order, so two classes that share
    their motion parameters share their motion distribution exactly.
    """
    scale = performer.scale
    t = np.arange(num_frames) / FPS
    envelope = _envelope(num_frames, rng)[:, None]  # [T, 1]
    target = np.asarray(spec.target) * scale + rng.normal(0.0, 0.02, 3) * scale
    rest_right = _REST_RIGHT * scale + rng.normal(0.0, 0.015, 3)
    rest_left = _REST_LEFT * scale + rng.normal(0.0, 0.015, 3)
    amplitude = spec.amplitude * performer.amplitude * rng.uniform(0.9, 1.1) * scale
    frequency = spec.frequency * performer.speed * rng.uniform(0.9, 1.1)
    phase = rng.uniform(0, 2 * np.pi)
    axis = np.asarray(spec.axis) / np.linalg.norm(spec.axis)
    # The oscillation only runs while the hand is at the target.
    wobble = amplitude * np.sin(2 * np.pi * frequency * t + phase)[:, None] * envelope**2 * axis
    right_wrist = rest_right + envelope * (target - rest_right) + wobble  # [T, 3]
    left_sway = 0.01 * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t + rng.uniform(0, 6.3))
    left_wrist = rest_left + left_sway[:, None] * np.array([0.3, 0.0, 1.0])

    pose = np.repeat(B.rest_pose(performer)[None], num_frames, axis=0)  # [T, 25, 3]
    upper, fore = B.arm_lengths(performer)
    right_arm = (B.R_ELBOW, B.R_WRIST, B.R_HAND, B.R_HAND_TIP, B.R_THUMB)
    left_arm = (B.L_ELBOW, B.L_WRIST, B.L_HAND, B.L_HAND_TIP, B.L_THUMB)
    for side, shoulder, wrist_target, pole, joints in (
        (1.0, B.R_SHOULDER, right_wrist, spec.pole, right_arm),
        (-1.0, B.L_SHOULDER, left_wrist, (-0.5, -1.0, 0.3), left_arm),
    ):
        elbow, wrist = B.arm_ik(pose[:, shoulder], wrist_target, upper, fore, np.asarray(pole))
        hand, tip, thumb = B.hand_joints(elbow, wrist, scale, side)
        for joint, value in zip(joints, (elbow, wrist, hand, tip, thumb)):
            pose[:, joint] = value

    # Sway the upper body (arms included) about the spine base.
    lean = _lean_rotations(num_frames, rng)
    pose[:, _UPPER_BODY] = np.einsum("tij,tvj->tvi", lean, pose[:, _UPPER_BODY])
    return pose

# A person who only stands there: the bystander that sometimes walks into a clip.
STAND = ActionSpec("stand", "none", "stand still with the arms down", tuple(_REST_RIGHT))
