"""BlazePose's 33 landmarks -> COCO-17 and NTU-25."""

from __future__ import annotations

import numpy as np
import pytest

from mmfc.data.layouts import COCO17, NTU25
from mmfc.poses.joints import BLAZEPOSE, NUM_BLAZEPOSE, map_points, map_scores, mapping


def landmark(name: str) -> int:
    return BLAZEPOSE.index(name)


@pytest.fixture
def body() -> np.ndarray:
    """A made-up 33-landmark body in pixels: every landmark at its own spot. [33, 2]"""
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1000, size=(NUM_BLAZEPOSE, 2)).astype(np.float32)


@pytest.mark.parametrize("layout", [COCO17, NTU25])
def test_every_joint_is_an_affine_combination(layout):
    matrix = mapping(layout.name)
    assert matrix.shape == (layout.num_joints, 33)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)  # weights sum to 1: works for points
    shifted = map_points(np.ones((33, 3)) * 7.0, layout.name)
    np.testing.assert_allclose(shifted, 7.0)


def test_coco17_is_the_named_subset(body):
    coco = map_points(body, "coco17")
    names = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
             "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
             "left_knee", "right_knee", "left_ankle", "right_ankle"]
    np.testing.assert_array_equal(coco, body[[landmark(n) for n in names]])
    # COCO's odd joints are the left ones: BlazePose's left, unchanged.
    for left, right in COCO17.flip_pairs:
        assert names[left].startswith("left_") and names[right].startswith("right_")


def test_ntu25_takes_kinect_left_from_blazepose_right_and_derives_the_rest(body):
    ntu = map_points(body, "ntu25")
    at = {name: body[landmark(name)] for name in BLAZEPOSE}
    mid = lambda a, b: (at[a] + at[b]) / 2  # noqa: E731
    # 1-based NTU numbers, Kinect's sides.
    np.testing.assert_allclose(ntu[5 - 1], at["right_shoulder"])
    np.testing.assert_allclose(ntu[9 - 1], at["left_shoulder"])
    np.testing.assert_allclose(ntu[7 - 1], at["right_wrist"])
    np.testing.assert_allclose(ntu[15 - 1], at["right_ankle"])
    np.testing.assert_allclose(ntu[19 - 1], at["left_ankle"])
    np.testing.assert_allclose(ntu[23 - 1], at["right_thumb"])
    spine_base, spine_shoulder = mid("left_hip", "right_hip"), mid("left_shoulder", "right_shoulder")
    np.testing.assert_allclose(ntu[1 - 1], spine_base, rtol=1e-5)
    np.testing.assert_allclose(ntu[21 - 1], spine_shoulder, rtol=1e-5)
    np.testing.assert_allclose(ntu[2 - 1], spine_base + 0.57 * (spine_shoulder - spine_base), rtol=1e-5)
    np.testing.assert_allclose(ntu[3 - 1], (spine_shoulder + mid("mouth_left", "mouth_right")) / 2, rtol=1e-5)
    np.testing.assert_allclose(ntu[4 - 1], mid("left_ear", "right_ear"), rtol=1e-5)
    hand_left = mid("right_pinky", "right_index")
    np.testing.assert_allclose(ntu[8 - 1], hand_left, rtol=1e-5)
    np.testing.assert_allclose(ntu[22 - 1], 2 * hand_left - at["right_wrist"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(ntu[16 - 1], mid("right_ankle", "right_foot_index"), rtol=1e-5)
    # Kinect's flip pairs pair up exactly the joints taken from opposite BlazePose sides.
    matrix = mapping("ntu25")
    mirror = [BLAZEPOSE.index(n.replace("left_", "@").replace("right_", "left_").replace("@", "right_")) for n in BLAZEPOSE]
    for left, right in NTU25.flip_pairs:
        np.testing.assert_allclose(matrix[left][mirror], matrix[right])


def test_a_derived_joint_scores_its_weakest_landmark():
    score = np.ones((2, 3, 33), dtype=np.float32)
    score[..., landmark("right_index")] = 0.2
    score[..., landmark("left_hip")] = 0.0
    ntu = map_scores(score, "ntu25")
    assert ntu.shape == (2, 3, 25)
    assert (ntu[..., 8 - 1] == 0.2).all() and (ntu[..., 22 - 1] == 0.2).all()  # hand, hand tip
    assert (ntu[..., 1 - 1] == 0).all() and (ntu[..., 17 - 1] == 0).all()  # spine base, hip
    assert (ntu[..., 5 - 1] == 1).all()
    coco = map_scores(score, "coco17")
    assert (coco[..., 11] == 0).all() and (coco[..., 0] == 1).all()
    with pytest.raises(ValueError, match="no BlazePose mapping"):
        mapping("openpose18")
