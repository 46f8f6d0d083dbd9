"""Choosing by cross-validation inside the rows the fusion is fitted on (the validation split, or
the out-of-fold scores of every training clip: `fusion.fit_on`, mmfc/fusion/fit_scores.py): each
method's free choices, and the method that `fusion.method = "auto"` uses, over any number of
named branches. Below, "validation" stands for whichever rows those are.

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
stronger shrinkage, the global weights nearer equal, the candidate earlier in the tie order
(`tie_order`). Taking the highest of a few dozen noisy accuracies instead picks noise: on 24
validation clips it cost the global weight a point of test accuracy.

The candidates of "auto" (`config.fusion_candidates`) are each branch alone and the anchors' fixed recipes
(together the baselines: PYSKL's equal ratio of probabilities, its 2:1 and 1:2 where there are
two branches, CTR-GCN's weighted sum of logits where its four skeleton streams are present) and
the three fitted methods. The guarantee: the selected method's cross-validated NLL is never above
that of any baseline. Among the candidates that satisfy it (the best baseline always does), the
lowest NLL wins, near-ties decided as above, the simpler being the earlier in the tie order. So
that a fitted method can take part, its free choice is made among the values that satisfy the
guarantee too, where any does: a value within noise of the method's lowest NLL but above the
best baseline's would shut out a method that, at another value, beats every baseline.

The global weights of two branches are chosen on a grid of `grid` values of the first one's
weight (a simplex grid, every point cross-validated). With three or more a grid grows too fast
(5 branches at steps of 0.01: 4.6 million points), so each fold fits them instead
(`methods.fit_weights`: a convex fit shrunk toward equal weights), and cross-validation chooses
the shrinkage strength. With one branch there is nothing to fuse: the fusion is that branch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmfc.config import (
    CTRGCN_FUSION,
    CTRGCN_WEIGHTS,
    DEFAULT_BRANCHES,
    FITTED_FUSIONS,
    FusionConfig,
    fusion_baselines,
    fusion_candidates,
    pyskl_ratios,
    single_fusion,
)
from mmfc.errors import DataError
from mmfc.folds import Folds, distinct_groups, make_folds
from mmfc.fusion.methods import (
    AdaptiveFusion,
    Calibrated,
    FittedFusion,
    FixedRatio,
    FixedWeights,
    FusionRule,
    GlobalFusion,
    Logits,
    LogitSum,
    PerClassFusion,
    SingleBranch,
    Temperatures,
    branch_shares,
    equal_weights,
    fit_weights,
)
from mmfc.metrics import log_softmax, mean_class_accuracy, topk_accuracy
from mmfc.scores.format import ScoreTable

NEAR_TIE_NATS = 1.0
# A free choice's values whose cross-validated NLL is above the best baseline's by less than this
# (relative) meet the bar: every output scale is found to 1e-8 (fit_scale), and two identical
# branches mixed at any weight, the same scores, came out within 1e-10 of either alone, on either
# side by chance. (Auto's guarantee itself is kept strictly.)
ROUNDING = 1e-9
# Shrinkage strengths (sum form, see fit_per_class) tried for the adaptive gate, the per-class
# weights and the global weights of three or more branches, strongest first so that exact ties
# go to the stronger. inf is the global method (for the global weights: equal weights).
SHRINKAGE_GRID = (math.inf, 1000.0, 300.0, 100.0, 30.0, 10.0, 3.0, 1.0)
# The branches of two-branch pipelines, and their candidates.
PIPELINE_BRANCHES = DEFAULT_BRANCHES
CANDIDATES = fusion_candidates(PIPELINE_BRANCHES)


def fixed_recipes(branches: tuple[str, ...]) -> dict[str, FixedWeights]:
    """The anchors' fixed recipes for these branches, by candidate name (config.fusion_baselines
    names them): PYSKL's ratios of raw probabilities, CTR-GCN's sum of raw logits where its four
    streams are among them (its weights on those, none on the rest). None for one branch."""
    recipes: dict[str, FixedWeights] = {name: FixedRatio(ratio) for name, ratio in pyskl_ratios(branches).items()}
    if CTRGCN_FUSION in fusion_baselines(branches):
        recipes[CTRGCN_FUSION] = LogitSum(dict(CTRGCN_WEIGHTS))
    return recipes


def tie_order(branches: tuple[str, ...]) -> tuple[str, ...]:
    """Which of the candidates tied for "auto" is taken, first to last: the fixed recipes
    (nothing fitted that changes a prediction), the fitted methods from simple to flexible, and
    last a branch alone. Dropping a branch is the strong claim: where the data cannot tell fusing
    from leaving one out, both are kept (on the demo's scores, a modality alone chosen on such a
    tie cost points of test top-1, while fusing beside an RGB branch at chance cost nothing:
    bench/bench_fusion.py, docs/decisions.md, "Fusion")."""
    return (*fixed_recipes(branches), *(FITTED_FUSIONS if len(branches) > 1 else ()),
            *(single_fusion(b) for b in branches))


# ---------------------------------------------------------------------------------------------
# Folds


def sample_groups(table: ScoreTable, path: str | Path) -> tuple[list[str] | None, str | None]:
    """The groups validation was carved by, as stage 1 wrote them into the crop index and stage 3
    copied them into the score file at `path`, and their kind ("performer", "source video",
    "group"). (None, None) when every row is its own group (a dataset that names none): nothing
    to keep apart, and the folds are stratified by class instead."""
    if table.groups is None:
        raise DataError(path, "names no sample groups (written by an older mmfc); rerun `mmfc stage scores` (stage 3)")
    groups = distinct_groups(table.groups)
    return (groups, table.group_kind) if groups else (None, None)


def fit_folds(rows: ScoreTable, path: str | Path, fusion: FusionConfig) -> Folds:
    """Stage 4's folds of the rows it fits on (`rows`, of the score file `path`: the validation
    split, or every training clip's out-of-fold scores): by the samples' groups, as the
    pipeline's fusion section sets their number and seed."""
    groups, grouped_by = sample_groups(rows, path)
    return make_folds(rows.labels, groups, grouped_by, fusion.cv_folds, fusion.cv_seed)


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
    """The rows a rule is fitted on: calibrated scores, labels, and (once its weights are chosen)
    the global method fitted on them, which the adaptive and per-class rules are shrunk toward."""

    x: Calibrated
    labels: np.ndarray
    target: GlobalFusion | None = None


RuleFitter = Callable[[Rows], FusionRule]


class CrossValidation:
    """Out-of-fold scores of any rule fitter on fixed folds, temperatures refitted per fold."""

    def __init__(self, logits: Logits, labels: np.ndarray, folds: Folds):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = next(iter(logits.values())).shape[1]
        self.splits = folds.splits()
        # Each fold's temperatures come from its training rows only: (training, held-out) rows.
        self.folds: list[tuple[Rows, Calibrated]] = []
        for train, held in self.splits:
            temperatures = Temperatures.fit({b: z[train] for b, z in logits.items()}, self.labels[train])
            x = temperatures.calibrate(logits)
            self.folds.append((Rows(x.take(train), self.labels[train]), x.take(held)))

    def set_target(self, fit: Callable[[Rows], GlobalFusion]) -> None:
        """Fit each fold's global method at the chosen value, once for all shrunk rules."""
        for rows, _ in self.folds:
            rows.target = fit(rows)

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


def not_above(nll: float, bar: float) -> bool:
    """nll <= bar, up to rounding (ROUNDING)."""
    return nll <= bar + ROUNDING * max(1.0, abs(bar))


def best_index(
    scores: list[CVScore], metric: str, complexity: list[float] | None = None, ceiling: float = math.inf
) -> int:
    """The lowest NLL, except that among the options within noise of it (`near_tie`) the highest
    accuracy wins where it is evidence (`accuracy_tie`), and a tie goes to the simplest: the
    lowest `complexity`, by default the earliest (lists run from simple to flexible). Only the
    options with an NLL at most `ceiling` (up to ROUNDING) are considered, unless none is."""
    allowed = [i for i, s in enumerate(scores) if not_above(s.nll, ceiling)] or list(range(len(scores)))
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
    choice_name: str = ""  # "alpha" (the first branch's global weight), "l2"; "" when there is nothing to choose
    choices: list[Choice] = field(default_factory=list)
    chosen: float | None = None
    note: str = ""
    # Each branch's share of the fused evidence for the true class on every validation row
    # (methods.branch_shares); None for a fixed ratio of probabilities.
    shares: dict[str, float] | None = None


@dataclass
class Selection:
    branches: tuple[str, ...]
    candidates: dict[str, Candidate]  # in config.fusion_candidates order
    auto_pick: str  # the candidate "auto" selects
    auto_reason: str

    @property
    def baselines(self) -> tuple[str, ...]:
        return fusion_baselines(self.branches)

    @property
    def tie_order(self) -> tuple[str, ...]:
        return tie_order(self.branches)


def select_fusion(logits: Logits, labels: np.ndarray, folds: Folds, grid: int, metric: str) -> Selection:
    """Fit every candidate on the validation logits of each branch ({branch: [N, K]}, in the
    branches' order) and labels [N]; choose. `grid`: the values of the global weight tried for
    two branches."""
    branches = tuple(logits)
    labels = np.asarray(labels, dtype=np.int64)
    shapes = {np.shape(z) for z in logits.values()}
    if not branches or len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[0] != labels.size:
        raise ValueError(f"expected logits [N, K] of one shape for N = {labels.size} labels, got {shapes or 'none'}")
    k = next(iter(shapes))[1]
    cv = CrossValidation(logits, labels, folds)
    temperatures = Temperatures.fit(logits, labels)
    everything = Rows(temperatures.calibrate(logits), labels)

    def candidate(fit: RuleFitter, score: CVScore, **choice) -> Candidate:
        rule = fit(everything)
        shares = branch_shares(rule, everything.x, labels)
        return Candidate(FittedFusion(temperatures, rule), score, shares=shares, **choice)

    def without_choice(fit: RuleFitter) -> Candidate:
        return candidate(fit, cv.score(fit))

    found = {single_fusion(b): without_choice(lambda _rows, b=b: SingleBranch(b)) for b in branches}
    for name, recipe in fixed_recipes(branches).items():
        found[name] = without_choice(lambda rows, r=recipe: r.fitted(rows.x, rows.labels))
    if len(branches) == 1:
        reason = f"One branch, `{branches[0]}`: the fusion is that branch, temperature-scaled; there is nothing to fuse."
        return Selection(branches, found, single_fusion(branches[0]), reason)
    # A fitted method's free choice keeps the guarantee where one of its values can.
    best_baseline = min(found[name].cv.nll for name in fusion_baselines(branches))

    def chosen_by_cv(
        name: str, values, fitter: Callable[[float], RuleFitter], complexity=None, note: str = ""
    ) -> Candidate:
        choices = [Choice(float(v), cv.score(fitter(float(v)))) for v in values]
        best = choices[best_index([c.cv for c in choices], metric, complexity, ceiling=best_baseline)]
        return candidate(fitter(best.value), best.cv, choice_name=name, choices=choices, chosen=best.value, note=note)

    def global_at(alpha: float) -> RuleFitter:
        first, second = branches
        return lambda rows: GlobalFusion.fit(rows.x, rows.labels, {first: alpha, second: 1 - alpha})

    def global_shrunk(l2: float) -> RuleFitter:
        return lambda rows: GlobalFusion.fit(rows.x, rows.labels, fit_weights(rows.x.logp, rows.labels, l2))

    def adaptive_at(l2: float) -> RuleFitter:
        return lambda rows: AdaptiveFusion.fit(rows.x, rows.labels, rows.target, l2)

    def per_class_at(l2: float) -> RuleFitter:
        return lambda rows: PerClassFusion.fit(rows.x, rows.labels, rows.target, l2)

    if len(branches) == 2:
        # The simplest weight is 1/2: the product of the calibrated branches, Bayes' rule for
        # independent evidence.
        alphas = np.linspace(0.0, 1.0, grid)
        found["global"] = chosen_by_cv("alpha", alphas, global_at, complexity=list(np.abs(alphas - 0.5)))
        global_fitter = global_at(found["global"].chosen)
    else:
        note = "weights fitted in each fold, shrunk toward equal weights (l2 = inf: equal weights)"
        found["global"] = chosen_by_cv("l2", SHRINKAGE_GRID, global_shrunk, note=note)
        global_fitter = global_shrunk(found["global"].chosen)
    # The adaptive and per-class rules are shrunk toward the global method at the chosen value.
    cv.set_target(global_fitter)
    everything.target = found["global"].fitted.rule
    found["adaptive"] = chosen_by_cv("l2", SHRINKAGE_GRID, adaptive_at)
    # A class's own parameters: one weight per branch and a bias. With fewer samples per class
    # than that in a cross-validation training fold, they cannot be told from noise.
    own_parameters = len(branches) + 1
    per_fold = cv.smallest_training_fold() / k
    if per_fold < own_parameters:
        note = (
            f"{per_fold:.1f} samples per class in the smallest cross-validation training fold, fewer than "
            f"{own_parameters} (a class's own parameters: a weight per branch and a bias): per_class is the "
            "global weight (l2 = inf)"
        )
        found["per_class"] = chosen_by_cv("l2", [math.inf], per_class_at, note=note)
    else:
        found["per_class"] = chosen_by_cv("l2", SHRINKAGE_GRID, per_class_at)

    pick, reason = choose_auto(found, metric, branches)
    return Selection(branches, found, pick, reason)


def choose_auto(candidates: dict[str, Candidate], metric: str, branches: tuple[str, ...]) -> tuple[str, str]:
    """The candidate "auto" selects among those fitted for `branches` and why, by the rule in
    this module's docstring."""
    names = [c for c in fusion_candidates(branches) if c in candidates]
    scores = {c: candidates[c].cv for c in names}
    baselines, order = fusion_baselines(branches), tie_order(branches)
    bar_name = min((c for c in names if c in baselines), key=lambda c: scores[c].nll)
    bar = scores[bar_name].nll
    eligible = [c for c in names if scores[c].nll <= bar]
    pick = eligible[best_index([scores[c] for c in eligible], metric, [order.index(c) for c in eligible])]
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


# ---------------------------------------------------------------------------------------------
# A cheaper ensemble: the best subset of the branches within a cost


@dataclass
class Subset:
    branches: tuple[str, ...]
    cost: float  # the sum of its branches' costs
    cv: CVScore
    fitted: FittedFusion  # on every validation row


def subset_rule(branches: tuple[str, ...]) -> RuleFitter:
    """How a subset of branches is fused when subsets are compared: the product of its
    temperature-scaled branches (the global rule at equal weights, the value every fitted method
    is shrunk toward; one branch: that branch). It has no free choice, so comparing up to
    2^B - 1 subsets on validation adds no search inside each one to the search across them."""
    if len(branches) == 1:
        return lambda _rows: SingleBranch(branches[0])
    return lambda rows: GlobalFusion.fit(rows.x, rows.labels, equal_weights(branches))


def subset_fusion(logits: Logits, labels: np.ndarray, branches: tuple[str, ...]) -> FittedFusion:
    """`subset_rule` of `branches` fitted on the rows `logits` ({branch: [N, K]}, at least those
    branches) and labels [N]: temperatures, then the output scale."""
    chosen = {b: logits[b] for b in branches}
    temperatures = Temperatures.fit(chosen, labels)
    rows = Rows(temperatures.calibrate(chosen), np.asarray(labels, dtype=np.int64))
    return FittedFusion(temperatures, subset_rule(branches)(rows))


def best_subset(
    logits: Logits, labels: np.ndarray, folds: Folds, costs: dict[str, float], budget: float, metric: str
) -> Subset | None:
    """Among the subsets of the branches of `logits` (validation rows) whose summed cost is at
    most `budget`, the one whose `subset_rule` fusion has the best cross-validated figures by
    best_index (the lowest NLL, near-ties by accuracy where it is evidence), a tie going to the
    cheaper; None where no branch costs that little."""
    branches = tuple(logits)
    subsets = [
        combo for size in range(1, len(branches) + 1) for combo in itertools.combinations(branches, size)
        if sum(costs[b] for b in combo) <= budget * (1 + ROUNDING)
    ]
    if not subsets:
        return None
    cv = CrossValidation(logits, labels, folds)
    scores = [cv.score(subset_rule(combo)) for combo in subsets]
    cost = [sum(costs[b] for b in combo) for combo in subsets]
    best = best_index(scores, metric, complexity=cost)
    return Subset(subsets[best], cost[best], scores[best], subset_fusion(logits, labels, subsets[best]))
