"""Reading the fitted fusion back from stage 4's weights.json: the file reader of the fusion stage.

weights.json holds, for every candidate, its fitted parameters (`FittedFusion.params()`: the
rule's own parameters and the two input temperatures) and names the selected one. This module
rebuilds a candidate's FittedFusion from them, so whatever scores new clips (`mmfc predict`, an
export) applies exactly the fusion that made fused.parquet, without importing the stage.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mmfc.errors import DataError
from mmfc.fusion.methods import (
    AdaptiveFusion,
    FittedFusion,
    FixedRatio,
    FusionRule,
    GlobalFusion,
    PerClassFusion,
    SingleModality,
    Temperatures,
)

WEIGHTS_FILE = "weights.json"


def _number(value) -> float:
    """A parameter as written by the stage: a float, or "inf" for infinite shrinkage."""
    if value in ("inf", "-inf"):
        return math.inf if value == "inf" else -math.inf
    return float(value)


def _array(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


# Candidate name (mmfc.fusion.selection.CANDIDATES) -> its rule from the written parameters.
RULES: dict[str, Callable[[dict], FusionRule]] = {
    "rgb_alone": lambda p: SingleModality(p["modality"]),
    "skel_alone": lambda p: SingleModality(p["modality"]),
    "pyskl_1_1": lambda p: FixedRatio(_number(p["rgb"]), _number(p["skel"]), _number(p["scale"])),
    "pyskl_2_1": lambda p: FixedRatio(_number(p["rgb"]), _number(p["skel"]), _number(p["scale"])),
    "pyskl_1_2": lambda p: FixedRatio(_number(p["rgb"]), _number(p["skel"]), _number(p["scale"])),
    "global": lambda p: GlobalFusion(_number(p["alpha"]), _number(p["scale"])),
    "adaptive": lambda p: AdaptiveFusion(_number(p["g"]), _number(p["d"]), _number(p["scale"]), _number(p["l2"])),
    "per_class": lambda p: PerClassFusion(_array(p["a"]), _array(p["b"]), _array(p["beta"]), _number(p["l2"])),
}


def fitted_from_params(name: str, params: dict) -> FittedFusion:
    """The FittedFusion whose `params()` are `params`, for candidate `name`. KeyError or
    ValueError for parameters that do not fit the candidate."""
    temperatures = Temperatures(_number(params["temperature_rgb"]), _number(params["temperature_skel"]))
    return FittedFusion(temperatures, RULES[name](params))


def read_fitted_fusion(path: str | Path, method: str | None = None) -> tuple[str, FittedFusion]:
    """(name, fitted fusion) of the method stage 4 selected (or of `method`) from weights.json.

    DataError naming the file when it is missing (stage 4 has not run), unreadable, or does not
    hold the method's parameters."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing: this run has no fitted fusion yet; run `mmfc stage fuse` (make fuse)")
    try:
        weights = json.loads(path.read_text())
        name = method or weights["selected"]
        params = weights["methods"][name]["params"]
    except (OSError, ValueError) as exc:
        raise DataError(path, f"not a readable fusion weights file ({exc})") from None
    except (KeyError, TypeError):
        raise DataError(path, f"holds no fitted parameters for fusion method {method or 'selected'!r}") from None
    if name not in RULES:
        raise DataError(path, f"unknown fusion method {name!r}; known: {', '.join(RULES)}")
    try:
        return name, fitted_from_params(name, params)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(path, f"the parameters of fusion method {name!r} are incomplete ({exc!r})") from None
