"""Stage 3: per-class logits of every stored sample (all splits) from the best checkpoint.

Writes <workdir>/scores/<modality>.parquet in the ScoreTable format of mmfc.scores.format,
stamped with the sha256 of best.pt and the pipeline digest so later stages can tell which
weights and configuration produced it, with each sample's group copied from the crop index:
stage 4 reads the groups there, and so needs no more than the score files.

Scoring is embarrassingly parallel over samples (mmfc/scores/logits.py: score_store, which the
out-of-fold stage runs too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from mmfc.branches import declared_branch
from mmfc.config import Pipeline
from mmfc.crops.store import INDEX, open_crops
from mmfc.scores.format import SPLITS, ScoreTable, top1_text, write_scores
from mmfc.scores.logits import score_store
from mmfc.stage_frame import Stage, run_stage


def scores_stage(cfg: Pipeline, modality: str) -> Stage:
    """One lock and one output per branch: both branches can be scored at once (make -j2 scores)."""
    return Stage(f"scores-{modality}", f"mmfc stage scores --modality {modality}", lock=f"scores-{modality}",
                 settings=(modality, "scores"), outputs=(cfg.paths.scores / f"{modality}.parquet",))


def run_scores(cfg: Pipeline, modality: str) -> None:
    branch = declared_branch(cfg, modality)
    console = Console(stderr=True)
    stage = scores_stage(cfg, branch.name)
    (path,), checkpoint = stage.outputs, cfg.paths.train(branch.name) / "best.pt"
    with run_stage(cfg, stage, console) as run:
        with run.producing(path, inputs=[checkpoint, cfg.paths.crops / INDEX]):
            table = _scores(cfg, branch.name, checkpoint, console)
            write_scores(path, table)
        run.summary = f"top-1 {', '.join(f'{split} {top1_text(table, split)}' for split in SPLITS)} ({path})"


def _scores(cfg: Pipeline, modality: str, checkpoint: Path, console: Console) -> ScoreTable:
    store = open_crops(cfg.paths.crops)
    logits, digest = score_store(cfg, modality, checkpoint, np.arange(len(store)), console)
    return ScoreTable(
        ids=[row["id"] for row in store.index],
        splits=[row["split"] for row in store.index],
        labels=np.array([row["label"] for row in store.index], dtype=np.int64),
        logits=logits,
        modality=modality,
        checkpoint_digest=digest,
        pipeline_digest=cfg.digest(),
        class_names=list(store.class_names),
        groups=[row["group"] for row in store.index],
        group_kind=store.group_kind,
    )
