"""Crop box maths (docs/method.md, section 1), keypoint mapping, rendering and skeleton normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from mmfc.crops.box import (
    BoxParams,
    clip_box,
    crop_keypoints,
    crop_resize,
    frame_boxes,
    kept_joints,
    plan_crop,
    render,
)
from mmfc.crops.skeleton import normalize_skeleton, uniform_indices
from mmfc.data.layouts import NTU25
from mmfc.data.sample import Skeleton

FRAME = (640, 480)


def person(points: list[tuple[float, float]], frames: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One person whose joints sit at `points` in every frame. -> pixels [1,T,V,2], score [1,T,V]"""
    pix = np.tile(np.array(points, dtype=np.float32), (1, frames, 1, 1))
    return pix, np.ones(pix.shape[:3], dtype=np.float32)


def test_padding_square_and_centre():
    pix, score = person([(100, 100), (140, 200)])  # 40 wide, 100 tall, centre (120, 150)
    box = clip_box(pix, score, FRAME, BoxParams(padding=0.25, hw_ratio=1.0))
    # Half-sides 20 and 50 grow by 1.25 to 25 and 62.5; square takes the larger.
    np.testing.assert_allclose(box, [120 - 62.5, 150 - 62.5, 120 + 62.5, 150 + 62.5])


def test_hw_ratio_zero_keeps_the_box_shape():
    pix, score = person([(100, 100), (140, 200)])
    box = clip_box(pix, score, FRAME, BoxParams(padding=0.0, hw_ratio=0.0))
    np.testing.assert_allclose(box, [100, 100, 140, 200])


def test_other_hw_ratio_grows_the_short_side_only():
    pix, score = person([(100, 100), (300, 150)])  # 200 wide, 50 tall
    box = clip_box(pix, score, FRAME, BoxParams(padding=0.0, hw_ratio=0.5))
    np.testing.assert_allclose(box, [100, 75, 300, 175])  # height becomes half the width


def test_edge_is_padded_or_clipped():
    pix, score = person([(10, 380), (90, 470)])
    padded = clip_box(pix, score, FRAME, BoxParams(padding=0.25, allow_pad=True))
    assert padded[0] < 0 and padded[3] > FRAME[1]
    clipped = clip_box(pix, score, FRAME, BoxParams(padding=0.25, allow_pad=False))
    assert clipped[0] == 0 and clipped[3] == FRAME[1]
    np.testing.assert_allclose(clipped[[1, 2]], padded[[1, 2]])


def test_padded_region_outside_the_image_is_black():
    frame = np.full((480, 640, 3), 200, dtype=np.uint8)
    out = crop_resize(frame, np.array([-100.0, 0, 100, 200]), 100, 100)
    assert (out[:, :45] == 0).all() and (out[:, 55:] == 200).all()


@pytest.mark.parametrize("missing", ["zero", "nan", "score"])
def test_missing_joints_are_ignored(missing):
    pix, score = person([(100, 100), (140, 200), (600, 20)])
    if missing == "zero":
        pix[0, 0, 2] = 0
    elif missing == "nan":
        pix[0, 0, 2] = np.nan
    else:
        score[0, 0, 2] = 0
    assert kept_joints(pix, score).sum() == 2
    box = clip_box(pix, score, FRAME, BoxParams(padding=0.0, hw_ratio=0.0))
    np.testing.assert_allclose(box, [100, 100, 140, 200])


def test_one_box_over_two_persons_and_all_frames():
    a, sa = person([(100, 100), (120, 150)], frames=3)
    b, sb = person([(300, 120), (330, 260)], frames=3)
    a[0, 2] += 10  # the first person moves in the last frame
    pix, score = np.concatenate([a, b]), np.concatenate([sa, sb])
    box = clip_box(pix, score, FRAME, BoxParams(padding=0.0, hw_ratio=0.0))
    np.testing.assert_allclose(box, [100, 100, 330, 260])


def test_nothing_tracked_or_too_small_gives_the_whole_frame():
    pix, score = person([(100, 100), (140, 200)])
    none = clip_box(pix, np.zeros_like(score), FRAME, BoxParams())
    np.testing.assert_allclose(none, [0, 0, 640, 480])
    tiny, tiny_score = person([(100, 100), (105, 200)])  # 5 px wide < min_box 10
    np.testing.assert_allclose(clip_box(tiny, tiny_score, FRAME, BoxParams(min_box=10)), [0, 0, 640, 480])
    np.testing.assert_allclose(
        clip_box(tiny, tiny_score, FRAME, BoxParams(padding=0, hw_ratio=0, min_box=4)), [100, 100, 105, 200]
    )


def test_keypoints_land_on_the_pixels_they_mark():
    frame = np.zeros((480, 640, 3), dtype=np.uint8)
    pix, score = person([(200, 150), (260, 300), (230, 220)])
    for x, y in pix[0, 0].astype(int):
        frame[y - 2 : y + 3, x - 2 : x + 3] = 255
    plan = plan_crop(pix, score, np.array([0]), FRAME, 128, "clip", BoxParams())
    crop = render(frame[None], plan)[0]
    kp = crop_keypoints(pix, score, np.array([0]), np.array([True]), plan)[0, 0]  # [V, 2]
    for x, y in kp * 128:
        assert crop[int(y), int(x)].max() > 100  # a marked dot, not background
    assert ((kp > 0) & (kp < 1)).all()


def test_keypoints_of_missing_joints_and_frames_are_zero():
    pix, score = person([(200, 150), (260, 300)], frames=2)
    score[0, 0, 1] = 0
    plan = plan_crop(pix, score, np.array([0, 1]), FRAME, 64, "clip", BoxParams())
    kp = crop_keypoints(pix, score, np.array([0, 1]), np.array([True, False]), plan)
    assert (kp[0, 0, 1] == 0).all() and (kp[0, 1] == 0).all() and (kp[0, 0, 0] > 0).all()


def test_mode_none_is_the_whole_frame_and_frame_mode_follows_the_person():
    pix, score = person([(100, 100), (140, 200)], frames=20)
    pix[0, 10:] += [300, 0]  # jumps right half way through
    none = plan_crop(pix, score, np.arange(20), FRAME, 64, "none", BoxParams())
    np.testing.assert_allclose(none.boxes[:, 0], np.tile([0, 0, 640, 480], (20, 1)))
    boxes = frame_boxes(pix, score, FRAME, BoxParams(), smooth=0.5)
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    assert centre_x[0] == pytest.approx(120) and centre_x[-1] == pytest.approx(420, abs=1)
    assert (np.diff(centre_x) >= 0).all() and 120 < centre_x[10] < 420  # smoothed, not a jump


def test_person_mode_puts_each_person_in_its_own_panel():
    a, sa = person([(100, 100), (120, 200)])
    b, sb = person([(400, 100), (420, 200)])
    pix, score = np.concatenate([a, b]), np.concatenate([sa, sb])
    plan = plan_crop(pix, score, np.array([0]), FRAME, 100, "person", BoxParams())
    assert plan.num_panels == 2
    kp = crop_keypoints(pix, score, np.array([0]), np.array([True]), plan)
    assert (kp[0, ..., 0] < 0.5).all() and (kp[1, ..., 0] > 0.5).all()
    # Panel boxes are twice as tall as wide, so the half-width panels are not distorted.
    w, h = plan.boxes[0, 0, 2] - plan.boxes[0, 0, 0], plan.boxes[0, 0, 3] - plan.boxes[0, 0, 1]
    assert h == pytest.approx(2 * w)


def make_skeleton(points: np.ndarray, score: np.ndarray | None = None) -> Skeleton:
    m, t, v, _ = points.shape
    return Skeleton(
        points=points.astype(np.float32),
        pixels=np.zeros((m, t, v, 2), np.float32),
        score=np.ones((m, t, v), np.float32) if score is None else score,
        frame_indices=np.arange(t),
        frame_size=(1920, 1080),
        layout="ntu25",
        total_frames=t,
    )


def test_skeleton_is_centred_resampled_and_padded():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(1, 30, 25, 3)) + 5
    score = np.ones((1, 30, 25), np.float32)
    score[0, 3, 4] = 0  # a missing joint stays zero after centring
    out = normalize_skeleton(make_skeleton(points, score), num_frames=16, max_bodies=2, center=NTU25.center)
    assert out.shape == (3, 16, 25, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 20, 0], 0, atol=1e-6)  # centre joint 21 of frame 0
    np.testing.assert_allclose(out[:, -1, :, 0], points[0, -1].T - points[0, 0, 20][:, None], rtol=1e-5)
    assert (out[..., 1] == 0).all()
    assert (uniform_indices(30, 16)[[0, -1]] == [0, 29]).all()
    short = normalize_skeleton(make_skeleton(points[:, :5], score[:, :5]), num_frames=8, max_bodies=2, center=NTU25.center)
    assert short[0, :, 4, 0].tolist().count(0.0) == 2  # frame 3's missing joint, repeated


def test_padded_skeleton_keeps_its_frames_and_centres_on_the_joint_asked_for():
    points = np.random.default_rng(2).normal(size=(1, 5, 25, 3)) + 5
    spine_mid = NTU25.joints.index("spine_mid")
    out = normalize_skeleton(make_skeleton(points), num_frames=8, max_bodies=1, center=spine_mid, pad=True)
    np.testing.assert_allclose(out[:, :5, :, 0], (points[0] - points[0, 0, spine_mid]).transpose(2, 0, 1), atol=1e-5)
    assert (out[:, 5:] == 0).all()
    # Longer than the stored length: resampled down as without padding.
    long = normalize_skeleton(make_skeleton(points), num_frames=3, max_bodies=1, center=spine_mid, pad=True)
    np.testing.assert_array_equal(long, normalize_skeleton(make_skeleton(points), num_frames=3, max_bodies=1, center=spine_mid))


def test_align_puts_spine_on_z_and_shoulders_on_x():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(1, 4, 25, 3))
    out = normalize_skeleton(make_skeleton(points), num_frames=4, max_bodies=1, center=NTU25.center,
                             align_axes=NTU25.align_axes)
    first = out[:, 0, :, 0].T  # [V, 3]
    spine = first[1] - first[0]
    shoulders = first[8] - first[4]
    np.testing.assert_allclose(spine[:2], 0, atol=1e-5)
    assert spine[2] > 0 and shoulders[0] > 0
    assert abs(shoulders[1]) < 1e-5  # shoulders lie in the x-z plane
