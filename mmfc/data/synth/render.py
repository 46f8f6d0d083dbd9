"""Drawing the frames: a cluttered, drifting background and the person from projected 3D joints.

The person is small and off-centre on purpose: a network that sees the whole frame has to find
a ~10-pixel cup in clutter, while one that sees the skeleton-guided crop gets it ten times
larger. Frames are BGR uint8, drawn directly at the output size.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from mmfc.data.synth import body as B
from mmfc.data.synth.clip import Clip
from mmfc.data.synth.camera import COLOR_FOCAL, COLOR_SIZE, project_color

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel accurate anti-aliased drawing
_ONE = 1 << _SHIFT

# (joint, joint, colour part, thickness in metres), drawn as capsules.
_LIMBS = (
    (B.L_HIP, B.L_KNEE, "trousers", 0.15), (B.L_KNEE, B.L_ANKLE, "trousers", 0.12),
    (B.L_ANKLE, B.L_FOOT, "shoe", 0.08),
    (B.R_HIP, B.R_KNEE, "trousers", 0.15), (B.R_KNEE, B.R_ANKLE, "trousers", 0.12),
    (B.R_ANKLE, B.R_FOOT, "shoe", 0.08),
    (B.SPINE_BASE, B.SPINE_SHOULDER, "shirt", 0.30), (B.L_SHOULDER, B.R_SHOULDER, "shirt", 0.11),
    (B.SPINE_SHOULDER, B.NECK, "skin", 0.09),
    (B.L_SHOULDER, B.L_ELBOW, "shirt", 0.10), (B.L_ELBOW, B.L_WRIST, "skin", 0.075),
    (B.L_WRIST, B.L_HAND, "skin", 0.075), (B.L_HAND, B.L_HAND_TIP, "skin", 0.055),
    (B.R_SHOULDER, B.R_ELBOW, "shirt", 0.10), (B.R_ELBOW, B.R_WRIST, "skin", 0.075),
    (B.R_WRIST, B.R_HAND, "skin", 0.075), (B.R_HAND, B.R_HAND_TIP, "skin", 0.055),
)
_HEAD_RADIUS = 0.11

# Held objects: (width, height) in metres, body colour, detail colour (BGR). Upright objects
# (a cup) stay upright; the others turn with the forearm.
OBJECTS = {
    "cup": ((0.09, 0.12), (240, 240, 245), (40, 40, 200), True),
    "snack": ((0.14, 0.05), (0, 150, 255), (0, 230, 255), False),
    "phone": ((0.08, 0.16), (25, 25, 25), (255, 210, 80), False),
}


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * _ONE).astype(np.int32)


def _pixels(size: float, z: float, scale: float) -> int:
    """A size in metres at depth z as a line thickness in output pixels (at least 1)."""
    return max(1, int(round(size * COLOR_FOCAL * scale / z)))


def person_pixels(joints: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Camera-space joints to pixels of a frame of `frame_size` (width, height). [..., 3] -> [..., 2]"""
    return project_color(joints) * (np.array(frame_size) / np.array(COLOR_SIZE))


def _draw_object(
    frame: np.ndarray, kind: str, hand: np.ndarray, elbow_to_hand: np.ndarray, z: float, scale: float
) -> None:
    (width, height), colour, detail, upright = OBJECTS[kind]
    w, h = (float(v) for v in np.array([width, height]) * COLOR_FOCAL * scale / z)
    angle = 0.0 if upright else float(np.degrees(np.arctan2(elbow_to_hand[1], elbow_to_hand[0])) - 90.0)
    # The object sits in the fist, a little beyond the hand joint.
    cx, cy = (float(v) for v in hand + 0.3 * h * elbow_to_hand / max(np.linalg.norm(elbow_to_hand), 1e-6))
    cv2.fillConvexPoly(frame, _fixed(cv2.boxPoints(((cx, cy), (w, h), angle))), colour, cv2.LINE_AA, _SHIFT)
    # A band across the object: the cup's label, the bar's wrapper stripe, the phone's screen.
    band = cv2.boxPoints(((cx, cy), (w * 0.6, h * 0.45), angle))
    cv2.fillConvexPoly(frame, _fixed(band), detail, cv2.LINE_AA, _SHIFT)


def draw_person(
    frame: np.ndarray, joints: np.ndarray, performer: B.Performer, held: str | None = None
) -> None:
    """Draw one person from camera-space joints [25, 3], back to front, into `frame` in place."""
    height, width = frame.shape[:2]
    scale = width / COLOR_SIZE[0]
    px = person_pixels(joints, (width, height))  # [25, 2]
    z = joints[:, 2]
    colours = {"shirt": performer.shirt, "trousers": performer.trousers, "skin": performer.skin,
               "shoe": (30, 30, 40)}
    # (depth, order, draw): larger depth first; order breaks ties deterministically.
    items = []
    for order, (a, b, part, size) in enumerate(_LIMBS):
        depth = 0.5 * (z[a] + z[b])
        thickness = _pixels(size * performer.thickness, depth, scale)
        items.append((depth, order, lambda a=a, b=b, c=colours[part], t=thickness: cv2.line(
            frame, tuple(_fixed(px[a])), tuple(_fixed(px[b])), c, t, cv2.LINE_AA, _SHIFT)))
    head_r = _HEAD_RADIUS * COLOR_FOCAL * scale / z[B.HEAD]
    hair = tuple(int(c * 0.3) for c in performer.trousers)

    def head() -> None:
        up = np.array([0.0, -0.25 * head_r])
        hair_centre, face_centre = _fixed(px[B.HEAD] + up), _fixed(px[B.HEAD] - up * 0.4)
        cv2.circle(frame, tuple(hair_centre), int(head_r * _ONE), hair, -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(frame, tuple(face_centre), int(head_r * 0.9 * _ONE), performer.skin, -1, cv2.LINE_AA, _SHIFT)

    items.append((z[B.HEAD], len(items), head))
    if held is not None:
        items.append((z[B.R_HAND] - 0.05, len(items), lambda: _draw_object(
            frame, held, px[B.R_HAND], px[B.R_HAND] - px[B.R_ELBOW], z[B.R_HAND], scale)))
    for _, _, draw in sorted(items, key=lambda item: (-item[0], item[1])):
        draw()


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def _canvas(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A static cluttered scene wider than the frame: gradient, slanted stripes, shapes, texture."""
    top, bottom = rng.integers(40, 200, size=(2, 3))
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    canvas = np.broadcast_to(top + ramp * (bottom - top), (height, width, 3)).astype(np.uint8).copy()
    for _ in range(int(rng.integers(5, 12))):
        x0, slant, band = rng.uniform(0, width), rng.uniform(-0.6, 0.6) * height, rng.uniform(4, 30)
        poly = np.array([[x0, 0], [x0 + band, 0], [x0 + band + slant, height], [x0 + slant, height]])
        cv2.fillConvexPoly(canvas, _fixed(poly), _random_colour(rng), cv2.LINE_AA, _SHIFT)
    for _ in range(int(rng.integers(20, 40))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        w, h = rng.uniform(0.03, 0.25, size=2) * height
        filled = -1 if rng.random() < 0.7 else int(rng.integers(1, 4))
        corners = (int(x), int(y)), (int(x + w), int(y + h))
        cv2.rectangle(canvas, *corners, _random_colour(rng), filled, cv2.LINE_AA)
    for _ in range(int(rng.integers(4, 10))):
        centre = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        cv2.circle(canvas, centre, int(rng.uniform(0.02, 0.1) * height), _random_colour(rng), -1, cv2.LINE_AA)
    texture = rng.integers(-15, 16, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    texture = cv2.resize(texture, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(canvas + texture, 0, 255).astype(np.uint8)


def background_frames(
    frame_size: tuple[int, int], num_frames: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Frames of a scene that drifts sideways, with shapes moving across it and colour noise."""
    width, height = frame_size
    speed = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.2) * width / 480
    travel = int(np.ceil(abs(speed) * num_frames)) + 1
    canvas = _canvas(width + travel, height, rng)
    # Shapes moving across the scene: (start xy, velocity px/frame, size, colour, is ellipse).
    movers = [(rng.uniform(0, width, 2) * [1, height / width], rng.normal(0, 2.5, 2) * width / 480,
               rng.uniform(0.05, 0.2, 2) * height, _random_colour(rng), rng.random() < 0.5)
              for _ in range(int(rng.integers(2, 5)))]
    for t in range(num_frames):
        offset = int(speed * t) if speed > 0 else travel - 1 + int(speed * t)
        frame = canvas[:, offset:offset + width].copy()
        for start, velocity, size, colour, is_ellipse in movers:
            x, y = start + velocity * t
            if is_ellipse:
                axes = (int(size[0] / 2), int(size[1] / 2))
                cv2.ellipse(frame, (int(x), int(y)), axes, 0, 0, 360, colour, -1, cv2.LINE_AA)
            else:
                corners = (int(x), int(y)), (int(x + size[0]), int(y + size[1]))
                cv2.rectangle(frame, *corners, colour, -1, cv2.LINE_AA)
        # Colour noise in soft blotches: sensor-like flicker that a JPEG can still compress.
        noise = rng.integers(-6, 7, size=(height // 4, width // 4, 3)).astype(np.float32)
        noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_LINEAR)
        yield np.clip(frame + noise, 0, 255).astype(np.uint8)


def clip_background(clip: Clip, frame_size: tuple[int, int], seed: int) -> Iterator[np.ndarray]:
    """The background frames of a clip alone, as `render_clip` draws them."""
    key = clip.key
    rng = np.random.default_rng([seed, 5, key.setup, key.camera, key.performer, key.replication, key.action])
    return background_frames(frame_size, clip.num_frames, rng)


def render_clip(clip: Clip, frame_size: tuple[int, int], seed: int) -> np.ndarray:
    """All frames of a clip: background, then the bystander (if any), then the actor. [T, H, W, 3]"""
    frames = []
    for t, frame in enumerate(clip_background(clip, frame_size, seed)):
        if clip.bystander is not None:
            other, joints = clip.bystander
            draw_person(frame, joints[t], other)
        draw_person(frame, clip.true_joints[t], clip.performer, clip.held)
        frames.append(frame)
    return np.stack(frames)
