"""The close-up path's maths on constructed inputs: MediaPipe Holistic's face and hand regions,
the box-to-region rule they share, the face detector's decoding, and the mesh -> BlazePose
face points."""

from __future__ import annotations

import numpy as np
import pytest

from mmfc.poses import detection, face, hands
from mmfc.poses.joints import BLAZEPOSE
from mmfc.poses.region import Region, inside_region, region_around, rotation_between


def test_region_around_a_box_squares_scales_turns_and_shifts_it():
    points = np.array([[100.0, 50.0], [140.0, 70.0], [120.0, 60.0]])  # a 40 x 20 box at (120, 60)
    level = region_around(points, 0.0, 3.0)
    assert level.centre == pytest.approx((120.0, 60.0)) and level.size == pytest.approx(120.0)
    # shift_y moves along the region's own downward axis, by a share of the box height (20).
    up = region_around(points, 0.0, 1.0, shift_y=-0.1)
    assert up.centre == pytest.approx((120.0, 58.0))
    turned = region_around(points, np.pi / 2, 1.0, shift_y=-0.1)  # the region's "down" is frame -x
    assert turned.centre == pytest.approx((122.0, 60.0))
    assert region_around(np.zeros((3, 2)), 0.0, 2.0).size == 8.0  # never empty


def test_rotation_between_and_inside_region():
    assert rotation_between(np.array([0.0, 0.0]), np.array([10.0, 0.0]), 0.0) == pytest.approx(0.0)
    # A vector pointing up (image y down) at a target of 90 degrees needs no turn; pointing
    # right, a quarter turn.
    assert rotation_between(np.array([0.0, 0.0]), np.array([0.0, -5.0]), np.pi / 2) == pytest.approx(0.0)
    assert rotation_between(np.array([0.0, 0.0]), np.array([5.0, 0.0]), np.pi / 2) == pytest.approx(np.pi / 2)
    region = Region((0.0, 0.0), 100.0, 0.3)
    assert inside_region(np.array([[0.0, 0.0], [30.0, -30.0]]), region)
    assert not inside_region(np.array([[0.0, 0.0], [45.0, 0.0]]), region, margin=-0.2)  # 45 > 40
    assert not inside_region(np.array([[80.0, 0.0]]), region)


def test_face_detector_anchors_and_six_keypoint_decoding():
    anchors = detection.ssd_anchors(face.DETECTOR_INPUT, face.DETECTOR_STRIDES)
    assert anchors.shape == (16 * 16 * 2 + 8 * 8 * 6, 2) == (896, 2)
    raw = np.zeros((len(anchors), 16), dtype=np.float32)
    scores = np.full(len(anchors), -10.0, dtype=np.float32)
    keypoints = np.array([[0.4, 0.4], [0.6, 0.4], [0.5, 0.5], [0.5, 0.6], [0.3, 0.45], [0.7, 0.45]])
    raw[10, 0:2] = (np.array([0.5, 0.5]) - anchors[10]) * face.DETECTOR_INPUT
    raw[10, 2:4] = 0.4 * face.DETECTOR_INPUT
    raw[10, 4:] = ((keypoints - anchors[10]) * face.DETECTOR_INPUT).reshape(-1)
    scores[10] = 2.0
    found = detection.decode(raw, scores, anchors, face.MIN_FACE_SCORE, face.DETECTOR_INPUT)
    assert len(found) == 1 and found.keypoints.shape == (1, 6, 2)
    np.testing.assert_allclose(found.keypoints[0], keypoints, atol=1e-6)
    np.testing.assert_allclose(found.boxes[0], [0.3, 0.3, 0.7, 0.7], atol=1e-6)
    nobody = detection.decode(raw, np.full(len(anchors), -10.0), anchors, face.MIN_FACE_SCORE, face.DETECTOR_INPUT)
    assert len(nobody) == 0 and nobody.keypoints.shape == (0, 6, 2)


def test_face_regions_from_pose_detection_and_mesh():
    # The pose's 11 face points of a level face: eyes at y 100, the box 60 x 40 around (200, 110).
    points = np.array([[200, 115], [190, 100], [185, 100], [180, 100], [210, 100], [215, 100],
                       [220, 100], [170, 105], [230, 105], [190, 130], [210, 130]], dtype=np.float64)
    search = face.search_region(points)
    assert search.centre == pytest.approx((200.0, 115.0)) and search.size == pytest.approx(3 * 60)
    assert abs(search.rotation) == pytest.approx(np.pi)  # the right eye (index 5) on the image right: upside down
    points[:, 0] = 400 - points[:, 0]  # mirror: the person faces the camera, their right eye on the image left
    assert face.search_region(points).rotation == pytest.approx(0.0)
    # The detector's keypoints (right eye, left eye, nose, mouth, ears): box 60 x 40.
    kps = np.array([[185, 100], [215, 100], [200, 115], [200, 130], [170, 105], [230, 105]], dtype=np.float64)
    region = face.detection_region(kps)
    assert region.size == pytest.approx(2 * 60) and region.centre == pytest.approx((200.0, 115.0 - 0.1 * 30))
    mesh = np.zeros((face.MESH_POINTS, 2))
    mesh[:, 0], mesh[:, 1] = np.linspace(150, 250, face.MESH_POINTS), 120.0
    mesh[face.MESH_RIGHT_EYE_OUTER] = [170, 100]
    mesh[face.MESH_LEFT_EYE_OUTER] = [230, 110]  # the head tilted
    tracked = face.mesh_region(mesh)
    assert tracked.rotation == pytest.approx(np.arctan2(10, 60))  # clockwise on screen, as the eyes
    assert tracked.size == pytest.approx(1.5 * 100)


def test_mesh_gives_blazepose_face_points_by_meaning():
    mesh = np.zeros((face.MESH_POINTS, 2))
    for index in (1, 362, 263, 133, 33, 454, 234, 291, 61):
        mesh[index] = [index, -index]
    points = face.face_points_from_mesh(mesh)
    assert points.shape == (11, 2)
    names = dict(zip(BLAZEPOSE[:11], points[:, 0]))
    assert names["nose"] == 1 and names["left_eye_outer"] == 263 and names["right_eye_outer"] == 33
    assert names["left_eye"] == (362 + 263) / 2 and names["right_eye"] == (133 + 33) / 2
    assert names["left_ear"] == 454 and names["right_ear"] == 234
    assert names["mouth_left"] == 291 and names["mouth_right"] == 61


def test_hand_regions_from_pose_recrop_and_landmarks():
    # An upright hand: wrist below, the index knuckle right of the pinky's, 100 px above.
    wrist, pinky, index = np.array([100.0, 200.0]), np.array([70.0, 100.0]), np.array([115.0, 100.0])
    search = hands.search_region(wrist, pinky, index)  # middle finger at (100, 100)
    assert search.rotation == pytest.approx(0.0) and search.size == pytest.approx(2.7 * 200)
    assert search.centre == pytest.approx((100.0, 100.0 - 0.1 * 200))
    recrop = hands.recrop_region(np.array([100.0, 100.0]), np.array([100.0, 150.0]))  # second below the first
    assert recrop.rotation == pytest.approx(0.0) and recrop.size == pytest.approx(100.0)
    assert recrop.centre == pytest.approx((100.0, 90.0))
    # 21 hand points of an upright hand; turned by 90 degrees the region turns with it, same size.
    hand = np.zeros((hands.HAND_POINTS, 2))
    hand[:, 0] = np.linspace(60, 140, hands.HAND_POINTS)
    hand[:, 1] = 120.0
    hand[hands.WRIST] = [100, 200]
    hand[[hands.INDEX_KNUCKLE, hands.MIDDLE_KNUCKLE, hands.RING_KNUCKLE]] = [[90, 120], [100, 120], [110, 120]]
    upright = hands.tracking_region(hand)
    assert upright.rotation == pytest.approx(0.0)
    quarter = np.array([[0.0, -1.0], [1.0, 0.0]])  # turns image points by 90 degrees about (0, 0)
    turned = hands.tracking_region(hand @ quarter.T)
    assert abs(turned.rotation) == pytest.approx(np.pi / 2)
    assert turned.size == pytest.approx(upright.size)
    np.testing.assert_allclose(turned.centre, quarter @ np.array(upright.centre), atol=1e-9)
    assert set(hands.HAND_FROM_MESH) <= set(hands.PALM) | {3}
    assert [BLAZEPOSE[i] for i in hands.POSE_HANDS[0]] == ["left_wrist", "left_pinky", "left_index", "left_thumb"]


class CountingHandModels:
    """Stands in for the hand models: a hand at the search region's centre, counted per run."""

    def __init__(self):
        self.runs = 0

    def hand_region(self, frame, bgr, search: Region) -> Region:
        return Region(search.centre, search.size / 2.7, search.rotation)

    def landmarks(self, frame, bgr, region: Region):
        self.runs += 1
        points = np.array(region.centre) + np.random.default_rng(self.runs).normal(0, 5, (hands.HAND_POINTS, 2))
        return points, 1.0, 0.5  # unsure which hand it is


def test_a_hand_both_wrists_sit_on_is_looked_at_once():
    models = CountingHandModels()
    tracks = hands.HandTracks(models)
    pixels = np.zeros((33, 2))
    visibility = np.ones(33)
    for side in hands.POSE_HANDS:  # both wrists and knuckles of the pose on one hand
        pixels[list(side[:3])] = [[100.0, 200.0], [70.0, 100.0], [115.0, 100.0]]
    assert tracks.refine(None, True, 0, pixels, visibility) == [0, 1] and models.runs == 1
    left, right = (pixels[list(side)] for side in hands.POSE_HANDS)
    np.testing.assert_array_equal(left, right)  # both sides take that hand's points
    # Two hands apart are two model runs.
    pixels[list(hands.POSE_HANDS[1][:3])] += [300.0, 0.0]
    tracks.refine(None, True, 0, pixels, visibility)
    assert models.runs == 3


def test_a_hand_goes_to_the_side_the_hand_model_is_sure_of():
    hand = {"a": np.zeros((hands.HAND_POINTS, 2)), "b": np.ones((hands.HAND_POINTS, 2))}
    left, right = hands.LEFT, hands.RIGHT
    sure_left, sure_right, unsure = 0.02, 0.98, 0.7

    def owners(found: dict) -> dict:
        """hand_owners with the hands named: side -> (name, handedness) -> side -> name."""
        taken = hands.hand_owners({side: (hand[name], handedness) for side, (name, handedness) in found.items()})
        return {side: next(name for name in hand if hand[name] is points) for side, points in taken.items()}

    # Each side found its own hand, or the model is unsure: nothing moves.
    assert owners({left: ("a", sure_left), right: ("b", sure_right)}) == {left: "a", right: "b"}
    assert owners({left: ("a", unsure)}) == {left: "a"}
    # The left side's search found the right hand, and the right side found nothing: it moves,
    # and the left side keeps the pose's points.
    assert owners({left: ("a", sure_right)}) == {right: "a"}
    # Each found the other's hand: they swap.
    assert owners({left: ("a", sure_right), right: ("b", sure_left)}) == {left: "b", right: "a"}
    # The right side found its own hand too: the left side keeps what its search found (both
    # searches on the one hand in view take its points, step 4).
    assert owners({left: ("a", sure_right), right: ("a", sure_right)}) == {left: "a", right: "a"}
