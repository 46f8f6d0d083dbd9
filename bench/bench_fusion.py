"""Fusion benchmark: every candidate and `auto` on small validation splits of real scores, and
the cost of fitting them at NTU60 scale.

Part 1, real scores (a run's scores/{rgb,skel}.parquet, by default the demo's runs/synth): for
each size in --sizes (24, 48, 96 and all validation clips), --seeds random subsets of the
validation rows, stratified by class, are fitted exactly as stage 4 fits them (cross-validation
grouped by performer whenever the subset holds two or more, since the ids are NTU names); every
candidate and `auto` are then scored on the whole test split. Printed: mean and spread (standard
deviation over the seeds) of test top-1, how often `auto` picked each candidate, and the issue's
goals: `auto` at least the best fixed ratio and the best single modality on average at every
size, `per_class` never below the best single modality. The fixed ratio chosen on test (what
peers report) is printed beside as an oracle.

Part 2, simulated scores at NTU60 X-Sub scale (60 classes, 6,000 validation and 16,487 test
samples; each modality better on some classes, a third of the skeletons degraded): the time to
fit and cross-validate every candidate, their test top-1, and writing and reading a score file
of every sample (56,578 rows).

Part 3, five simulated branches at NTU120 scale (RGB and CTR-GCN's four skeleton streams, which
see one skeleton and so share most of their errors; 120 classes, 3,000 validation clips of 30
performers, 6,000 test clips): the time to fit and cross-validate every candidate, the global
weights' search alone, and each candidate's CV NLL, test top-1, global weights and each
branch's share of the fused evidence (methods.branch_shares).

    .venv/bin/python bench/bench_fusion.py                      # runs/synth, a few minutes on 2 cores
    .venv/bin/python bench/bench_fusion.py runs/synth --seeds 5
    .venv/bin/python bench/bench_fusion.py --skip-simulated
    .venv/bin/python bench/bench_fusion.py --branches                   # part 3 alone
    .venv/bin/python bench/bench_fusion.py --skip-simulated \
        --rgb runs/synth/ablation/crop/scores/rgb.parquet --skel runs/synth/ablation/skel_noccl/scores/skel.parquet
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmfc.config import FusionConfig
from mmfc.fusion.methods import best_fixed_ratio
from mmfc.fusion.methods import GlobalFusion, Temperatures, fit_weights
from mmfc.fusion.selection import (
    CANDIDATES,
    PIPELINE_BRANCHES,
    SHRINKAGE_GRID,
    CrossValidation,
    fixed_recipes,
    make_folds,
    sample_groups,
    select_fusion,
)
from mmfc.metrics import topk_accuracy
from mmfc.scores.format import ScoreTable, read_scores, write_scores
from mmfc.stats import compare_paired

SINGLES = ("rgb_alone", "skel_alone")
FIXED_RATIOS = tuple(fixed_recipes(PIPELINE_BRANCHES))


def stratified_subset(rng: np.random.Generator, labels: np.ndarray, size: int) -> np.ndarray:
    """`size` rows, as many of each class as possible (classes short of the share give theirs
    to the rest), in random order."""
    order = rng.permutation(labels.size)
    # Rank of each row within its class, in the random order: take the lowest ranks first.
    rank = np.empty(labels.size, dtype=np.int64)
    for c in np.unique(labels):
        members = order[labels[order] == c]
        rank[members] = np.arange(members.size)
    by_rank = order[np.argsort(rank[order], kind="stable")]
    return np.sort(by_rank[:size])


def fit_and_score(val_rgb: ScoreTable, val_skel: ScoreTable, test_rgb: ScoreTable, test_skel: ScoreTable,
                  fusion: FusionConfig, seed: int) -> tuple[dict[str, np.ndarray], str, bool]:
    """Stage 4's fitting on the validation rows; which test clips each candidate and auto get right,
    auto's pick, and whether a single modality was the best baseline in CV NLL (the guarantee
    then allows no fixed ratio)."""
    groups, grouped_by = sample_groups(val_rgb, "the validation rows")
    folds = make_folds(val_rgb.labels, groups, grouped_by, fusion.cv_folds, seed)
    val = {"rgb": val_rgb.logits, "skel": val_skel.logits}
    selection = select_fusion(val, val_rgb.labels, folds, fusion.grid, fusion.metric)
    test = {"rgb": test_rgb.logits, "skel": test_skel.logits}
    correct = {
        name: c.fitted.apply(test).argmax(axis=1) == test_rgb.labels
        for name, c in selection.candidates.items()
    }
    correct["auto"] = correct[selection.auto_pick]
    nll = {name: c.cv.nll for name, c in selection.candidates.items()}
    single_bar = min(nll[name] for name in SINGLES) < min(nll[name] for name in FIXED_RATIOS)
    return correct, selection.auto_pick, single_bar


def real_scores(args) -> None:
    scores = Path(args.run) / "scores"
    paths = [Path(args.rgb or scores / "rgb.parquet"), Path(args.skel or scores / "skel.parquet")]
    if not all(p.is_file() for p in paths):
        print(f"part 1 skipped: no score files {paths[0]}, {paths[1]} (run `make demo`, or pass a run folder)")
        return
    rgb, skel = (read_scores(p) for p in paths)
    skel = skel.aligned_to(rgb.ids)
    val_rgb, val_skel, test_rgb, test_skel = rgb.rows("val"), skel.rows("val"), rgb.rows("test"), skel.rows("test")
    n_val, k = len(val_rgb.ids), rgb.num_classes
    fusion = FusionConfig()
    groups, grouped_by = sample_groups(val_rgb, paths[0])
    performers = f"{len(set(groups))} {grouped_by}s" if groups else "every clip its own group"
    print(f"part 1: {paths[0]} and {paths[1]}, {n_val} validation clips ({performers}), "
          f"{len(test_rgb.ids)} test clips, {k} classes; {args.seeds} seeds per size; test top-1 %, mean ± sd")
    sizes = [s for s in args.sizes if s < n_val] + [n_val]
    results: dict[int, dict[str, list[float]]] = {}
    picks: dict[int, dict[str, int]] = {}
    # auto against the best fixed ratio on the same test clips, per seed: (difference, McNemar p).
    paired: dict[int, list[tuple[float, float]]] = {}
    start = time.perf_counter()
    for size in sizes:
        results[size], picks[size], paired[size] = {m: [] for m in (*CANDIDATES, "auto")}, {}, []
        for seed in range(args.seeds):
            rows = stratified_subset(np.random.default_rng(seed), val_rgb.labels, size)
            correct, pick, single_bar = fit_and_score(val_rgb.take(rows), val_skel.take(rows), test_rgb, test_skel, fusion, seed)
            for name, right in correct.items():
                results[size][name].append(100 * right.mean())
            picks[size][pick] = picks[size].get(pick, 0) + 1
            best_fixed = max(FIXED_RATIOS, key=lambda name: correct[name].mean())
            comparison = compare_paired(correct["auto"], correct[best_fixed], seed, replicates=100)
            paired[size].append((100 * comparison.difference, comparison.p_value, single_bar))
    seconds = time.perf_counter() - start

    header = "".join(f"{f'{s} val' if s < n_val else f'all {s}':>15}" for s in sizes)
    print(f"{'method':<14}{header}")
    for name in (*CANDIDATES, "auto"):
        cells = "".join(f"{np.mean(results[s][name]):>9.1f} ±{np.std(results[s][name]):>4.1f}" for s in sizes)
        print(f"{name:<14}{cells}")
    w, top1 = best_fixed_ratio(test_rgb.logits, test_skel.logits, test_rgb.labels, "top1")
    print(f"{'oracle':<14}{100 * top1:>9.1f}  fixed ratio RGB:skel {w:.2f}:{1 - w:.2f} chosen on test "
          "(what peers report; not a method)")
    for size in sizes:
        chosen = ", ".join(f"{name} {count}" for name, count in sorted(picks[size].items(), key=lambda kv: -kv[1]))
        print(f"auto's picks at {size}: {chosen}")

    print("goals (means over seeds), and auto against the best fixed ratio paired on the test clips:")
    for size in sizes:
        mean = {name: np.mean(values) for name, values in results[size].items()}
        best_fixed = max(FIXED_RATIOS, key=mean.get)
        best_single = max(SINGLES, key=mean.get)
        verdict = [
            f"auto {mean['auto']:.2f} vs best fixed {best_fixed} {mean[best_fixed]:.2f}: "
            f"{'met' if mean['auto'] >= mean[best_fixed] else 'NOT met'}",
            f"vs best single {best_single} {mean[best_single]:.1f}: "
            f"{'met' if mean['auto'] >= mean[best_single] else 'NOT met'}",
            f"per_class {mean['per_class']:.1f} >= best single: {'met' if mean['per_class'] >= mean[best_single] else 'NOT met'}",
        ]
        print(f"  {size:>4} val: " + "; ".join(verdict))
        differences = np.array([d for d, _, _ in paired[size]])
        significant = [d for d, p, _ in paired[size] if p < 0.05]
        print(f"        auto - best fixed ratio: {differences.mean():+.2f} ± {differences.std():.2f} points; "
              f"McNemar p < 0.05 in {sum(d > 0 for d in significant)} seeds for auto, "
              f"{sum(d < 0 for d in significant)} against")
        # Where a modality alone has the lowest baseline NLL, the guarantee rules every fixed ratio out.
        forced = [d for d, _, single in paired[size] if single]
        rest = [d for d, _, single in paired[size] if not single]
        if forced:
            print(f"        seeds where a single modality was the best baseline in CV NLL (no fixed ratio "
                  f"eligible): {len(forced)}, auto - best fixed {np.mean(forced):+.2f}; the other "
                  f"{len(rest)}: {np.mean(rest) if rest else float('nan'):+.2f}")
    print(f"fitting time: {seconds / (len(sizes) * args.seeds):.2f} s per fit on average (all candidates, CV included)")


def simulate(rng, n: int, k: int, class_snr_rgb: np.ndarray, class_snr_skel: np.ndarray):
    """Logits = snr[label] * onehot + noise; a third of the skeletons get four times the noise."""
    labels = rng.integers(0, k, n)
    onehot = np.eye(k)[labels]
    rgb = class_snr_rgb[labels, None] * onehot + rng.normal(size=(n, k))
    degraded = rng.random(n) < 1 / 3
    skel_noise = np.where(degraded, 4.0, 1.0)[:, None]
    skel = class_snr_skel[labels, None] * onehot + skel_noise * rng.normal(size=(n, k))
    return rgb.astype(np.float32), skel.astype(np.float32), labels


def simulated_scores(args) -> None:
    rng = np.random.default_rng(0)
    k, n_val, n_test = 60, 6000, 16487
    class_snr_rgb, class_snr_skel = rng.uniform(2.0, 4.0, k), rng.uniform(2.0, 4.0, k)
    val = simulate(rng, n_val, k, class_snr_rgb, class_snr_skel)
    rgb, skel, labels = simulate(rng, n_test, k, class_snr_rgb, class_snr_skel)
    fusion = FusionConfig()
    start = time.perf_counter()
    folds = make_folds(val[2], None, None, fusion.cv_folds, fusion.cv_seed)
    selection = select_fusion({"rgb": val[0], "skel": val[1]}, val[2], folds, fusion.grid, fusion.metric)
    seconds = time.perf_counter() - start
    print(f"part 2: simulated, {k} classes, {n_val} val / {n_test} test samples, torch threads {args.threads}")
    print(f"fit and cross-validate every candidate ({fusion.cv_folds} folds): {seconds:.1f} s; auto picked "
          f"{selection.auto_pick}")
    print(f"{'candidate':<12} {'CV NLL':>8} {'test top-1':>10} {'chosen':>8}")
    for name, c in selection.candidates.items():
        top1 = 100 * topk_accuracy(c.fitted.apply({"rgb": rgb, "skel": skel}), labels, 1)
        chosen = "" if c.chosen is None else f"{c.chosen:g}"
        print(f"{name:<12} {c.cv.nll:>8.4f} {top1:>10.2f} {chosen:>8}")

    n_all = 56578
    table = ScoreTable(
        ids=[f"S{i:06d}" for i in range(n_all)],
        splits=["train"] * (n_all - n_test) + ["test"] * n_test,
        labels=rng.integers(0, k, n_all),
        logits=rng.normal(size=(n_all, k)).astype(np.float32),
        modality="rgb",
        checkpoint_digest="bench",
        pipeline_digest="bench",
        class_names=[f"class {c}" for c in range(k)],
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rgb.parquet"
        start = time.perf_counter()
        write_scores(path, table)
        written = time.perf_counter() - start
        start = time.perf_counter()
        read_scores(path)
        read = time.perf_counter() - start
        size = path.stat().st_size / 2**20
    print(f"score file, {n_all} rows x {k} classes: write {written:.2f} s, read {read:.2f} s, {size:.1f} MiB")


# Each skeleton stream's share of the one skeleton signal it sees (the rest is its own noise).
STREAMS = {"joint": 1.0, "bone": 0.95, "joint_motion": 0.75, "bone_motion": 0.7}


def simulate_branches(rng, n: int, k: int, class_snr_rgb: np.ndarray, class_snr_skel: np.ndarray):
    """RGB and four skeleton streams: each stream is one shared skeleton signal, scaled, plus
    noise of its own, so the streams err together as CTR-GCN's do."""
    labels = rng.integers(0, k, n)
    onehot = np.eye(k)[labels]
    logits = {"rgb": class_snr_rgb[labels, None] * onehot + rng.normal(size=(n, k))}
    skeleton = class_snr_skel[labels, None] * onehot + 0.7 * rng.normal(size=(n, k))
    for name, strength in STREAMS.items():
        logits[name] = 3 * (strength * skeleton + 0.7 * rng.normal(size=(n, k)))
    return {b: z.astype(np.float32) for b, z in logits.items()}, labels


def simulated_branches(args) -> None:
    rng = np.random.default_rng(0)
    k, n_val, n_test, performers = 120, 3000, 6000, 30
    class_snr_rgb, class_snr_skel = rng.uniform(1.0, 3.0, k), rng.uniform(1.0, 3.0, k)
    val, val_labels = simulate_branches(rng, n_val, k, class_snr_rgb, class_snr_skel)
    test, test_labels = simulate_branches(rng, n_test, k, class_snr_rgb, class_snr_skel)
    fusion = FusionConfig()
    folds = make_folds(val_labels, [f"P{i % performers:03d}" for i in range(n_val)], "performer", fusion.cv_folds, 0)
    start = time.perf_counter()
    cv = CrossValidation(val, val_labels, folds)
    for l2 in SHRINKAGE_GRID:
        cv.score(lambda rows, l2=l2: GlobalFusion.fit(rows.x, rows.labels, fit_weights(rows.x.logp, rows.labels, l2)))
    x = Temperatures.fit(val, val_labels).calibrate(val)
    fit_weights(x.logp, val_labels, SHRINKAGE_GRID[-1])
    weights_seconds = time.perf_counter() - start
    start = time.perf_counter()
    selection = select_fusion(val, val_labels, folds, fusion.grid, fusion.metric)
    seconds = time.perf_counter() - start
    print(f"part 3: simulated, {len(val)} branches ({', '.join(val)}), {k} classes, {n_val} val clips of "
          f"{performers} performers / {n_test} test, torch threads {args.threads}")
    print(f"the global weights' search ({len(SHRINKAGE_GRID)} shrinkages x {folds.count} folds, temperatures "
          f"included): {weights_seconds:.1f} s; every candidate: {seconds:.1f} s; auto picked {selection.auto_pick}")
    print(f"{'candidate':<19} {'CV NLL':>8} {'test top-1':>10} {'chosen':>7}  each branch's share of the evidence")
    for name, c in selection.candidates.items():
        top1 = 100 * topk_accuracy(c.fitted.apply(test), test_labels, 1)
        chosen = "" if c.chosen is None else f"{c.chosen:g}"
        shares = " ".join(f"{b} {v:.2f}" for b, v in (c.shares or {}).items())
        print(f"{name:<19} {c.cv.nll:>8.4f} {top1:>10.2f} {chosen:>7}  {shares}")
    weights = selection.candidates["global"].fitted.rule.weights
    print("global weights: " + " ".join(f"{b} {w:.3f}" for b, w in weights.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", default="runs/synth", help="a run folder with scores/{rgb,skel}.parquet")
    parser.add_argument("--rgb", help="an RGB score file instead of the run's (another branch on the same clips)")
    parser.add_argument("--skel", help="a skeleton score file instead of the run's")
    parser.add_argument("--sizes", type=int, nargs="+", default=[24, 48, 96])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-simulated", action="store_true", help="skip parts 2 and 3")
    parser.add_argument("--branches", action="store_true", help="part 3 alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.branches:
        simulated_branches(args)
        return
    real_scores(args)
    if not args.skip_simulated:
        simulated_scores(args)
        simulated_branches(args)


if __name__ == "__main__":
    main()
