"""Fusion stage benchmark: fitting time and test accuracy of each method, side by side.

Scores are simulated at NTU60 X-Sub scale (60 classes; about 6,000 validation and 16,487 test
samples) with structure each method can exploit: each modality is better on some classes
(per-class weights help), and a random third of the samples has a degraded skeleton (the
per-sample, confidence-adaptive weight helps). Also times writing and reading a score file of
every sample (56,578 rows).

    .venv/bin/python bench/bench_fusion.py            # NTU60 scale, about a minute on 2 cores
    .venv/bin/python bench/bench_fusion.py --classes 120 --val 12000 --test 50000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


import numpy as np
import torch

# Runnable from a checkout without `pip install -e .`: the package sits one folder up.
from mmfc.fusion.methods import AdaptiveFusion, GlobalFusion, PerClassFusion, Temperatures, fit_methods
from mmfc.metrics import mean_class_accuracy, topk_accuracy
from mmfc.scores.format import ScoreTable, read_scores, write_scores


def simulate(rng, n: int, k: int, class_snr_rgb: np.ndarray, class_snr_skel: np.ndarray):
    """Logits = snr[label] * onehot + noise; a third of the skeletons get four times the noise."""
    labels = rng.integers(0, k, n)
    onehot = np.eye(k)[labels]
    rgb = class_snr_rgb[labels, None] * onehot + rng.normal(size=(n, k))
    degraded = rng.random(n) < 1 / 3
    skel_noise = np.where(degraded, 4.0, 1.0)[:, None]
    skel = class_snr_skel[labels, None] * onehot + skel_noise * rng.normal(size=(n, k))
    return rgb.astype(np.float32), skel.astype(np.float32), labels


def fit_steps(val, grid: int, l2: float):
    """Each fitting step alone, on fixed temperatures, for the timing table."""
    rgb, skel, labels = val
    temperatures = Temperatures.fit(rgb, skel, labels)
    alpha = GlobalFusion.fit(rgb, skel, labels, temperatures, grid, "top1").alpha
    return [
        ("temperatures (both)", lambda: Temperatures.fit(rgb, skel, labels)),
        (f"global alpha, grid {grid}", lambda: GlobalFusion.fit(rgb, skel, labels, temperatures, grid, "top1")),
        ("adaptive g, d (LBFGS)", lambda: AdaptiveFusion.fit(rgb, skel, labels, temperatures)),
        ("per-class a, b, beta (LBFGS)", lambda: PerClassFusion.fit(rgb, skel, labels, temperatures, alpha, l2)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--val", type=int, default=6000)
    parser.add_argument("--test", type=int, default=16487)
    parser.add_argument("--grid", type=int, default=101)
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    k = args.classes
    class_snr_rgb = rng.uniform(2.0, 4.0, k)
    class_snr_skel = rng.uniform(2.0, 4.0, k)
    val = simulate(rng, args.val, k, class_snr_rgb, class_snr_skel)
    test = simulate(rng, args.test, k, class_snr_rgb, class_snr_skel)

    start = time.perf_counter()
    methods = fit_methods(*val, grid=args.grid, metric="top1", per_class_l2=args.l2)
    fit_seconds = time.perf_counter() - start
    print(f"{k} classes, {args.val} val / {args.test} test samples, torch threads {args.threads}")
    print(f"fit every method on val: {fit_seconds:.2f} s; one by one:")
    for name, fit in fit_steps(val, args.grid, args.l2):
        start = time.perf_counter()
        fit()
        print(f"  {name:<28} {time.perf_counter() - start:.2f} s")

    print(f"{'scores':<12} {'test top-1':>10} {'test mean class':>16} {'apply s':>8}")
    rgb, skel, labels = test
    for name, logits in (("rgb", rgb), ("skel", skel)):
        print(f"{name:<12} {100 * topk_accuracy(logits, labels, 1):>10.2f} {100 * mean_class_accuracy(logits, labels, k):>16.2f}")
    for name, method in methods.items():
        start = time.perf_counter()
        fused = method.apply(rgb, skel)
        seconds = time.perf_counter() - start
        top1 = 100 * topk_accuracy(fused, labels, 1)
        mean_class = 100 * mean_class_accuracy(fused, labels, k)
        print(f"{name:<12} {top1:>10.2f} {mean_class:>16.2f} {seconds:>8.3f}")
    print(f"global alpha {methods['global'].alpha:.2f}; adaptive g {methods['adaptive'].g:.2f} d {methods['adaptive'].d:.2f}")

    n_all = 56578
    table = ScoreTable(
        ids=[f"S{i:06d}" for i in range(n_all)],
        splits=["train"] * (n_all - args.test) + ["test"] * args.test,
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


if __name__ == "__main__":
    main()
