"""Apply the fusion recipe of an mmfc export to the logits of its ONNX graphs, with numpy only.

    import json, numpy as np
    from apply_fusion import apply_fusion
    recipe = json.load(open("manifest.json"))["fusion"]
    scores = apply_fusion(recipe, {"rgb": z_rgb, "skel": z_skel})   # [N, K]; softmax: class probabilities

The logits are given by branch name, one array [N, K] per graph (`recipe["branches"]` names the
ones it needs). `mmfc export` copies this file into every export folder, so a consumer needs
nothing from mmfc: it imports numpy and nothing else, on purpose. It is the recipe's formula
(manifest.json, fusion.formula) written out, the consumer's side of mmfc/fusion/methods.py;
mmfc's tests check that the two agree for every rule.
"""

from __future__ import annotations

import numpy as np


def log_softmax(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=1, keepdims=True))


def _calibrated(p: dict, z: dict) -> dict:
    return {b: log_softmax(z[b] / p["temperatures"][b]) for b in z}


def _single(p: dict, z: dict) -> np.ndarray:
    return _calibrated(p, z)[p["branch"]]


def _fixed_ratio(p: dict, z: dict) -> np.ndarray:
    weights = p["weights"]
    mixed = sum(w * np.exp(log_softmax(z[b])) for b, w in weights.items()) / sum(weights.values())
    return p["scale"] * np.log(np.maximum(mixed, np.finfo(np.float64).tiny))


def _logit_sum(p: dict, z: dict) -> np.ndarray:
    return p["scale"] * sum(w * z[b] for b, w in p["weights"].items())


def _global(p: dict, z: dict) -> np.ndarray:
    logp = _calibrated(p, z)
    return p["scale"] * sum(w * logp[b] for b, w in p["weights"].items())


def _confidence(logp: np.ndarray) -> np.ndarray:
    return 1 + (np.exp(logp) * logp).sum(axis=1) / np.log(logp.shape[1])


def _adaptive(p: dict, z: dict) -> np.ndarray:
    logp = _calibrated(p, z)
    branches = list(p["bias"])
    gate = np.stack([p["gain"] * _confidence(logp[b]) + p["bias"][b] for b in branches], axis=1)
    w = np.exp(log_softmax(gate))
    return p["scale"] * sum(w[:, [i]] * logp[b] for i, b in enumerate(branches))


def _per_class(p: dict, z: dict) -> np.ndarray:
    logp = _calibrated(p, z)
    return sum(np.asarray(a) * logp[b] for b, a in p["class_weights"].items()) + np.asarray(p["bias"])


RULES = {
    "single": _single,
    "fixed_ratio": _fixed_ratio,
    "logit_sum": _logit_sum,
    "global": _global,
    "adaptive": _adaptive,
    "per_class": _per_class,
}


def apply_fusion(recipe: dict, logits: dict) -> np.ndarray:
    """Fused scores [N, K] (float64) of the graphs' logits, {branch: [N, K]}, for the same samples."""
    missing = [b for b in recipe["branches"] if b not in logits]
    if missing:
        raise ValueError(f"the recipe takes the logits of {', '.join(recipe['branches'])}; missing: {', '.join(missing)}")
    z = {b: np.asarray(logits[b], dtype=np.float64) for b in recipe["branches"]}
    shapes = {x.shape for x in z.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"expected logit arrays [N, K] of one shape, got {', '.join(str(x.shape) for x in z.values())}")
    if recipe["rule"] not in RULES:
        raise ValueError(f"unknown fusion rule {recipe['rule']!r}; known: {', '.join(RULES)}")
    return RULES[recipe["rule"]](recipe["parameters"], z)
