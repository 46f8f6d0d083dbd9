"""Stage 3: per-class logits of every stored sample (all splits) from the best checkpoint.

Writes <workdir>/scores/<modality>.parquet in the ScoreTable format of mmfc.scores.format,
stamped with the sha256 of best.pt and the pipeline digest so later stages can tell which
weights and configuration produced it, with each sample's group copied from the crop index:
stage 4 reads the groups there, and so needs no more than the score files.

Scoring is embarrassingly parallel over samples (mmfc/scores/logits.py: score_rows, which the
out-of-fold stage runs too).
"""

from __future__ import annotations

from rich.console import Console

from mmfc.branches import declared_branch
from mmfc.config import Pipeline
from mmfc.crops.store import INDEX
from mmfc.scores.format import SPLITS, top1_text, write_scores
from mmfc.scores.logits import score_rows
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
            table = score_rows(cfg, branch.name, checkpoint, None, console)
            write_scores(path, table)
        run.summary = f"top-1 {', '.join(f'{split} {top1_text(table, split)}' for split in SPLITS)} ({path})"
