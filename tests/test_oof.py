"""Fusion fitted on out-of-fold scores (issue 25): the folds, `fusion.fit_on`, the selection's
guarantee on out-of-fold scores, the out-of-fold stage's resume, and a run end to end."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SYNTH_PIPELINE, tiny_run_overrides
from typer.testing import CliRunner

from mmfc.branches import get_branch
from mmfc.cli import app
from mmfc.config import ConfigError, FusionConfig, OOFConfig, load_pipeline
from mmfc.crops.store import open_crops
from mmfc.folds import TRAINING_SIDE, make_folds, resolve_fit_on
from mmfc.fusion.files import open_fusion
from mmfc.fusion.selection import choose_auto, select_fusion
from mmfc.metrics import topk_accuracy
from mmfc.oof import stage as oof_stage
from mmfc.oof.plan import fold_plan
from mmfc.run_folder import open_run
from mmfc.scores.format import read_scores
from mmfc.stage_frame import stale_reason


def index_rows(sizes: dict[str, int], splits: dict[str, str]) -> list[dict]:
    """Crop-index rows: `sizes[g]` clips of each group g, in split `splits[g]`, labels 0-3 in turn."""
    return [{"id": f"{g}-{i}", "split": splits[g], "label": i % 4, "group": g}
            for g, n in sizes.items() for i in range(n)]


def test_folds_keep_groups_whole_and_hold_out_every_training_clip_once():
    sizes = {f"P{p:03d}": 3 + p for p in range(1, 10)} | {"P020": 12, "P021": 7}
    splits = {g: "val" if g in ("P004", "P007") else "train" for g in sizes} | {"P020": "test", "P021": "test"}
    rows = index_rows(sizes, splits)
    plan = fold_plan(rows, "performer", OOFConfig(folds=5, seed=0))
    training = {i for i, row in enumerate(rows) if row["split"] in TRAINING_SIDE}
    assert plan.count == 5 and plan.folds.grouped_by == "performer"
    held = [set(plan.held_out(f).tolist()) for f in range(plan.count)]
    assert sum(len(h) for h in held) == len(training) and set().union(*held) == training  # each once
    for fold in range(plan.count):
        assert set(plan.learn(fold)) == training - held[fold]
    for group in sizes:
        folds = {f for f in range(plan.count) for i in held[f] if rows[i]["group"] == group}
        assert len(folds) == (0 if splits[group] == "test" else 1), group  # whole, and never a test group
    # Largest first into the smallest fold: the folds' clips are within one group's size of each other.
    clips = [len(h) for h in held]
    assert max(clips) - min(clips) <= max(sizes.values())
    # Seeded: the same seed cuts the same folds; groups of one size, another seed (here) others.
    even = index_rows({f"P{p:03d}": 6 for p in range(10)}, {f"P{p:03d}": "train" for p in range(10)})
    cut = fold_plan(even, "performer", OOFConfig(folds=5, seed=0)).folds.index
    assert np.array_equal(fold_plan(even, "performer", OOFConfig(folds=5, seed=0)).folds.index, cut)
    assert any(not np.array_equal(fold_plan(even, "performer", OOFConfig(folds=5, seed=s)).folds.index, cut)
               for s in range(1, 6))
    # The fold digest names what a fold learns from: another cut, another network.
    assert plan.fold_digest(0) != plan.fold_digest(1)
    # Fewer groups than folds: a fold per group.
    three = index_rows({"A": 4, "B": 5, "C": 6}, {"A": "train", "B": "val", "C": "train"})
    assert fold_plan(three, "performer", OOFConfig(folds=5, seed=0)).count == 3


def test_folds_without_groups_are_stratified_by_class():
    rows = index_rows({f"clip{i}": 1 for i in range(40)}, {f"clip{i}": "train" for i in range(40)})
    for i, row in enumerate(rows):
        row["label"] = i % 4
    plan = fold_plan(rows, "", OOFConfig(folds=5, seed=3))
    assert plan.folds.grouped_by is None and plan.count == 5
    labels = np.array([row["label"] for row in rows])
    for fold in range(5):
        assert np.bincount(labels[plan.held_out(fold)], minlength=4).tolist() == [2, 2, 2, 2]


def test_auto_fits_on_out_of_fold_scores_where_validation_is_thin():
    auto = FusionConfig(fit_on="auto")
    one_actor = resolve_fit_on(auto, {"A01": 24}, "performer")
    assert one_actor.scores == "oof" and "24 clips of 1 performer" in one_actor.reason
    assert resolve_fit_on(auto, {f"P{i}": 100 for i in range(6)}, "performer").scores == "val"
    assert resolve_fit_on(auto, {f"P{i}": 40 for i in range(6)}, "performer").scores == "oof"  # 240 clips
    assert resolve_fit_on(auto, {f"P{i}": 500 for i in range(4)}, "performer").scores == "oof"  # 4 performers
    assert resolve_fit_on(FusionConfig(fit_on="val"), {"A01": 24}, "performer").scores == "val"
    assert resolve_fit_on(FusionConfig(fit_on="oof"), {f"P{i}": 500 for i in range(9)}, "").scores == "oof"
    with pytest.raises(ConfigError, match="fusion.fit_on must be one of"):
        load_pipeline(None, ["fusion.fit_on=test"])
    with pytest.raises(ConfigError, match="fusion.oof.folds must be at least 2"):
        load_pipeline(None, ["fusion.oof.folds=1"])


def half_right_scores(rng: np.random.Generator, groups: int, per_group: int, classes: int):
    """Out-of-fold scores of two branches over `groups` groups: `uneven` confidently right on the
    first half of the groups and confidently at chance on the rest, `steady` modestly right on
    every group. -> (logits by branch, labels, groups)"""
    labels = rng.integers(0, classes, groups * per_group)
    group = np.repeat(np.arange(groups), per_group)
    onehot = np.eye(classes)
    guessed = np.where(group < groups // 2, labels, rng.integers(0, classes, labels.size))
    uneven = 5.0 * onehot[guessed] + rng.normal(0, 1, (labels.size, classes))
    steady = 1.5 * onehot[labels] + rng.normal(0, 1, (labels.size, classes))
    return {"uneven": uneven, "steady": steady}, labels, [f"P{g:03d}" for g in group]


def test_the_guarantee_holds_on_out_of_fold_scores_of_a_branch_right_on_half_the_groups():
    rng = np.random.default_rng(0)
    logits, labels, groups = half_right_scores(rng, groups=10, per_group=16, classes=6)
    folds = make_folds(labels, groups, "performer", 5, 0)
    selection = select_fusion(logits, labels, folds, grid=21, metric="top1")
    cv = {name: candidate.cv.nll for name, candidate in selection.candidates.items()}
    # No higher cross-validated NLL than either branch alone or any fixed ratio.
    assert all(cv[selection.auto_pick] <= cv[name] for name in selection.baselines)

    # One group where the uneven branch is right, as one validation performer would be: fitted
    # there, the fusion leans on it; fitted across all groups, on what holds across them.
    first = np.flatnonzero(np.array(groups) == "P000")
    alone = select_fusion({b: z[first] for b, z in logits.items()}, labels[first],
                          make_folds(labels[first], None, None, 5, 0), grid=21, metric="top1")
    weight = lambda s: s.candidates["global"].fitted.rule.weights["uneven"]  # noqa: E731
    assert weight(selection) < weight(alone)
    # On new groups of the same kind, the fusion fitted across groups does better than the one
    # fitted on one group, and at least as well as the better branch alone.
    test_logits, test_labels, _ = half_right_scores(rng, groups=10, per_group=24, classes=6)

    def test_top1(s) -> float:
        return topk_accuracy(s.candidates[s.auto_pick].fitted.apply(test_logits), test_labels, 1)

    best_single = max(topk_accuracy(z, test_labels, 1) for z in test_logits.values())
    assert test_top1(selection) > test_top1(alone)
    assert test_top1(selection) >= best_single


def test_ties_on_out_of_fold_scores_go_as_on_validation():
    """Two branches with the same scores: each alone and their equal ratio tie exactly, and the
    tie goes to the fixed recipe, as the tie order says (a branch is never dropped on a tie)."""
    rng = np.random.default_rng(1)
    logits, labels, groups = half_right_scores(rng, groups=8, per_group=20, classes=5)
    same = {"a": logits["steady"], "b": logits["steady"].copy()}
    selection = select_fusion(same, labels, make_folds(labels, groups, "performer", 5, 0), grid=21, metric="top1")
    tied = {name: selection.candidates[name] for name in ("a_alone", "b_alone", "pyskl_1_1")}
    assert len({round(c.cv.nll, 9) for c in tied.values()}) == 1
    assert choose_auto(tied, "top1", ("a", "b"))[0] == "pyskl_1_1"
    assert selection.auto_pick not in ("a_alone", "b_alone")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_killed_oof_stage_loses_at_most_the_fold_in_progress(tiny_run, tmp_path, monkeypatch):
    threads = torch.get_num_threads()
    cfg = load_pipeline(SYNTH_PIPELINE, [*tiny_run_overrides(tiny_run.parent / "data", tmp_path / "run"),
                                         f"crops_from={json.dumps(str(tiny_run))}"])
    trained, real_fit = [], oof_stage.fit_branch

    def fit(*args, **kwargs):
        trained.append(args[4].name)  # the fold's folder
        if trained == ["fold-0", "fold-1"] and kill:
            raise KeyboardInterrupt  # killed as fold 1 starts to train
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(oof_stage, "fit_branch", fit)
    kill = True
    try:
        with pytest.raises(KeyboardInterrupt):
            oof_stage.run_oof(cfg, "skel")
        folder = cfg.paths.oof / "skel"
        assert (folder / "fold-0.parquet").is_file() and not (folder / "fold-1.parquet").exists()
        assert not (cfg.paths.oof / "skel.parquet").exists()
        kept = {name: _sha(folder / name) for name in ("fold-0.parquet", "fold-0/best.pt")}

        kill, trained[:] = False, []
        oof_stage.run_oof(cfg, "skel")
        assert trained == ["fold-1"]  # fold 0 kept as it was
        assert {name: _sha(folder / name) for name in kept} == kept
        table = read_scores(cfg.paths.oof / "skel.parquet")
        store = open_crops(cfg.paths.crops)
        assert sorted(table.ids) == sorted(row["id"] for row in store.index)  # every clip once
        assert stale_reason(cfg.paths.oof / "skel.parquet", cfg, oof_stage.oof_settings(get_branch("skel"))) \
            is None

        trained[:] = []
        oof_stage.run_oof(cfg, "skel")  # all current: nothing trained
        assert trained == []
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_fit_on_auto_through_the_cli_fits_on_out_of_fold_scores(tiny_run, tmp_path):
    """A validation split of one performer: auto fits on out-of-fold scores; `mmfc info` shows the
    folds, `mmfc branches --oof` the branches to run them for; stage 4 fits on every training clip
    and applies the fusion to stage 3's scores; the report shows the spread across performers."""
    threads = torch.get_num_threads()
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "fusion")
    sets = [arg for item in [*tiny_run_overrides(tiny_run.parent / "data", run), "fusion.fit_on=auto",
                             "fusion.oof.folds=3"] for arg in ("--set", item)]
    runner = CliRunner()

    def mmfc(*args: str) -> str:
        result = runner.invoke(app, [*args, "--pipeline", str(SYNTH_PIPELINE), *sets])
        assert result.exit_code == 0, result.output
        return result.output

    try:
        info = mmfc("info")
        assert "fusion: fitted on out-of-fold scores (fusion.fit_on = 'auto': validation holds 6 clips of 1 performer" \
            in info
        assert "out-of-fold: 2 folds of whole performers over the training side's 12 clips of 2 performers" in info
        assert "fold 0: 6 clips of 1: P00" in info and "fold 1: 6 clips of 1: P00" in info
        listed = mmfc("branches", "--oof")
        assert "note: fusion.fit_on = 'auto': validation holds 6 clips of 1 performer" in listed
        assert listed.splitlines()[-1].split() == ["rgb", "skel"]
        for branch in ("rgb", "skel"):
            out = mmfc("stage", "oof", "--modality", branch)
            assert "1 epochs on about 6 clips each" in out and "3 trainings of the branch in all" in out
            assert f"oof-{branch}: out-of-fold top-1" in out
        assert "fitted on the out-of-fold scores of 12 training clips" in mmfc("stage", "fuse")
        mmfc("stage", "report")
    finally:
        torch.set_num_threads(threads)

    fusion = open_fusion(run / "fusion")
    weights = fusion.weights
    assert weights["fit_on"]["scores"] == "oof" and weights["num_fit_samples"] == 12
    assert weights["fitted_on"]["skel"]["path"] == str(run / "oof" / "skel.parquet")
    # Fitted on the out-of-fold scores, applied to stage 3's: the fused test rows are the fitted
    # fusion of stage 2's networks' scores.
    name, fitted = fusion.fitted()
    finals = {b: read_scores(run / "scores" / f"{b}.parquet") for b in ("rgb", "skel")}
    fused = fusion.scores("fused").aligned_to(finals["rgb"].ids)
    expected = fitted.log_probabilities({b: t.aligned_to(finals["rgb"].ids).logits for b, t in finals.items()})
    assert np.allclose(fused.logits, expected, atol=1e-5)
    assert math.isfinite(weights["methods"][name]["cv"]["nll"])
    report = (run / "report" / "report.md").read_text()
    assert "## Out-of-fold scores across performers" in report and "mean of the fold networks" in report
    assert "out-of-fold scores of every training clip" in report
    assert (run / "report" / "groups.png").stat().st_size > 0
    # predict and export open the run as any other: the networks the fusion applies to are stage 2's.
    assert sorted(open_run(run).models) == ["rgb", "skel"]
