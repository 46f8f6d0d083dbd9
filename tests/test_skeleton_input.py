"""Skeleton preprocessing that holds across views: rotation about x and y, uniform scale, per-clip
min-max normalisation, random-choice and evenly spaced frame sampling, on constructed inputs;
and CTR-GCN's NW-UCLA recipe reached by settings alone."""

from __future__ import annotations

import math
from dataclasses import asdict
from operator import attrgetter
from pathlib import Path

import numpy as np
import pytest

from mmfc.branches import get_branch
from mmfc.config import ConfigError, load_pipeline
from mmfc.crops.crop import CropJob
from mmfc.crops.skeleton import normalize_skeleton
from mmfc.crops.store import MemoryCrops, StoredSample
from mmfc.data.layouts import KINECT20, NTU25, Layout
from mmfc.data.sample import Skeleton
from mmfc.train.datasets import (
    SkeletonDataset,
    evenly_spaced,
    frames_with_body,
    minmax_normalize,
    random_choice_indices,
    rotate_xy,
)

# CTR-GCN's NW-UCLA recipe (its feeders/feeder_ucla.py, config nw-ucla/default.yaml), in settings.
UCLA_RECIPE = [
    "data.layout=kinect20", "crops.skeleton_frames=201", "crops.pad_skeleton=true", 'crops.center_joint="spine"',
    "skel.model.num_frames=52", "skel.model.num_persons=1", 'skel.input.normalize="minmax"',
    'skel.input.sampling="random_choice"', "skel.train.flip=false", 'skel.train.rotate_axes="xy"',
    "skel.train.rotate_degrees=60", "skel.train.skel_scale=0", "skel.train.uniform_scale=[0.5, 1.5]",
]


def store_of(skeletons: list[np.ndarray], layout: Layout, **crops) -> MemoryCrops:
    """Stored sequences [C, T, V, M] in memory, read as the crop store is read."""
    store = MemoryCrops({"align": False, **crops}, layout, jpeg_quality=90)
    for k, skeleton in enumerate(skeletons):
        store.add(f"s{k}", StoredSample(np.zeros((1, 8, 8, 3), np.uint8), np.zeros(1, np.int64),
                                        skeleton.astype(np.float32), np.zeros((1, 1, layout.num_joints, 2), np.float32)))
    return store


def body(frames: int, layout: Layout = KINECT20, seed: int = 0) -> np.ndarray:
    """A random 3D body [C, T, V, 1], no coordinate zero."""
    return np.random.default_rng(seed).uniform(0.5, 2.0, size=(3, frames, layout.num_joints, 1))


def bone_lengths(x: np.ndarray, layout: Layout) -> np.ndarray:
    child, parent = np.array(layout.bones).T
    return np.linalg.norm(x[:, :, child] - x[:, :, parent], axis=0)


def turn_of(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The 3x3 matrix M with after = before @ M, over all points (rows)."""
    rows = lambda x: x.reshape(x.shape[0], -1).T  # noqa: E731
    return np.linalg.lstsq(rows(before), rows(after), rcond=None)[0]


def test_xy_rotation_keeps_bone_lengths_and_stays_within_its_angles():
    x = body(20)
    dataset = SkeletonDataset(store_of([x], KINECT20), [0], num_frames=20, num_persons=1, train=True, flip=False,
                              rotate_axes="xy", rotate_degrees=60, scale=0.0)
    angles = []
    for epoch in range(60):
        dataset.set_epoch(epoch)
        turned = dataset[0][0].numpy().astype(np.float64)
        np.testing.assert_allclose(bone_lengths(turned, KINECT20), bone_lengths(x, KINECT20), rtol=1e-5)
        m = turn_of(x, turned)
        np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-5)  # a rotation ...
        assert np.linalg.det(m) == pytest.approx(1, abs=1e-5)  # ... not a mirror
        # rows @ Ry Rx: M[1] = (0, cos x, sin x), M[:, 0] = (cos y, 0, sin y)
        angles.append((math.degrees(math.atan2(m[1, 2], m[1, 1])), math.degrees(math.atan2(m[2, 0], m[0, 0]))))
        assert abs(m[1, 0]) < 1e-5
    angles = np.array(angles)
    assert (np.abs(angles) <= 60 + 1e-6).all()
    assert (angles.max(axis=0) > 40).all() and (angles.min(axis=0) < -40).all()  # both axes, both ways


def test_rotate_xy_is_about_y_then_x_and_turns_2d_points_at_depth_0():
    point = np.array([1.0, 0.0, 0.0]).reshape(3, 1, 1, 1)
    np.testing.assert_allclose(rotate_xy(point, 0.0, math.pi / 2)[:, 0, 0, 0], [0, 0, -1], atol=1e-6)
    # +y: about y first leaves it, then about x takes it to +z; about x first would end on +x.
    up = np.array([0.0, 1.0, 0.0]).reshape(3, 1, 1, 1)
    np.testing.assert_allclose(rotate_xy(up, math.pi / 2, math.pi / 2)[:, 0, 0, 0], [0, 0, 1], atol=1e-6)
    flat = np.random.default_rng(0).normal(size=(2, 4, 5, 1))
    deep = np.concatenate([flat, np.zeros((1, 4, 5, 1))])
    np.testing.assert_allclose(rotate_xy(flat, 0.3, -0.5), rotate_xy(deep, 0.3, -0.5)[:2], atol=1e-6)


def test_uniform_scale_scales_every_bone_alike_within_its_range():
    x = body(10)
    dataset = SkeletonDataset(store_of([x], KINECT20), [0], num_frames=10, num_persons=1, train=True, flip=False,
                              rotate_degrees=0, scale=0.0, uniform_scale=(0.5, 1.5))
    factors = []
    for epoch in range(40):
        dataset.set_epoch(epoch)
        ratio = bone_lengths(dataset[0][0].numpy().astype(np.float64), KINECT20) / bone_lengths(x, KINECT20)
        np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)
        factors.append(ratio.flat[0])
    assert 0.5 <= min(factors) < 0.7 and 1.3 < max(factors) <= 1.5


def test_minmax_maps_each_coordinate_onto_minus_one_one_over_the_bodies_present():
    x = np.zeros((3, 6, 4, 2))
    x[:, :5, :, 0] = np.random.default_rng(0).normal(size=(3, 5, 4)) * [[[2.0]], [[0.1]], [[30.0]]]
    x[:, 2:4, :, 1] = np.random.default_rng(1).normal(size=(3, 2, 4))
    x[:, 0, 1, 0] = 0  # a joint at the origin is a point of the body, not a missing body
    out = minmax_normalize(x)
    present = out[:, :5, :, 0], out[:, 2:4, :, 1]
    values = np.concatenate([p.reshape(3, -1) for p in present], axis=1)
    np.testing.assert_allclose(values.min(axis=1), -1, atol=1e-6)
    np.testing.assert_allclose(values.max(axis=1), 1, atol=1e-6)
    assert (out[:, 5] == 0).all() and (out[:, :2, :, 1] == 0).all()  # frames without a body stay 0
    # Per clip and per coordinate: any scale and shift of a coordinate gives the same output, so
    # a uniform scale before it (CTR-GCN's 0.5-1.5) changes nothing.
    moved = np.where((x != 0).any(axis=(0, 2), keepdims=True), x * [[[[3.0]]], [[[0.5]]], [[[7.0]]]] + 2.0, 0)
    np.testing.assert_allclose(minmax_normalize(moved), out, atol=1e-5)
    flat = x.copy()
    flat[2] = np.where((x != 0).any(axis=(0, 2))[:, None, :], 4.0, 0.0)
    assert (minmax_normalize(flat)[2] == 0).all()  # a coordinate that never varies: 0, not NaN


def test_random_choice_keeps_order_and_covers_the_clip():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        picked = random_choice_indices(30, 52, rng)
        assert len(picked) == 52 and (np.diff(picked) >= 0).all() and picked.min() >= 0 and picked.max() < 30
        seen |= set(picked.tolist())
    assert seen == set(range(30))
    # Counts are near uniform over many draws (52 draws of 30 frames, 2000 times).
    counts = np.bincount(np.concatenate([random_choice_indices(30, 52, rng) for _ in range(2000)]), minlength=30)
    assert counts.min() > 0.9 * counts.mean() and counts.max() < 1.1 * counts.mean()
    # A clip of one frame, and more frames asked for than 100 copies hold.
    assert random_choice_indices(1, 52, rng).tolist() == [0] * 52
    assert sorted(set(random_choice_indices(2, 500, rng).tolist())) == [0, 1]


def test_evenly_spaced_runs_from_the_first_frame_to_the_last():
    np.testing.assert_array_equal(evenly_spaced(201, 52), np.linspace(0, 200, 52).astype(np.int64))
    assert evenly_spaced(21, 52)[[0, -1]].tolist() == [0, 20] and evenly_spaced(52, 52).tolist() == list(range(52))
    later = evenly_spaced(100, 10, clip=1, num_clips=2)
    assert (later >= evenly_spaced(100, 10)).all() and later.max() <= 99


def test_padded_store_samples_only_the_frames_with_a_body():
    real = body(12)
    padded = np.concatenate([real, np.zeros((3, 40, 20, 1))], axis=1)
    assert frames_with_body(padded) == 12 and frames_with_body(np.zeros((3, 5, 20, 1))) == 5
    for sampling in ("segments", "random_choice"):
        for train in (True, False):
            dataset = SkeletonDataset(store_of([padded], KINECT20, pad_skeleton=True), [0], num_frames=30,
                                      num_persons=1, train=train, flip=False, rotate_degrees=0, scale=0.0,
                                      sampling=sampling)
            x = dataset[0][0].numpy()
            assert (x != 0).any(axis=(0, 2, 3)).all(), (sampling, train)  # no zero frame was picked


def kinect_skeleton(points: np.ndarray) -> Skeleton:
    """[T, 20, 3] as NW-UCLA stores one person."""
    frames = len(points)
    return Skeleton(points=points[None].astype(np.float32), pixels=np.zeros((1, frames, 20, 2), np.float32),
                    score=np.ones((1, frames, 20), np.float32), frame_indices=np.arange(frames), frame_size=(640, 480),
                    layout="kinect20", total_frames=frames)


def ctrgcn_test_input(points: np.ndarray, frames: int) -> np.ndarray:
    """NW-UCLA's test transform as CTR-GCN's feeder defines it, from its maths: centre on joint 1
    of frame 0, min-max each coordinate to [-1, 1] over the clip, frames floor(linspace). -> [C, T, V, 1]"""
    x = points - points[0, 1]
    low, high = x.reshape(-1, 3).min(axis=0), x.reshape(-1, 3).max(axis=0)
    x = (x - low) / (high - low) * 2 - 1
    return x[np.linspace(0, len(points) - 1, frames).astype(int)].transpose(2, 0, 1)[..., None]


def test_ctrgcns_nw_ucla_recipe_is_reached_by_settings(tmp_path):
    cfg = load_pipeline(None, [f"workdir={tmp_path}", *UCLA_RECIPE])
    job = CropJob.of(cfg)
    assert job.layout == KINECT20 and KINECT20.joints[job.center] == "spine"
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=(length, 20, 3)) + [0, 0, 3] for length in (21, 1, 201, 60)]
    stored = [normalize_skeleton(kinect_skeleton(points), cfg.crops.skeleton_frames, 1, job.center, None, True)
              for points in clips]
    store = MemoryCrops(asdict(cfg.crops), KINECT20, cfg.crops.jpeg_quality)
    for k, skeleton in enumerate(stored):
        store.add(f"s{k}", StoredSample(np.zeros((1, 8, 8, 3), np.uint8), np.zeros(1, np.int64), skeleton,
                                        np.zeros((1, 1, 20, 2), np.float32)))
    test = get_branch("skel").build_dataset(cfg, store, [0, 2, 3], False, 0, 1)
    for item, points in zip(range(3), (clips[0], clips[2], clips[3])):
        np.testing.assert_allclose(test[item][0].numpy(), ctrgcn_test_input(points, 52), atol=1e-5)
    train = get_branch("skel").build_dataset(cfg, store, [0, 2, 3], True, 0, 1)
    x = train[1][0].numpy()
    # The 52 frames drawn hold the clip's extremes or lie inside them.
    assert x.shape == (3, 52, 20, 1) and -1 - 1e-6 <= x.min() < x.max() <= 1 + 1e-6
    # A clip of one frame: its one frame, 52 times, min-max over its joints.
    np.testing.assert_allclose(get_branch("skel").build_dataset(cfg, store, [1], False, 0, 1)[0][0].numpy(),
                               ctrgcn_test_input(clips[1], 52), atol=1e-5)


def test_the_nw_ucla_pipeline_states_ctrgcns_recipe():
    """pipelines/nw-ucla.toml holds every setting of UCLA_RECIPE, and CTR-GCN's optimiser: batch 16,
    SGD with Nesterov momentum 0.9, lr 0.1, weight decay 1e-4, warm-up and a tenfold step at 5/65
    and 50/65 of its schedule (shortened for CPUs: docs/benchmarks.md, "16. Real recordings")."""
    shipped = load_pipeline(Path(__file__).resolve().parents[1] / "pipelines" / "nw-ucla.toml")
    recipe = load_pipeline(None, UCLA_RECIPE)
    for key in (item.split("=", 1)[0] for item in UCLA_RECIPE):
        section, name = key.rsplit(".", 1)
        value = lambda cfg: getattr(attrgetter(section)(cfg), name)  # noqa: E731
        assert value(shipped) == value(recipe), key
    train = shipped.skel.train
    assert (train.batch_size, train.lr, train.momentum, train.weight_decay, train.nesterov) == (16, 0.1, 0.9, 1e-4, True)
    assert train.schedule == "step" and train.epochs % 5 == 0
    assert train.warmup_epochs == round(train.epochs * 5 / 65) and train.milestones == [round(train.epochs * 50 / 65)]


def test_the_defaults_are_ntus():
    cfg = load_pipeline(None)
    assert (cfg.skel.input.normalize, cfg.skel.input.sampling, cfg.skel.train.rotate_axes) == ("none", "segments", "vertical")
    assert cfg.skel.train.uniform_scale == [1.0, 1.0] and not cfg.crops.pad_skeleton and cfg.crops.center_joint == ""
    assert CropJob.of(cfg).center == NTU25.center


@pytest.mark.parametrize("override, message", [
    ("skel.train.uniform_scale=[1.5, 0.5]", "skel.train.uniform_scale = [1.5, 0.5]: give [low, high] with 0 < low <= high"),
    ("skel.train.uniform_scale=[0.0, 1.0]", "give [low, high] with 0 < low <= high"),
    ("skel.train.uniform_scale=[1.0]", "give [low, high]"),
    ('skel.train.rotate_axes="z"', "skel.train.rotate_axes must be one of 'vertical', 'xy'"),
    ('skel.input.normalize="zscore"', "skel.input.normalize must be one of 'none', 'minmax'"),
    ('skel.input.sampling="random"', "skel.input.sampling must be one of 'segments', 'random_choice'"),
])
def test_preprocessing_settings_are_checked_when_loaded(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_pipeline(None, [override])


def test_an_unknown_centre_joint_is_one_clear_message():
    with pytest.raises(ConfigError, match="crops.center_joint = 'pelvis' is not a joint of layout 'ntu25'; its joints: spine_base"):
        CropJob.of(load_pipeline(None, ['crops.center_joint="pelvis"']))
