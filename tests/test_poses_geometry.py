"""The pose estimator's maths on constructed inputs: anchors, detection decoding and weighted
NMS, the letterbox, person regions and their crops, heatmap refinement, landmark projection."""

from __future__ import annotations

import numpy as np
import pytest

from mmfc.poses import detection
from mmfc.poses.landmarks import INPUT_SIZE, NUM_LANDMARKS, decode_pose, refine_with_heatmap
from mmfc.poses.region import Region, normalize_angle, region_box, region_from_points


def test_anchors_match_the_detector_output():
    anchors = detection.ssd_anchors()
    # 28x28 and 14x14 cells with 2 anchors each, then the three stride-32 layers merged on 7x7
    # cells with 6 anchors each: the 2254 rows the model outputs.
    assert anchors.shape == (28 * 28 * 2 + 14 * 14 * 2 + 7 * 7 * 6, 2) == (2254, 2)
    np.testing.assert_allclose(anchors[0], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(anchors[1], anchors[0])  # two anchors per cell share the centre
    np.testing.assert_allclose(anchors[2], [1.5 / 28, 0.5 / 28])  # then x advances
    np.testing.assert_allclose(anchors[28 * 2], [0.5 / 28, 1.5 / 28])  # a row later y does
    first_14 = 28 * 28 * 2
    np.testing.assert_allclose(anchors[first_14], [0.5 / 14, 0.5 / 14])
    last = anchors[-6:]
    np.testing.assert_allclose(last, np.tile([6.5 / 7, 6.5 / 7], (6, 1)))


def raw_detection(anchor: np.ndarray, centre, size, keypoints) -> np.ndarray:
    """The 12 raw numbers the detector would output for a detection, relative to its anchor."""
    raw = np.zeros(12, dtype=np.float32)
    raw[0:2] = (np.array(centre) - anchor) * detection.INPUT_SIZE
    raw[2:4] = np.array(size) * detection.INPUT_SIZE
    raw[4:12] = ((np.array(keypoints) - anchor) * detection.INPUT_SIZE).reshape(-1)
    return raw


def test_decode_keeps_confident_anchors_and_undoes_the_anchor_offsets():
    anchors = detection.ssd_anchors()
    raw_boxes = np.zeros((len(anchors), 12), dtype=np.float32)
    raw_scores = np.full(len(anchors), -10.0, dtype=np.float32)
    kps = [[0.4, 0.6], [0.4, 0.2], [0.41, 0.35], [0.4, 0.1]]
    raw_boxes[100] = raw_detection(anchors[100], (0.4, 0.3), (0.1, 0.12), kps)
    raw_scores[100] = 3.0
    raw_scores[200] = 1000.0  # clipped before the sigmoid, no overflow
    raw_boxes[200] = raw_detection(anchors[200], (0.7, 0.7), (0.05, 0.05), np.full((4, 2), 0.7))
    found = detection.decode(raw_boxes, raw_scores, anchors, min_score=0.5)
    assert len(found) == 2
    np.testing.assert_allclose(found.boxes[0], [0.35, 0.24, 0.45, 0.36], atol=1e-6)
    np.testing.assert_allclose(found.keypoints[0], kps, atol=1e-6)
    np.testing.assert_allclose(found.scores, [1 / (1 + np.exp(-3.0)), 1.0], atol=1e-6)


def test_weighted_nms_merges_overlapping_detections_by_score():
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0], [3.0, 3.0, 4.0, 4.0]], dtype=np.float32)
    keypoints = np.stack([np.full((4, 2), v, dtype=np.float32) for v in (0.0, 1.0, 5.0)])
    scores = np.array([0.9, 0.6, 0.7], dtype=np.float32)
    merged = detection.weighted_nms(detection.Detections(boxes, keypoints, scores))
    assert len(merged) == 2
    np.testing.assert_allclose(merged.scores, [0.9, 0.7])  # best first, its own score kept
    w = np.array([0.9, 0.6]) / 1.5
    np.testing.assert_allclose(merged.boxes[0], w @ boxes[:2], atol=1e-6)
    np.testing.assert_allclose(merged.keypoints[0], np.full((4, 2), w[1]), atol=1e-6)
    np.testing.assert_allclose(merged.boxes[1], boxes[2])
    empty = detection.Detections(np.zeros((0, 4)), np.zeros((0, 4, 2)), np.zeros(0))
    assert len(detection.weighted_nms(empty)) == 0


def test_letterbox_round_trip():
    size = (1920, 1080)
    scale, pad_x, pad_y = detection.letterbox(size)
    assert scale == pytest.approx(224 / 1920) and pad_x == 0 and pad_y == pytest.approx((224 - 1080 * scale) / 2)
    frame_point = np.array([[960.0, 540.0], [100.0, 1000.0]], dtype=np.float32)
    normalised = (frame_point * scale + [pad_x, pad_y]) / 224
    det = detection.Detections(
        np.concatenate([normalised[0], normalised[1]])[None], np.tile(normalised, (1, 2, 1)), np.ones(1)
    )
    back = detection.to_frame_pixels(det, size)
    np.testing.assert_allclose(back.boxes[0], frame_point.reshape(-1), atol=1e-3)
    np.testing.assert_allclose(back.keypoints[0, :2], frame_point, atol=1e-3)


def test_region_of_an_upright_and_a_tilted_person():
    upright = region_from_points(np.array([500.0, 600.0]), np.array([500.0, 400.0]))
    assert upright.centre == (500.0, 600.0)
    assert upright.size == pytest.approx(2 * 200 * 1.25)
    assert upright.rotation == pytest.approx(0.0)
    # The scale point to the upper right: the person leans right, the region turns clockwise
    # on screen (positive rotation), and the crop's up direction points at the scale point.
    tilted = region_from_points(np.array([0.0, 0.0]), np.array([100.0, -100.0]))
    assert tilted.rotation == pytest.approx(np.pi / 4)
    up_in_frame = tilted.frame_matrix(2)[:, :2] @ np.array([0.0, -1.0])
    np.testing.assert_allclose(up_in_frame / np.linalg.norm(up_in_frame), [np.sqrt(0.5), -np.sqrt(0.5)])
    upside_down = region_from_points(np.array([0.0, 0.0]), np.array([0.0, 100.0]))
    assert abs(upside_down.rotation) == pytest.approx(np.pi)
    assert normalize_angle(3 * np.pi / 2) == pytest.approx(-np.pi / 2)
    point = np.array([10.0, 10.0])
    degenerate = region_from_points(point, point)
    assert degenerate.size == 8.0 and np.isfinite(degenerate.crop_matrix(256)).all()


def test_crop_matrix_inverts_frame_matrix_and_corners():
    region = Region((320.0, 240.0), 200.0, 0.3)
    crop, frame = region.crop_matrix(256), region.frame_matrix(256)
    points = np.array([[0.0, 0.0], [128.0, 128.0], [256.0, 10.0]])
    in_frame = points @ frame[:, :2].T + frame[:, 2]
    np.testing.assert_allclose(in_frame @ crop[:, :2].T + crop[:, 2], points, atol=1e-9)
    np.testing.assert_allclose(in_frame[1], region.centre)  # the crop centre is the region centre
    corners = region.corners()
    sides = np.linalg.norm(np.roll(corners, -1, axis=0) - corners, axis=1)
    np.testing.assert_allclose(sides, 200.0)
    box = region_box(Region((0.0, 0.0), 2.0, np.pi / 4))
    np.testing.assert_allclose(box, [-np.sqrt(2), -np.sqrt(2), np.sqrt(2), np.sqrt(2)])


def test_heatmap_refinement_moves_confident_landmarks_only():
    heatmap = np.full((64, 64, 2), -20.0, dtype=np.float32)
    heatmap[10, 20, 0] = 5.0  # a sharp confident peak for landmark 0 at column 20, row 10
    heatmap[11, 21, 0] = 5.0
    heatmap[40, 40, 1] = -1.0  # landmark 1: the heatmap is not confident (sigmoid < 0.5)
    xy = np.array([[21.5 / 64, 10.5 / 64], [40 / 64, 40 / 64]])
    refined = refine_with_heatmap(xy, heatmap)
    np.testing.assert_allclose(refined[0], [20.5 / 64, 10.5 / 64], atol=1e-4)
    np.testing.assert_allclose(refined[1], xy[1])
    outside = refine_with_heatmap(np.array([[1.5, 0.5], [-0.1, 0.5]]), heatmap)
    np.testing.assert_allclose(outside, [[1.5, 0.5], [-0.1, 0.5]])


def test_heatmap_window_is_cut_at_the_edge():
    # Peaks at the corner cells (0, 0) and (1, 1): the 7x7 window around cell (0, 0) reaches 3
    # cells beyond the edge, which must count as nothing (not as copies of the edge cells).
    heatmap = np.full((64, 64, 1), -20.0, dtype=np.float32)
    heatmap[0, 0, 0] = heatmap[1, 1, 0] = 5.0
    refined = refine_with_heatmap(np.array([[0.2 / 64, 0.2 / 64]]), heatmap)
    np.testing.assert_allclose(refined[0], [0.5 / 64, 0.5 / 64], atol=1e-6)


def test_decode_pose_projects_crop_landmarks_into_the_frame():
    region = Region((1000.0, 500.0), 400.0, np.pi / 2)
    raw = np.zeros((NUM_LANDMARKS, 5), dtype=np.float32)
    raw[:, 0:2] = INPUT_SIZE / 2  # every landmark at the crop centre...
    raw[1, 0:2] = [INPUT_SIZE / 2, 0]  # ...but landmark 1 at the top edge's middle
    raw[:, 2] = INPUT_SIZE / 4
    raw[:, 3], raw[:, 4] = 0.0, 100.0
    world = np.zeros((NUM_LANDMARKS, 3), dtype=np.float32)
    world[0] = [1.0, 0.0, 0.5]
    heatmap = np.full((64, 64, NUM_LANDMARKS), -20.0, dtype=np.float32)  # nothing to refine
    pose = decode_pose(raw.reshape(-1), 0.9, heatmap, world.reshape(-1), region)
    np.testing.assert_allclose(pose.pixels[0], [1000.0, 500.0], atol=1e-4)
    # Turned a quarter: the crop's top is the frame's right, half the region size away.
    np.testing.assert_allclose(pose.pixels[1], [1200.0, 500.0], atol=1e-4)
    np.testing.assert_allclose(pose.depth[0], 100.0)
    np.testing.assert_allclose(pose.visibility[0], 0.5)
    np.testing.assert_allclose(pose.presence[0], 1.0)
    # World landmarks turn with the region about the view axis: crop x becomes frame y.
    np.testing.assert_allclose(pose.world[0], [0.0, 1.0, 0.5], atol=1e-6)
    assert pose.score == pytest.approx(0.9) and pose.world.shape == (33, 3)
