"""A fitted fusion (mmfc/fusion/methods.py) as a recipe for a consumer: the method, its fitted
parameters as plain JSON numbers, and the formula that turns the two branches' logits into
fused scores, step by step. apply_fusion.py is that formula in numpy.
"""

from __future__ import annotations

import numpy as np

from mmfc.fusion.methods import (
    AdaptiveFusion,
    FittedFusion,
    FixedRatio,
    GlobalFusion,
    PerClassFusion,
    SingleModality,
)

INPUTS = "z_rgb, z_skel: the `logits` [N, K] of rgb.onnx and skel.onnx for the same N samples"
LOG_SOFTMAX = "log_softmax(x) = x - m - log(sum_k exp(x_k - m)) with m = max_k x_k, per sample (row)"
CALIBRATED = "logp_rgb = log_softmax(z_rgb / temperature_rgb), logp_skel = log_softmax(z_skel / temperature_skel)"
OUTPUT = "s [N, K]: the fused class scores; softmax(s) is the fused class distribution, argmax_k s_k the predicted class"
# mix_probabilities' floor under a probability both branches give as 0.
PROBABILITY_FLOOR = float(np.finfo(np.float64).tiny)


def _single(rule: SingleModality, fitted: FittedFusion) -> tuple[dict, list[str]]:
    return {**_temperatures(fitted), "modality": rule.modality}, [CALIBRATED, f"s = logp_{rule.modality}"]


def _fixed_ratio(rule: FixedRatio, fitted: FittedFusion) -> tuple[dict, list[str]]:
    return {"rgb": rule.rgb, "skel": rule.skel, "scale": rule.scale}, [
        "p_rgb = exp(log_softmax(z_rgb)), p_skel = exp(log_softmax(z_skel)): the raw logits, no temperatures",
        f"s = scale * log(max((rgb * p_rgb + skel * p_skel) / (rgb + skel), {PROBABILITY_FLOOR!r}))",
    ]


def _global(rule: GlobalFusion, fitted: FittedFusion) -> tuple[dict, list[str]]:
    return {**_temperatures(fitted), "alpha": rule.alpha, "scale": rule.scale}, [
        CALIBRATED,
        "s = scale * (alpha * logp_rgb + (1 - alpha) * logp_skel)",
    ]


def _adaptive(rule: AdaptiveFusion, fitted: FittedFusion) -> tuple[dict, list[str]]:
    return {**_temperatures(fitted), "g": rule.g, "d": rule.d, "scale": rule.scale}, [
        CALIBRATED,
        "c_rgb = 1 + sum_k exp(logp_rgb_k) * logp_rgb_k / log(K), c_skel likewise: each branch's confidence "
        "(1 - its entropy / log K), per sample",
        "w = 1 / (1 + exp(-(g * (c_rgb - c_skel) + d))), per sample",
        "s = scale * (w * logp_rgb + (1 - w) * logp_skel)",
    ]


def _per_class(rule: PerClassFusion, fitted: FittedFusion) -> tuple[dict, list[str]]:
    return {**_temperatures(fitted), "a": rule.a.tolist(), "b": rule.b.tolist(), "beta": rule.beta.tolist()}, [
        CALIBRATED,
        "s = a * logp_rgb + b * logp_skel + beta, one value of a, b, beta per class: "
        "s_k = a[k] * logp_rgb_k + b[k] * logp_skel_k + beta[k]",
    ]


def _temperatures(fitted: FittedFusion) -> dict:
    return {"temperature_rgb": fitted.temperatures.rgb, "temperature_skel": fitted.temperatures.skel}


# Rule type -> its recipe name and builder; apply_fusion.RULES holds the same names.
RECIPES = {
    SingleModality: ("single", _single),
    FixedRatio: ("fixed_ratio", _fixed_ratio),
    GlobalFusion: ("global", _global),
    AdaptiveFusion: ("adaptive", _adaptive),
    PerClassFusion: ("per_class", _per_class),
}


def fusion_recipe(method: str, fitted: FittedFusion) -> dict:
    """The recipe of candidate `method` (a name of mmfc.fusion.selection.CANDIDATES), fitted."""
    rule, build = RECIPES[type(fitted.rule)]
    parameters, steps = build(fitted.rule, fitted)
    return {
        "method": method,
        "rule": rule,
        "parameters": parameters,
        "formula": [INPUTS, LOG_SOFTMAX, *steps],
        "output": OUTPUT,
        "reference": "apply_fusion.py (numpy only) applies this recipe: apply_fusion(manifest['fusion'], z_rgb, z_skel)",
    }
