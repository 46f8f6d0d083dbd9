"""How far an accuracy measured on a finite test set can be trusted: bootstrap intervals and a
paired test of two classifiers on the same samples (numpy only).

The bootstrap redraws the N samples with replacement. For an accuracy, the number of correct
samples among N such draws is binomial, and for a mean class accuracy the counts of the
(class, right or wrong) cells are multinomial, so each replicate costs a few random numbers
whatever N: the intervals are exactly the resampling bootstrap's, only cheaper to draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REPLICATES = 10_000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def accuracy_interval(hits: int, n: int, seed: int, level: float = LEVEL, replicates: int = REPLICATES) -> Interval:
    """Percentile bootstrap interval of an accuracy of `hits` right out of `n` samples."""
    if n <= 0:
        return Interval(math.nan, math.nan)
    rng = np.random.default_rng(seed)
    draws = rng.binomial(n, hits / n, replicates) / n
    return _percentiles(draws, level)


def mean_class_interval(
    correct: np.ndarray, labels: np.ndarray, num_classes: int, seed: int, level: float = LEVEL, replicates: int = REPLICATES
) -> Interval:
    """Percentile bootstrap interval of the mean over classes of per-class accuracy.

    correct [N] bool, labels [N]. A replicate in which a class drew no sample averages over the
    classes it did draw, as `mmfc.metrics.mean_class_accuracy` does.
    """
    correct = np.asarray(correct, dtype=bool)
    labels = np.asarray(labels, dtype=np.int64)
    n = correct.size
    if n == 0:
        return Interval(math.nan, math.nan)
    cells = np.bincount(labels * 2 + correct, minlength=2 * num_classes) / n
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, cells, size=replicates).reshape(replicates, num_classes, 2)  # [B, K, wrong/right]
    totals = counts.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(totals > 0, counts[:, :, 1] / totals, np.nan)
    return _percentiles(np.nanmean(per_class, axis=1), level)


@dataclass(frozen=True)
class PairedComparison:
    """Classifier A against B on the same N samples."""

    n: int
    only_a: int  # samples A gets right and B wrong
    only_b: int  # and the reverse
    difference: float  # accuracy of A minus accuracy of B
    interval: Interval  # paired bootstrap interval of the difference
    p_value: float  # exact McNemar test, two-sided


def compare_paired(
    correct_a: np.ndarray, correct_b: np.ndarray, seed: int, level: float = LEVEL, replicates: int = REPLICATES
) -> PairedComparison:
    """Paired bootstrap interval of accuracy(A) - accuracy(B) and McNemar's exact test.

    Only the samples on which the two disagree carry evidence: under "equally accurate" each
    disagreement is A's with probability 1/2.
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison of {a.size} against {b.size} samples")
    n, only_a, only_b = a.size, int((a & ~b).sum()), int((~a & b).sum())
    if n == 0:
        return PairedComparison(0, 0, 0, math.nan, Interval(math.nan, math.nan), math.nan)
    rng = np.random.default_rng(seed)
    cells = np.array([only_a, only_b, n - only_a - only_b]) / n
    counts = rng.multinomial(n, cells, size=replicates)
    interval = _percentiles((counts[:, 0] - counts[:, 1]) / n, level)
    return PairedComparison(n, only_a, only_b, (only_a - only_b) / n, interval, mcnemar_exact(only_a, only_b))


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: 2 P(X <= min) for X ~ Binomial(only_a + only_b, 1/2)."""
    m = only_a + only_b
    if m == 0:
        return 1.0
    k = min(only_a, only_b)
    # Summed in log space: 2^-m underflows beyond about a thousand disagreements.
    log_terms = np.array([math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) for i in range(k + 1)])
    log_tail = np.logaddexp.reduce(log_terms) - m * math.log(2)
    return float(min(1.0, 2 * math.exp(log_tail)))


def _percentiles(draws: np.ndarray, level: float) -> Interval:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(float(low), float(high))
