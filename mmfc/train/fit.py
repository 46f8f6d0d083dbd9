"""Training one branch on given rows of the crop store into a folder: the loop stage 2 runs on
the training split (train/stage.py) and the out-of-fold stage on k - 1 folds of the training side
(mmfc/oof/stage.py), with exact resume and DDP.

Writes into its folder: last.pt (every epoch), best.pt (the best epoch by the rows that choose it:
top-1, ties to the lower loss; with none to choose on, the last epoch), metrics.jsonl (one line
per epoch) and done.json at the end. Only the rows it is given are read.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from mmfc import atomic
from mmfc.branches import Branch
from mmfc.config import Pipeline
from mmfc.cores import CorePlan, apply_threads, loader_worker_init, plan_cores
from mmfc.errors import DataError
from mmfc.models import build_ccl
from mmfc.train.checkpoint import (
    capture_rng,
    checkpoint_header,
    digest_path,
    load_checkpoint,
    load_weights,
    restore_rng,
    save_checkpoint,
)
from mmfc.train.distributed import (
    DistEnv,
    ShardedSampler,
    all_gather_objects,
    barrier,
    broadcast_buffers,
    derive_seed,
    wrap_model,
)
from mmfc.train.loop import Objective, amp_enabled, evaluate, train_epoch
from mmfc.train.schedule import build_optimizer, make_scheduler

console = Console(stderr=True)


@dataclass(frozen=True)
class TrainingRows:
    """The crop store's rows a training learns from, and those that choose its best epoch; with
    none to choose on, the last epoch is kept."""

    learn: list[int]
    choose: list[int]


def fit_branch(cfg: Pipeline, branch: Branch, store, rows: TrainingRows, out: Path, digest: str, resume: bool,
               env: DistEnv) -> None:
    """Train `branch` on `rows` of `store` into `out`, each checkpoint stamped with `digest` (what
    the weights were made from: a resumed run continues only a last.pt of the same digest)."""
    tcfg = branch.section(cfg).train
    _make_deterministic(tcfg.seed)
    cores = plan_cores(tcfg, env.device.type)
    apply_threads(cores.threads)
    if env.is_main:
        console.print(f"{branch.name}: {cores.describe()} ({branch.name}.train.threads, loader_workers)", highlight=False)
    model, ccl = _build_networks(cfg, branch, store, env)
    objective = Objective(model, ccl).to(env.device)
    data = _TrainData(cfg, branch, store, rows, env, cores)
    optimizer = build_optimizer(objective.parameters(), tcfg)

    state = _start_state(out, digest, resume, env)
    if state is not None:
        load_weights(model, state["model"], out / "last.pt")
        load_weights(ccl, state["ccl"], out / "last.pt", "contrastive head")
        optimizer.load_state_dict(state["optimizer"])
        epoch, best, history = state["epoch"], state["best"], state["history"]
        rng = state["rng"]
        if len(rng) == env.world_size:
            restore_rng(rng[env.rank])
        else:
            # Saved by another number of processes (docs/operations.md, "Several GPUs or nodes"): each rank
            # draws its own dropout masks from (seed, epoch, rank), as a fresh run would.
            torch.manual_seed(derive_seed(tcfg.seed, epoch, env.rank))
    else:
        # Model init used the shared seed; from here each rank draws its own dropout masks.
        torch.manual_seed(derive_seed(tcfg.seed, env.rank))
        epoch, best, history = 0, None, []
    scheduler = make_scheduler(optimizer, tcfg, data.steps_per_epoch, done_epochs=epoch)

    trainer = wrap_model(objective, env)
    amp = amp_enabled(tcfg, env.device)
    header = checkpoint_header(cfg, branch.name, store, digest)
    while epoch < tcfg.epochs:
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        data.set_epoch(epoch)
        with EpochProgress(env, data.steps_per_epoch, f"{branch.name} epoch {epoch + 1}/{tcfg.epochs}") as on_step:
            train_metrics = train_epoch(trainer, data.train_loader, optimizer, scheduler, env, amp, on_step)
        train_seconds = time.perf_counter() - start
        broadcast_buffers(objective, env)
        val_metrics = {} if data.val_loader is None else evaluate(model, data.val_loader, env, amp, store.num_classes)
        epoch += 1
        # seconds: the whole epoch; train_seconds: its training pass alone (loading, forward,
        # backward, step), what bench/bench_real.py compares with other code.
        row = {"epoch": epoch, "lr": lr, **train_metrics, **val_metrics, "seconds": time.perf_counter() - start,
               "train_seconds": train_seconds}
        history.append(row)
        improved = _is_better(row, best)
        if improved:
            best = {"epoch": epoch, "val_top1": row.get("val_top1"), "val_loss": row.get("val_loss")}
        rng_states = all_gather_objects(capture_rng(), env)  # a collective: every rank takes part
        if env.is_main:
            if improved:
                save_checkpoint(out / "best.pt", {**header, "model": model.state_dict(), "epoch": epoch, "best": best})
            save_checkpoint(out / "last.pt", {
                **header, "model": model.state_dict(), "ccl": ccl.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rng_states, "epoch": epoch, "best": best, "history": history,
            })
            atomic.write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
            _print_epoch(branch.name, row)
        barrier(env)
    if env.is_main:
        atomic.write_text(out / "done.json", json.dumps({
            "epochs": tcfg.epochs, "best_epoch": best["epoch"], "best_val_top1": best["val_top1"],
        }, indent=2))


def _build_networks(cfg: Pipeline, branch: Branch, store, env: DistEnv):
    """The branch network (pretrained weights where configured) and its contrastive head."""
    model = branch.build_model(cfg, store.num_classes, store.layout)
    loaded = branch.load_pretrained(cfg, model)
    if loaded and env.is_main:
        console.print(loaded, markup=False)
    ccl = build_ccl(branch.section(cfg).ccl, store.num_classes, model.feature_dims)
    return model, ccl


class _TrainData:
    """The loader of the rows learnt from (augmented, shuffled per epoch) and, where there are
    rows to choose the best epoch on, theirs (None otherwise)."""

    def __init__(self, cfg: Pipeline, branch: Branch, store, rows: TrainingRows, env: DistEnv, cores: CorePlan):
        tcfg = branch.section(cfg).train
        self.seed, self.rank = tcfg.seed, env.rank
        train_idx, val_idx = rows.learn, rows.choose
        if not train_idx:
            raise DataError(cfg.paths.crops, "no samples to learn from")
        self.train_set = branch.build_dataset(cfg, store, train_idx, train=True)
        self.train_sampler = ShardedSampler(len(train_idx), env, shuffle=True, seed=tcfg.seed, limit=tcfg.max_samples)
        self.loader_rng = torch.Generator()
        self.train_loader = _loader(self.train_set, self.train_sampler, tcfg, env, cores.loader_workers,
                                    self.loader_rng, drop_last=True)
        self.val_loader = None
        if val_idx:
            val_set = branch.build_dataset(cfg, store, val_idx, train=False)
            self.val_loader = _loader(val_set, ShardedSampler(len(val_idx), env, shuffle=False), tcfg, env,
                                      cores.loader_workers)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise DataError(
                cfg.paths.crops,
                f"{len(self.train_sampler)} training samples per process is less than one batch of {tcfg.batch_size}",
            )

    def set_epoch(self, epoch: int) -> None:
        """Order, augmentation and worker seeds of an epoch depend on (seed, epoch) alone."""
        self.train_sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)
        self.loader_rng.manual_seed(derive_seed(self.seed, epoch, self.rank))


def _print_epoch(modality: str, row: dict) -> None:
    val = f"val top1 {row['val_top1']:.3f} val loss {row['val_loss']:.4f} " if "val_top1" in row else ""
    console.print(
        f"{modality} epoch {row['epoch']}: loss {row['train_loss']:.4f} train top1 {row['train_top1']:.3f} "
        f"{val}({row['seconds']:.1f}s)",
        highlight=False,
    )


def _start_state(out: Path, digest: str, resume: bool, env: DistEnv) -> dict | None:
    """The checkpoint to continue from, or None to start over (clearing a previous run)."""
    last = out / "last.pt"
    if resume and last.is_file():
        state = load_checkpoint(last, required=("model", "ccl", "optimizer", "rng", "epoch"))
        if state.get("config_digest") == digest:
            return state
        if env.is_main:
            console.print(f"[yellow]warning:[/] {escape(str(last))} was trained with another configuration; starting over")
    elif last.is_file() and env.is_main:
        console.print(f"[yellow]warning:[/] {escape(str(last))} exists; starting over (pass --resume to continue it)")
    barrier(env)  # every rank has read last.pt before rank 0 clears the folder
    if env.is_main:
        checkpoints = [out / "best.pt", out / "last.pt"]
        for path in [out / "done.json", out / "metrics.jsonl", *checkpoints, *map(digest_path, checkpoints)]:
            path.unlink(missing_ok=True)
    return None


def _is_better(row: dict, best: dict | None) -> bool:
    if best is None or "val_top1" not in row:  # nothing to choose on: the last epoch is kept
        return True
    if row["val_top1"] != best["val_top1"]:
        return row["val_top1"] > best["val_top1"]
    return row["val_loss"] < best["val_loss"]


def _make_deterministic(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def _loader(dataset, sampler, tcfg, env: DistEnv, workers: int, generator=None, drop_last=False):
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=tcfg.batch_size,
        sampler=sampler,
        num_workers=workers,
        worker_init_fn=loader_worker_init,
        pin_memory=env.device.type == "cuda",
        drop_last=drop_last,
        # An explicit generator: worker seeds never draw from (and shift) the global RNG.
        generator=generator if generator is not None else torch.Generator().manual_seed(0),
    )


class EpochProgress:
    """A rich progress bar (loss, accuracy, clips/s, ETA) on rank 0 of an interactive terminal."""

    def __init__(self, env: DistEnv, total: int, title: str):
        self.bar = None
        if env.is_main and console.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(),
                TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f} {task.fields[rate]:.1f} clips/s"),
                TimeRemainingColumn(), console=console, transient=True,
            )
            self.task = self.bar.add_task(title, total=total, loss=0.0, acc=0.0, rate=0.0)

    def __enter__(self):
        if self.bar is None:
            return None
        self.bar.start()
        return self._update

    def _update(self, step: dict) -> None:
        self.bar.update(self.task, advance=1, loss=step["loss"], acc=step["acc"], rate=step["clips_per_s"])

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

