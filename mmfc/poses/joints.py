"""BlazePose's 33 landmarks, and how they become the joints of COCO-17 or NTU-25 (or stay all 33,
the mediapipe33 layout).

Each joint of the target layout is a fixed affine combination of BlazePose landmarks (weights
summing to 1), so one matrix maps image pixels and 3D world landmarks alike; a derived joint's
score is the lowest score among the landmarks it is made of.

Left and right. BlazePose's LEFT is the person's own left, as in COCO: COCO-17 takes
BlazePose's points unchanged. NTU RGB+D's Kinect labels them the other way round: on the real
clip S001C001P001R001A001 BlazePose's left shoulder, elbow, wrist, hip, knee and ankle land on
Kinect's ShoulderRight ... AnkleRight (the median error over those 12 joints, both ways, is in
docs/benchmarks.md, section 4; kept as named, the sides are several times further off). So NTU-25's "left" joints are taken from BlazePose's RIGHT ones.

NTU-25 (Kinect v2) from BlazePose, 1-based NTU numbers; "L" and "R" are Kinect's labels:
   1 SpineBase      = midpoint of the hips (23, 24)
   2 SpineMid       = SpineBase + 0.57 (SpineShoulder - SpineBase); Kinect puts SpineMid at
                      0.573-0.575 of the way in all six real .skeleton files
   3 Neck           = halfway from SpineShoulder to the mouth's midpoint (9, 10)
   4 Head           = midpoint of the ears (7, 8), the centre of the head
   5-7 L shoulder, elbow, wrist = BlazePose right (12, 14, 16); 9-11 R = left (11, 13, 15)
   8 HandL          = midpoint of right pinky and index knuckles (18, 20); 12 HandR from (17, 19)
  13-15 L hip, knee, ankle = BlazePose right (24, 26, 28); 17-19 R = left (23, 25, 27)
  16 FootL          = midpoint of right ankle and foot index (28, 32); 20 FootR from (27, 31)
  21 SpineShoulder  = midpoint of the shoulders (11, 12)
  22 HandTipL       = Hand + (Hand - wrist): the fingertips are about as far beyond the
                      knuckles as the wrist is behind them (Kinect's tip-wrist distance is
                      1.3-2.1 times its hand-wrist distance in the six files); 24 HandTipR
  23 ThumbL         = right thumb (22); 25 ThumbR = left thumb (21)
Measured against Kinect on that clip (median over its 103 frames), the derived joints are off
by: SpineBase 7 px, SpineMid 4, Neck 8, Head 6, SpineShoulder 5, and on the side Kinect tracks
well (the other hand holds the cup) Hand 12, HandTip 15, Thumb 25, Foot 15-19.
"""

from __future__ import annotations

import numpy as np

from mmfc.data.layouts import MEDIAPIPE33

BLAZEPOSE = MEDIAPIPE33.joints
NUM_BLAZEPOSE = len(BLAZEPOSE)

# COCO-17: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles (left first).
COCO17 = [{b: 1.0} for b in (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)]


def _mid(a: int, b: int) -> dict[int, float]:
    return {a: 0.5, b: 0.5}


def _hand_tip(wrist: int, pinky: int, index: int) -> dict[int, float]:
    return {pinky: 1.0, index: 1.0, wrist: -1.0}  # 2 * midpoint(pinky, index) - wrist


_HIPS, _SHOULDERS = _mid(23, 24), _mid(11, 12)
NTU25 = [
    _HIPS,  # 1 SpineBase
    {23: 0.215, 24: 0.215, 11: 0.285, 12: 0.285},  # 2 SpineMid: 0.43 hips + 0.57 shoulders
    {11: 0.25, 12: 0.25, 9: 0.25, 10: 0.25},  # 3 Neck
    _mid(7, 8),  # 4 Head
    {12: 1.0}, {14: 1.0}, {16: 1.0}, _mid(18, 20),  # 5-8 Kinect's left arm
    {11: 1.0}, {13: 1.0}, {15: 1.0}, _mid(17, 19),  # 9-12 Kinect's right arm
    {24: 1.0}, {26: 1.0}, {28: 1.0}, _mid(28, 32),  # 13-16 Kinect's left leg
    {23: 1.0}, {25: 1.0}, {27: 1.0}, _mid(27, 31),  # 17-20 Kinect's right leg
    _SHOULDERS,  # 21 SpineShoulder
    _hand_tip(16, 18, 20), {22: 1.0},  # 22-23 Kinect's left hand tip and thumb
    _hand_tip(15, 17, 19), {21: 1.0},  # 24-25 Kinect's right hand tip and thumb
]


def _matrix(rows: list[dict[int, float]]) -> np.ndarray:
    matrix = np.zeros((len(rows), NUM_BLAZEPOSE), dtype=np.float64)
    for joint, weights in enumerate(rows):
        for landmark, weight in weights.items():
            matrix[joint, landmark] = weight
    return matrix


# The layouts stage 0 writes (config.PoseLayout).
MAPPINGS = {"coco17": _matrix(COCO17), "ntu25": _matrix(NTU25), "mediapipe33": np.eye(NUM_BLAZEPOSE)}


def mapping(layout: str) -> np.ndarray:
    """[V, 33] weights taking BlazePose landmarks to the layout's joints."""
    if layout not in MAPPINGS:
        raise ValueError(f"no BlazePose mapping to layout {layout!r}; known: {', '.join(MAPPINGS)}")
    return MAPPINGS[layout]


def map_points(points: np.ndarray, layout: str) -> np.ndarray:
    """[..., 33, C] -> [..., V, C] in the layout's joint order."""
    return np.einsum("vk,...kc->...vc", mapping(layout), points).astype(np.float32)


def map_scores(score: np.ndarray, layout: str) -> np.ndarray:
    """[..., 33] -> [..., V]: each joint gets the lowest score of the landmarks it is made of."""
    used = mapping(layout) != 0  # [V, 33]
    masked = np.where(used, score[..., None, :], np.inf)  # [..., V, 33]
    return masked.min(axis=-1).astype(np.float32)
