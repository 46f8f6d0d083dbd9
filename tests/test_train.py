"""Stage 2: sampling and augmentation, schedule, checkpoints, a tiny training run, exact resume."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mmfc.config import TrainConfig, load_pipeline
from mmfc.crops.store import open_crops
from mmfc.data.layouts import NTU25
from mmfc.errors import DataError
from mmfc.train import fit as train_fit
from mmfc.train import stage as train_stage
from mmfc import atomic
from mmfc.train.checkpoint import (
    UnverifiedCheckpoint,
    capture_rng,
    digest_path,
    file_digest,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from mmfc.train.datasets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RGBClipDataset,
    SkeletonDataset,
    eval_offsets,
    flip_skeleton,
    jitter_colors,
    rotate_skeleton,
    segment_indices,
)
from mmfc.train.distributed import DistEnv, ShardedSampler
from mmfc.train.schedule import lr_factor, make_scheduler

torch.set_num_threads(1)

CPU1 = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))

# ---------------------------------------------------------------------------------------------
# A tiny crop store, made by the real stage 1 from a few generated samples


def build_tiny_store(root: Path) -> Path:
    """Synthetic NTU-layout data (3 classes; performer 1 train, 8 val, 3 test; 6 samples each)
    cropped by stage 1. -> the workdir holding crops/, for `crops_from`."""
    from mmfc.crops.stage import run_crops
    from mmfc.data.synth import generate

    generate(root / "synth", per_class=2, actions=[1, 2, 3], performers=[1, 3, 8], cameras=[1],
             frame_size=(160, 90), n_jobs=1)
    cfg = load_pipeline(None, [
        f"workdir={json.dumps(str(root / 'stage1'))}", f"data.root={json.dumps(str(root / 'synth'))}",
        "data.num_classes=3", "data.val_performers=[8]", "crops.size=40", "crops.num_frames=8",
        "crops.skeleton_frames=16", "jobs.n_jobs=1",
    ])
    assert run_crops(cfg) == 0
    return root / "stage1"


TINY = [
    "rgb.model.depth=18", "rgb.model.base_width=4", "rgb.model.input_size=32", "rgb.model.segments=4",
    "rgb.model.dropout=0.5", "rgb.train.batch_size=4", "rgb.train.epochs=2", "rgb.train.warmup_epochs=1",
    "rgb.train.lr=0.05", "rgb.ccl.dim=16",
    "skel.model.base_channels=8", "skel.model.num_frames=8", "skel.train.batch_size=4",
    "skel.train.epochs=2", "skel.ccl.dim=16",
    # As this module's torch.set_num_threads(1): the same thread count in every run whatever
    # else the machine runs ("auto" follows the load), and no worker start-up on tiny batches.
    *(f"{m}.train.{key}={n}" for m in ("rgb", "skel") for key, n in (("threads", 1), ("loader_workers", 0))),
]


def tiny_pipeline(workdir: Path, store_root: Path, *overrides: str):
    """Tiny models on the tiny store; `workdir` receives train/ and scores/."""
    return load_pipeline(None, [
        f"workdir={json.dumps(str(workdir))}", f"crops_from={json.dumps(str(store_root))}", *TINY, *overrides,
    ])


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> Path:
    return build_tiny_store(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_store(store_root) -> Path:
    return store_root / "crops"


# ---------------------------------------------------------------------------------------------
# Sampling and augmentation


def test_segment_indices_centre_random_and_short_clips():
    assert segment_indices(16, 4, eval_offsets(4, 0, 1)).tolist() == [2, 6, 10, 14]
    # Three clips: evenly spaced inside each segment.
    assert [segment_indices(12, 2, eval_offsets(2, c, 3)).tolist() for c in range(3)] == [[1, 7], [3, 9], [5, 11]]
    random = segment_indices(16, 4, np.random.default_rng(0).random(4))
    assert all(4 * k <= i < 4 * (k + 1) for k, i in enumerate(random))
    # Fewer frames than segments: frames repeat, in order, never out of range.
    short = segment_indices(3, 8, eval_offsets(8, 0, 1))
    assert short.tolist() == sorted(short.tolist()) and set(short.tolist()) == {0, 1, 2}


def test_flip_negates_x_and_swaps_left_right_joints():
    x = np.random.default_rng(0).normal(size=(3, 5, 25, 2)).astype(np.float32)
    perm = np.array(NTU25.flip_permutation())
    flipped = flip_skeleton(x, perm)
    left, right = 4, 8  # NTU joints 5 and 9: left and right shoulder
    np.testing.assert_array_equal(flipped[0, :, left], -x[0, :, right])
    np.testing.assert_array_equal(flipped[1:, :, right], x[1:, :, left])
    np.testing.assert_array_equal(flipped[:, :, NTU25.center], x[:, :, NTU25.center] * np.array([-1, 1, 1])[:, None, None])
    np.testing.assert_array_equal(flip_skeleton(flipped, perm), x)


def test_rotation_keeps_the_vertical_axis_and_lengths():
    x = np.random.default_rng(1).normal(size=(3, 4, 25, 1)).astype(np.float32)
    turned = rotate_skeleton(x, 0.4, vertical_axis=1)
    np.testing.assert_array_equal(turned[1], x[1])
    np.testing.assert_allclose(np.linalg.norm(turned, axis=0), np.linalg.norm(x, axis=0), rtol=1e-5)
    assert not np.allclose(turned[2], x[2])
    np.testing.assert_array_equal(rotate_skeleton(x, 0.4, vertical_axis=2)[2], x[2])
    flat = x[:2]
    np.testing.assert_allclose(rotate_skeleton(flat, math.pi / 2)[0], flat[1], atol=1e-6)


def test_rgb_clips_train_and_eval(tiny_store):
    store = open_crops(tiny_store)
    train = RGBClipDataset(store, [0, 1, 2], segments=4, input_size=32, train=True, seed=3)
    x, label, index = train[1]
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert (label, index) == (store.index[1]["label"], 1)
    again = RGBClipDataset(store, [0, 1, 2], segments=4, input_size=32, train=True, seed=3)
    torch.testing.assert_close(again[1][0], x, rtol=0, atol=0)  # a function of (seed, epoch, index)
    again.set_epoch(1)
    assert not torch.equal(again[1][0], x)

    evaluation = RGBClipDataset(store, [0, 1, 2], segments=4, input_size=32, train=False)
    x_eval = evaluation[0][0]
    torch.testing.assert_close(evaluation[0][0], x_eval, rtol=0, atol=0)
    # Centre 32x32 of the stored 40x40 frames at the segment centres, ImageNet-normalised.
    frames = store.rgb(0)[[1, 3, 5, 7], 4:36, 4:36].astype(np.float32) / 255
    expected = ((frames - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(x_eval.numpy(), expected, atol=1e-5)


def test_color_jitter_in_torchvision_terms():
    rng = np.random.default_rng(0)
    clip = rng.random((3, 8, 8, 3), dtype=np.float32)
    np.testing.assert_allclose(jitter_colors(clip, 1.0, 1.0, 1.0), clip, atol=1e-6)
    assert not jitter_colors(clip, 0.0, 1.0, 1.0).any()  # brightness 0: black
    grey = jitter_colors(clip, 1.0, 1.0, 0.0)  # saturation 0: each pixel its own grey
    np.testing.assert_allclose(grey[..., 0], clip @ np.array([0.299, 0.587, 0.114]), atol=1e-6)
    assert np.ptp(grey, axis=-1).max() < 1e-6
    flat = jitter_colors(clip, 1.0, 0.0, 1.0)  # contrast 0: the clip's mean grey everywhere
    np.testing.assert_allclose(flat, np.full_like(clip, (clip @ np.array([0.299, 0.587, 0.114])).mean()), atol=1e-6)
    strong = jitter_colors(clip, 1.8, 1.8, 1.8)
    assert strong.dtype == np.float32 and strong.min() >= 0 and strong.max() <= 1


def test_color_jitter_changes_training_clips_only(tiny_store):
    store = open_crops(tiny_store)
    plain = RGBClipDataset(store, [0, 1], segments=4, input_size=32, train=True, seed=3)
    jittered = RGBClipDataset(store, [0, 1], segments=4, input_size=32, train=True, seed=3, color_jitter=0.4)
    x, x_jittered = plain[0][0], jittered[0][0]
    assert x_jittered.dtype == torch.float32 and not torch.equal(x, x_jittered)
    evaluation = [RGBClipDataset(store, [0], segments=4, input_size=32, train=False, color_jitter=c)[0][0] for c in (0, 0.4)]
    torch.testing.assert_close(evaluation[0], evaluation[1], rtol=0, atol=0)


def test_skeleton_clips_keep_persons_and_sample_uniformly(tiny_store):
    store = open_crops(tiny_store)
    evaluation = SkeletonDataset(store, [0], num_frames=8, num_persons=1, train=False)
    x = evaluation[0][0]
    assert x.shape == (3, 8, 25, 1)  # stored T = 16: the centre of each pair of frames
    np.testing.assert_array_equal(x.numpy(), store.skeleton(0)[:, 1::2, :, :1])
    train = SkeletonDataset(store, [0], num_frames=8, num_persons=3, train=True, rotate_degrees=20, scale=0.1)
    x_train = train[0][0]
    assert x_train.shape == (3, 8, 25, 3)
    assert torch.all(x_train[..., 2] == 0)  # the missing third person is zero padding


# ---------------------------------------------------------------------------------------------
# Schedule, sampler, checkpoints


def test_warmup_then_cosine_or_step():
    cfg = TrainConfig(epochs=10, warmup_epochs=2, schedule="cosine")
    assert 0 < lr_factor(0, cfg) < lr_factor(1, cfg) < lr_factor(1.99, cfg) < 1
    assert lr_factor(2, cfg) == pytest.approx(1.0)
    assert lr_factor(6, cfg) == pytest.approx(0.5)
    assert lr_factor(10, cfg) == pytest.approx(0.0, abs=1e-12)
    step = TrainConfig(epochs=10, warmup_epochs=0, schedule="step", milestones=[4, 8])
    assert [lr_factor(e, step) for e in (0, 3.9, 4, 8)] == pytest.approx([1, 1, 0.1, 0.01])


def test_scheduler_per_iteration_or_per_epoch():
    def lrs(lr_step):
        cfg = TrainConfig(epochs=3, warmup_epochs=1, lr=1.0, lr_step=lr_step)
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
        sched = make_scheduler(opt, cfg, steps_per_epoch=4)
        seen = []
        for _ in range(12):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return seen

    smooth, stepped = lrs("iteration"), lrs("epoch")
    assert len(set(smooth[:4])) == 4
    assert stepped[:4] == [stepped[0]] * 4 and stepped[4:8] == [stepped[4]] * 4 and stepped[4] == pytest.approx(1.0)


def test_sharded_sampler_orders_by_seed_and_epoch():
    envs = [DistEnv(rank, 2, rank, torch.device("cpu")) for rank in (0, 1)]
    train = [ShardedSampler(11, env, shuffle=True, seed=5) for env in envs]
    for s in train:
        s.set_epoch(3)
    parts = [list(s) for s in train]
    assert len(parts[0]) == len(parts[1]) == 5 and not set(parts[0]) & set(parts[1])
    fresh = ShardedSampler(11, envs[0], shuffle=True, seed=5)
    fresh.set_epoch(3)
    assert list(fresh) == parts[0]
    fresh.set_epoch(4)
    assert list(fresh) != parts[0]
    capped = ShardedSampler(11, CPU1, shuffle=True, seed=5, limit=4)
    assert len(capped) == 4
    evaluation = [list(ShardedSampler(11, env, shuffle=False)) for env in envs]
    assert sorted(evaluation[0] + evaluation[1]) == list(range(11))


def test_checkpoint_roundtrip_and_bad_files(tmp_path):
    path = tmp_path / "x" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.arange(3.0)}, "epoch": 2, "rng": capture_rng()})
    # No temp file left behind; the digest beside it is in sha256sum's format.
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt", "last.pt.sha256"]
    assert digest_path(path).read_text() == f"{hashlib.sha256(path.read_bytes()).hexdigest()}  last.pt\n"
    state = load_checkpoint(path)
    assert state["epoch"] == 2 and torch.equal(state["model"]["w"], torch.arange(3.0))
    assert len(file_digest(path)) == 16
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match=f"{path}: damaged: its sha256 differs"):
        load_checkpoint(path)
    digest_path(path).unlink()  # a truncated checkpoint of an older run: torch's complaint, in our words
    with pytest.raises(DataError, match="not a readable checkpoint") as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value) and "weights_only" not in str(caught.value)
    with pytest.raises(DataError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "none.pt")


def damage_tensor(path: Path, tensor: torch.Tensor, value: float) -> None:
    """Overwrite the first element of `tensor`'s bytes inside the saved archive with `value`."""
    data = path.read_bytes()
    at = data.index(tensor.numpy().tobytes())
    path.write_bytes(data[:at] + np.float32(value).tobytes() + data[at + 4:])


def test_damage_inside_a_tensor_is_caught_by_the_digest(tmp_path):
    weights = torch.linspace(1, 2, 64)
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": {"w": weights}})
    damage_tensor(path, weights, 1e30)
    with pytest.raises(DataError, match=f"{path}: damaged: its sha256 differs from the one saved with it in best.pt.sha256"):
        load_checkpoint(path)
    # Without a digest (an older run) finite damage cannot be seen: loaded, with a warning...
    digest_path(path).unlink()
    with pytest.warns(UnverifiedCheckpoint, match=f"{path}: no best.pt.sha256 beside it"):
        assert load_checkpoint(path)["model"]["w"][0] == 1e30
    # ...but non-finite values, which would make every score NaN, are refused.
    damage_tensor(path, torch.tensor([1e30]), float("nan"))
    with pytest.raises(DataError, match=f"{path}: damaged: non-finite values in model.w"), pytest.warns(UnverifiedCheckpoint):
        load_checkpoint(path)


@pytest.mark.parametrize("killed_at", ["checkpoint", "digest"])
def test_a_save_killed_between_its_two_renames_leaves_a_loadable_checkpoint(tmp_path, monkeypatch, killed_at):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(4)}, "epoch": 1})
    real_move, moves = atomic.move_into_place, []

    def killed(tmp, target):
        moves.append(Path(target).name)
        # The digest file is moved twice (both digests, then the new one), the checkpoint between.
        if (killed_at == "checkpoint" and moves == ["last.pt.sha256", "last.pt"]) or moves.count("last.pt.sha256") == 2:
            raise KeyboardInterrupt
        real_move(tmp, target)

    monkeypatch.setattr(atomic, "move_into_place", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"model": {"w": torch.ones(4)}, "epoch": 2})
    monkeypatch.setattr(atomic, "move_into_place", real_move)
    assert load_checkpoint(path)["epoch"] == (1 if killed_at == "checkpoint" else 2)
    assert len(digest_path(path).read_text().splitlines()) == 2  # the old and the new digest


def test_rng_state_restores_every_generator():
    import random

    state = capture_rng()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


# ---------------------------------------------------------------------------------------------
# Training runs

METRIC_KEYS = {"epoch", "lr", "train_loss", "train_ce", "train_ccl", "train_top1", "val_loss", "val_top1",
               "val_top5", "val_mean_class", "seconds", "train_seconds"}


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_tiny_run_writes_checkpoints_metrics_and_done(tmp_path, store_root, capsys):
    cfg = tiny_pipeline(tmp_path, store_root)
    train_stage.run_train(cfg, "skel")
    out = cfg.paths.train("skel")
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2] and all(set(r) == METRIC_KEYS for r in rows)
    assert rows[1]["train_loss"] == pytest.approx(rows[1]["train_ce"] + rows[1]["train_ccl"], rel=1e-5)
    assert rows[1]["train_ccl"] > 0  # CCL is on by default
    done = json.loads((out / "done.json").read_text())
    assert done["epochs"] == 2 and done["best_val_top1"] == rows[done["best_epoch"] - 1]["val_top1"]
    last, best = load_checkpoint(out / "last.pt"), load_checkpoint(out / "best.pt")
    assert last["epoch"] == 2 and best["epoch"] == done["best_epoch"] and best["modality"] == "skel"
    assert {"optimizer", "ccl", "rng"} <= set(last)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left

    stamp = (out / "last.pt").stat().st_mtime_ns
    killed = out / ".tmp-0123abcd-last.pt"  # what a killed save left
    killed.write_bytes(b"half a checkpoint")
    train_stage.run_train(cfg, "skel", resume=True)  # finished with this config: nothing to do
    assert (out / "last.pt").stat().st_mtime_ns == stamp and not killed.exists()
    capsys.readouterr()
    cfg.skel.train.threads = "2"  # how it runs, not what it learns: still finished
    train_stage.run_train(cfg, "skel", resume=True)
    assert (out / "last.pt").stat().st_mtime_ns == stamp
    assert f"train-skel: best val top-1 {100 * done['best_val_top1']:.1f}% at epoch {done['best_epoch']} of 2" in capsys.readouterr().err
    train_stage.run_train(cfg, "skel")  # without --resume an existing run starts over, with a warning
    assert "starting over" in capsys.readouterr().err
    assert (out / "last.pt").stat().st_mtime_ns != stamp and len(read_metrics(out)) == 2


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["rgb", "skel"])
def test_the_same_seed_gives_bit_identical_weights(tmp_path, store_root, modality):
    # On one machine; across machines CPU kernels differ and figures move (docs/benchmarks.md, section 1).
    runs = {name: tiny_pipeline(tmp_path / name, store_root, f"{modality}.train.seed={seed}")
            for name, seed in (("first", 0), ("again", 0), ("other_seed", 1))}
    for cfg in runs.values():
        train_stage.run_train(cfg, modality)
    best = {name: cfg.paths.train(modality) / "best.pt" for name, cfg in runs.items()}
    last = {name: load_checkpoint(cfg.paths.train(modality) / "last.pt") for name, cfg in runs.items()}
    for part in ("model", "ccl"):
        for key, value in last["first"][part].items():
            assert torch.equal(value, last["again"][part][key]), f"{part}.{key} differs"
    assert file_digest(best["first"]) == file_digest(best["again"])  # the very same bytes
    assert not all(torch.equal(v, last["other_seed"]["model"][k]) for k, v in last["first"]["model"].items())


@pytest.mark.slow
def test_bf16_autocast_on_cpu_when_asked(tmp_path, store_root):
    cfg = tiny_pipeline(tmp_path, store_root, "rgb.train.epochs=1", "rgb.train.amp_cpu=true")
    train_stage.run_train(cfg, "rgb")
    (row,) = read_metrics(cfg.paths.train("rgb"))
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])


class Crash(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["rgb", "skel"])
def test_resume_equals_uninterrupted_run(tmp_path, store_root, monkeypatch, modality):
    # Dropout, CCL prototypes, random augmentation and per-iteration lr all have to carry over.
    settings = [f"{modality}.train.epochs=3", f"{modality}.train.batch_size=2", "skel.model.dropout=0.3"]
    whole = tiny_pipeline(tmp_path / "whole", store_root, *settings)
    train_stage.run_train(whole, modality)

    broken = tiny_pipeline(tmp_path / "broken", store_root, *settings)
    real_epoch, calls = train_fit.train_epoch, []

    def crash_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Crash()
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_fit, "train_epoch", crash_in_second_epoch)
    with pytest.raises(Crash):
        train_stage.run_train(broken, modality)
    monkeypatch.setattr(train_fit, "train_epoch", real_epoch)
    assert load_checkpoint(broken.paths.train(modality) / "last.pt")["epoch"] == 1
    train_stage.run_train(broken, modality, resume=True)

    a = load_checkpoint(whole.paths.train(modality) / "last.pt")
    b = load_checkpoint(broken.paths.train(modality) / "last.pt")
    for part in ("model", "ccl"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"
    for p, q in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(p["momentum_buffer"], q["momentum_buffer"])
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]  # noqa: E731
    assert strip(read_metrics(whole.paths.train(modality))) == strip(read_metrics(broken.paths.train(modality)))


class RecordingStore:
    """The real store, noting which samples training reads."""

    def __init__(self, store):
        self.store = store
        self.read: set[int] = set()

    def __getattr__(self, name):
        value = getattr(self.store, name)
        if name in ("rgb", "skeleton", "keypoints", "frame_indices"):
            def reader(i, *args, **kwargs):
                self.read.add(i)
                return value(i, *args, **kwargs)
            return reader
        return value


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["rgb", "skel"])
def test_test_split_never_read_and_best_is_chosen_on_val(tmp_path, store_root, monkeypatch, modality):
    stores = []

    def recording_open(path):
        stores.append(RecordingStore(open_crops(path)))
        return stores[-1]

    monkeypatch.setattr(train_stage, "open_crops", recording_open)
    cfg = tiny_pipeline(tmp_path, store_root, f"{modality}.train.epochs=3", f"{modality}.train.lr=0.2")
    train_stage.run_train(cfg, modality)
    (store,) = stores
    splits = {i: row["split"] for i, row in enumerate(store.index)}
    assert {splits[i] for i in store.read} == {"train", "val"}

    rows = read_metrics(cfg.paths.train(modality))
    # Highest val top-1, ties to the lower val loss, first epoch among exact ties.
    expected = min(rows, key=lambda r: (-r["val_top1"], r["val_loss"], r["epoch"]))["epoch"]
    assert load_checkpoint(cfg.paths.train(modality) / "best.pt")["epoch"] == expected


def test_bad_inputs_are_named(tmp_path, store_root):
    from mmfc.config import ConfigError

    with pytest.raises(ConfigError, match="modality"):
        train_stage.run_train(tiny_pipeline(tmp_path, store_root), "depth")
    with pytest.raises(DataError, match="stage-1"):
        train_stage.run_train(tiny_pipeline(tmp_path, tmp_path / "nowhere"), "skel")
    with pytest.raises(DataError, match="less than one batch"):
        train_stage.run_train(tiny_pipeline(tmp_path, store_root, "skel.train.batch_size=64"), "skel")
