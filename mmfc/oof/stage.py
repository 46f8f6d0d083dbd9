"""The out-of-fold stage: a branch trained again on k - 1 folds of whole groups of the training
side, k times, each network scoring the fold it left out, so that stage 4 can fit the fusion on
a score of every training clip from a network that never saw its performer or source video.

`mmfc stage oof --modality B` writes <workdir>/oof/:
    B/fold-<f>/          fold f's network, trained by stage 2's code (mmfc/train/fit.py) on the
                         train and val clips of the other folds: best.pt (its last epoch: every
                         clip it could choose an epoch on is either learnt from or held out),
                         last.pt, metrics.jsonl, done.json
    B/fold-<f>.parquet   its scores of fold f's clips and of the test split (stage 3's code,
                         mmfc/scores/logits.py)
    B.parquet            the out-of-fold score file (the score format, groups included): each
                         training clip's score from the network that held it out, and each test
                         clip's mean logits over the k networks (the fold average, which the
                         report sets beside stage 2's network; stage 4 fits on the training
                         clips alone, and test chooses nothing)
Each output has its manifest (mmfc/stage_frame.py): a rerun skips every fold whose scores are
current and continues a fold's training from its last.pt, so a kill loses at most the epoch in
progress. The networks stage 4's fusion is applied to stay stage 2's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from rich.console import Console

from mmfc.branches import Branch, check_store_feeds, declared_branch, training_settings
from mmfc.config import ConfigError, Pipeline
from mmfc.crops.store import INDEX, open_crops
from mmfc.errors import DataError
from mmfc.oof.plan import FoldPlan, describe_folds, fold_plan, oof_scores_path, training_side
from mmfc.scores.format import ScoreTable, read_scores, split_metrics, write_scores
from mmfc.scores.logits import score_rows
from mmfc.stage_frame import Stage, StageRun, run_stage
from mmfc.timings import clock
from mmfc.train.distributed import DistEnv, setup_distributed, teardown_distributed
from mmfc.train.fit import TrainingRows, fit_branch

console = Console(stderr=True)


def oof_settings(branch: Branch) -> tuple[str, ...]:
    """What a branch's out-of-fold scores depend on: its training and scoring settings and the folds."""
    return (*training_settings(branch), "scores", "fusion.oof")


def oof_stage(cfg: Pipeline, branch: Branch) -> Stage:
    """One lock and folder per branch: the branches' folds can run at once (make -j2 oof)."""
    folder = cfg.paths.oof / branch.name
    return Stage(f"oof-{branch.name}", f"mmfc stage oof --modality {branch.name}", lock=f"oof-{branch.name}",
                 settings=oof_settings(branch),
                 outputs=(folder, *(folder / f"fold-{f}" for f in range(cfg.fusion.oof.folds)),
                          oof_scores_path(cfg, branch.name)))


def run_oof(cfg: Pipeline, modality: str) -> None:
    branch = declared_branch(cfg, modality)
    env = setup_distributed()
    try:
        if env.world_size > 1:
            raise ConfigError("`mmfc stage oof` trains its folds one after another in one process: start it "
                              "without torchrun")
        with run_stage(cfg, oof_stage(cfg, branch), console) as run:
            _oof(cfg, branch, env, run)
    finally:
        teardown_distributed(env)


def _oof(cfg: Pipeline, branch: Branch, env: DistEnv, run: StageRun) -> None:
    store = open_crops(cfg.paths.crops)
    check_store_feeds(branch, store, cfg.branches)
    index = cfg.paths.crops / INDEX
    try:
        plan = fold_plan(store.index, store.group_kind, cfg.fusion.oof)
    except ValueError:
        raise DataError(index, "fewer than 2 training clips (train and val splits): nothing to cut into folds") from None
    for line in [*describe_folds(plan), cost_line(cfg, branch, plan, store)]:
        console.print(f"oof-{branch.name}: {line}", markup=False, highlight=False)
    folder = cfg.paths.oof / branch.name
    test = np.array([i for i, row in enumerate(store.index) if row["split"] == "test"], dtype=np.int64)
    fold_files = []
    for fold in range(plan.count):
        network, scores = folder / f"fold-{fold}", folder / f"fold-{fold}.parquet"
        fold_files.append(scores)
        if run.is_current(scores):
            console.print(f"oof-{branch.name}: fold {fold} of {plan.count} is done ({scores})", markup=False,
                          highlight=False)
            continue
        if not (run.is_current(network) and (network / "done.json").is_file()):
            console.print(f"oof-{branch.name}: fold {fold} of {plan.count}: training", markup=False, highlight=False)
            digest = hashlib.sha256(f"{cfg.digest(*oof_settings(branch))} {plan.fold_digest(fold)}".encode()).hexdigest()
            with run.producing(network, inputs=[index]):
                fit_branch(cfg, branch, store, TrainingRows(learn=plan.learn(fold), choose=[]), network, digest[:16],
                           resume=True, env=env)
        with run.producing(scores, inputs=[network / "best.pt", index]):
            write_scores(scores, score_rows(cfg, branch.name, network / "best.pt",
                                            np.concatenate([plan.held_out(fold), test]), console))
    path = oof_scores_path(cfg, branch.name)
    if not run.is_current(path):
        with run.producing(path, inputs=fold_files):
            write_scores(path, assemble(cfg, branch.name, plan, [read_scores(p) for p in fold_files], fold_files))
    run.summary = summary_line(read_scores(path), plan, path)


def assemble(cfg: Pipeline, branch: str, plan: FoldPlan, folds: list[ScoreTable], paths: list[Path]) -> ScoreTable:
    """The out-of-fold score file from the folds' score files (in fold order): every training
    clip's row from the fold that held it out, every test clip's mean logits over the folds.
    DataError naming a fold file that does not hold what the plan says it should."""
    held = [set(plan.ids[i] for i in np.flatnonzero(plan.folds.index == f)) for f in range(plan.count)]
    training, tests = [training_side(table) for table in folds], [table.rows("test") for table in folds]
    for fold, path in enumerate(paths):
        if set(training[fold].ids) != held[fold] or tests[fold].ids != tests[0].ids:
            raise DataError(path, f"does not hold fold {fold}'s clips and the test clips of the crop index as it is; "
                                  f"rerun `mmfc stage oof --modality {branch}`")
    rows = ScoreTable(
        ids=[i for t in training for i in t.ids] + tests[0].ids,
        splits=[s for t in training for s in t.splits] + tests[0].splits,
        labels=np.concatenate([*(t.labels for t in training), tests[0].labels]),
        logits=np.concatenate([*(t.logits for t in training), np.mean([t.logits for t in tests], axis=0)]),
        modality=branch,
        checkpoint_digest=hashlib.sha256("+".join(t.checkpoint_digest for t in folds).encode()).hexdigest(),
        pipeline_digest=cfg.digest(),
        class_names=folds[0].class_names,
        groups=[g for t in training for g in t.groups] + tests[0].groups,
        group_kind=folds[0].group_kind,
    )
    # The training clips in the crop index's order (plan_of_scores cuts the same folds from them),
    # then the test clips.
    order = {sample: position for position, sample in enumerate(plan.ids)}
    position = [order.get(sample, len(order) + n) for n, sample in enumerate(rows.ids)]
    return rows.take(np.argsort(position, kind="stable"))


def cost_line(cfg: Pipeline, branch: Branch, plan: FoldPlan, store) -> str:
    """What the folds cost, said before they start: k more trainings of the branch beside stage
    2's, and the time that suggests where stage 2 has trained here."""
    epochs = branch.section(cfg).train.epochs
    per_fold = round(len(plan.ids) * (plan.count - 1) / plan.count)
    text = (f"{plan.count} more trainings of {branch.name} ({epochs} epochs on about {per_fold} clips each) beside "
            f"stage 2's: {plan.count + 1} trainings of the branch in all")
    metrics = cfg.paths.train(branch.name) / "metrics.jsonl"
    try:
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        seconds = sum(float(row["seconds"]) for row in rows) / len(rows) * epochs
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return text  # stage 2 has not trained here yet
    learnt = sum(row["split"] == "train" for row in store.index)
    if not learnt:
        return text
    return (f"{text}; stage 2's took {clock(seconds)} here on {learnt} clips, so the folds take about "
            f"{clock(plan.count * seconds * per_fold / learnt)}")


def summary_line(table: ScoreTable, plan: FoldPlan, path: Path) -> str:
    training, test = training_side(table), table.rows("test")
    kept = f"whole {plan.folds.grouped_by}s" if plan.folds.grouped_by else "clips stratified by class"
    parts = [f"out-of-fold top-1 {100 * split_metrics(training)['top1']:.1f}% over {len(training.ids)} training clips "
             f"({plan.count} folds of {kept})"]
    if test.ids:
        parts.append(f"test top-1 of the {plan.count} fold networks' mean {100 * split_metrics(test)['top1']:.1f}%")
    return f"{', '.join(parts)} ({path})"
