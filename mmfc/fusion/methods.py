"""The fusion methods of METHOD.md section 5, each fitted for given values of its free choices.

Every method maps the raw logits of both modalities ([N, K] each) to fused scores [N, K] whose
softmax is the fused class distribution. The fitted methods first temperature-scale each
modality, so their weights mix calibrated log-probabilities; the anchors' fixed ratios mix the
raw softmax probabilities (PYSKL tests with average_clips='prob' and sums those). Every method
ends in a fitted output scale: it changes no prediction, and it lets the NLL compare methods by
how well they rank the classes rather than by how sharp their scores happen to be.

The adaptive gate and the per-class weights are shrunk toward the global weight; with infinite
shrinkage both are the global method exactly. Which value each free choice takes (the global
weight, the two shrinkage strengths) and which method is used are decided by cross-validation
inside the validation split, in mmfc/fusion/selection.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from mmfc.metrics import log_softmax, mean_class_accuracy, topk_accuracy

# The output scale (1 / temperature) is searched in this range; a modality outside it is either
# almost deterministic or almost uniform, and the edge value is as good as any.
_SCALE_RANGE = (1e-2, 1e2)
_NEWTON_STEPS = 80
# The adaptive gate's bias starts from logit(alpha); alpha is kept this far from 0 and 1 so the
# logit stays finite (a weight of 1e-6 on a modality is no weight at all).
_ALPHA_EPS = 1e-6


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
    """Both modalities on one set of rows: raw logits and calibrated log-probabilities, [N, K] each."""

    rgb: np.ndarray
    skel: np.ndarray
    logp_rgb: np.ndarray
    logp_skel: np.ndarray

    def take(self, index: np.ndarray) -> Calibrated:
        return Calibrated(self.rgb[index], self.skel[index], self.logp_rgb[index], self.logp_skel[index])


@dataclass
class Temperatures:
    rgb: float
    skel: float

    @classmethod
    def fit(cls, rgb: np.ndarray, skel: np.ndarray, labels: np.ndarray) -> Temperatures:
        return cls(1 / fit_scale(rgb, labels), 1 / fit_scale(skel, labels))

    def calibrate(self, rgb: np.ndarray, skel: np.ndarray) -> Calibrated:
        rgb, skel = np.asarray(rgb, np.float64), np.asarray(skel, np.float64)
        return Calibrated(rgb, skel, log_softmax(rgb / self.rgb), log_softmax(skel / self.skel))


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
# One modality alone, calibrated: the candidate that says fusion does not help


@dataclass
class SingleModality:
    modality: str  # "rgb" or "skel"

    def scores(self, x: Calibrated) -> np.ndarray:
        return x.logp_rgb if self.modality == "rgb" else x.logp_skel

    def params(self) -> dict:
        return {"modality": self.modality}


# ---------------------------------------------------------------------------------------------
# The anchors' fixed practice: a fixed ratio of raw probabilities


def mix_probabilities(rgb: np.ndarray, skel: np.ndarray, w_rgb: float, w_skel: float) -> np.ndarray:
    """log((w_rgb p_rgb + w_skel p_skel) / (w_rgb + w_skel)) of the raw softmax probabilities, [N, K]."""
    p = (w_rgb * np.exp(log_softmax(rgb)) + w_skel * np.exp(log_softmax(skel))) / (w_rgb + w_skel)
    # A class with zero probability in both would give log 0; the floor keeps scores finite.
    return np.log(np.maximum(p, np.finfo(np.float64).tiny))


def best_fixed_ratio(
    rgb: np.ndarray, skel: np.ndarray, labels: np.ndarray, metric: str, grid: int = 21
) -> tuple[float, float]:
    """The peers' practice: the RGB weight w of the fixed ratio w : 1 - w with the best accuracy
    on these rows, and that accuracy. On test rows it is an oracle, not a method."""
    best = (-1.0, 0.0)
    for w in np.linspace(0.0, 1.0, grid):
        fused = mix_probabilities(rgb, skel, w, 1 - w)
        accuracy = topk_accuracy(fused, labels, 1) if metric == "top1" else mean_class_accuracy(fused, labels, rgb.shape[1])
        best = max(best, (accuracy, float(w)))
    return best[1], best[0]


@dataclass
class FixedRatio:
    rgb: float
    skel: float
    scale: float = 1.0  # fitted; the ratio, and so every prediction, is not

    def fitted(self, x: Calibrated, labels: np.ndarray) -> FixedRatio:
        return replace(self, scale=fit_scale(mix_probabilities(x.rgb, x.skel, self.rgb, self.skel), labels))

    def scores(self, x: Calibrated) -> np.ndarray:
        return self.scale * mix_probabilities(x.rgb, x.skel, self.rgb, self.skel)

    def params(self) -> dict:
        return {"rgb": self.rgb, "skel": self.skel, "scale": self.scale}


# ---------------------------------------------------------------------------------------------
# global: one weight alpha on calibrated log-probabilities


def mix(logp_rgb: np.ndarray, logp_skel: np.ndarray, alpha: float) -> np.ndarray:
    return alpha * logp_rgb + (1 - alpha) * logp_skel


@dataclass
class GlobalFusion:
    alpha: float
    scale: float

    @classmethod
    def fit(cls, x: Calibrated, labels: np.ndarray, alpha: float) -> GlobalFusion:
        return cls(alpha, fit_scale(mix(x.logp_rgb, x.logp_skel, alpha), labels))

    def scores(self, x: Calibrated) -> np.ndarray:
        return self.scale * mix(x.logp_rgb, x.logp_skel, self.alpha)

    def params(self) -> dict:
        return {"alpha": self.alpha, "scale": self.scale}


# ---------------------------------------------------------------------------------------------
# adaptive: a per-sample weight from the two modalities' confidences


def confidence(logp: np.ndarray) -> np.ndarray:
    """1 - H(p) / log K per sample: 1 for a one-hot prediction, 0 for a uniform one. [N]"""
    entropy = -(np.exp(logp) * logp).sum(axis=1)
    return 1.0 - entropy / np.log(logp.shape[1])


def adaptive_weight(logp_rgb: np.ndarray, logp_skel: np.ndarray, g: float, d: float) -> np.ndarray:
    """w_rgb = sigmoid(g * (c_rgb - c_skel) + d), [N]."""
    gap = confidence(logp_rgb) - confidence(logp_skel)
    return 1.0 / (1.0 + np.exp(-(g * gap + d)))


def fuse_adaptive(logp_rgb: np.ndarray, logp_skel: np.ndarray, g: float, d: float) -> np.ndarray:
    w = adaptive_weight(logp_rgb, logp_skel, g, d)[:, None]
    return w * logp_rgb + (1 - w) * logp_skel


def gate_bias(alpha: float) -> float:
    """The bias d that makes the gate a constant weight alpha (g = 0)."""
    alpha = min(max(alpha, _ALPHA_EPS), 1 - _ALPHA_EPS)
    return math.log(alpha / (1 - alpha))


def fit_adaptive(
    logp_rgb: np.ndarray, logp_skel: np.ndarray, labels: np.ndarray, target: GlobalFusion, l2: float
) -> tuple[float, float, float]:
    """g, d and an output scale minimising NLL + l2 * (g^2 + (d - logit alpha)^2) / N.

    The penalty pulls the gate toward the constant global weight (g = 0, d = logit alpha);
    l2 = inf gives the global method itself. The penalty is divided by N with the NLL, so l2
    acts like the sum form sum_i NLL_i + l2 * ||.||^2: the fewer the samples, the stronger the
    pull. The scale absorbs the flattening of mixing two distributions, which the NLL would
    otherwise answer by putting weight on the sharper modality for its sharpness alone.
    """
    d0 = gate_bias(target.alpha)
    if math.isinf(l2):
        return 0.0, d0, target.scale
    n = len(labels)
    lr, ls = torch.from_numpy(logp_rgb), torch.from_numpy(logp_skel)
    gap = torch.from_numpy(confidence(logp_rgb) - confidence(logp_skel))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    g, offset = (torch.zeros((), dtype=torch.float64, requires_grad=True) for _ in range(2))
    log_scale = torch.tensor(math.log(target.scale), dtype=torch.float64, requires_grad=True)

    def objective():
        w = torch.sigmoid(g * gap + d0 + offset)[:, None]
        fused = log_scale.exp() * (w * lr + (1 - w) * ls)
        return torch.nn.functional.cross_entropy(fused, y) + l2 * (g.square() + offset.square()) / n

    _minimise([g, offset, log_scale], objective)
    return float(g.detach()), d0 + float(offset.detach()), float(log_scale.detach().exp())


@dataclass
class AdaptiveFusion:
    g: float
    d: float
    scale: float
    l2: float  # shrinkage toward the global weight

    @classmethod
    def fit(cls, x: Calibrated, labels: np.ndarray, target: GlobalFusion, l2: float) -> AdaptiveFusion:
        return cls(*fit_adaptive(x.logp_rgb, x.logp_skel, labels, target, l2), l2)

    def scores(self, x: Calibrated) -> np.ndarray:
        return self.scale * fuse_adaptive(x.logp_rgb, x.logp_skel, self.g, self.d)

    def params(self) -> dict:
        return {"g": self.g, "d": self.d, "scale": self.scale, "l2": self.l2}


# ---------------------------------------------------------------------------------------------
# per-class: a_c, b_c, beta_c by L2-penalised multinomial logistic regression


def fuse_per_class(logp_rgb, logp_skel, a: np.ndarray, b: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """s_c = a_c log p_rgb,c + b_c log p_skel,c + beta_c, [N, K]."""
    return a * logp_rgb + b * logp_skel + beta


def fit_per_class(
    logp_rgb: np.ndarray, logp_skel: np.ndarray, labels: np.ndarray, target: GlobalFusion, l2: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class weights minimising NLL + l2 * ||(a - s alpha, b - s (1 - alpha), beta)||^2 / N.

    The target is the global method (weight alpha, scale s), so l2 = inf gives it back exactly.
    As in `fit_adaptive`, the penalty acts in sum form: a class with few samples stays close to
    the global weight, one with many may move away from it.
    """
    k = logp_rgb.shape[1]
    target_a, target_b = target.scale * target.alpha, target.scale * (1 - target.alpha)
    if math.isinf(l2):
        return np.full(k, target_a), np.full(k, target_b), np.zeros(k)
    n = len(labels)
    lr, ls = torch.from_numpy(logp_rgb), torch.from_numpy(logp_skel)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    # Offsets from the target, so zero is the shrinkage target and the starting point.
    delta = torch.zeros(3, k, dtype=torch.float64, requires_grad=True)

    def objective():
        fused = (target_a + delta[0]) * lr + (target_b + delta[1]) * ls + delta[2]
        return torch.nn.functional.cross_entropy(fused, y) + l2 * delta.pow(2).sum() / n

    _minimise([delta], objective)
    offsets = delta.detach().numpy()
    return target_a + offsets[0], target_b + offsets[1], offsets[2].copy()


@dataclass
class PerClassFusion:
    a: np.ndarray  # [K]
    b: np.ndarray  # [K]
    beta: np.ndarray  # [K]
    l2: float  # shrinkage toward the global weight

    @classmethod
    def fit(cls, x: Calibrated, labels: np.ndarray, target: GlobalFusion, l2: float) -> PerClassFusion:
        return cls(*fit_per_class(x.logp_rgb, x.logp_skel, labels, target, l2), l2)

    def scores(self, x: Calibrated) -> np.ndarray:
        return fuse_per_class(x.logp_rgb, x.logp_skel, self.a, self.b, self.beta)

    def params(self) -> dict:
        return {"a": self.a.tolist(), "b": self.b.tolist(), "beta": self.beta.tolist(), "l2": self.l2}


# ---------------------------------------------------------------------------------------------
# A fitted method: the temperatures of its inputs and its rule


FusionRule = SingleModality | FixedRatio | GlobalFusion | AdaptiveFusion | PerClassFusion


@dataclass
class FittedFusion:
    temperatures: Temperatures
    rule: FusionRule

    def apply(self, rgb: np.ndarray, skel: np.ndarray) -> np.ndarray:
        """Fused scores [N, K] of raw logits [N, K] each."""
        return self.rule.scores(self.temperatures.calibrate(rgb, skel))

    def log_probabilities(self, rgb: np.ndarray, skel: np.ndarray) -> np.ndarray:
        """The fused class log-probabilities, float32 [N, K]: what fused.parquet stores (the same
        argmax and softmax as `apply`, and no large offsets per row)."""
        return log_softmax(self.apply(rgb, skel)).astype(np.float32)

    def params(self) -> dict:
        return {**self.rule.params(), "temperature_rgb": self.temperatures.rgb, "temperature_skel": self.temperatures.skel}
