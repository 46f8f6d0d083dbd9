"""Fusion fitted on one validation performer against fusion fitted on out-of-fold scores (issue 25).

The failure of issue 25 reproduced on data at hand: the synthetic demo with validation reduced to
one performer. For each of --seeds choices of that performer (a seeded order of the 10 training
performers, each at most once), stage 1 crops with data.val_performers = [that performer],
stage 2 trains both branches (that performer chooses their best epoch) and stage 3 scores them;
stage 4 then fits the fusion twice, with fusion.fit_on = "val" (on the performer's clips) and
"oof" (on the out-of-fold scores of all training clips), and each is scored on test, which
chooses nothing. The out-of-fold networks learn from train and val alike, so they are the same
for every choice: `mmfc stage oof` runs once, in its own workdir, and each run reads its files.

Sized down for 2 shared CPU cores (the demo's recipe is in pipelines/synth.toml): 2 cameras and
one clip per class, performer and camera (384 clips: 240 on the training side, 24 per
performer, 144 test clips), 64 px crops of 8 frames, an R18 of base width 8 at 56 px, a CTR-GCN
of 8 base channels over 16 frames of one body, no contrastive term, --epochs each. 35.5
minutes on 2 shared cores at a load of 7 to 11 (docs/out-of-fold.md, Figures).

Printed: a row per choice and fit_on: the pick, fused, best single branch (the better on test,
the harder comparison), each branch, PYSKL's fixed ratios; then per fit_on the mean, the seeds
where fused is at least the best single, the worst shortfall in test clips; then each branch
and the out-of-fold fusion on test from stage 2's networks against the mean of the fold networks.

    .venv/bin/python bench/bench_oof.py                    # 10 choices, bench/out/oof
    .venv/bin/python bench/bench_oof.py --seeds 2 --epochs 1 --out /tmp/oof-quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mmfc.config import Pipeline, load_pipeline
from mmfc.crops.stage import run_crops
from mmfc.data.sources import open_source
from mmfc.data.synth import generate
from mmfc.folds import TRAINING_SIDE
from mmfc.fusion.files import FUSED, open_fusion
from mmfc.fusion.stage import run_fuse
from mmfc.oof.plan import oof_scores_path
from mmfc.oof.stage import run_oof
from mmfc.scores.format import ScoreTable, read_scores
from mmfc.scores.stage import run_scores, scores_stage
from mmfc.stage_frame import stale_reason
from mmfc.train.stage import run_train

ROOT = Path(__file__).resolve().parents[1]
BRANCHES = ("rgb", "skel")
FIXED = ("pyskl_1_1", "pyskl_2_1", "pyskl_1_2")
# Overrides of pipelines/synth.toml that size the demo down (the module's docstring).
SMALL = [
    "crops.size=64", "crops.num_frames=8", "crops.skeleton_frames=32", "jobs.n_jobs=1",
    "rgb.model.base_width=8", "rgb.model.input_size=56", "rgb.train.batch_size=16",
    "skel.model.base_channels=8", "skel.model.num_frames=16", "skel.model.num_persons=1",
    "skel.train.batch_size=16", "skel.ccl.weight=0.0",
    *(f"{b}.train.{key}=\"{n}\"" for b in BRANCHES for key, n in (("threads", 1), ("loader_workers", 0))),
]


def pipeline(out: Path, workdir: Path, val_performer: int, epochs: int, *more: str) -> Pipeline:
    data = out / "data"
    return load_pipeline(ROOT / "pipelines" / "synth.toml", [
        f"workdir={json.dumps(str(workdir))}", f"data.root={json.dumps(str(data))}",
        f"data.class_names={json.dumps(str(data / 'class_names.txt'))}", f"data.val_performers=[{val_performer}]",
        *SMALL, *(f"{b}.train.epochs={epochs}" for b in BRANCHES), *more,
    ])


def training_performers(cfg: Pipeline) -> list[int]:
    return sorted({int(s.meta["performer"]) for s in open_source(cfg.data).samples() if s.split in TRAINING_SIDE})


def train_and_score(cfg: Pipeline) -> None:
    """Stages 1-3, each skipping what is current (a rerun of the bench continues)."""
    assert run_crops(cfg) == 0
    for branch in BRANCHES:
        run_train(cfg, branch, resume=True)
        path = cfg.paths.scores / f"{branch}.parquet"
        if stale_reason(path, cfg, scores_stage(cfg, branch).settings) is not None:
            run_scores(cfg, branch)


def top1(table: ScoreTable) -> float:
    return float(np.mean(table.logits.argmax(axis=1) == table.labels))


def fused_results(cfg: Pipeline, fit_on: str) -> dict:
    """Stage 4 with fusion.fit_on = `fit_on`; every candidate's test top-1 and the pick."""
    run_fuse(replace(cfg, fusion=replace(cfg.fusion, fit_on=fit_on)))
    fusion = open_fusion(cfg.paths.fusion)
    test = {name: fusion.scores(name).rows("test") for name in [*fusion.candidates, FUSED]}
    singles = {b: top1(read_scores(cfg.paths.scores / f"{b}.parquet").rows("test")) for b in BRANCHES}
    best = max(singles.values())
    return {
        "pick": fusion.selected, "fused": top1(test[FUSED]), "best_single": best, **singles,
        **{name: top1(test[name]) for name in FIXED}, "clips": len(test[FUSED].ids),
        "short_clips": round((best - top1(test[FUSED])) * len(test[FUSED].ids)),
    }


def fold_average(cfg: Pipeline) -> dict:
    """Each branch and the selected fusion (fitted on out-of-fold scores: the last fuse) on test,
    from stage 2's networks and from the mean of the fold networks."""
    fusion = open_fusion(cfg.paths.fusion)
    _, fitted = fusion.fitted()
    final = fusion.scores(FUSED).rows("test")
    tests = {b: read_scores(oof_scores_path(cfg, b)).rows("test").aligned_to(final.ids) for b in BRANCHES}
    averaged = replace(final, logits=fitted.log_probabilities({b: t.logits for b, t in tests.items()}))
    finals = {b: read_scores(cfg.paths.scores / f"{b}.parquet").rows("test").aligned_to(final.ids) for b in BRANCHES}
    return {"final": {"fused": top1(final), **{b: top1(t) for b, t in finals.items()}},
            "fold_mean": {"fused": top1(averaged), **{b: top1(t) for b, t in tests.items()}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "oof")
    parser.add_argument("--seeds", type=int, default=10, help="choices of the validation performer (at most 10)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--order-seed", type=int, default=0, help="seeds the order of the performers")
    args = parser.parse_args()
    start = time.perf_counter()
    out = args.out.resolve()
    generate(out / "data", per_class=1, cameras=[1, 2], frame_size=(320, 180), n_jobs=2)
    performers = training_performers(pipeline(out, out / "oof", 1, args.epochs))
    chosen = [int(p) for p in np.random.default_rng(args.order_seed).permutation(performers)[:args.seeds]]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown (not a git checkout)"
    print(f"bench_oof: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}, {platform.node()}, "
          f"{os.cpu_count()} cores (load {os.getloadavg()[0]:.1f}), {args.epochs} epochs; validation performers "
          f"in turn: {chosen}", flush=True)

    # The out-of-fold networks, once, on the first choice's crop store: the training side is the same in every one.
    first = out / f"seed-{chosen[0]}"
    assert run_crops(pipeline(out, first, chosen[0], args.epochs)) == 0
    shared = pipeline(out, out / "oof", chosen[0], args.epochs, f"crops_from={json.dumps(str(first))}")
    for branch in BRANCHES:
        run_oof(shared, branch)

    rows = []
    for performer in chosen:
        cfg = pipeline(out, out / f"seed-{performer}", performer, args.epochs)
        train_and_score(cfg)
        for branch in BRANCHES:
            target = oof_scores_path(cfg, branch)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(oof_scores_path(shared, branch), target)
        for fit_on in ("val", "oof"):
            rows.append({"performer": performer, "fit_on": fit_on, **fused_results(cfg, fit_on)})
            print(json.dumps(rows[-1]), flush=True)
        rows[-1]["fold_average"] = fold_average(cfg)
        print(json.dumps({"performer": performer, "fold_average": rows[-1]["fold_average"]}), flush=True)
    print_summary(rows, time.perf_counter() - start)


def print_summary(rows: list[dict], seconds: float) -> None:
    pct = lambda x: f"{100 * x:5.1f}"  # noqa: E731
    print(f"\n{'val performer':>13} {'fit_on':>6} {'pick':>12} {'fused':>6} {'best':>6} {'rgb':>6} {'skel':>6} "
          + " ".join(f"{name:>9}" for name in FIXED) + "  fused-best (clips)")
    for r in rows:
        print(f"{r['performer']:>13} {r['fit_on']:>6} {r['pick']:>12} {pct(r['fused'])} {pct(r['best_single'])} "
              f"{pct(r['rgb'])} {pct(r['skel'])} " + " ".join(f"{pct(r[name]):>9}" for name in FIXED)
              + f"  {-r['short_clips']:+d}")
    for fit_on in ("val", "oof"):
        mine = [r for r in rows if r["fit_on"] == fit_on]
        at_least = sum(r["fused"] >= r["best_single"] for r in mine)
        print(f"fit_on = {fit_on!r}: fused {pct(np.mean([r['fused'] for r in mine]))} against the best single "
              f"{pct(np.mean([r['best_single'] for r in mine]))} on average; fused >= best single on {at_least} of "
              f"{len(mine)}; worst: {max(r['short_clips'] for r in mine)} test clips below (of {mine[0]['clips']}); "
              f"best fixed ratio on average {pct(max(np.mean([r[n] for r in mine]) for n in FIXED))}")
    averages = [r["fold_average"] for r in rows if "fold_average" in r]
    for name in ("fused", *BRANCHES):
        final = np.mean([a["final"][name] for a in averages])
        mean = np.mean([a["fold_mean"][name] for a in averages])
        print(f"{name} on test, fit_on = 'oof': stage 2's networks {pct(final)}, the mean of the fold networks "
              f"{pct(mean)}")
    print(f"bench_oof: {seconds / 60:.1f} min (python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
