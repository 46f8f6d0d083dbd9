"""Stage 4: fit every fusion candidate on the declared branches' scores of the rows the pipeline
fits on (`fusion.fit_on`: the validation split, or the out-of-fold scores of every training clip,
mmfc/fusion/fit_scores.py), choose by cross-validation inside them, apply to all rows.

Reads <workdir>/scores/<branch>.parquet of every branch the pipeline declares (`branches`) and
the data supports (a video branch on data without videos is left out, and weights.json says
why), and where it fits on out-of-fold scores <workdir>/oof/<branch>.parquet too; writes <workdir>/fusion/<candidate>.parquet for each candidate, fused.parquet (a copy of
the selected one: the method named by fusion.method, or the one "auto" chose) and weights.json
(the branches, fitted parameters, cross-validated figures of every candidate and of every value
of its free choice, why the selected one was selected, and the sha256 of each Parquet file and
of itself). One branch is the fusion: its temperature-scaled scores. The set is built in a fresh
folder that replaces fusion/ whole, and is read through mmfc/fusion/files.py, which refuses a
mixed or edited one. The test rows are scored but never looked at while fitting or choosing.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import warnings
from collections import Counter
from pathlib import Path

from rich.console import Console

from mmfc import atomic
from mmfc.branches import get_branch, supported_branches
from mmfc.config import ConfigError, Pipeline
from mmfc.crops.store import open_crops
from mmfc.data.sources import few_groups_warning
from mmfc.errors import DataError, DataWarning
from mmfc.folds import Folds, FitOn
from mmfc.fusion.files import FUSED, WEIGHTS, FusionSet, file_digests, open_fusion, write_weights
from mmfc.fusion.fit_scores import FIT_ON_OOF, fit_on_of_scores, fit_rows
from mmfc.fusion.methods import FittedFusion
from mmfc.fusion.selection import Candidate, fit_folds, sample_groups, select_fusion
from mmfc.scores.format import ScoreTable, check_compatible, read_scores, split_metrics, top1_text, write_scores
from mmfc.stage_frame import Stage, run_stage
from mmfc.stats import accuracy_interval, mean_class_interval

FIT_SPLIT = "val"
# Seed of the bootstrap intervals written beside the cross-validated accuracies.
INTERVAL_SEED = 0


def fuse_stage(cfg: Pipeline) -> Stage:
    """Its output is the fusion folder, swapped in whole; the folds' groups come from the data
    settings, the branches fused from `branches`, the out-of-fold scores (where it fits on
    them) from their own settings, which their files record."""
    return Stage("fuse", "mmfc stage fuse", lock="fusion", settings=("data", "branches", "fusion"),
                 outputs=(cfg.paths.fusion,))


def run_fuse(cfg: Pipeline) -> None:
    with run_stage(cfg, fuse_stage(cfg), Console(stderr=True)) as run:
        paths, left_out = fused_branches(cfg)
        tables = _aligned_tables(paths)
        fit_on = fit_on_of_scores(cfg, next(iter(tables.values())))
        fit, fit_paths = fit_rows(cfg, fit_on.scores, tables, paths)
        inputs = list(dict.fromkeys([*paths.values(), *fit_paths.values()]))
        with run.producing(cfg.paths.fusion, inputs=inputs):
            _fuse(cfg, paths, left_out, tables, fit_on, fit, fit_paths)
        run.summary = summary_line(open_fusion(cfg.paths.fusion), paths)


def fused_branches(cfg: Pipeline) -> tuple[dict[str, Path], dict[str, str]]:
    """The score file of every declared branch the data supports, by branch, and why each other
    declared branch is left out. Only a video branch without scores asks the crop store whether
    the data has videos; any other missing score file is a DataError naming stage 3."""
    unscored = [name for name in cfg.branches
                if get_branch(name).needs_video and not (cfg.paths.scores / f"{name}.parquet").is_file()]
    has_video = open_crops(cfg.paths.crops).has_video if unscored else True
    kept, left_out = supported_branches(cfg, has_video, cfg.paths.crops)
    return {name: score_path(cfg, name) for name in kept}, left_out


def _aligned_tables(paths: dict[str, Path]) -> dict[str, ScoreTable]:
    """Each branch's score file, its rows in the first one's order; DataError for two that do
    not describe the same clips."""
    tables = {name: read_scores(path) for name, path in paths.items()}
    first = next(iter(tables))
    for name in list(tables)[1:]:
        check_compatible(tables[first], tables[name], paths[first], paths[name])
        tables[name] = tables[name].aligned_to(tables[first].ids)
    return tables


def _fuse(cfg: Pipeline, paths: dict[str, Path], left_out: dict[str, str], tables: dict[str, ScoreTable],
          fit_on: FitOn, fit: dict[str, ScoreTable], fit_paths: dict[str, Path]) -> None:
    first = next(iter(tables))
    reference = tables[first]
    fit_rows, fit_path = fit[first], fit_paths[first]
    if len(fit_rows.ids) < 2:
        where = ("the training side (train and val)" if fit_on.scores == FIT_ON_OOF
                 else f"split {FIT_SPLIT!r}, and fusion weights are fit and cross-validated there, never on test")
        raise DataError(
            fit_path,
            f"{len(fit_rows.ids)} rows in {where}: that needs at least 2 samples; carve a validation split out of "
            "training (data.val_performers or data.val_fraction) and rerun stages 1-3, or fit on out-of-fold scores "
            "(fusion.fit_on = \"oof\")",
        )
    folds = fit_folds(fit_rows, fit_path, cfg.fusion)
    if fit_on.scores != FIT_ON_OOF:
        _warn_of_few_groups(fit_rows, fit_path, folds)
    selection = select_fusion({name: rows.logits for name, rows in fit.items()}, fit_rows.labels, folds,
                              cfg.fusion.grid, cfg.fusion.metric)
    selected = selection.auto_pick if cfg.fusion.method == "auto" else cfg.fusion.method
    if selected not in selection.candidates:
        raise ConfigError(f"fusion.method = {selected!r} is no candidate for the branches the data supports, "
                          f"{list(tables)} ({'; '.join(f'{n} {why}' for n, why in left_out.items())}): give \"auto\" "
                          f"or one of {', '.join(selection.candidates)}")

    checkpoint_digest = hashlib.sha256("+".join(t.checkpoint_digest for t in tables.values()).encode()).hexdigest()[:16]
    # The whole set is built in a fresh folder and swapped in at once (mmfc.fusion.files).
    with atomic.atomic_path(cfg.paths.fusion) as out:
        out.mkdir()
        methods = {}
        for name, candidate in selection.candidates.items():
            fused = _fused_table(tables, candidate.fitted, name, checkpoint_digest, cfg.digest())
            write_scores(out / f"{name}.parquet", fused)
            methods[name] = _describe_candidate(candidate, name in selection.baselines, fused.rows(FIT_SPLIT),
                                                fit_rows)
        shutil.copyfile(out / f"{selected}.parquet", out / f"{FUSED}.parquet")
        weights = {
            "branches": list(selection.branches),
            "left_out": left_out,
            "fit_split": FIT_SPLIT if fit_on.scores != FIT_ON_OOF else FIT_ON_OOF,
            "fit_on": {"requested": cfg.fusion.fit_on, "scores": fit_on.scores, "reason": fit_on.reason},
            "num_fit_samples": len(fit_rows.ids),
            "num_classes": reference.num_classes,
            "metric": cfg.fusion.metric,
            "grid": cfg.fusion.grid,
            "requested": cfg.fusion.method,
            "selected": selected,
            "fused_file": f"{FUSED}.parquet",
            "auto": {
                "pick": selection.auto_pick,
                "reason": selection.auto_reason,
                "baselines": list(selection.baselines),
                "near_tie": "within one standard error of the paired per-sample NLL difference, or 1 nat in total",
                "accuracy_tie": "within one standard error of the paired per-sample accuracy difference, or one sample",
                "tie_order": list(selection.tie_order),
            },
            "cv": {**folds.describe(), "seed": cfg.fusion.cv_seed},
            "inputs": {name: {"path": str(paths[name]), "checkpoint_digest": table.checkpoint_digest}
                       for name, table in tables.items()},
            "fitted_on": {name: {"path": str(fit_paths[name]), "checkpoint_digest": table.checkpoint_digest}
                          for name, table in fit.items()},
            "methods": methods,
            "files": file_digests(out),  # sha256 of every Parquet file of the set: readers refuse a mixed one
        }
        write_weights(out / WEIGHTS, _json_safe(weights))


def _warn_of_few_groups(val: ScoreTable, path: Path, folds: Folds) -> None:
    """A DataWarning naming the validation groups when there are fewer than the fusion needs to
    learn what holds across people or recordings (mmfc.data.sources.few_groups_warning)."""
    groups, grouped_by = sample_groups(val, path)
    few_groups = few_groups_warning(dict(sorted(Counter(groups).items()))) if groups else None
    if few_groups:
        held_out = (f"each of its {folds.count} cross-validation folds holds out one {grouped_by}" if folds.grouped_by
                    else f"its cross-validation folds are class-stratified instead, every fold of the same {grouped_by}")
        warnings.warn(f"{path}: {few_groups}; {held_out}; or fit the fusion on out-of-fold scores of every training "
                      "clip (fusion.fit_on = \"auto\" or \"oof\")", DataWarning)


def summary_line(fusion: FusionSet, branches: dict[str, Path]) -> str:
    """The selected method, why (one line), and the val and test top-1 of it and of each branch."""
    weights = fusion.weights
    if weights["requested"] == "auto":
        # The reason's first two sentences: the pick's cross-validated figures, and against what.
        why = "auto: " + ". ".join(weights["auto"]["reason"].split(". ")[:2]).rstrip(".")
    else:
        why = f"fusion.method = {weights['requested']!r}"
    if weights.get("fit_on", {}).get("scores") == FIT_ON_OOF:
        why += f"; fitted on the out-of-fold scores of {weights['num_fit_samples']} training clips"
    tables = {weights["selected"]: fusion.scores(FUSED)} | {name: read_scores(path) for name, path in branches.items()}
    figures = ", ".join(f"{name} {top1_text(table, 'val')} / {top1_text(table, 'test')}" for name, table in tables.items())
    return f"selected {weights['selected']} ({why}); top-1 val / test: {figures}"


def score_path(cfg: Pipeline, modality: str) -> Path:
    """Where stage 3 writes a modality's scores; DataError naming the stage when absent."""
    path = cfg.paths.scores / f"{modality}.parquet"
    if not path.is_file():
        raise DataError(path, f"missing; written by `mmfc stage scores --modality {modality}` (stage 3)")
    return path


def _describe_candidate(candidate: Candidate, baseline: bool, val: ScoreTable, fitted_on: ScoreTable) -> dict:
    """A candidate's entry in weights.json: its parameters, its figures on the validation rows
    `val`, and its cross-validated ones over the rows it was fitted on, `fitted_on`."""
    cv = candidate.cv
    top1 = accuracy_interval(int(cv.correct.sum()), cv.correct.size, INTERVAL_SEED)
    mean_class = mean_class_interval(cv.correct, fitted_on.labels, fitted_on.num_classes, INTERVAL_SEED)
    entry = {
        "params": candidate.fitted.params(),
        "val": split_metrics(val),
        "cv": {
            **cv.as_dict(),
            "top1_interval": [top1.low, top1.high],
            "mean_class_interval": [mean_class.low, mean_class.high],
        },
        "baseline": baseline,
    }
    if candidate.shares is not None:
        entry["branch_shares"] = candidate.shares
    if candidate.choice_name:
        entry["choice"] = {
            "name": candidate.choice_name,
            "chosen": candidate.chosen,
            "values": [c.value for c in candidate.choices],
            "cv_nll": [c.cv.nll for c in candidate.choices],
            "cv_top1": [c.cv.top1 for c in candidate.choices],
            "cv_mean_class": [c.cv.mean_class for c in candidate.choices],
        }
    if candidate.note:
        entry["note"] = candidate.note
    return entry


def _fused_table(
    tables: dict[str, ScoreTable], method: FittedFusion, name: str, checkpoint_digest: str, pipeline_digest: str
) -> ScoreTable:
    reference = next(iter(tables.values()))
    scores = method.log_probabilities({branch: table.logits for branch, table in tables.items()})
    return ScoreTable(
        ids=reference.ids,
        splits=reference.splits,
        labels=reference.labels,
        logits=scores,
        modality=f"fusion:{name}",
        checkpoint_digest=checkpoint_digest,
        pipeline_digest=pipeline_digest,
        class_names=reference.class_names,
    )


def _json_safe(value):
    """Infinite shrinkage (the global weight itself) as the string "inf": JSON has no infinity."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
