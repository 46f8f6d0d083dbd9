"""Hand landmarks for close-ups: MediaPipe Holistic's hand path, which refines the pose's wrist
and hand points where the body landmark model sees the hands at too coarse a scale (the same
reason as for the face, mmfc/poses/face.py).

Per hand, as Holistic does (hand_landmarks_from_pose_cpu.pbtxt), for a hand whose pose wrist is
visible (visibility above 0.1):

1. the pose's wrist, pinky and index knuckles give a search region: centred on the middle
   finger's estimate (two thirds of the way from the pinky to the index knuckle), its side
   twice the wrist's distance from there, turned so the fingers point up, enlarged 2.7x and
   shifted up by a tenth (HandLandmarksFromPoseToRecropRoi);
2. the hand re-crop model (256x256) predicts two alignment points in it: the hand region is
   centred on the first, its side twice their distance, turned so the second lies straight
   below it (AlignmentPointsRectsCalculator, target angle -90 degrees), shifted up by a tenth
   (HandRecropByRoi);
3. the hand landmark model (224x224) gives 21 points and a hand-presence score there; on the
   next frame the region comes from those points (the box of the palm and finger bases in the
   hand's own frame, turned so the wrist lies below the knuckles of the index, middle and ring
   fingers, twice its longer side, shifted up by a tenth: HandLandmarksToRoi) while they stay inside this frame's search
   region (RoiTrackingCalculator's landmark check); otherwise step 2 runs again;
4. where both of a person's hand regions coincide on a frame (both tracks on the one hand in
   view), the model runs once and both sides take its points;
5. the hand model also says which hand it sees (its handedness output), and where it is sure
   (SURE_HANDEDNESS) that one side's search found the other side's hand, while that side found
   none of its own, the hand goes to the side it belongs to and the finder keeps the pose's
   points (`hand_owners`). Holistic trusts the pose here; but in a close-up with one hand in
   view the body model may give that hand to the wrong side, where the hand model sees it at
   six times the scale (on the UCF101 close-up this raises PCK: bench/bench_poses.py,
   docs/benchmarks.md, section 4).

The hand's wrist, index and pinky knuckles and thumb then replace BlazePose's (HAND_FROM_MESH).

The hand landmark model is the lite one (MediaPipe Hands' model_complexity 0), where Holistic
takes the full one: it runs in half the time, the largest part model cost of a close-up, and
gives the same figures on the real clips (the close-up's PCK, the NTU limb error with the part
models forced on, the hugging clip's tracks): bench/bench_poses.py, docs/benchmarks.md,
section 4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmfc.poses.model_files import open_interpreter, tensor_indices
from mmfc.poses.region import Region, inside_region, region_around, rotation_between, same_region

RECROP_INPUT = 256
HAND_INPUT = 224
HAND_POINTS = 21
MIN_WRIST_VISIBILITY = 0.1
MIN_HAND_SCORE = 0.5
SEARCH_SCALE, SEARCH_SHIFT = 2.7, -0.1
RECROP_SHIFT = -0.1
TRACKING_SCALE, TRACKING_SHIFT = 2.0, -0.1
TRACKING_MARGIN = -0.1
# BlazePose's points of each hand: wrist, pinky knuckle, index knuckle, thumb (left hand first).
POSE_HANDS = ((15, 17, 19, 21), (16, 18, 20, 22))
# The hand model's points for them: wrist, pinky MCP, index MCP, thumb IP ("#2 knuckle").
HAND_FROM_MESH = (0, 17, 5, 3)
# Palm and finger-base points the tracking region is built on (HandLandmarksToRectCalculator).
PALM = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)
# MediaPipe names them PIP joints, but its indices into PALM pick the knuckles (MCP) 5, 9, 13.
WRIST, INDEX_KNUCKLE, MIDDLE_KNUCKLE, RING_KNUCKLE = 0, 5, 9, 13
LEFT, RIGHT = 0, 1  # the sides, as in POSE_HANDS
# The handedness output, read against the pose's own sides: above 0.5 the pose's right hand.
# (MediaPipe's labels assume mirrored selfie images; we read the score as measured instead: on
# the NTU clips, where the body model's sides are reliable, with the hand models forced on,
# hands on the pose's left score a median 0.01-0.02, on its right 0.63-0.96.)
# The hand model is sure which hand it sees at least this far from 0.5, and only then takes a
# hand from the side that found it: NTU's right hands score only 0.63 in the median, and there
# the pose's sides are the better judge.
SURE_HANDEDNESS = 0.4


def search_region(wrist: np.ndarray, pinky: np.ndarray, index: np.ndarray) -> Region:
    """Where to look for a hand, from the pose's wrist, pinky and index knuckles ([2] each)."""
    middle = (2 * index + pinky) / 3
    rotation = rotation_between(wrist, middle, np.pi / 2)
    half = float(np.linalg.norm(middle - wrist))  # the box is twice this: a square of side 2 * half
    box = np.array([middle - half, middle + half])
    return region_around(box, rotation, SEARCH_SCALE, SEARCH_SHIFT)


def recrop_region(first: np.ndarray, second: np.ndarray) -> Region:
    """The hand region from the re-crop model's two alignment points (frame pixels)."""
    half = float(np.linalg.norm(second - first))  # the side is twice their distance
    rotation = rotation_between(first, second, -np.pi / 2)
    return region_around(np.array([first - half, first + half]), rotation, 1.0, RECROP_SHIFT)


def tracking_region(hand: np.ndarray) -> Region:
    """The next frame's hand region from this frame's 21 hand points [21, 2]."""
    towards = ((hand[INDEX_KNUCKLE] + hand[RING_KNUCKLE]) / 2 + hand[MIDDLE_KNUCKLE]) / 2
    rotation = rotation_between(hand[WRIST], towards, np.pi / 2)
    palm = hand[list(PALM)]
    # The box is taken in the hand's own upright frame, then turned back (not axis-aligned).
    cos, sin = np.cos(rotation), np.sin(rotation)
    to_hand = np.array([[cos, sin], [-sin, cos]])  # undoes the turn
    upright = palm @ to_hand.T
    low, high = upright.min(axis=0), upright.max(axis=0)
    centre = ((low + high) / 2) @ to_hand  # back into the frame
    width, height = high - low
    centre = centre + TRACKING_SHIFT * height * np.array([-sin, cos])
    return Region((float(centre[0]), float(centre[1])), TRACKING_SCALE * float(max(width, height)), rotation)


class HandLandmarker:
    """The hand re-crop model and the hand landmark model, with MediaPipe's pre- and post-processing."""

    def __init__(self, recrop_path: Path, hand_path: Path, threads: int):
        self.recrop = open_interpreter(recrop_path, threads)
        self.hand = open_interpreter(hand_path, threads)
        self._recrop_in, self._recrop_out = tensor_indices(self.recrop)
        self._hand_in, self._hand_out = tensor_indices(self.hand)

    def hand_region(self, frame: np.ndarray, bgr: bool, search: Region) -> Region:
        """The hand region the re-crop model finds within a search region."""
        self.recrop.set_tensor(self._recrop_in, search.model_input(frame, bgr, RECROP_INPUT))
        self.recrop.invoke()
        points = self.recrop.get_tensor(self._recrop_out["output_crop"]).reshape(2, 2) / RECROP_INPUT
        first, second = search.to_frame(points.astype(np.float64))
        return recrop_region(first, second)

    def landmarks(self, frame: np.ndarray, bgr: bool, region: Region) -> tuple[np.ndarray, float, float]:
        """In a hand region: the 21 hand points [21, 2] in frame pixels, the hand-presence score
        and the handedness (above 0.5 a right hand)."""
        self.hand.set_tensor(self._hand_in, region.model_input(frame, bgr, HAND_INPUT))
        self.hand.invoke()
        points = self.hand.get_tensor(self._hand_out["Identity"]).reshape(HAND_POINTS, 3)[:, :2] / HAND_INPUT
        score = float(self.hand.get_tensor(self._hand_out["Identity_1"]).ravel()[0])
        handedness = float(self.hand.get_tensor(self._hand_out["Identity_2"]).ravel()[0])
        return region.to_frame(points.astype(np.float64)), score, handedness


def hand_owners(found: dict[int, tuple[np.ndarray, float]]) -> dict[int, np.ndarray]:
    """Which side takes which hand (step 5 of the module docstring). found: side -> (the 21
    points of the hand its search found, their handedness) -> side -> hand points."""

    def belongs_to(side: int) -> int:
        handedness = found[side][1]
        sure = abs(handedness - 0.5) >= SURE_HANDEDNESS
        return (RIGHT if handedness > 0.5 else LEFT) if sure else side

    owners: dict[int, np.ndarray] = {}
    for side, (hand, _) in found.items():
        owner = belongs_to(side)
        other_has_its_own = owner in found and belongs_to(owner) == owner
        if owner != side and not other_has_its_own:
            owners[owner] = hand
        else:
            owners.setdefault(side, hand)
    return owners


class HandTracks:
    """Each tracked person's two hand regions from frame to frame (Holistic's HandTracking)."""

    def __init__(self, landmarker: HandLandmarker):
        self.landmarker = landmarker
        self.hands: dict[tuple[int, int], np.ndarray] = {}  # (slot, side) -> its 21 points on the last frame

    def refine(self, frame: np.ndarray, bgr: bool, slot: int, pixels: np.ndarray, visibility: np.ndarray) -> list[int]:
        """Replace the hand points in a pose's pixels [33+, 2] with the hand model's, where it
        finds the hand. -> the sides (0 left, 1 right) refined."""
        found: dict[int, tuple[np.ndarray, float]] = {}  # side -> its search's hand and handedness
        looked: list[tuple[Region, np.ndarray, float, float]] = []  # this frame's hand regions and results
        for side, (wrist, pinky, index, _) in enumerate(POSE_HANDS):
            last = self.hands.pop((slot, side), None)
            if visibility[wrist] <= MIN_WRIST_VISIBILITY:
                continue
            search = search_region(pixels[wrist], pixels[pinky], pixels[index])
            if last is not None and inside_region(last, search, TRACKING_MARGIN):
                region = tracking_region(last)
            else:
                region = self.landmarker.hand_region(frame, bgr, search)
            # Step 4: the same region gives the same points; no second run.
            same = next((result for result in looked if same_region(result[0], region)), None)
            hand, score, handedness = same[1:] if same else self.landmarker.landmarks(frame, bgr, region)
            looked.append((region, hand, score, handedness))
            if score >= MIN_HAND_SCORE:
                found[side] = (hand, handedness)
        owners = hand_owners(found)
        for side, hand in owners.items():
            self.hands[(slot, side)] = hand
            pixels[list(POSE_HANDS[side])] = hand[list(HAND_FROM_MESH)]
        return sorted(owners)

    def keep_only(self, slots) -> None:
        """Forget the hands of the people not refined on this frame."""
        self.hands = {key: hand for key, hand in self.hands.items() if key[0] in slots}
