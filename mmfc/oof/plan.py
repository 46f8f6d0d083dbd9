"""The out-of-fold stage's folds, and whether a pipeline's fusion needs them.

The training side (the train and val splits of the crop index, TRAINING_SIDE) is cut into k folds
of whole groups (mmfc/folds.py: make_folds, seeded by fusion.oof.seed): fold f's network learns
from the other k - 1 folds and scores fold f, so every training clip gets one score from a
network that never saw its performer or source video. Where the data names no groups (every clip
its own), the folds are stratified by class instead, and say so.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmfc.config import OOFConfig, Pipeline
from mmfc.crops.store import INDEX, open_crops
from mmfc.data.sources import open_source
from mmfc.folds import TRAINING_SIDE, FitOn, Folds, distinct_groups, make_folds, resolve_fit_on
from mmfc.scores.format import ScoreTable


@dataclass
class FoldPlan:
    """The training side's rows of the crop index and the fold of each."""

    rows: np.ndarray  # positions in the crop index, [N]
    ids: list[str]  # each row's sample id
    groups: list[str]  # each row's group
    group_kind: str  # "performer", "source video", "group"
    folds: Folds

    @property
    def count(self) -> int:
        return self.folds.count

    def held_out(self, fold: int) -> np.ndarray:
        """The crop-index positions fold `fold` holds out (its network scores them)."""
        return self.rows[self.folds.index == fold]

    def learn(self, fold: int) -> list[int]:
        """The crop-index positions fold `fold`'s network learns from: every other fold."""
        return [int(i) for i in self.rows[self.folds.index != fold]]

    def fold_digest(self, fold: int) -> str:
        """Which samples fold `fold` learns from, as a short digest: a network is resumed or kept
        only while it still names the same samples."""
        learnt = sorted(self.ids[i] for i in np.flatnonzero(self.folds.index != fold))
        return hashlib.sha256("\n".join(learnt).encode()).hexdigest()[:16]

    def fold_groups(self) -> list[dict[str, int]]:
        """Each fold's groups and their clips ({group: clips}), fold by fold."""
        return [dict(sorted(Counter(g for g, f in zip(self.groups, self.folds.index) if f == fold).items()))
                for fold in range(self.count)]

    def describe(self) -> dict:
        """For weights.json, `mmfc info` and the report: folds, what keeps them apart, their groups."""
        return {
            "folds": self.count,
            "grouped_by": self.folds.grouped_by,
            "group_kind": self.group_kind,
            "clips": len(self.ids),
            "fold_groups": self.fold_groups(),
        }


def fold_plan(index: list[dict], group_kind: str, oof: OOFConfig) -> FoldPlan:
    """The folds of the training side of a crop index's rows (each with "id", "split", "label"
    and "group"), as `oof` sets their number and seed. ValueError with fewer than 2 such rows."""
    rows = np.array([i for i, row in enumerate(index) if row["split"] in TRAINING_SIDE], dtype=np.int64)
    ids = [index[i]["id"] for i in rows]
    groups = [index[i]["group"] for i in rows]
    labels = np.array([index[i]["label"] for i in rows], dtype=np.int64)
    kept_apart = distinct_groups(groups)
    folds = make_folds(labels, kept_apart, (group_kind or "group") if kept_apart else None, oof.folds, oof.seed)
    return FoldPlan(rows, ids, groups, group_kind, folds)


def training_side(table: ScoreTable) -> ScoreTable:
    """A score table's rows of the training side (train and val), in file order."""
    return table.take(np.flatnonzero([split in TRAINING_SIDE for split in table.splits]))


def plan_of_scores(table: ScoreTable, oof: OOFConfig) -> FoldPlan:
    """The folds the out-of-fold stage cut the training rows of a score file into (its rows in the
    crop index's order, as stages 3 and oof write them; `table.groups` given), its positions in
    the table's."""
    rows = [{"id": sample, "split": split, "label": int(label), "group": group}
            for sample, split, label, group in zip(table.ids, table.splits, table.labels, table.groups)]
    return fold_plan(rows, table.group_kind, oof)


def describe_folds(plan: FoldPlan, limit: int = 12) -> list[str]:
    """The folds in words, a line each: its clips and groups (at most `limit` named)."""
    if plan.folds.grouped_by is None:
        head = (f"{plan.count} folds of the training side's {len(plan.ids)} clips, stratified by class: the data names "
                "no groups, so a fold's clips may share a performer or video with the others")
    else:
        head = (f"{plan.count} folds of whole {plan.folds.grouped_by}s over the training side's {len(plan.ids)} clips "
                f"of {plan.folds.num_groups} {plan.folds.grouped_by}s (fusion.oof.folds, fusion.oof.seed)")
    lines = [head]
    for fold, groups in enumerate(plan.fold_groups()):
        if plan.folds.grouped_by is None:
            lines.append(f"  fold {fold}: {int(np.sum(plan.folds.index == fold))} clips")
            continue
        named = ", ".join(f"{g} ({n})" for g, n in list(groups.items())[:limit])
        more = f", and {len(groups) - limit} more" if len(groups) > limit else ""
        lines.append(f"  fold {fold}: {sum(groups.values())} clips of {len(groups)}: {named}{more}")
    return lines


def oof_scores_path(cfg: Pipeline, branch: str) -> Path:
    """Where the out-of-fold stage writes a branch's out-of-fold scores."""
    return cfg.paths.oof / f"{branch}.parquet"


def data_rows(cfg: Pipeline) -> tuple[list[dict], str, Path | str]:
    """The clips as rows with "id", "split", "label" and "group", what their groups are, and what
    listed them: the crop index once stage 1 has run, else the data source (the same clips, less
    any stage 1 fails on)."""
    if (cfg.paths.crops / INDEX).is_file():
        store = open_crops(cfg.paths.crops)
        return store.index, store.group_kind, cfg.paths.crops
    source = open_source(cfg.data)
    rows = [{"id": s.id, "split": s.split, "label": s.label, "group": s.group} for s in source.samples()]
    return rows, source.group_kind, cfg.data.root


def fit_on_of_data(cfg: Pipeline) -> tuple[FitOn, Path | str]:
    """Where stage 4 will fit this pipeline's fusion, and what says so (`data_rows`; the pipeline
    alone where fusion.fit_on is not "auto")."""
    if cfg.fusion.fit_on != "auto":
        return resolve_fit_on(cfg.fusion, {}, ""), "the pipeline"
    rows, group_kind, told_by = data_rows(cfg)
    groups = Counter(row["group"] for row in rows if row["split"] == "val")
    return resolve_fit_on(cfg.fusion, dict(groups), group_kind), told_by
