"""A fitted fusion (mmfc/fusion/methods.py) as a recipe for a consumer: the method, the branches
it takes, its fitted parameters as plain JSON numbers, and the formula that turns those branches'
logits into fused scores, step by step. apply_fusion.py is that formula in numpy.
"""

from __future__ import annotations

import numpy as np

from mmfc.fusion.methods import (
    AdaptiveFusion,
    FittedFusion,
    FixedRatio,
    GlobalFusion,
    LogitSum,
    PerClassFusion,
    SingleBranch,
)

INPUTS = "z_b for each branch b of `branches`: the `logits` [N, K] of b.onnx, for the same N samples"
LOG_SOFTMAX = "log_softmax(x) = x - m - log(sum_k exp(x_k - m)) with m = max_k x_k, per sample (row)"
CALIBRATED = "logp_b = log_softmax(z_b / temperatures[b]) for each branch b"
OUTPUT = "s [N, K]: the fused class scores; softmax(s) is the fused class distribution, argmax_k s_k the predicted class"
# mix_probabilities' floor under a probability every branch gives as 0.
PROBABILITY_FLOOR = float(np.finfo(np.float64).tiny)


def _single(rule: SingleBranch, temperatures: dict) -> tuple[dict, list[str]]:
    return {"temperatures": temperatures, "branch": rule.branch}, [CALIBRATED, f"s = logp_{rule.branch}"]


def _fixed_ratio(rule: FixedRatio, temperatures: dict) -> tuple[dict, list[str]]:
    return {"weights": dict(rule.weights), "scale": rule.scale}, [
        "p_b = exp(log_softmax(z_b)) for each branch b: the raw logits, no temperatures",
        f"s = scale * log(max(sum_b weights[b] * p_b / sum_b weights[b], {PROBABILITY_FLOOR!r}))",
    ]


def _logit_sum(rule: LogitSum, temperatures: dict) -> tuple[dict, list[str]]:
    return {"weights": dict(rule.weights), "scale": rule.scale}, [
        "s = scale * sum_b weights[b] * z_b: the raw logits, no temperatures",
    ]


def _global(rule: GlobalFusion, temperatures: dict) -> tuple[dict, list[str]]:
    return {"temperatures": temperatures, "weights": dict(rule.weights), "scale": rule.scale}, [
        CALIBRATED,
        "s = scale * sum_b weights[b] * logp_b",
    ]


def _adaptive(rule: AdaptiveFusion, temperatures: dict) -> tuple[dict, list[str]]:
    return {"temperatures": temperatures, "gain": rule.gain, "bias": dict(rule.bias), "scale": rule.scale}, [
        CALIBRATED,
        "c_b = 1 + sum_k exp(logp_b_k) * logp_b_k / log(K) for each branch b: its confidence "
        "(1 - its entropy / log K), per sample",
        "w_b = exp(gain * c_b + bias[b]) / sum_j exp(gain * c_j + bias[j]), per sample (a softmax over the branches)",
        "s = scale * sum_b w_b * logp_b",
    ]


def _per_class(rule: PerClassFusion, temperatures: dict) -> tuple[dict, list[str]]:
    class_weights = {b: a.tolist() for b, a in rule.class_weights.items()}
    return {"temperatures": temperatures, "class_weights": class_weights, "bias": rule.bias.tolist()}, [
        CALIBRATED,
        "s = sum_b class_weights[b] * logp_b + bias, one value of each per class: "
        "s_k = sum_b class_weights[b][k] * logp_b_k + bias[k]",
    ]


# Rule type -> its recipe's builder; the recipe's rule is the rule's kind, as in apply_fusion.RULES.
RECIPES = {
    SingleBranch: _single,
    FixedRatio: _fixed_ratio,
    LogitSum: _logit_sum,
    GlobalFusion: _global,
    AdaptiveFusion: _adaptive,
    PerClassFusion: _per_class,
}


def fusion_recipe(method: str, fitted: FittedFusion) -> dict:
    """The recipe of candidate `method` (a name of mmfc.config.fusion_candidates), fitted."""
    # Only the branches the rule reads: a consumer without the others can still apply it.
    temperatures = {b: fitted.temperatures.values[b] for b in fitted.branches}
    parameters, steps = RECIPES[type(fitted.rule)](fitted.rule, temperatures)
    return {
        "method": method,
        "rule": fitted.rule.kind,
        "branches": list(fitted.branches),
        "parameters": parameters,
        "formula": [INPUTS, LOG_SOFTMAX, *steps],
        "output": OUTPUT,
        "reference": "apply_fusion.py (numpy only) applies this recipe: "
                     "apply_fusion(manifest['fusion'], {'rgb': z_rgb, 'skel': z_skel, ...})",
    }
