"""The scores stage 4 fits the fusion on, for the stage and for the report that describes it.

`fusion.fit_on` (mmfc/folds.py: resolve_fit_on) picks them: "val", the validation rows of stage
3's score files, from the stage-2 networks; "oof", the training rows (train and val) of the
out-of-fold stage's files, <workdir>/oof/<branch>.parquet, each clip scored by a network that
never saw its group. Either way the fitted fusion is applied to stage 3's scores of every clip,
and the test rows choose nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

from mmfc.config import Pipeline
from mmfc.errors import DataError
from mmfc.folds import TRAINING_SIDE, FitOn, resolve_fit_on
from mmfc.oof.plan import oof_scores_path, training_side
from mmfc.scores.format import ScoreTable, check_compatible, read_scores

FIT_ON_VAL = "val"
FIT_ON_OOF = "oof"


def fit_on_of_scores(cfg: Pipeline, reference: ScoreTable) -> FitOn:
    """Where this pipeline fits its fusion, given a branch's score file (its validation rows and
    their groups)."""
    val = reference.rows("val")
    return resolve_fit_on(cfg.fusion, dict(Counter(val.groups or val.ids)), reference.group_kind)


def oof_path(cfg: Pipeline, branch: str) -> Path:
    """A branch's out-of-fold score file; DataError naming the stage that writes it when absent."""
    path = oof_scores_path(cfg, branch)
    if not path.is_file():
        raise DataError(path, f"missing: the fusion is fitted on out-of-fold scores (fusion.fit_on), written by "
                              f"`mmfc stage oof --modality {branch}` (make oof)")
    return path


def read_oof_scores(cfg: Pipeline, branches: list[str], reference: ScoreTable,
                    reference_path: Path) -> dict[str, ScoreTable]:
    """The out-of-fold score file of each branch, its rows in `reference`'s order (a stage-3 score
    file of the same clips, labels and groups, else DataError). Which training clips validate
    may differ: the out-of-fold networks learn from train and val alike."""
    tables = {}
    for branch in branches:
        path = oof_path(cfg, branch)
        table = read_scores(path)
        check_compatible(_sides(reference), _sides(table), reference_path, path)
        tables[branch] = table.aligned_to(reference.ids)
    return tables


def _sides(table: ScoreTable) -> ScoreTable:
    """The table with its training splits as one ("train"), test kept apart."""
    return replace(table, splits=["train" if split in TRAINING_SIDE else split for split in table.splits])


def fit_rows(cfg: Pipeline, scores: str, finals: dict[str, ScoreTable],
             final_paths: dict[str, Path]) -> tuple[dict[str, ScoreTable], dict[str, Path]]:
    """The rows the fusion is fitted on, by branch ("val": the validation rows of the stage-3
    tables `finals`, aligned; "oof": the training rows of the out-of-fold files), and the file
    each came from."""
    if scores == FIT_ON_VAL:
        return {b: t.rows("val") for b, t in finals.items()}, dict(final_paths)
    first = next(iter(finals))
    oof = read_oof_scores(cfg, list(finals), finals[first], final_paths[first])
    return {b: training_side(t) for b, t in oof.items()}, {b: oof_scores_path(cfg, b) for b in finals}
