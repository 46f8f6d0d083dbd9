"""Stage 2 under torchrun: two CPU processes on gloo train the same model one process would.

gloo has no SyncBatchNorm, so each rank normalises with its own half of the global batch. The
single-process reference therefore computes the loss of each rank's half separately, from the
same starting state, and averages the gradients: that is exactly what DDP must produce. With no
random augmentation and no dropout, the weights after one step must match it.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmfc.branches import SKEL
from mmfc.crops.store import open_crops
from mmfc.models import build_ccl
from mmfc.train import fit as train_fit
from mmfc.train import stage as train_stage
from mmfc.train.checkpoint import load_checkpoint, save_checkpoint
from mmfc.train.distributed import DistEnv, ShardedSampler
from mmfc.train.loop import Objective, evaluate
from mmfc.train.schedule import build_optimizer, lr_factor, make_scheduler
from mmfc.train.stage import split_indices
from test_train import build_tiny_store, tiny_pipeline

pytestmark = pytest.mark.slow  # torchrun processes training end to end: `make test-fast` leaves it out

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
# Deterministic inputs: no flip, rotation or scaling, no dropout; one step of 2 x 2 samples.
DDP_SETTINGS = [
    "skel.train.epochs=1", "skel.train.batch_size=2", "skel.train.warmup_epochs=0", "skel.train.lr=0.1",
    "skel.train.flip=false", "skel.train.rotate_degrees=0.0", "skel.train.skel_scale=0.0",
    "skel.model.dropout=0.0",
]


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> Path:
    return build_tiny_store(tmp_path_factory.mktemp("tiny"))


def torchrun_train(workdir: Path, store_root: Path, pipeline_file: Path, *settings: str, resume: bool = False,
                   stop_in_second_epoch: bool = False) -> subprocess.CompletedProcess:
    from test_train import TINY

    sets = [f"workdir={workdir}", f"crops_from={store_root}", *TINY, *DDP_SETTINGS, *settings]
    program = ["tests/ddp_crash.py"] if stop_in_second_epoch else ["-m", "mmfc"]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *program,
        "stage", "train", "--pipeline", str(pipeline_file), "--modality", "skel", *(["--resume"] if resume else []),
    ]
    for item in sets:
        command += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def reference_step(cfg) -> tuple[Objective, Objective, float]:
    """One SGD step on the average of the two ranks' gradients, in this process.
    -> (objective after the step, rank 0's copy after its forward, mean training loss)"""
    tcfg = cfg.skel.train
    store = open_crops(cfg.paths.crops)
    torch.manual_seed(tcfg.seed)  # the same initial weights as run_train builds
    model = SKEL.build_model(cfg, store.num_classes, store.layout)
    objective = Objective(model, build_ccl(cfg.skel.ccl, store.num_classes, model.feature_dims))
    dataset = SKEL.build_dataset(cfg, store, split_indices(store, "train"), train=True)
    grads, losses, copies = [], [], []
    for rank in (0, 1):
        sampler = ShardedSampler(len(dataset), DistEnv(rank, 2, rank, torch.device("cpu")), shuffle=True, seed=tcfg.seed)
        sampler.set_epoch(0)
        batch = [dataset[i] for i in list(sampler)[: tcfg.batch_size]]
        x = torch.stack([b[0] for b in batch])
        labels = torch.tensor([b[1] for b in batch])
        local = copy.deepcopy(objective)  # each rank starts from the same state
        local.train()
        _, ce, ccl = local(x, labels)
        (ce + ccl).backward()
        grads.append([p.grad for p in local.parameters()])
        losses.append((ce + ccl).item())
        copies.append(local)
    optimizer = build_optimizer(objective.parameters(), tcfg)
    scheduler = make_scheduler(optimizer, tcfg, steps_per_epoch=1)
    for p, g0, g1 in zip(objective.parameters(), *grads):
        p.grad = (g0 + g1) / 2
    optimizer.step()
    scheduler.step()
    return objective, copies[0], sum(losses) / 2


def test_two_gloo_processes_match_the_single_process_reference(tmp_path, store_root):
    pipeline_file = tmp_path / "empty.toml"
    pipeline_file.write_text("")
    workdir = tmp_path / "ddp"
    result = torchrun_train(workdir, store_root, pipeline_file)
    assert result.returncode == 0, result.stderr[-3000:]

    cfg = tiny_pipeline(workdir, store_root, *DDP_SETTINGS)
    out = cfg.paths.train("skel")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1  # only rank 0 writes
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "best.pt.sha256", "done.json", "last.pt", "last.pt.sha256",
                                                     "metrics.jsonl"]
    state = load_checkpoint(out / "last.pt")
    assert len(state["rng"]) == 2  # each rank's random state, for an exact resume

    objective, rank0, mean_loss = reference_step(cfg)
    trained = dict(objective.model.named_parameters()) | {f"ccl.{k}": v for k, v in objective.ccl.named_parameters()}
    saved = state["model"] | {f"ccl.{k}": v for k, v in state["ccl"].items()}
    for name, value in trained.items():
        torch.testing.assert_close(saved[name], value.detach(), rtol=1e-4, atol=1e-5, msg=name)
    # Buffers (BN statistics, CCL prototypes) are rank 0's, broadcast before evaluation.
    for name, value in list(rank0.model.named_buffers()) + [(f"ccl.{k}", v) for k, v in rank0.ccl.named_buffers()]:
        torch.testing.assert_close(saved[name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert rows[0]["train_loss"] == pytest.approx(mean_loss, rel=1e-4)

    # Validation metrics gathered over both ranks equal one process evaluating the saved weights.
    store = open_crops(cfg.paths.crops)
    model = SKEL.build_model(cfg, store.num_classes, store.layout)
    model.load_state_dict(state["model"])
    val = SKEL.build_dataset(cfg, store, split_indices(store, "val"), train=False)
    one = DistEnv(0, 1, 0, torch.device("cpu"))
    loader = torch.utils.data.DataLoader(val, batch_size=4, sampler=ShardedSampler(len(val), one, shuffle=False))
    metrics = evaluate(model, loader, one, amp=False, num_classes=store.num_classes)
    for key, value in metrics.items():
        assert rows[0][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_checkpoints_resume_across_world_sizes(tmp_path, store_root, monkeypatch):
    """A 2-process checkpoint resumes in 1 process, and a 1-process one in 2, bit-exactly as a
    checkpoint of the same state written by the resuming world size would.

    What carries over is the state (weights, momentum, epoch, best, history); how the rest of
    the run goes is the new world size's (its shards, its global batch, its steps per epoch), so
    the reference is not an uninterrupted run of either size but a checkpoint of the resuming
    size into which the other run's state is copied. Bit-exact, not a tolerance: both sides run
    the same kernels on one thread in the same order; the global random state differs (each
    rank reseeds from (seed, epoch, rank) when the saved states do not match its world size),
    which these settings never draw from (no dropout, no random augmentation).
    """
    pipeline_file = tmp_path / "empty.toml"
    pipeline_file.write_text("")
    two_epochs = ["skel.train.epochs=2", "skel.train.warmup_epochs=1"]  # lr changes within and across epochs

    def stopped_after_one_epoch(workdir: Path, processes: int) -> Path:
        if processes == 2:
            result = torchrun_train(workdir, store_root, pipeline_file, *two_epochs, stop_in_second_epoch=True)
            assert result.returncode != 0, result.stderr[-3000:]
        else:
            real_epoch, calls = train_fit.train_epoch, []

            def stop_in_second_epoch(*args, **kwargs):
                calls.append(1)
                if len(calls) == 2:
                    raise SystemExit(3)
                return real_epoch(*args, **kwargs)

            with monkeypatch.context() as patch:
                patch.setattr(train_fit, "train_epoch", stop_in_second_epoch)
                with pytest.raises(SystemExit):
                    train_stage.run_train(tiny_pipeline(workdir, store_root, *DDP_SETTINGS, *two_epochs), "skel")
        last = workdir / "train" / "skel" / "last.pt"
        state = load_checkpoint(last)
        assert state["epoch"] == 1 and len(state["rng"]) == processes
        return last

    def resume(workdir: Path, processes: int) -> tuple[dict, list[dict]]:
        if processes == 2:
            result = torchrun_train(workdir, store_root, pipeline_file, *two_epochs, resume=True)
            assert result.returncode == 0, result.stderr[-3000:]
        else:
            train_stage.run_train(tiny_pipeline(workdir, store_root, *DDP_SETTINGS, *two_epochs), "skel", resume=True)
        out = workdir / "train" / "skel"
        rows = [{k: v for k, v in json.loads(line).items() if not k.endswith("seconds")}
                for line in (out / "metrics.jsonl").read_text().splitlines()]
        return load_checkpoint(out / "last.pt"), rows

    saved = {n: stopped_after_one_epoch(tmp_path / f"saved{n}", n) for n in (1, 2)}
    for source, target in ((2, 1), (1, 2)):
        moved, reference = tmp_path / f"moved{source}to{target}", tmp_path / f"reference{source}to{target}"
        shutil.copytree(saved[source].parents[2], moved)
        shutil.copytree(saved[target].parents[2], reference)
        # The reference: the target size's own checkpoint, holding the source run's state.
        state, own = load_checkpoint(saved[source]), load_checkpoint(saved[target])
        save_checkpoint(reference / "train/skel/last.pt", {**state, "rng": own["rng"]})
        (got, got_rows), (want, want_rows) = resume(moved, target), resume(reference, target)
        assert got["epoch"] == want["epoch"] == 2
        # The schedule resumes at epoch 1 (end of warm-up: the full rate), not at the saved step
        # count, which is half or twice an epoch in the other world size.
        tcfg = tiny_pipeline(moved, store_root, *DDP_SETTINGS, *two_epochs).skel.train
        assert got_rows[1]["lr"] == tcfg.lr * lr_factor(1.0, tcfg)
        assert got_rows == want_rows and got_rows[0]["train_loss"] == json.loads(
            (saved[source].parent / "metrics.jsonl").read_text())["train_loss"]
        for part in ("model", "ccl"):
            for key in want[part]:
                assert torch.equal(got[part][key], want[part][key]), f"{source}->{target}: {part}.{key}"
        for p, q in zip(got["optimizer"]["state"].values(), want["optimizer"]["state"].values()):
            assert torch.equal(p["momentum_buffer"], q["momentum_buffer"])
