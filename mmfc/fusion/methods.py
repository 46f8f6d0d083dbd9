"""The fusion methods of docs/method.md, section 5, each fitted for given values of its free choices,
over any number of named branches (rgb and skel; or rgb, joint, bone, joint_motion, bone_motion).

Every method maps the raw logits of its branches ([N, K] each, by branch name) to fused scores
[N, K] whose softmax is the fused class distribution. The fitted methods first temperature-scale
each branch, so their weights mix calibrated log-probabilities; the anchors' fixed recipes work
on raw scores as the anchors do: PYSKL's ratios mix the raw softmax probabilities (it tests with
average_clips='prob' and sums those), CTR-GCN's ensemble.py sums the raw logits. Every method
ends in a fitted output scale: it changes no prediction, and it lets the NLL compare methods by
how well they rank the classes rather than by how sharp their scores happen to be.

The global weights lie on the simplex, one per branch. The adaptive gate and the per-class
weights are shrunk toward them; with infinite shrinkage both are the global method exactly.
Which value each free choice takes (the global weights, the two shrinkage strengths) and which
method is used are decided by cross-validation inside the validation split, in
mmfc/fusion/selection.py.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from mmfc.metrics import log_softmax, mean_class_accuracy, topk_accuracy

# Raw logits or calibrated log-probabilities of each branch, [N, K], by branch name.
Logits = Mapping[str, np.ndarray]

# The output scale (1 / temperature) is searched in this range; a branch outside it is either
# almost deterministic or almost uniform, and the edge value is as good as any.
_SCALE_RANGE = (1e-2, 1e2)
_NEWTON_STEPS = 80
# The adaptive gate's biases start from the log of the global weights; a weight is kept this far
# from 0 and 1 so the log stays finite (a weight of 1e-6 on a branch is no weight at all).
_WEIGHT_EPS = 1e-6


# ---------------------------------------------------------------------------------------------
# Shared pieces


def fit_scale(scores: np.ndarray, labels: np.ndarray, start: float = 1.0) -> float:
    """s > 0 minimising the NLL of softmax(s * scores), by safeguarded Newton steps from `start`.

    The NLL is convex in s: its slope, the mean over samples of E_p[score] - score[label],
    grows with s, so the root of the slope is the minimum. Each step narrows a bracket around
    the root (the search range to begin with); a Newton step that would leave it bisects the
    bracket instead, so a root beyond the range ends at the range's edge.

    On rows whose every label has the highest score the NLL falls all the way to s = infinity:
    the rows say the scores are right, not how sure to be. The scale is then 1, the scores as
    they came. Fitted on a few rows (a fold of a small split holds a dozen), an accurate
    candidate's scale otherwise went to the range's edge, and the held-out mistakes of so certain
    scores cost cross-validation tens of nats: the more accurate a fusion, the more often its
    training folds are all right, and the worse its NLL looked.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    truth = scores[np.arange(len(labels)), labels]
    # Every label's score strictly the highest of its row: only the label itself reaches it.
    if labels.size and np.all((scores >= truth[:, None]).sum(axis=1) == 1):
        return 1.0
    lo, hi = _SCALE_RANGE
    s = min(max(start, lo), hi)
    for _ in range(_NEWTON_STEPS):
        p = np.exp(log_softmax(s * scores))
        mean = (p * scores).sum(axis=1)
        slope = float((mean - truth).mean())
        curvature = float((p * (scores - mean[:, None]) ** 2).sum(axis=1).mean())
        if slope > 0:
            hi = s
        else:
            lo = s
        newton = s - slope / curvature if curvature > 0 else math.nan
        following = newton if lo < newton < hi else math.sqrt(lo * hi)
        if abs(following - s) <= 1e-8 * s:
            return following
        s = following
    return s


@dataclass
class Calibrated:
    """Branches on one set of rows: raw logits and calibrated log-probabilities, [N, K] each, by
    branch name."""

    raw: dict[str, np.ndarray]
    logp: dict[str, np.ndarray]

    def take(self, index: np.ndarray) -> Calibrated:
        return Calibrated({b: z[index] for b, z in self.raw.items()}, {b: p[index] for b, p in self.logp.items()})


@dataclass
class Temperatures:
    values: dict[str, float]  # branch -> temperature

    @classmethod
    def fit(cls, logits: Logits, labels: np.ndarray) -> Temperatures:
        return cls({branch: 1 / fit_scale(z, labels) for branch, z in logits.items()})

    def calibrate(self, logits: Logits) -> Calibrated:
        raw = {branch: np.asarray(z, np.float64) for branch, z in logits.items()}
        return Calibrated(raw, {branch: log_softmax(z / self.values[branch]) for branch, z in raw.items()})


def _stacked(arrays: Logits, branches) -> torch.Tensor:
    """The branches' arrays [N, K] as one float64 tensor [N, K, B], branches in the order of
    `branches` and last, so that mixing them is a matrix product."""
    return torch.from_numpy(np.stack([np.asarray(arrays[b], dtype=np.float64) for b in branches], axis=-1))


def _minimise(params: list[torch.Tensor], objective) -> None:
    """Run LBFGS to convergence on a smooth convex objective of `params` (in place)."""
    optimiser = torch.optim.LBFGS(
        params, lr=1, max_iter=500, tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe"
    )

    def closure():
        optimiser.zero_grad()
        value = objective()
        value.backward()
        return value

    optimiser.step(closure)


# ---------------------------------------------------------------------------------------------
# One branch alone, calibrated: the candidate that says fusion does not help


@dataclass
class SingleBranch:
    kind: ClassVar[str] = "single"
    branch: str

    @property
    def branches(self) -> tuple[str, ...]:
        return (self.branch,)

    def scores(self, x: Calibrated) -> np.ndarray:
        return x.logp[self.branch]

    def terms(self, x: Calibrated) -> dict[str, np.ndarray]:
        return {self.branch: x.logp[self.branch]}

    def params(self) -> dict:
        return {"branch": self.branch}


# ---------------------------------------------------------------------------------------------
# The anchors' fixed practice: PYSKL's ratios of raw probabilities, CTR-GCN's sum of raw logits


def mix_probabilities(raw: Logits, weights: Mapping[str, float]) -> np.ndarray:
    """log(sum_b w_b p_b / sum_b w_b) of the raw softmax probabilities p_b, [N, K]."""
    p = sum(w * np.exp(log_softmax(raw[b])) for b, w in weights.items()) / sum(weights.values())
    # A class with zero probability in every branch would give log 0; the floor keeps scores finite.
    return np.log(np.maximum(p, np.finfo(np.float64).tiny))


def best_fixed_ratio(
    first: np.ndarray, second: np.ndarray, labels: np.ndarray, metric: str, grid: int = 21
) -> tuple[float, float]:
    """The peers' practice for two branches: the first's weight w of the fixed ratio w : 1 - w
    with the best accuracy on these rows, and that accuracy. On test rows it is an oracle, not a
    method."""
    best = (-1.0, 0.0)
    for w in np.linspace(0.0, 1.0, grid):
        fused = mix_probabilities({"first": first, "second": second}, {"first": w, "second": 1 - w})
        accuracy = topk_accuracy(fused, labels, 1) if metric == "top1" else mean_class_accuracy(fused, labels, first.shape[1])
        best = max(best, (accuracy, float(w)))
    return best[1], best[0]


@dataclass
class FixedWeights(ABC):
    """Fixed weights on the branches' raw scores, as the anchors use them: only the output scale
    is fitted, and it changes no prediction. Each recipe says how it combines the raw scores."""

    weights: dict[str, float]
    scale: float = 1.0

    @property
    def branches(self) -> tuple[str, ...]:
        return tuple(self.weights)

    @abstractmethod
    def combined(self, raw: Logits) -> np.ndarray: ...

    def fitted(self, x: Calibrated, labels: np.ndarray) -> FixedWeights:
        return replace(self, scale=fit_scale(self.combined(x.raw), labels))

    def scores(self, x: Calibrated) -> np.ndarray:
        return self.scale * self.combined(x.raw)

    def params(self) -> dict:
        return {"weights": dict(self.weights), "scale": self.scale}


class FixedRatio(FixedWeights):
    """PYSKL's fixed ratio of the branches' raw probabilities."""

    kind: ClassVar[str] = "fixed_ratio"

    def combined(self, raw: Logits) -> np.ndarray:
        return mix_probabilities(raw, self.weights)

    def terms(self, x: Calibrated) -> None:
        """None: a mixture of probabilities is no sum of one term per branch."""
        return None


class LogitSum(FixedWeights):
    """CTR-GCN's ensemble.py: a fixed weighted sum of the branches' raw logits."""

    kind: ClassVar[str] = "logit_sum"

    def combined(self, raw: Logits) -> np.ndarray:
        return sum(w * raw[b] for b, w in self.weights.items())

    def terms(self, x: Calibrated) -> dict[str, np.ndarray]:
        return {b: self.scale * w * x.raw[b] for b, w in self.weights.items()}


# ---------------------------------------------------------------------------------------------
# global: one weight per branch, on the simplex, on calibrated log-probabilities


def mix(logp: Logits, weights: Mapping[str, float]) -> np.ndarray:
    """sum_b w_b logp_b, [N, K]."""
    return sum(w * logp[b] for b, w in weights.items())


def equal_weights(branches) -> dict[str, float]:
    """1 / B each: the product of the calibrated branches, Bayes' rule for independent evidence."""
    return {b: 1 / len(branches) for b in branches}


def fit_weights(logp: Logits, labels: np.ndarray, l2: float) -> dict[str, float]:
    """Weights on the simplex for `mix`, by a convex fit: v >= 0 minimising
    NLL(softmax(sum_b v_b logp_b)) + l2 * sum_b (v_b - mean v)^2 / N, then v / sum v.

    The penalty pulls toward equal weights and leaves the overall size of v free, so it shrinks
    the ratios and not the sharpness (the output scale is fitted afterwards, as for any weights);
    l2 = inf gives equal weights exactly. Divided by N with the NLL, it acts in sum form, as the
    adaptive and per-class penalties do. Two identical branches split their weight evenly (the
    penalty is lowest there, and the NLL is the same along the split). v = exp(u) keeps the
    weights non-negative; a branch whose best weight is 0 ends near 0.
    """
    branches = list(logp)
    if math.isinf(l2):
        return equal_weights(branches)
    n = len(labels)
    stacked = _stacked(logp, branches)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    log_v = torch.zeros(len(branches), dtype=torch.float64, requires_grad=True)

    def objective():
        v = log_v.exp()
        fused = stacked @ v
        return torch.nn.functional.cross_entropy(fused, y) + l2 * (v - v.mean()).square().sum() / n

    _minimise([log_v], objective)
    v = log_v.detach().exp().numpy()
    return {b: float(w) for b, w in zip(branches, v / v.sum())}


@dataclass
class GlobalFusion:
    kind: ClassVar[str] = "global"
    weights: dict[str, float]  # on the simplex
    scale: float

    @property
    def branches(self) -> tuple[str, ...]:
        return tuple(self.weights)

    @classmethod
    def fit(cls, x: Calibrated, labels: np.ndarray, weights: Mapping[str, float]) -> GlobalFusion:
        return cls(dict(weights), fit_scale(mix(x.logp, weights), labels))

    def scores(self, x: Calibrated) -> np.ndarray:
        return self.scale * mix(x.logp, self.weights)

    def terms(self, x: Calibrated) -> dict[str, np.ndarray]:
        return {b: self.scale * w * x.logp[b] for b, w in self.weights.items()}

    def params(self) -> dict:
        return {"weights": dict(self.weights), "scale": self.scale}


# ---------------------------------------------------------------------------------------------
# adaptive: per-sample weights from the branches' confidences


def confidence(logp: np.ndarray) -> np.ndarray:
    """1 - H(p) / log K per sample: 1 for a one-hot prediction, 0 for a uniform one. [N]"""
    entropy = -(np.exp(logp) * logp).sum(axis=1)
    return 1.0 - entropy / np.log(logp.shape[1])


def adaptive_weights(logp: Logits, gain: float, bias: Mapping[str, float]) -> dict[str, np.ndarray]:
    """w_b = softmax over the branches of gain * c_b + bias_b, per sample: {branch: [N]}.

    For two branches, w_first = sigmoid(gain * (c_first - c_second) + bias_first - bias_second).
    """
    gate = np.stack([gain * confidence(logp[b]) + d for b, d in bias.items()], axis=1)  # [N, B]
    weights = np.exp(log_softmax(gate))
    return {b: weights[:, i] for i, b in enumerate(bias)}


def fuse_adaptive(logp: Logits, gain: float, bias: Mapping[str, float]) -> np.ndarray:
    weights = adaptive_weights(logp, gain, bias)
    return sum(weights[b][:, None] * logp[b] for b in bias)


def gate_biases(weights: Mapping[str, float]) -> dict[str, float]:
    """The biases that make the gate the constant `weights` (gain 0): log w_b - log w_last, so the
    last branch's bias is 0 (a softmax does not change when every input moves alike)."""
    logs = {b: math.log(min(max(w, _WEIGHT_EPS), 1 - _WEIGHT_EPS)) for b, w in weights.items()}
    last = logs[next(reversed(logs))]
    return {b: value - last for b, value in logs.items()}


def fit_adaptive(
    logp: Logits, labels: np.ndarray, target: GlobalFusion, l2: float
) -> tuple[float, dict[str, float], float]:
    """gain, biases and an output scale minimising NLL + l2 * (gain^2 + P) / N, where P sums the
    squared change, from the global weights' gate biases, of every pair of branches' bias
    difference, divided by B - 1 (for two branches, the change of the one bias difference).

    The penalty pulls the gate toward the constant global weights (gain 0, the biases of
    `gate_biases`); l2 = inf gives the global method itself. The penalty is divided by N with the
    NLL, so l2 acts like the sum form sum_i NLL_i + l2 * ||.||^2: the fewer the samples, the
    stronger the pull. The scale absorbs the flattening of mixing distributions, which the NLL
    would otherwise answer by putting weight on the sharpest branch for its sharpness alone.
    """
    start = gate_biases(target.weights)
    if math.isinf(l2):
        return 0.0, start, target.scale
    branches = list(start)
    n, count = len(labels), len(branches)
    stacked = _stacked(logp, branches)
    confidences = torch.from_numpy(np.stack([confidence(logp[b]) for b in branches], axis=1))  # [N, B]
    base = torch.tensor([start[b] for b in branches], dtype=torch.float64)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    gain = torch.zeros((), dtype=torch.float64, requires_grad=True)
    # The last branch's bias stays put: moving every bias alike changes nothing.
    offsets = torch.zeros(count - 1, dtype=torch.float64, requires_grad=True)
    log_scale = torch.tensor(math.log(target.scale), dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(1, dtype=torch.float64)

    def objective():
        moved = torch.cat([offsets, zero])
        weights = torch.softmax(gain * confidences + base + moved, dim=1)
        fused = log_scale.exp() * torch.bmm(stacked, weights[:, :, None]).squeeze(2)
        # sum over pairs of (moved_a - moved_b)^2 = B * sum of squares about the mean
        pairs = count * (moved - moved.mean()).square().sum() / (count - 1)
        return torch.nn.functional.cross_entropy(fused, y) + l2 * (gain.square() + pairs) / n

    _minimise([gain, offsets, log_scale], objective)
    moved = torch.cat([offsets.detach(), zero]).numpy()
    biases = {b: start[b] + float(m) for b, m in zip(branches, moved)}
    return float(gain.detach()), biases, float(log_scale.detach().exp())


@dataclass
class AdaptiveFusion:
    kind: ClassVar[str] = "adaptive"
    gain: float
    bias: dict[str, float]
    scale: float
    l2: float  # shrinkage toward the global weights

    @property
    def branches(self) -> tuple[str, ...]:
        return tuple(self.bias)

    @classmethod
    def fit(cls, x: Calibrated, labels: np.ndarray, target: GlobalFusion, l2: float) -> AdaptiveFusion:
        return cls(*fit_adaptive(x.logp, labels, target, l2), l2)

    def scores(self, x: Calibrated) -> np.ndarray:
        return self.scale * fuse_adaptive(x.logp, self.gain, self.bias)

    def terms(self, x: Calibrated) -> dict[str, np.ndarray]:
        weights = adaptive_weights(x.logp, self.gain, self.bias)
        return {b: self.scale * weights[b][:, None] * x.logp[b] for b in self.bias}

    def params(self) -> dict:
        return {"gain": self.gain, "bias": dict(self.bias), "scale": self.scale, "l2": self.l2}


# ---------------------------------------------------------------------------------------------
# per-class: a weight per branch and class, and a bias per class, by L2-penalised multinomial
# logistic regression


def fuse_per_class(logp: Logits, class_weights: Mapping[str, np.ndarray], bias: np.ndarray) -> np.ndarray:
    """s_c = sum_b a_b,c log p_b,c + beta_c, [N, K]."""
    return sum(a * logp[b] for b, a in class_weights.items()) + bias


def fit_per_class(
    logp: Logits, labels: np.ndarray, target: GlobalFusion, l2: float
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Class weights and biases minimising NLL + l2 * ||(a_b - s w_b for each branch b, beta)||^2 / N.

    The target is the global method (weights w, scale s), so l2 = inf gives it back exactly.
    As in `fit_adaptive`, the penalty acts in sum form: a class with few samples stays close to
    the global weights, one with many may move away from them.
    """
    branches = list(target.weights)
    k = logp[branches[0]].shape[1]
    targets = {b: target.scale * w for b, w in target.weights.items()}
    if math.isinf(l2):
        return {b: np.full(k, t) for b, t in targets.items()}, np.zeros(k)
    n = len(labels)
    # Classes first: each class's scores are then one matrix product, [K, N, B] @ [K, B, 1].
    by_class = _stacked(logp, branches).permute(1, 0, 2).contiguous()
    target_weights = torch.tensor([targets[b] for b in branches], dtype=torch.float64)[:, None]
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    # Offsets from the target, so zero is the shrinkage target and the starting point; the last
    # row is the biases.
    delta = torch.zeros(len(branches) + 1, k, dtype=torch.float64, requires_grad=True)

    def objective():
        weights = target_weights + delta[:-1]  # [B, K]
        fused = torch.bmm(by_class, weights.T[:, :, None]).squeeze(2).T + delta[-1]
        return torch.nn.functional.cross_entropy(fused, y) + l2 * delta.pow(2).sum() / n

    _minimise([delta], objective)
    offsets = delta.detach().numpy()
    return {b: targets[b] + offsets[i] for i, b in enumerate(branches)}, offsets[-1].copy()


@dataclass
class PerClassFusion:
    kind: ClassVar[str] = "per_class"
    class_weights: dict[str, np.ndarray]  # branch -> [K]
    bias: np.ndarray  # [K]
    l2: float  # shrinkage toward the global weights

    @property
    def branches(self) -> tuple[str, ...]:
        return tuple(self.class_weights)

    @classmethod
    def fit(cls, x: Calibrated, labels: np.ndarray, target: GlobalFusion, l2: float) -> PerClassFusion:
        return cls(*fit_per_class(x.logp, labels, target, l2), l2)

    def scores(self, x: Calibrated) -> np.ndarray:
        return fuse_per_class(x.logp, self.class_weights, self.bias)

    def terms(self, x: Calibrated) -> dict[str, np.ndarray]:
        return {b: a * x.logp[b] for b, a in self.class_weights.items()}

    def params(self) -> dict:
        return {
            "class_weights": {b: a.tolist() for b, a in self.class_weights.items()},
            "bias": self.bias.tolist(),
            "l2": self.l2,
        }


# ---------------------------------------------------------------------------------------------
# A fitted method: the temperatures of its inputs and its rule


FusionRule = SingleBranch | FixedRatio | LogitSum | GlobalFusion | AdaptiveFusion | PerClassFusion


def branch_shares(rule: FusionRule, x: Calibrated, labels: np.ndarray) -> dict[str, float] | None:
    """Each branch's share of the fused scores' evidence for the true class on these rows.

    The fused scores of every rule but a fixed ratio are a sum of one term per branch (plus
    per_class's biases): the true class's mean margin over the mean class is then the sum of the
    terms' margins, and a branch's share is its term's margin over that sum. It says what a
    weight alone cannot: a branch whose calibrated distribution is flat (a branch of noise, which
    its temperature makes so) carries no evidence, and its share is near 0 whatever its weight.
    A branch that points away from the true class has a negative share. None for a fixed ratio
    of probabilities, and where the margins do not sum to a positive number.
    """
    terms = rule.terms(x)
    if terms is None:
        return None
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(labels.size)
    margins = {b: float((t[rows, labels] - t.mean(axis=1)).mean()) for b, t in terms.items()}
    total = sum(margins.values())
    return {b: m / total for b, m in margins.items()} if total > 0 else None


@dataclass
class FittedFusion:
    temperatures: Temperatures
    rule: FusionRule

    @property
    def branches(self) -> tuple[str, ...]:
        """The branches whose logits `apply` needs."""
        return self.rule.branches

    def apply(self, logits: Logits) -> np.ndarray:
        """Fused scores [N, K] of raw logits [N, K] by branch name (at least the rule's branches)."""
        missing = [b for b in self.branches if b not in logits]
        if missing:
            raise ValueError(f"the fusion needs the logits of {', '.join(missing)}; got {', '.join(logits) or 'none'}")
        return self.rule.scores(self.temperatures.calibrate({b: logits[b] for b in self.branches}))

    def log_probabilities(self, logits: Logits) -> np.ndarray:
        """The fused class log-probabilities, float32 [N, K]: what fused.parquet stores (the same
        argmax and softmax as `apply`, and no large offsets per row)."""
        return log_softmax(self.apply(logits)).astype(np.float32)

    def params(self) -> dict:
        """The rule's kind and parameters and every branch's temperature, as plain JSON values;
        mmfc/fusion/files.py rebuilds the fusion from them."""
        return {"rule": self.rule.kind, **self.rule.params(), "temperatures": dict(self.temperatures.values)}
