"""Choosing by cross-validation inside the validation split: each method's free choices, and the
method that `fusion.method = "auto"` uses.

The validation rows are split into k folds: by performer, source video or group, the samples'
groups of the score files (a held-out fold then holds people or videos the other folds never
saw, as the test split does), else stratified by class. Each candidate is fitted on k - 1 folds, temperatures
included, and scores the held-out fold. The criterion is the negative log-likelihood of these
out-of-fold scores over every validation sample: a proper scoring rule, which sees how sure each
answer was, where accuracy sees only the argmax, a coarse signal on a few dozen samples.
Accuracy (`fusion.metric`) only breaks near-ties: an NLL above the lowest by less than one
standard error of the paired per-sample difference (or by less than NEAR_TIE_NATS in total, a
likelihood ratio under e) is no evidence either way. Among those, accuracy decides only where it
is evidence itself: an accuracy below the highest by less than one standard error of the paired
per-sample difference (or by one sample) is a tie too, and a tie goes to the simpler option: the
stronger shrinkage, the global weight nearer 1/2 (equal weights of the calibrated modalities),
the candidate earlier in AUTO_TIE_ORDER. Taking the highest of a few dozen noisy accuracies
instead picks noise: on 24 validation clips it cost the global weight a point of test accuracy.

The candidates of "auto" are the two modalities alone, the anchors' fixed ratios (together the
baselines) and the three fitted methods. The guarantee: the selected method's cross-validated
NLL is never above that of any baseline. Among the candidates that satisfy it (the best baseline
always does), the lowest NLL wins, near-ties decided as above, the simpler being the earlier in
AUTO_TIE_ORDER. So that a fitted method can take part, its free choice is made among the values
that satisfy the guarantee too, where any does: a value within noise of the method's lowest NLL
but above the best baseline's would shut out a method that, at another value, beats every
baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmfc.errors import DataError
from mmfc.fusion.methods import (
    AdaptiveFusion,
    Calibrated,
    FittedFusion,
    FixedRatio,
    FusionRule,
    GlobalFusion,
    PerClassFusion,
    SingleModality,
    Temperatures,
)
from mmfc.metrics import log_softmax, mean_class_accuracy, topk_accuracy
from mmfc.scores.format import ScoreTable

NEAR_TIE_NATS = 1.0
# Shrinkage strengths (sum form, see fit_per_class) tried for the adaptive gate and the per-class
# weights, strongest first so that exact ties go to the stronger. inf is the global method.
SHRINKAGE_GRID = (math.inf, 1000.0, 300.0, 100.0, 30.0, 10.0, 3.0, 1.0)
# A class's own weights (a_c, b_c, beta_c) are three parameters; with fewer samples per class
# than that in a cross-validation training fold, they cannot be told from noise, and per_class
# is the global method.
PER_CLASS_MIN_SAMPLES = 3

FIXED_RATIOS = {"pyskl_1_1": FixedRatio(1, 1), "pyskl_2_1": FixedRatio(2, 1), "pyskl_1_2": FixedRatio(1, 2)}
BASELINES = ("rgb_alone", "skel_alone", *FIXED_RATIOS)
CANDIDATES = (*BASELINES, "global", "adaptive", "per_class")
# Which of the candidates tied for "auto" is taken, first to last: the fixed ratios (nothing
# fitted that changes a prediction), the fitted methods from simple to flexible, and last a
# modality alone. Dropping a modality is the strong claim: where the data cannot tell fusing
# from leaving one out, both are kept (on the demo's scores, a modality alone chosen on such a
# tie cost up to 9 points of test top-1; beside an RGB branch at 7.9%, fusing cost nothing).
AUTO_TIE_ORDER = (*FIXED_RATIOS, "global", "adaptive", "per_class", "rgb_alone", "skel_alone")
# The values of `fusion.method` (config.FusionMethodName).
METHOD_NAMES = ("auto", *CANDIDATES)


# ---------------------------------------------------------------------------------------------
# Folds


@dataclass
class Folds:
    index: np.ndarray  # fold of each sample, [N]
    grouped_by: str | None  # "performer", "source video", or None for stratified by class
    num_groups: int

    @property
    def count(self) -> int:
        return int(self.index.max()) + 1

    def splits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(training rows, held-out rows) of each fold."""
        return [(np.flatnonzero(self.index != f), np.flatnonzero(self.index == f)) for f in range(self.count)]

    def describe(self) -> dict:
        return {
            "folds": self.count,
            "grouped_by": self.grouped_by,
            "num_groups": self.num_groups,
            "fold_sizes": np.bincount(self.index).tolist(),
        }


def sample_groups(table: ScoreTable, path: str | Path) -> tuple[list[str] | None, str | None]:
    """The groups validation was carved by, as stage 1 wrote them into the crop index and stage 3
    copied them into the score file at `path`, and their kind ("performer", "source video",
    "group"). (None, None) when every row is its own group (a dataset that names none): nothing
    to keep apart, and the folds are stratified by class instead."""
    if table.groups is None:
        raise DataError(path, "names no sample groups (written by an older mmfc); rerun `mmfc stage scores` (stage 3)")
    if len(set(table.groups)) < len(table.groups):
        return list(table.groups), table.group_kind
    return None, None


def make_folds(labels: np.ndarray, groups: list[str] | None, grouped_by: str | None, k: int, seed: int) -> Folds:
    """k folds (fewer when there are fewer groups or samples), seeded.

    With at least two groups, whole groups go to folds, largest first into the smallest fold, so
    no group is on both sides. Otherwise each class's samples, in seeded random order, are dealt
    to the folds in turn, which balances both the classes and the fold sizes.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.size
    if n < 2:
        raise ValueError(f"cross-validation needs at least 2 samples, got {n}")
    rng = np.random.default_rng(seed)
    if groups is not None:
        names, member = np.unique(np.asarray(groups), return_inverse=True)
        if len(names) >= 2:
            k = min(k, len(names))
            sizes = np.bincount(member)
            order = rng.permutation(len(names))
            order = order[np.argsort(-sizes[order], kind="stable")]
            fold_of_group, load = np.empty(len(names), dtype=np.int64), np.zeros(k)
            for group in order:
                fold_of_group[group] = int(np.argmin(load))
                load[fold_of_group[group]] += sizes[group]
            return Folds(fold_of_group[member], grouped_by, len(names))
    k = min(k, n)
    order = rng.permutation(n)
    order = order[np.argsort(labels[order], kind="stable")]
    index = np.empty(n, dtype=np.int64)
    index[order] = np.arange(n) % k
    return Folds(index, None, 0)


# ---------------------------------------------------------------------------------------------
# Cross-validated figures


@dataclass(frozen=True, eq=False)
class CVScore:
    """Figures of one candidate's out-of-fold scores over the whole validation split."""

    nll: float
    top1: float
    mean_class: float
    correct: np.ndarray  # [N] bool: out-of-fold top-1 right, for intervals
    losses: np.ndarray  # [N] out-of-fold NLL of each sample, for paired comparisons
    class_weights: np.ndarray  # [N] each sample's weight in the mean class accuracy (mean 1)

    def accuracy(self, metric: str) -> float:
        return self.top1 if metric == "top1" else self.mean_class

    def credit(self, metric: str) -> np.ndarray:
        """Each sample's share of the accuracy, times N: its mean is the accuracy. [N]"""
        return self.correct * (1.0 if metric == "top1" else self.class_weights)

    def as_dict(self) -> dict:
        return {"nll": self.nll, "top1": self.top1, "mean_class": self.mean_class}


@dataclass
class Rows:
    """The rows a rule is fitted on: calibrated scores, labels, and (once its weight is chosen)
    the global method fitted on them, which the adaptive and per-class rules are shrunk toward."""

    x: Calibrated
    labels: np.ndarray
    target: GlobalFusion | None = None


RuleFitter = Callable[[Rows], FusionRule]


class CrossValidation:
    """Out-of-fold scores of any rule fitter on fixed folds, temperatures refitted per fold."""

    def __init__(self, rgb: np.ndarray, skel: np.ndarray, labels: np.ndarray, folds: Folds):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = rgb.shape[1]
        self.splits = folds.splits()
        # Each fold's temperatures come from its training rows only: (training, held-out) rows.
        self.folds: list[tuple[Rows, Calibrated]] = []
        for train, held in self.splits:
            x = Temperatures.fit(rgb[train], skel[train], self.labels[train]).calibrate(rgb, skel)
            self.folds.append((Rows(x.take(train), self.labels[train]), x.take(held)))

    def set_target(self, alpha: float) -> None:
        """Fit each fold's global method at the chosen weight, once for all shrunk rules."""
        for rows, _ in self.folds:
            rows.target = GlobalFusion.fit(rows.x, rows.labels, alpha)

    def score(self, fit: RuleFitter) -> CVScore:
        out_of_fold = np.empty((self.labels.size, self.num_classes))
        for (_, held), (rows, x_held) in zip(self.splits, self.folds):
            out_of_fold[held] = fit(rows).scores(x_held)
        logp = log_softmax(out_of_fold)
        losses = -logp[np.arange(self.labels.size), self.labels]
        counts = np.bincount(self.labels)
        return CVScore(
            nll=float(losses.mean()),
            top1=topk_accuracy(out_of_fold, self.labels, 1),
            mean_class=mean_class_accuracy(out_of_fold, self.labels, self.num_classes),
            correct=out_of_fold.argmax(axis=1) == self.labels,
            losses=losses,
            class_weights=self.labels.size / (np.count_nonzero(counts) * counts[self.labels]),
        )

    def smallest_training_fold(self) -> int:
        return min(len(train) for train, _ in self.splits)


def near_tie(score: CVScore, lowest: CVScore) -> bool:
    """Whether `score`'s NLL is within noise of the lowest: less than one standard error of the
    paired per-sample difference above it, or less than NEAR_TIE_NATS in total."""
    difference = score.losses - lowest.losses
    n = difference.size
    return difference.mean() <= max(NEAR_TIE_NATS / n, difference.std() / np.sqrt(n))


def accuracy_tie(score: CVScore, highest: CVScore, metric: str) -> bool:
    """Whether `score`'s accuracy is within noise of the highest: less than one standard error of
    the paired per-sample difference below it, or by at most one sample."""
    difference = highest.credit(metric) - score.credit(metric)
    n = difference.size
    one_sample = (1.0 if metric == "top1" else highest.class_weights.max()) / n
    return difference.mean() <= max(one_sample, difference.std() / np.sqrt(n))


def best_index(
    scores: list[CVScore], metric: str, complexity: list[float] | None = None, ceiling: float = math.inf
) -> int:
    """The lowest NLL, except that among the options within noise of it (`near_tie`) the highest
    accuracy wins where it is evidence (`accuracy_tie`), and a tie goes to the simplest: the
    lowest `complexity`, by default the earliest (lists run from simple to flexible). Only the
    options with an NLL at most `ceiling` are considered, unless none is."""
    allowed = [i for i, s in enumerate(scores) if s.nll <= ceiling] or list(range(len(scores)))
    lowest = min((scores[i] for i in allowed), key=lambda s: s.nll)
    complexity = list(range(len(scores))) if complexity is None else complexity
    tied = [i for i in allowed if near_tie(scores[i], lowest)]
    highest = max((scores[i] for i in tied), key=lambda s: s.accuracy(metric))
    return min((i for i in tied if accuracy_tie(scores[i], highest, metric)), key=lambda i: complexity[i])


# ---------------------------------------------------------------------------------------------
# Fitting every candidate and choosing


@dataclass
class Choice:
    """One value of a method's free choice, and its cross-validated figures."""

    value: float
    cv: CVScore


@dataclass
class Candidate:
    fitted: FittedFusion  # on every validation row, at the chosen value
    cv: CVScore  # at the chosen value
    choice_name: str = ""  # "alpha", "l2"; "" when there is nothing to choose
    choices: list[Choice] = field(default_factory=list)
    chosen: float | None = None
    note: str = ""


@dataclass
class Selection:
    candidates: dict[str, Candidate]  # in CANDIDATES order
    auto_pick: str  # the candidate "auto" selects
    auto_reason: str


def select_fusion(
    rgb: np.ndarray,
    skel: np.ndarray,
    labels: np.ndarray,
    folds: Folds,
    grid: int,
    metric: str,
) -> Selection:
    """Fit every candidate on the validation logits ([N, K] each) and labels [N]; choose."""
    labels = np.asarray(labels, dtype=np.int64)
    n, k = rgb.shape
    cv = CrossValidation(rgb, skel, labels, folds)
    temperatures = Temperatures.fit(rgb, skel, labels)
    everything = Rows(temperatures.calibrate(rgb, skel), labels)

    def candidate(fit: RuleFitter, score: CVScore, **choice) -> Candidate:
        return Candidate(FittedFusion(temperatures, fit(everything)), score, **choice)

    def without_choice(fit: RuleFitter) -> Candidate:
        return candidate(fit, cv.score(fit))

    found = {
        "rgb_alone": without_choice(lambda _rows: SingleModality("rgb")),
        "skel_alone": without_choice(lambda _rows: SingleModality("skel")),
        **{
            name: without_choice(lambda rows, r=ratio: r.fitted(rows.x, rows.labels))
            for name, ratio in FIXED_RATIOS.items()
        },
    }
    # A fitted method's free choice keeps the guarantee where one of its values can.
    best_baseline = min(found[name].cv.nll for name in BASELINES)

    def chosen_by_cv(
        name: str, values, fitter: Callable[[float], RuleFitter], complexity=None, note: str = ""
    ) -> Candidate:
        choices = [Choice(float(v), cv.score(fitter(float(v)))) for v in values]
        best = choices[best_index([c.cv for c in choices], metric, complexity, ceiling=best_baseline)]
        return candidate(fitter(best.value), best.cv, choice_name=name, choices=choices, chosen=best.value, note=note)

    def global_at(alpha: float) -> RuleFitter:
        return lambda rows: GlobalFusion.fit(rows.x, rows.labels, alpha)

    def adaptive_at(l2: float) -> RuleFitter:
        return lambda rows: AdaptiveFusion.fit(rows.x, rows.labels, rows.target, l2)

    def per_class_at(l2: float) -> RuleFitter:
        return lambda rows: PerClassFusion.fit(rows.x, rows.labels, rows.target, l2)

    # The simplest weight is 1/2: the product of the calibrated modalities, Bayes' rule for
    # independent evidence.
    alphas = np.linspace(0.0, 1.0, grid)
    found["global"] = chosen_by_cv("alpha", alphas, global_at, complexity=list(np.abs(alphas - 0.5)))
    # The adaptive and per-class rules are shrunk toward the global method at the chosen weight.
    cv.set_target(found["global"].chosen)
    everything.target = found["global"].fitted.rule
    found["adaptive"] = chosen_by_cv("l2", SHRINKAGE_GRID, adaptive_at)
    per_fold = cv.smallest_training_fold() / k
    if per_fold < PER_CLASS_MIN_SAMPLES:
        note = (
            f"{per_fold:.1f} samples per class in the smallest cross-validation training fold, fewer than "
            f"{PER_CLASS_MIN_SAMPLES} (a class's own parameters): per_class is the global weight (l2 = inf)"
        )
        found["per_class"] = chosen_by_cv("l2", [math.inf], per_class_at, note=note)
    else:
        found["per_class"] = chosen_by_cv("l2", SHRINKAGE_GRID, per_class_at)

    pick, reason = choose_auto(found, metric)
    return Selection(found, pick, reason)


def choose_auto(candidates: dict[str, Candidate], metric: str) -> tuple[str, str]:
    """The candidate "auto" selects and why, by the rule in this module's docstring."""
    names = [c for c in CANDIDATES if c in candidates]
    scores = {c: candidates[c].cv for c in names}
    bar_name = min((c for c in names if c in BASELINES), key=lambda c: scores[c].nll)
    bar = scores[bar_name].nll
    eligible = [c for c in names if scores[c].nll <= bar]
    pick = eligible[best_index([scores[c] for c in eligible], metric, [AUTO_TIE_ORDER.index(c) for c in eligible])]
    lowest = min(eligible, key=lambda c: scores[c].nll)

    label = "top-1" if metric == "top1" else "mean class accuracy"

    def figures(c: str) -> str:
        return f"`{c}` (NLL {scores[c].nll:.4f}, {label} {100 * scores[c].accuracy(metric):.1f}%)"

    parts = [f"Cross-validated, `{pick}` has NLL {scores[pick].nll:.4f} and {label} {100 * scores[pick].accuracy(metric):.1f}%."]
    if pick != bar_name:
        parts.append(f"That is below the best baseline, {figures(bar_name)}.")
    elif lowest == pick:
        parts.append(
            "It is the best of the single modalities and fixed ratios, and no fitted method had a lower NLL, "
            "so it is selected."
        )
    else:
        parts.append("It is the best of the single modalities and fixed ratios.")
    if lowest != pick:
        decided = (
            f"the {label} was within noise too, so the simpler candidate was taken"
            if accuracy_tie(scores[lowest], scores[pick], metric)
            else f"so the higher {label} decided"
        )
        parts.append(
            f"{figures(lowest)} had a lower NLL, but by less than one standard error of the paired difference; "
            f"{decided}."
        )
    not_eligible = [c for c in names if c not in eligible]
    if not_eligible:
        parts.append(f"Above that baseline's NLL, hence not eligible: {', '.join(f'`{c}`' for c in not_eligible)}.")
    return pick, " ".join(parts)
