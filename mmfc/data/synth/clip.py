"""One synthetic clip: the performance, how a Kinect sensor reports it, and what gets drawn.

The three cameras of one setup/performer/replication/action record the SAME performance at
the same time, as in NTU: the motion is seeded without the camera, the view and the sensor
noise with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmfc.data.synth import body as B
from mmfc.data.synth.actions import ACTIONS, FPS, STAND, perform
from mmfc.data.synth.camera import View, sample_view, to_camera

MIN_FRAMES, MAX_FRAMES = 40, 70
_BODY_ID_BASE = 72057594037927936  # Kinect body IDs in NTU files look like this plus a few thousand

# Joint groups that a Kinect loses together, and the per-joint noise it adds (metres).
_FLAKY_GROUPS = (
    (B.R_HAND, B.R_HAND_TIP, B.R_THUMB),
    (B.L_HAND, B.L_HAND_TIP, B.L_THUMB),
    (B.L_ANKLE, B.L_FOOT),
    (B.R_ANKLE, B.R_FOOT),
)
_JITTER = np.full(B.NUM_JOINTS, 0.004)
_JITTER[[B.L_WRIST, B.R_WRIST, B.L_FOOT, B.R_FOOT]] = 0.008
_JITTER[[B.L_HAND, B.R_HAND, B.L_HAND_TIP, B.R_HAND_TIP, B.L_THUMB, B.R_THUMB]] = 0.012


@dataclass(frozen=True)
class SampleKey:
    setup: int
    camera: int
    performer: int
    replication: int
    action: int  # 1-based; label = action - 1

    @property
    def name(self) -> str:
        return (f"S{self.setup:03d}C{self.camera:03d}P{self.performer:03d}"
                f"R{self.replication:03d}A{self.action:03d}")


@dataclass
class TrackedBody:
    """One body as the sensor reports it."""

    body_id: int
    joints: np.ndarray  # [T, 25, 3] camera-space metres, with sensor noise
    tracking: np.ndarray  # [T, 25] int: 2 tracked, 1 inferred, 0 not tracked
    present: np.ndarray  # [T] bool: frames the sensor lists this body in


@dataclass
class Clip:
    key: SampleKey
    num_frames: int
    performer: B.Performer
    held: str | None
    true_joints: np.ndarray  # [T, 25, 3] noise-free actor, camera space: what gets drawn
    bodies: list[TrackedBody]  # the actor first
    # A second person standing in the back, drawn in every frame: (performer, joints [T, 25, 3]).
    bystander: tuple[B.Performer, np.ndarray] | None


def performer_for(seed: int, performer_id: int) -> B.Performer:
    return B.sample_performer(performer_id, np.random.default_rng([seed, 0, performer_id]))


def _camera_height(seed: int, setup: int) -> float:
    return float(np.random.default_rng([seed, 1, setup]).uniform(1.0, 1.3))


def _sensor(true_joints: np.ndarray, body_id: int, rng: np.random.Generator) -> TrackedBody:
    """Kinect-like jitter, plus occasional runs of inferred (1) or lost (0) joints."""
    num_frames = true_joints.shape[0]
    noise = rng.normal(0.0, 1.0, true_joints.shape) * _JITTER[None, :, None]
    tracking = np.full((num_frames, B.NUM_JOINTS), 2, dtype=np.int64)
    for state, probability, sigma, longest in ((1, 0.35, 0.03, 15), (0, 0.10, 0.10, 8)):
        if rng.random() < probability:
            group = list(_FLAKY_GROUPS[rng.integers(len(_FLAKY_GROUPS))])
            length = int(rng.integers(2, longest + 1))
            start = int(rng.integers(0, num_frames - length))
            tracking[start:start + length, group] = state
            noise[start:start + length, group] += rng.normal(0.0, sigma, (length, len(group), 3))
    return TrackedBody(body_id, true_joints + noise, tracking, np.ones(num_frames, dtype=bool))


def _bystander(
    seed: int, key: SampleKey, actor: View, actor_scale: float, num_frames: int,
    rng: np.random.Generator,
) -> tuple[TrackedBody, tuple[B.Performer, np.ndarray] | None]:
    """A second body: a person in the back tracked for only a few frames (drawn), or a noisy
    non-human detection much wider than tall (not drawn: the clutter is what the sensor saw)."""
    identity = [seed, 4, key.setup, key.performer, key.replication, key.action]
    other = B.sample_performer(0, np.random.default_rng(identity))
    pose = perform(STAND, other, num_frames, rng)
    # Behind the actor, on the other side of the image, standing on the same floor.
    behind = np.array([-np.sign(actor.position[0]) * rng.uniform(1.2, 2.0),
                       (other.scale - actor_scale) * B.HIP_HEIGHT, rng.uniform(0.8, 1.5)])
    far = View(yaw=rng.uniform(-30, 30), position=actor.position + behind)
    joints = to_camera(pose, far)
    body_id = _BODY_ID_BASE + int(rng.integers(20000, 40000))
    if rng.random() < 0.5:
        tracked = _sensor(joints, body_id, rng)
        length = int(rng.integers(3, 12))
        start = int(rng.integers(0, num_frames - length))
        tracked.present[:] = False
        tracked.present[start:start + length] = True
        return tracked, (other, joints)
    centre = joints.mean(axis=1, keepdims=True)
    blob = centre + (joints - centre) * np.array([3.0, 0.3, 1.0])
    tracked = _sensor(blob, body_id, rng)
    tracked.joints += rng.normal(0.0, 0.05, tracked.joints.shape)
    tracked.present[: int(rng.integers(0, num_frames // 2))] = False
    return tracked, None


def compose_clip(key: SampleKey, seed: int) -> Clip:
    performer = performer_for(seed, key.performer)
    spec = ACTIONS[key.action - 1]
    motion_rng = np.random.default_rng([seed, 2, key.setup, key.performer, key.replication, key.action])
    num_frames = round(motion_rng.uniform(47, 67) / performer.speed)
    num_frames = int(np.clip(num_frames, MIN_FRAMES, MAX_FRAMES))
    pose = perform(spec, performer, num_frames, motion_rng)  # [T, 25, 3]
    # Weight shifting: the whole body drifts a little sideways and back and forth.
    t = np.arange(num_frames) / FPS
    drift = 0.02 * np.sin(2 * np.pi * motion_rng.uniform(0.1, 0.3) * t + motion_rng.uniform(0, 6.3))
    pose += drift[:, None, None] * np.array([1.0, 0.0, 0.5])

    view_rng = np.random.default_rng(
        [seed, 3, key.setup, key.camera, key.performer, key.replication, key.action])
    view = sample_view(key.camera, performer, _camera_height(seed, key.setup), view_rng)
    true_joints = to_camera(pose, view)
    actor = _sensor(true_joints, _BODY_ID_BASE + int(view_rng.integers(1000, 20000)), view_rng)
    # Sometimes the sensor needs a few frames to find the body.
    if view_rng.random() < 0.15:
        actor.present[: int(view_rng.integers(1, 7))] = False
    bodies, bystander = [actor], None
    if view_rng.random() < 0.12:
        second, bystander = _bystander(seed, key, view, performer.scale, num_frames, view_rng)
        bodies.append(second)
    return Clip(key, num_frames, performer, spec.held, true_joints, bodies, bystander)
