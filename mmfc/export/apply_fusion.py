"""Apply the fusion recipe of an mmfc export to the logits of its two ONNX graphs, with numpy only.

    import json, numpy as np
    from apply_fusion import apply_fusion
    recipe = json.load(open("manifest.json"))["fusion"]
    scores = apply_fusion(recipe, z_rgb, z_skel)      # [N, K]; softmax: class probabilities

`mmfc export` copies this file into every export folder, so a consumer needs nothing from mmfc:
it imports numpy and nothing else, on purpose. It is the recipe's formula (manifest.json,
fusion.formula) written out, the consumer's side of mmfc/fusion/methods.py; mmfc's tests check
that the two agree for every rule.
"""

from __future__ import annotations

import numpy as np


def log_softmax(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=1, keepdims=True))


def _calibrated(p: dict, z_rgb: np.ndarray, z_skel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return log_softmax(z_rgb / p["temperature_rgb"]), log_softmax(z_skel / p["temperature_skel"])


def _single(p: dict, z_rgb: np.ndarray, z_skel: np.ndarray) -> np.ndarray:
    logp_rgb, logp_skel = _calibrated(p, z_rgb, z_skel)
    return logp_rgb if p["modality"] == "rgb" else logp_skel


def _fixed_ratio(p: dict, z_rgb: np.ndarray, z_skel: np.ndarray) -> np.ndarray:
    mixed = (p["rgb"] * np.exp(log_softmax(z_rgb)) + p["skel"] * np.exp(log_softmax(z_skel))) / (p["rgb"] + p["skel"])
    return p["scale"] * np.log(np.maximum(mixed, np.finfo(np.float64).tiny))


def _global(p: dict, z_rgb: np.ndarray, z_skel: np.ndarray) -> np.ndarray:
    logp_rgb, logp_skel = _calibrated(p, z_rgb, z_skel)
    return p["scale"] * (p["alpha"] * logp_rgb + (1 - p["alpha"]) * logp_skel)


def _confidence(logp: np.ndarray) -> np.ndarray:
    return 1 + (np.exp(logp) * logp).sum(axis=1) / np.log(logp.shape[1])


def _adaptive(p: dict, z_rgb: np.ndarray, z_skel: np.ndarray) -> np.ndarray:
    logp_rgb, logp_skel = _calibrated(p, z_rgb, z_skel)
    w = 1 / (1 + np.exp(-(p["g"] * (_confidence(logp_rgb) - _confidence(logp_skel)) + p["d"])))
    return p["scale"] * (w[:, None] * logp_rgb + (1 - w[:, None]) * logp_skel)


def _per_class(p: dict, z_rgb: np.ndarray, z_skel: np.ndarray) -> np.ndarray:
    logp_rgb, logp_skel = _calibrated(p, z_rgb, z_skel)
    return np.asarray(p["a"]) * logp_rgb + np.asarray(p["b"]) * logp_skel + np.asarray(p["beta"])


RULES = {
    "single": _single,
    "fixed_ratio": _fixed_ratio,
    "global": _global,
    "adaptive": _adaptive,
    "per_class": _per_class,
}


def apply_fusion(recipe: dict, z_rgb, z_skel) -> np.ndarray:
    """Fused scores [N, K] (float64) of the two graphs' logits [N, K] for the same samples."""
    z_rgb, z_skel = np.asarray(z_rgb, dtype=np.float64), np.asarray(z_skel, dtype=np.float64)
    if z_rgb.ndim != 2 or z_rgb.shape != z_skel.shape:
        raise ValueError(f"expected two logit arrays [N, K] of one shape, got {z_rgb.shape} and {z_skel.shape}")
    if recipe["rule"] not in RULES:
        raise ValueError(f"unknown fusion rule {recipe['rule']!r}; known: {', '.join(RULES)}")
    return RULES[recipe["rule"]](recipe["parameters"], z_rgb, z_skel)
