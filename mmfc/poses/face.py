"""Face landmarks for close-ups: MediaPipe Holistic's face path, which refines the pose's face
points where the body landmark model sees the face at too coarse a scale.

The body landmark model sees the whole body region at 256x256; in a close-up that region is
several times the frame (hips far below it), so a face filling a third of the frame covers a
few dozen model pixels. The face landmark model sees the face alone at 192x192. As Holistic
does (face_landmarks_from_pose_cpu.pbtxt):

1. the pose's 11 face points give a search region: their box, three times its longer side,
   turned so the eyes are level (FaceLandmarksFromPoseToRecropRoi);
2. the short-range face detector (128x128, 896 SSD anchors, a box and 6 keypoints each, read by
   mmfc/poses/detection.py) finds the face in it; its keypoints' box, twice its longer side,
   shifted up by a tenth, gives the face region (FaceDetectionFrontDetectionsToRoi);
3. the face landmark model gives 468 points and a face-presence score in that region; on the
   next frame the region comes from those points (their box, 1.5 times its longer side, turned
   by the eye corners 33 -> 263: FaceLandmarksToRoi), while they stay inside this frame's
   search region (RoiTrackingCalculator's landmark check); otherwise step 2 runs again.

The 468 points then replace BlazePose's 11 face points (FACE_FROM_MESH, by their meaning in the
face mesh's topology), so COCO-17's nose, eyes and ears and NTU-25's head and neck follow.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mmfc.poses import detection
from mmfc.poses.model_files import open_interpreter, tensor_indices
from mmfc.poses.region import Region, inside_region, region_around, rotation_between

DETECTOR_INPUT = 128
DETECTOR_STRIDES = (8, 16, 16, 16)
MESH_INPUT = 192
MESH_POINTS = 468
MIN_FACE_SCORE = 0.5
SEARCH_SCALE = 3.0  # the search region around the pose's face points
DETECTION_SCALE, DETECTION_SHIFT = 2.0, -0.1
MESH_SCALE = 1.5
# RoiTrackingCalculator: the last frame's face points must lie within the search region shrunk
# by this much to be followed.
TRACKING_MARGIN = -0.2
# BlazePose's face points (0-10) from the face mesh: nose tip; the left eye's inner corner,
# centre (midway between its corners), outer corner; the same for the right eye; the ears as
# the face contour's outermost points at their height (tragion); the mouth corners. "Left" is
# the person's own left in both models.
FACE_FROM_MESH = (
    (1,), (362,), (362, 263), (263,), (133,), (133, 33), (33,), (454,), (234,), (291,), (61,),
)
RIGHT_EYE, LEFT_EYE = 5, 2  # BlazePose's eye centres
MESH_RIGHT_EYE_OUTER, MESH_LEFT_EYE_OUTER = 33, 263
DETECTION_RIGHT_EYE, DETECTION_LEFT_EYE = 0, 1  # of the detector's 6 keypoints


def search_region(face_points: np.ndarray) -> Region:
    """Where to look for the face, from the pose's 11 face points [11, 2]."""
    rotation = rotation_between(face_points[RIGHT_EYE], face_points[LEFT_EYE], 0.0)
    return region_around(face_points, rotation, SEARCH_SCALE)


def detection_region(keypoints: np.ndarray) -> Region:
    """The face region from a face detection's 6 keypoints [6, 2] (frame pixels)."""
    rotation = rotation_between(keypoints[DETECTION_RIGHT_EYE], keypoints[DETECTION_LEFT_EYE], 0.0)
    return region_around(keypoints, rotation, DETECTION_SCALE, DETECTION_SHIFT)


def mesh_region(mesh: np.ndarray) -> Region:
    """The next frame's face region from this frame's face mesh [468, 2]."""
    rotation = rotation_between(mesh[MESH_RIGHT_EYE_OUTER], mesh[MESH_LEFT_EYE_OUTER], 0.0)
    return region_around(mesh, rotation, MESH_SCALE)


def face_points_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """[468, 2] -> BlazePose's 11 face points [11, 2]."""
    return np.stack([mesh[list(indices)].mean(axis=0) for indices in FACE_FROM_MESH])


class FaceLandmarker:
    """The face detector and the face landmark model, with MediaPipe's pre- and post-processing."""

    def __init__(self, detector_path: Path, mesh_path: Path, threads: int):
        self.detector = open_interpreter(detector_path, threads)
        self.mesh = open_interpreter(mesh_path, threads)
        self.anchors = detection.ssd_anchors(DETECTOR_INPUT, DETECTOR_STRIDES)
        self._detector_in, self._detector_out = tensor_indices(self.detector)
        self._mesh_in, self._mesh_out = tensor_indices(self.mesh)

    def detect(self, frame: np.ndarray, bgr: bool, region: Region) -> np.ndarray | None:
        """The best face's 6 keypoints [6, 2] in frame pixels within a search region, or None."""
        # The detector takes [-1, 1]; beyond the frame it sees black (BORDER_ZERO, as MediaPipe).
        tensor = region.model_input(frame, bgr, DETECTOR_INPUT, cv2.BORDER_CONSTANT) * 2.0 - 1.0
        self.detector.set_tensor(self._detector_in, tensor)
        self.detector.invoke()
        raw_boxes = self.detector.get_tensor(self._detector_out["regressors"])[0]  # [896, 16]
        raw_scores = self.detector.get_tensor(self._detector_out["classificators"])[0, :, 0]  # [896]
        found = detection.weighted_nms(
            detection.decode(raw_boxes, raw_scores, self.anchors, MIN_FACE_SCORE, DETECTOR_INPUT)
        )
        return region.to_frame(found.keypoints[0].astype(np.float64)) if len(found) else None

    def landmarks(self, frame: np.ndarray, bgr: bool, region: Region) -> tuple[np.ndarray, float]:
        """The face mesh [468, 2] in frame pixels and the face-presence score in a face region."""
        self.mesh.set_tensor(self._mesh_in, region.model_input(frame, bgr, MESH_INPUT))
        self.mesh.invoke()
        points = self.mesh.get_tensor(self._mesh_out["conv2d_21"]).reshape(MESH_POINTS, 3)[:, :2] / MESH_INPUT
        score = 1.0 / (1.0 + np.exp(-float(self.mesh.get_tensor(self._mesh_out["conv2d_31"]).ravel()[0])))
        return region.to_frame(points.astype(np.float64)), score


class FaceTracks:
    """Each tracked person's face region from frame to frame (Holistic's FaceTracking)."""

    def __init__(self, landmarker: FaceLandmarker):
        self.landmarker = landmarker
        self.meshes: dict[int, np.ndarray] = {}  # slot -> its face mesh on the last frame

    def refine(self, frame: np.ndarray, bgr: bool, slot: int, face_points: np.ndarray) -> np.ndarray | None:
        """The person's 11 face points from the face model [11, 2], or None where it finds no
        face (then the pose's own are kept). face_points: the pose's [11, 2]."""
        search = search_region(face_points)
        last = self.meshes.pop(slot, None)
        if last is not None and inside_region(last, search, TRACKING_MARGIN):
            region = mesh_region(last)
        else:
            keypoints = self.landmarker.detect(frame, bgr, search)
            if keypoints is None:
                return None
            region = detection_region(keypoints)
        mesh, score = self.landmarker.landmarks(frame, bgr, region)
        if score < MIN_FACE_SCORE:
            return None
        self.meshes[slot] = mesh
        return face_points_from_mesh(mesh)

    def keep_only(self, slots) -> None:
        """Forget the faces of the people not seen on this frame."""
        self.meshes = {slot: mesh for slot, mesh in self.meshes.items() if slot in slots}
