"""The fusion methods of METHOD.md section 5: fitting on validation scores and applying.

Every method takes the raw logits of both modalities ([N, K] each) and returns fused scores
[N, K] whose softmax is the fused class distribution. The fitted methods first temperature-scale
each modality, so their weights mix calibrated log-probabilities; the anchors' fixed ratios mix
the raw softmax probabilities (PYSKL tests with average_clips='prob' and sums those).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmfc.metrics import log_softmax, mean_class_accuracy, nll, topk_accuracy

# log T is searched in this range; a modality outside it is either almost deterministic or
# almost uniform, and the edge value is as good as any.
_LOG_T_RANGE = (np.log(1e-2), np.log(1e2))
_GOLDEN_STEPS = 80


# ---------------------------------------------------------------------------------------------
# Shared pieces


def selection_metric(scores: np.ndarray, labels: np.ndarray, metric: str) -> float:
    """The metric that picks weights: "top1" or "mean_class"."""
    if metric == "top1":
        return topk_accuracy(scores, labels, 1)
    if metric == "mean_class":
        return mean_class_accuracy(scores, labels, scores.shape[1])
    raise ValueError(f"unknown fusion metric {metric!r}; expected 'top1' or 'mean_class'")


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """T > 0 minimising the NLL of softmax(logits / T), by golden-section search over log T.

    The NLL is convex in 1/T, hence unimodal in log T, so the search finds the minimum.
    """
    logits = np.asarray(logits, dtype=np.float64)
    lo, hi = _LOG_T_RANGE
    ratio = (np.sqrt(5) - 1) / 2

    def loss(log_t: float) -> float:
        return nll(logits / np.exp(log_t), labels)

    x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    f1, f2 = loss(x1), loss(x2)
    for _ in range(_GOLDEN_STEPS):
        if f1 <= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - ratio * (hi - lo)
            f1 = loss(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + ratio * (hi - lo)
            f2 = loss(x2)
    return float(np.exp((lo + hi) / 2))


@dataclass
class Temperatures:
    rgb: float
    skel: float

    @classmethod
    def fit(cls, rgb: np.ndarray, skel: np.ndarray, labels: np.ndarray) -> Temperatures:
        return cls(fit_temperature(rgb, labels), fit_temperature(skel, labels))

    def calibrate(self, rgb: np.ndarray, skel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Temperature-scaled log-probabilities of both modalities, [N, K] each."""
        return log_softmax(np.asarray(rgb, np.float64) / self.rgb), log_softmax(np.asarray(skel, np.float64) / self.skel)


def _minimise(params: list[torch.Tensor], objective) -> None:
    """Run LBFGS to convergence on a smooth convex objective of `params` (in place)."""
    optimiser = torch.optim.LBFGS(
        params, lr=1, max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn="strong_wolfe"
    )

    def closure():
        optimiser.zero_grad()
        value = objective()
        value.backward()
        return value

    optimiser.step(closure)


# ---------------------------------------------------------------------------------------------
# global: one weight alpha on calibrated log-probabilities


def choose_alpha(logp_rgb: np.ndarray, logp_skel: np.ndarray, labels: np.ndarray, grid: int, metric: str) -> float:
    """The alpha on an even grid over [0, 1] with the best validation metric, NLL breaking ties."""
    best_key, best_alpha = None, 0.0
    for alpha in np.linspace(0.0, 1.0, grid):
        fused = alpha * logp_rgb + (1 - alpha) * logp_skel
        key = (selection_metric(fused, labels, metric), -nll(fused, labels))
        if best_key is None or key > best_key:
            best_key, best_alpha = key, float(alpha)
    return best_alpha


@dataclass
class GlobalFusion:
    temperatures: Temperatures
    alpha: float

    @classmethod
    def fit(cls, rgb, skel, labels, temperatures: Temperatures, grid: int, metric: str) -> GlobalFusion:
        logp_rgb, logp_skel = temperatures.calibrate(rgb, skel)
        return cls(temperatures, choose_alpha(logp_rgb, logp_skel, labels, grid, metric))

    def apply(self, rgb: np.ndarray, skel: np.ndarray) -> np.ndarray:
        logp_rgb, logp_skel = self.temperatures.calibrate(rgb, skel)
        return self.alpha * logp_rgb + (1 - self.alpha) * logp_skel

    def params(self) -> dict:
        return {"alpha": self.alpha, "temperature_rgb": self.temperatures.rgb, "temperature_skel": self.temperatures.skel}


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


def fit_adaptive(logp_rgb: np.ndarray, logp_skel: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """g, d (and an output scale) minimising the validation NLL, from plain averaging (g = d = 0).

    The weights sum to 1, so the fused scores are flatter than either calibrated modality; left
    alone, the NLL would push weight onto the sharper modality for its sharpness rather than
    its accuracy. A jointly fitted scale s > 0 on the fused scores absorbs the sharpness; it
    leaves every argmax as it is.
    """
    lr, ls = torch.from_numpy(logp_rgb), torch.from_numpy(logp_skel)
    gap = torch.from_numpy(confidence(logp_rgb) - confidence(logp_skel))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    g, d, log_scale = (torch.zeros((), dtype=torch.float64, requires_grad=True) for _ in range(3))

    def objective():
        w = torch.sigmoid(g * gap + d)[:, None]
        return torch.nn.functional.cross_entropy(log_scale.exp() * (w * lr + (1 - w) * ls), y)

    _minimise([g, d, log_scale], objective)
    return float(g.detach()), float(d.detach()), float(log_scale.detach().exp())


@dataclass
class AdaptiveFusion:
    temperatures: Temperatures
    g: float
    d: float
    scale: float

    @classmethod
    def fit(cls, rgb, skel, labels, temperatures: Temperatures) -> AdaptiveFusion:
        return cls(temperatures, *fit_adaptive(*temperatures.calibrate(rgb, skel), labels))

    def apply(self, rgb: np.ndarray, skel: np.ndarray) -> np.ndarray:
        return self.scale * fuse_adaptive(*self.temperatures.calibrate(rgb, skel), self.g, self.d)

    def params(self) -> dict:
        return {
            "g": self.g,
            "d": self.d,
            "scale": self.scale,
            "temperature_rgb": self.temperatures.rgb,
            "temperature_skel": self.temperatures.skel,
        }


# ---------------------------------------------------------------------------------------------
# per-class: a_c, b_c, beta_c by L2-penalised multinomial logistic regression


def fuse_per_class(logp_rgb, logp_skel, a: np.ndarray, b: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """s_c = a_c log p_rgb,c + b_c log p_skel,c + beta_c, [N, K]."""
    return a * logp_rgb + b * logp_skel + beta


def fit_per_class(
    logp_rgb: np.ndarray, logp_skel: np.ndarray, labels: np.ndarray, alpha: float, l2: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class weights minimising NLL + l2 * ||(a - alpha, b - (1 - alpha), beta)||^2 / N.

    The penalty is divided by N with the NLL so l2 acts like the sum form sum_i NLL_i + l2 * ||.||^2
    while keeping the objective well scaled for LBFGS; l2 -> inf gives back the global method.
    """
    n, k = logp_rgb.shape
    lr, ls = torch.from_numpy(logp_rgb), torch.from_numpy(logp_skel)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    # Offsets from the global weights, so zero is the shrinkage target and the starting point.
    delta = torch.zeros(3, k, dtype=torch.float64, requires_grad=True)

    def objective():
        a, b, beta = alpha + delta[0], (1 - alpha) + delta[1], delta[2]
        fused = a * lr + b * ls + beta
        return torch.nn.functional.cross_entropy(fused, y) + l2 * delta.pow(2).sum() / n

    _minimise([delta], objective)
    offsets = delta.detach().numpy()
    return alpha + offsets[0], (1 - alpha) + offsets[1], offsets[2].copy()


@dataclass
class PerClassFusion:
    temperatures: Temperatures
    alpha: float  # the global weight the class weights are shrunk toward
    l2: float
    a: np.ndarray  # [K]
    b: np.ndarray  # [K]
    beta: np.ndarray  # [K]

    @classmethod
    def fit(cls, rgb, skel, labels, temperatures: Temperatures, alpha: float, l2: float) -> PerClassFusion:
        a, b, beta = fit_per_class(*temperatures.calibrate(rgb, skel), labels, alpha, l2)
        return cls(temperatures, alpha, l2, a, b, beta)

    def apply(self, rgb: np.ndarray, skel: np.ndarray) -> np.ndarray:
        return fuse_per_class(*self.temperatures.calibrate(rgb, skel), self.a, self.b, self.beta)

    def params(self) -> dict:
        return {
            "a": self.a.tolist(),
            "b": self.b.tolist(),
            "beta": self.beta.tolist(),
            "shrink_toward_alpha": self.alpha,
            "l2": self.l2,
            "temperature_rgb": self.temperatures.rgb,
            "temperature_skel": self.temperatures.skel,
        }


# ---------------------------------------------------------------------------------------------
# The anchors' fixed practice: a fixed ratio of raw probabilities, nothing fitted


@dataclass
class FixedRatio:
    rgb: float
    skel: float

    def apply(self, rgb: np.ndarray, skel: np.ndarray) -> np.ndarray:
        p = (self.rgb * np.exp(log_softmax(rgb)) + self.skel * np.exp(log_softmax(skel))) / (self.rgb + self.skel)
        # A class with zero probability in both would give log 0; the floor keeps scores finite.
        return np.log(np.maximum(p, np.finfo(np.float64).tiny))

    def params(self) -> dict:
        return {"rgb": self.rgb, "skel": self.skel, "fitted": False}


FIXED_RATIOS = {"pyskl_1_1": FixedRatio(1, 1), "pyskl_2_1": FixedRatio(2, 1), "pyskl_1_2": FixedRatio(1, 2)}

METHOD_NAMES = ("global", "adaptive", "per_class", *FIXED_RATIOS)

FusionMethod = GlobalFusion | AdaptiveFusion | PerClassFusion | FixedRatio


def fit_methods(
    rgb: np.ndarray, skel: np.ndarray, labels: np.ndarray, grid: int, metric: str, per_class_l2: float
) -> dict[str, FusionMethod]:
    """Fit every method on validation logits ([N, K] each) and labels [N]."""
    temperatures = Temperatures.fit(rgb, skel, labels)
    global_ = GlobalFusion.fit(rgb, skel, labels, temperatures, grid, metric)
    return {
        "global": global_,
        "adaptive": AdaptiveFusion.fit(rgb, skel, labels, temperatures),
        "per_class": PerClassFusion.fit(rgb, skel, labels, temperatures, global_.alpha, per_class_l2),
        **FIXED_RATIOS,
    }
