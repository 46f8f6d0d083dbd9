"""Stage 3: scores of every stored sample from the best checkpoint, in the shared score format."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from mmfc.branches import get_branch
from mmfc.crops.store import open_crops
from mmfc.errors import DataError
from mmfc.scores.format import read_scores
from mmfc.scores.stage import run_scores
from mmfc.train.checkpoint import digest_path, load_checkpoint
from mmfc.train.loop import predict
from mmfc.train.stage import run_train
from test_train import build_tiny_store, damage_tensor, tiny_pipeline

pytestmark = pytest.mark.slow  # trains the networks it scores with: `make test-fast` leaves it out

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny store and both modalities trained for one epoch on it. -> (store_root, workdir)"""
    store_root = build_tiny_store(tmp_path_factory.mktemp("tiny"))
    workdir = tmp_path_factory.mktemp("run")
    cfg = tiny_pipeline(workdir, store_root, "rgb.train.epochs=1", "skel.train.epochs=1")
    for modality in ("rgb", "skel"):
        run_train(cfg, modality)
    return store_root, workdir


def reference_logits(cfg, modality: str, clip: int, clips: int) -> np.ndarray:
    """The best checkpoint's logits of every store sample for one test clip, computed directly."""
    store = open_crops(cfg.paths.crops)
    branch = get_branch(modality)
    model = branch.build_model(cfg, store.num_classes, store.layout)
    model.load_state_dict(load_checkpoint(cfg.paths.train(modality) / "best.pt")["model"])
    dataset = branch.build_dataset(cfg, store, list(range(len(store))), train=False, clip=clip, num_clips=clips)
    indices, _, logits = predict(model, torch.utils.data.DataLoader(dataset, batch_size=5), torch.device("cpu"), False)
    assert indices.tolist() == list(range(len(store)))
    return logits


@pytest.mark.parametrize("modality, n_jobs", [("rgb", -1), ("skel", -1), ("skel", 1)])
def test_scores_cover_every_sample_with_digests(trained, modality, n_jobs):
    """In jobs on the worker processes (n_jobs -1), or in this process (1, as on CUDA)."""
    store_root, workdir = trained
    cfg = tiny_pipeline(workdir, store_root, "rgb.train.epochs=1", "skel.train.epochs=1", f"jobs.n_jobs={n_jobs}",
                        "skel.train.batch_size=2")
    run_scores(cfg, modality)
    table = read_scores(cfg.paths.scores / f"{modality}.parquet")
    store = open_crops(cfg.paths.crops)

    assert table.ids == [row["id"] for row in store.index]
    assert table.splits == [row["split"] for row in store.index]
    assert set(table.splits) == {"train", "val", "test"}
    # Each sample's group, the NTU performer stage 1 wrote into the index, for stage 4's folds.
    assert table.groups == [row["group"] for row in store.index] and table.group_kind == "performer"
    assert set(table.groups) == {"P001", "P003", "P008"}
    np.testing.assert_array_equal(table.labels, [row["label"] for row in store.index])
    assert table.logits.shape == (len(store), store.num_classes) and table.logits.dtype == np.float32
    assert table.modality == modality and table.class_names == store.class_names
    best = cfg.paths.train(modality) / "best.pt"
    assert table.checkpoint_digest == hashlib.sha256(best.read_bytes()).hexdigest()[:16]
    assert table.pipeline_digest == cfg.digest()
    np.testing.assert_allclose(table.logits, reference_logits(cfg, modality, 0, 1), rtol=1e-5, atol=1e-5)


def test_multi_clip_scores_average_evenly_spaced_clips(trained):
    store_root, workdir = trained
    cfg = tiny_pipeline(workdir, store_root, "rgb.train.epochs=1", "skel.train.epochs=1", "scores.clips=3")
    # What killed runs left: this branch's is cleared, the other's (maybe being written now) kept.
    leftovers = {m: cfg.paths.scores / f".tmp-0123abcd-{m}.parquet" for m in ("skel", "rgb")}
    cfg.paths.scores.mkdir(exist_ok=True)
    for path in leftovers.values():
        path.write_bytes(b"half")
    run_scores(cfg, "skel")
    assert not leftovers["skel"].exists() and leftovers["rgb"].exists()
    leftovers["rgb"].unlink()
    table = read_scores(cfg.paths.scores / "skel.parquet")
    clips = [reference_logits(cfg, "skel", c, 3) for c in range(3)]
    assert not np.allclose(clips[0], clips[2])  # the clips do see different frames
    np.testing.assert_allclose(table.logits, np.mean(clips, axis=0), rtol=1e-5, atol=1e-5)
    assert table.pipeline_digest == cfg.digest()


def test_missing_or_foreign_checkpoint_is_a_data_error(trained, tmp_path):
    store_root, workdir = trained
    with pytest.raises(DataError, match="no such checkpoint"):
        run_scores(tiny_pipeline(tmp_path, store_root), "rgb")
    foreign = tmp_path / "train" / "rgb" / "best.pt"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes((workdir / "train" / "skel" / "best.pt").read_bytes())
    digest_path(foreign).write_text(digest_path(workdir / "train" / "skel" / "best.pt").read_text())
    with pytest.raises(DataError, match="holds a 'skel' model"):
        run_scores(tiny_pipeline(tmp_path, store_root), "rgb")
    assert not (tmp_path / "scores" / "rgb.parquet").exists()


def damaged_copy(workdir, tmp_path, modality: str, name: str):
    """The branch's training folder copied to tmp_path, with one weight of `name` overwritten."""
    import shutil

    out = tmp_path / "train" / modality
    shutil.copytree(workdir / "train" / modality, out)
    weights = max(load_checkpoint(out / name)["model"].values(), key=lambda t: t.numel())
    damage_tensor(out / name, weights.flatten()[:64].contiguous(), 1e3)
    return out


def test_damaged_best_checkpoint_is_refused_by_name(trained, tmp_path):
    store_root, workdir = trained
    out = damaged_copy(workdir, tmp_path, "skel", "best.pt")
    with pytest.raises(DataError, match=f"{out / 'best.pt'}: damaged"):
        run_scores(tiny_pipeline(tmp_path, store_root), "skel")
    assert not (tmp_path / "scores" / "skel.parquet").exists()


def test_resume_refuses_a_damaged_last_checkpoint(trained, tmp_path):
    store_root, workdir = trained
    out = damaged_copy(workdir, tmp_path, "skel", "last.pt")
    (out / "done.json").unlink()  # as if killed before the last epoch ended
    cfg = tiny_pipeline(tmp_path, store_root, "rgb.train.epochs=1", "skel.train.epochs=1")
    with pytest.raises(DataError, match=f"{out / 'last.pt'}: damaged"):
        run_train(cfg, "skel", resume=True)


def test_a_checkpoint_of_other_model_settings_is_refused_by_name(trained, tmp_path):
    store_root, workdir = trained
    cfg = tiny_pipeline(workdir, store_root, "skel.model.base_channels=16")
    with pytest.raises(DataError, match=rf"{workdir / 'train' / 'skel' / 'best.pt'}: its model does not fit the "
                                        r"configured one.*size mismatch"):
        run_scores(cfg, "skel")
