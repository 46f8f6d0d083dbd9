"""Stage 2: train one modality from the stage-1 crop store, with exact resume and DDP.

Writes <workdir>/train/<modality>/: last.pt (every epoch), best.pt (best validation top-1, ties
to the lower validation loss), metrics.jsonl (one line per epoch) and done.json at the end.
Only the "train" split is learnt from and only "val" selects the best epoch; "test" is never read.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from mmfc.branches import Branch, check_store_feeds, declared_branch, training_settings
from mmfc.config import Pipeline
from mmfc.crops.store import open_crops
from mmfc.errors import DataError
from mmfc.stage_frame import Stage, StageRun, run_stage
from mmfc.train.distributed import DistEnv, setup_distributed, teardown_distributed
from mmfc.train.fit import TrainingRows, fit_branch

console = Console(stderr=True)


def train_stage(cfg: Pipeline, branch: Branch) -> Stage:
    """Each branch has its own folder and lock, so both can train at once (make -j2 train)."""
    return Stage(f"train-{branch.name}", f"mmfc stage train --modality {branch.name}", lock=f"train-{branch.name}",
                 settings=training_settings(branch), outputs=(cfg.paths.train(branch.name),))


def run_train(cfg: Pipeline, modality: str, resume: bool = False) -> None:
    """Train one branch the pipeline declares (mmfc.branches: "rgb", "skel", "joint", ...); under
    torchrun every process calls this."""
    branch = declared_branch(cfg, modality)
    env = setup_distributed()
    try:
        # Rank 0 writes the folder: it alone goes through the frame (lock, leftovers, manifest).
        with run_stage(cfg, train_stage(cfg, branch), console, main=env.is_main) as run:
            _train(cfg, branch, resume, env, run)
    finally:
        teardown_distributed(env)


def split_indices(store, split: str) -> list[int]:
    return [i for i, row in enumerate(store.index) if row["split"] == split]


def _train(cfg: Pipeline, branch: Branch, resume: bool, env: DistEnv, run: StageRun) -> None:
    out = cfg.paths.train(branch.name)
    # Whether it is finished is the manifest's to say: the training settings alone, as a resumed
    # run continues last.pt by them (the crop store is named by the data and crop settings).
    if resume and run.is_current(out) and all((out / name).is_file() for name in ("best.pt", "done.json")):
        if env.is_main:
            console.print(f"{out}: training already finished with this configuration; nothing to do", markup=False)
            run.summary = _summary(out)
        return
    store = open_crops(cfg.paths.crops)
    check_store_feeds(branch, store, cfg.branches)
    rows = TrainingRows(learn=split_indices(store, "train"), choose=split_indices(store, "val"))
    for split, indices in (("train", rows.learn), ("val", rows.choose)):
        if not indices:
            raise DataError(cfg.paths.crops, f"the crop store has no {split!r} samples")
    with run.producing(out):
        fit_branch(cfg, branch, store, rows, out, cfg.digest(*training_settings(branch)), resume, env)
    if env.is_main:
        run.summary = _summary(out)


def _summary(out: Path) -> str:
    done = json.loads((out / "done.json").read_text())
    return (f"best val top-1 {100 * done['best_val_top1']:.1f}% at epoch {done['best_epoch']} of {done['epochs']} "
            f"({out / 'best.pt'})")

