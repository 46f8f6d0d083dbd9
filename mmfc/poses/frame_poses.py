"""BlazePose, run on CPU with LiteRT, for several tracked people per video.

MediaPipe's pose solution follows one person: detect on the first frame, then predict each
frame's region from the previous frame's landmarks and detect again only when the person is
lost. This estimator does the same for up to `max_persons` people:

1. every tracked person's region (from their landmarks on the previous frame) goes through
   the landmark model; a person whose pose-presence flag falls below `min_pose_score` is lost;
2. while fewer than `max_persons` are tracked, the detector runs on the first frame, on any
   frame where someone was lost, and every `detect_every` frames to pick up newcomers;
   detections whose region is a tracked person's are skipped, the others go through the
   landmark model from their detected region;
3. a person lost from one frame to the next is looked for again in the region where they
   were some frames before (RECALL_FRAMES), since a region that slid onto someone else
   cannot be fixed by the detector when the two are close;
4. a pose whose face is where an earlier pose's face is found the same person again and is
   dropped (two people's faces stay apart even when they hug; a detected newcomer must be
   further from everyone tracked: NEW_FACE), and the tracker
   (mmfc/poses/tracking.py) gives every pose its slot;
5. for a person the landmark model sees at a quarter of the frame's resolution or less (a
   close-up: PART_ZOOM), MediaPipe Holistic's face and hand models refine the face and hand
   points (mmfc/poses/face.py, hands.py);
6. each pose's two auxiliary landmarks, smoothed over time per person as MediaPipe does
   (mmfc/poses/smoothing.py), give that person's region on the next frame, except while two
   people's heads are close (CLOSE_FACES): then both keep their regions, which would
   otherwise follow whichever upper body the model took and drift onto the other person.

Frames are taken as decoded (BGR from OpenCV, or RGB arrays); only the small model inputs are
converted, never a whole frame.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mmfc.config import PoseConfig
from mmfc.poses import detection
from mmfc.poses.face import FaceLandmarker, FaceTracks
from mmfc.poses.hands import HandLandmarker, HandTracks
from mmfc.poses.landmarks import ALIGNMENT, INPUT_SIZE, NUM_BODY, Pose, decode_pose
from mmfc.poses.model_files import model_paths, open_interpreter, tensor_indices
from mmfc.poses.region import Region, model_tensor, region_from_points, same_region
from mmfc.poses.smoothing import OneEuroFilter
from mmfc.poses.tracking import Tracker

# Two poses whose faces are this close (distance between the face centres, in face sizes) are
# one person found twice: two people's faces stay apart even when they hug.
SAME_FACE = 0.25
# A detected person whose face is this close to a tracked person's face is that person found
# again, not a newcomer. Wider than SAME_FACE: in a close-up the body model puts one person's
# face points up to a quarter of a face apart from two regions (0.26 on the UCF101 clip, where
# a second track then took the person over), while two tracked people in an embrace came 0.28
# close, so SAME_FACE cannot widen. Two faces less than half a face apart hide one another, and
# a person lost beside another is found again by RECALL_FRAMES, not by the detector.
NEW_FACE = 0.5
FACE = slice(0, 11)  # BlazePose's face landmarks: nose, eyes, ears, mouth
# Two people whose faces are this close (in face sizes) have both heads in each other's region:
# the landmark model may then take the other's upright upper body for this one's, and a region
# that followed it would turn and grow onto the other person (seen in the embrace of the NTU
# hugging clip, where the leaning person's head ends up on the other's). So while two faces are
# this close, both keep the region they had. 1.5 was chosen on that clip (1.0 freezes too
# late); two faces 1.5 face sizes apart are two heads side by side.
CLOSE_FACES = 1.5
# MediaPipe's smoothing of the auxiliary landmarks: still regions stay put, fast ones follow.
ALIGNMENT_FILTER = {"min_cutoff": 0.01, "beta": 10.0, "derivative_cutoff": 1.0}
# A person lost from one frame to the next is looked for again, for this many frames, in the
# region where they were found this many frames before: when two people come close, one's
# region can slide onto the other (who the detector then cannot tell apart from them).
RECALL_FRAMES = 10
# The face and hand models refine a person's face and hand points where the landmark model sees
# their region at a quarter of the frame's resolution or less (the region at least 4 x 256
# pixels): close-ups, and large people in high-resolution video. NTU's 1080p clips (people
# about 400 px tall, regions about 820 px: 3.2x) stay below it; the UCF101 face close-up
# (1450 px, 5.7x) is above. Per such person and frame it costs a face model run (a tenth of a
# landmark model run) and a hand model run per visible hand (a quarter of one), plus the face
# detector or the hand re-crop model where a part is found anew.
PART_ZOOM = 4.0
LANDMARK_OUTPUTS = ("Identity", "Identity_1", "Identity_3", "Identity_4")


@dataclass(frozen=True)
class EstimatorSettings:
    max_persons: int = 2
    detect_every: int = 10
    min_detection_score: float = detection.MIN_SCORE
    min_pose_score: float = 0.5
    threads: int = 1  # for the models and the video decoder: one worker per core

    @classmethod
    def of(cls, poses: PoseConfig, threads: int = 1) -> EstimatorSettings:
        """The settings a pipeline's [poses] section gives."""
        return cls(poses.max_persons, poses.detect_every, poses.min_detection_score, poses.min_pose_score, threads)


class BlazePose:
    """The detector and the landmark model with MediaPipe's pre- and post-processing."""

    def __init__(self, models_dir: str | Path, threads: int = 1):
        paths = model_paths(models_dir)
        self.detector = open_interpreter(paths["pose_detection.tflite"], threads)
        self.landmarker = open_interpreter(paths["pose_landmark_full.tflite"], threads)
        self.anchors = detection.ssd_anchors()
        self._det_in, self._det_out = tensor_indices(self.detector)
        self._lm_in, self._lm_out = tensor_indices(self.landmarker)
        self.face = FaceLandmarker(paths["face_detection_short_range.tflite"], paths["face_landmark.tflite"], threads)
        self.hand = HandLandmarker(paths["hand_recrop.tflite"], paths["hand_landmark_lite.tflite"], threads)

    def detect(self, frame: np.ndarray, bgr: bool, min_score: float) -> detection.Detections:
        """People on a frame, best first, in frame pixels."""
        height, width = frame.shape[:2]
        scale, pad_x, pad_y = detection.letterbox((width, height))
        size = detection.INPUT_SIZE
        resized = cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((size, size, 3), dtype=np.uint8)  # the letterbox border is black
        top, left = round(pad_y), round(pad_x)
        canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
        tensor = model_tensor(canvas, bgr) * 2.0 - 1.0  # the detector takes [-1, 1]
        self.detector.set_tensor(self._det_in, tensor[None])
        self.detector.invoke()
        raw_boxes = self.detector.get_tensor(self._det_out["Identity"])[0]  # [2254, 12]
        raw_scores = self.detector.get_tensor(self._det_out["Identity_1"])[0, :, 0]  # [2254]
        found = detection.weighted_nms(detection.decode(raw_boxes, raw_scores, self.anchors, min_score))
        return detection.to_frame_pixels(found, (width, height))

    def landmarks(self, frame: np.ndarray, bgr: bool, region: Region) -> Pose:
        """The landmarks of the person in `region` of a frame."""
        self.landmarker.set_tensor(self._lm_in, self.landmark_input(frame, bgr, region))
        self.landmarker.invoke()
        # Identity: landmarks [195], Identity_1: pose flag [1], Identity_3: heatmap [64, 64, 39],
        # Identity_4: world landmarks [117]; Identity_2, the segmentation mask, is not read.
        out = {name: self.landmarker.get_tensor(self._lm_out[name])[0] for name in LANDMARK_OUTPUTS}
        return decode_pose(out["Identity"], float(out["Identity_1"][0]), out["Identity_3"], out["Identity_4"], region)

    @staticmethod
    def landmark_input(frame: np.ndarray, bgr: bool, region: Region) -> np.ndarray:
        """The region cut out of the frame, turned upright: the model's input [1, 256, 256, 3]."""
        return region.model_input(frame, bgr, INPUT_SIZE)


def alignment_region(pose: Pose) -> Region:
    """The region the pose's auxiliary landmarks give, unsmoothed."""
    return region_from_points(pose.pixels[ALIGNMENT[0]], pose.pixels[ALIGNMENT[1]])


def face_distance(a: Pose, b: Pose) -> float:
    """The distance between two poses' face centres, in face sizes (the larger face's)."""
    fa, fb = a.pixels[FACE], b.pixels[FACE]
    size = max(np.linalg.norm(np.ptp(fa, axis=0)), np.linalg.norm(np.ptp(fb, axis=0)), 1.0)
    return float(np.linalg.norm(fa.mean(axis=0) - fb.mean(axis=0))) / size


def same_person(a: Pose, b: Pose) -> bool:
    """Whether two poses found one body: their faces nearly coincide."""
    return face_distance(a, b) <= SAME_FACE


class PoseEstimator:
    """Feed the frames of one video in order; `step` returns who was found where."""

    def __init__(self, models: BlazePose, settings: EstimatorSettings = EstimatorSettings(), fps: float = 30.0):
        self.models = models
        self.settings = settings
        self.fps = fps
        self.frame = -1
        self.tracker = Tracker(settings.max_persons)
        self.regions: dict[int, Region] = {}  # slot -> its region on the next frame
        self.filters: dict[int, OneEuroFilter] = {}  # slot -> its auxiliary landmarks' filter
        self.history: dict[int, deque[Region]] = {}  # slot -> regions its last poses came from
        self.recall: dict[int, tuple[Region, int]] = {}  # lost slot -> (where to look, frames left)
        self.since_detection = settings.detect_every  # detect on the first frame
        self.faces = FaceTracks(models.face)
        self.hands = HandTracks(models.hand)

    def step(self, frame: np.ndarray, bgr: bool = True) -> list[tuple[int, Pose]]:
        """One frame -> [(slot, pose)] of the people found on it."""
        s = self.settings
        self.frame += 1
        poses = []
        lost = False
        for region in self.regions.values():
            pose = self.models.landmarks(frame, bgr, region)
            if pose.score >= s.min_pose_score:
                poses.append(pose)
            else:
                lost = True
        for region, _ in self.recall.values():
            pose = self.models.landmarks(frame, bgr, region)
            if pose.score >= s.min_pose_score:
                poses.append(pose)
        self.since_detection += 1
        if len(poses) < s.max_persons and (lost or self.since_detection >= s.detect_every):
            self.since_detection = 0
            poses += self._newcomers(frame, bgr, poses)
        people = []
        for pose in poses:
            if not any(same_person(pose, kept) for kept in people):
                people.append(pose)
        slots = self.tracker.update(self.frame, [(p.pixels[:NUM_BODY], p.visibility[:NUM_BODY]) for p in people])
        found = sorted(((slot, pose) for slot, pose in zip(slots, people) if slot is not None), key=lambda sp: sp[0])
        self._refine_parts(frame, bgr, found)
        self._remember(found)
        return found

    def _refine_parts(self, frame: np.ndarray, bgr: bool, found: list[tuple[int, Pose]]) -> None:
        """The face and hand models' points for the people seen at too coarse a scale (PART_ZOOM)."""
        refined = []
        for slot, pose in found:
            if pose.region.size < PART_ZOOM * INPUT_SIZE:
                continue
            refined.append(slot)
            face = self.faces.refine(frame, bgr, slot, pose.pixels[FACE])
            if face is not None:
                pose.pixels[FACE] = face
            self.hands.refine(frame, bgr, slot, pose.pixels, pose.visibility)
        self.faces.keep_only(refined)
        self.hands.keep_only(refined)

    def _remember(self, found: list[tuple[int, Pose]]) -> None:
        """Each found person's next region; where to look again for those just lost."""
        previous = self.regions
        self.regions = {}
        for slot, pose in found:
            region = self._next_region(slot, pose)
            heads_close = any(face_distance(pose, other) <= CLOSE_FACES for s, other in found if s != slot)
            self.regions[slot] = previous[slot] if heads_close and slot in previous else region
        # A person not found on this frame starts a fresh filter when found again.
        self.filters = {slot: self.filters[slot] for slot in self.regions}
        for slot, pose in found:
            self.history.setdefault(slot, deque(maxlen=RECALL_FRAMES)).append(pose.region)
            self.recall.pop(slot, None)
        self.recall = {slot: (region, left - 1) for slot, (region, left) in self.recall.items() if left > 1}
        for slot in set(previous) - set(self.regions):
            self.recall[slot] = (self.history[slot][0], RECALL_FRAMES)

    def _next_region(self, slot: int, pose: Pose) -> Region:
        if slot not in self.filters:
            self.filters[slot] = OneEuroFilter(self.fps, **ALIGNMENT_FILTER)
        raw = pose.pixels[list(ALIGNMENT)]  # [2, 2]
        smoothed = self.filters[slot](raw, scale=2 * float(np.linalg.norm(raw[1] - raw[0])))
        return region_from_points(smoothed[0], smoothed[1])

    def _newcomers(self, frame: np.ndarray, bgr: bool, tracked: list[Pose]) -> list[Pose]:
        """Poses of detected people who are not tracked yet."""
        s = self.settings
        found = self.models.detect(frame, bgr, s.min_detection_score)
        known = [alignment_region(p) for p in tracked]
        poses: list[Pose] = []
        for k in range(len(found)):
            region = region_from_points(found.keypoints[k, 0], found.keypoints[k, 1])
            # A detection whose region is a tracked person's is that person: no landmark run.
            if any(same_region(region, r) for r in known):
                continue
            pose = self.models.landmarks(frame, bgr, region)
            if pose.score >= s.min_pose_score and all(face_distance(pose, p) > NEW_FACE for p in tracked + poses):
                poses.append(pose)
                known.append(region)
            if len(tracked) + len(poses) >= s.max_persons:
                break
        return poses
