import math

import numpy as np
import pytest

from mmfc.stats import accuracy_interval, compare_paired, mcnemar_exact, mean_class_interval


def test_accuracy_interval_covers_the_true_accuracy_at_about_the_stated_rate():
    # A classifier right with probability 0.7 on each of 300 test samples: over 400 test sets,
    # the 95% interval should hold 0.7 about 95% of the time.
    covered = 0
    for seed in range(400):
        correct = np.random.default_rng(seed).random(300) < 0.7
        interval = accuracy_interval(int(correct.sum()), correct.size, seed=seed)
        covered += interval.low <= 0.7 <= interval.high
    assert 0.92 <= covered / 400 <= 0.98


def test_mean_class_interval_covers_the_true_mean_class_accuracy():
    # Five classes of unequal size and accuracy; the true mean class accuracy is the mean of
    # the per-class accuracies, whatever the class sizes.
    class_accuracy = np.array([0.9, 0.8, 0.6, 0.5, 0.75])
    class_share = np.array([0.4, 0.25, 0.15, 0.1, 0.1])
    truth = class_accuracy.mean()
    covered = 0
    for seed in range(300):
        rng = np.random.default_rng(1000 + seed)
        labels = rng.choice(5, size=400, p=class_share)
        correct = rng.random(400) < class_accuracy[labels]
        interval = mean_class_interval(correct, labels, 5, seed=seed, replicates=2000)
        covered += interval.low <= truth <= interval.high
    assert 0.91 <= covered / 300 <= 0.98


def test_intervals_are_seeded_and_narrow_with_more_samples():
    assert accuracy_interval(80, 100, seed=3) == accuracy_interval(80, 100, seed=3)
    small, large = accuracy_interval(80, 100, seed=0), accuracy_interval(8000, 10000, seed=0)
    assert small.high - small.low > 5 * (large.high - large.low)
    assert small.low < 0.8 < small.high
    assert math.isnan(accuracy_interval(0, 0, seed=0).low)


def test_mcnemar_exact_matches_the_binomial_tail():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64)
    # 3 against 7: 2 * P(X <= 3) for X ~ Binomial(10, 1/2) = 2 * 176 / 1024.
    assert mcnemar_exact(3, 7) == pytest.approx(2 * 176 / 1024)
    assert mcnemar_exact(5, 5) == 1.0
    # Thousands of disagreements, where 2^-m underflows: still a probability.
    assert 0 < mcnemar_exact(2400, 2600) < 0.01


def test_paired_comparison_holds_its_level_under_the_null_and_finds_a_real_gap():
    rejections = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        a, b = rng.random(200) < 0.75, rng.random(200) < 0.75
        rejections += compare_paired(a, b, seed, replicates=100).p_value < 0.05
    assert rejections / 300 <= 0.07
    rng = np.random.default_rng(7)
    truth = rng.random(500)
    better, worse = truth < 0.85, truth < 0.75  # nested: every sample worse gets right, better does too
    result = compare_paired(better, worse, seed=0)
    assert result.only_b == 0 and result.only_a == int((better & ~worse).sum())
    assert result.difference == pytest.approx(better.mean() - worse.mean())
    assert result.interval.low > 0 and result.p_value < 1e-6
