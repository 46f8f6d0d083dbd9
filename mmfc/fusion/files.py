"""Stage 4's files, read as the one set they were written as: the reader for every stage after.

`<workdir>/fusion/` holds `<candidate>.parquet` for every candidate, `fused.parquet` (a copy of
the selected one) and `weights.json`. The stage builds the folder under a temporary name and
swaps it into place whole (mmfc.atomic), and weights.json lists the sha256 of every Parquet file
beside it: a file from another run (a rerun that was killed, or one that swapped the folder
while a reader was between two files) is refused when read, never mixed in.

    fusion = open_fusion(cfg.paths.fusion)
    fusion.weights["selected"], fusion.scores("fused"), fusion.scores("global")
    name, fitted = fusion.fitted()  # the selected method as a FittedFusion, to apply to new clips

weights.json also carries its own sha256 (`"sha256"`, over the rest of it: write_weights): a
fitted parameter changed by hand would silently change every prediction and export, so a
weights.json that is not as stage 4 wrote it is refused, naming it.

weights.json holds, for every candidate, its fitted parameters (`FittedFusion.params()`: the
rule's kind, its own parameters and every branch's temperature); `fitted` rebuilds a candidate
from them,
so whatever scores new clips (`mmfc predict`, an export) applies exactly the fusion that made
fused.parquet, without importing the stage.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmfc import atomic
from mmfc.errors import DataError
from mmfc.fusion.methods import (
    AdaptiveFusion,
    FittedFusion,
    FixedRatio,
    FusionRule,
    GlobalFusion,
    LogitSum,
    PerClassFusion,
    SingleBranch,
    Temperatures,
)
from mmfc.scores.format import ScoreTable, read_scores

WEIGHTS = "weights.json"
# weights.json's key for the sha256 of the rest of it.
OWN_DIGEST = "sha256"
FUSED = "fused"  # fused.parquet: the selected candidate's scores
RERUN = "rerun `mmfc stage fuse` (stage 4)"


def _number(value) -> float:
    """A parameter as written by the stage: a float, or "inf" for infinite shrinkage."""
    if value in ("inf", "-inf"):
        return math.inf if value == "inf" else -math.inf
    return float(value)


def _array(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def _by_branch(values: dict) -> dict[str, float]:
    """A parameter written per branch ({branch: number}), in the order written."""
    return {str(branch): _number(value) for branch, value in values.items()}


# A rule's kind (the `kind` of each rule in mmfc.fusion.methods) -> the rule from its parameters.
RULES: dict[str, Callable[[dict], FusionRule]] = {
    SingleBranch.kind: lambda p: SingleBranch(str(p["branch"])),
    FixedRatio.kind: lambda p: FixedRatio(_by_branch(p["weights"]), _number(p["scale"])),
    LogitSum.kind: lambda p: LogitSum(_by_branch(p["weights"]), _number(p["scale"])),
    GlobalFusion.kind: lambda p: GlobalFusion(_by_branch(p["weights"]), _number(p["scale"])),
    AdaptiveFusion.kind: lambda p: AdaptiveFusion(
        _number(p["gain"]), _by_branch(p["bias"]), _number(p["scale"]), _number(p["l2"])
    ),
    PerClassFusion.kind: lambda p: PerClassFusion(
        {str(b): _array(a) for b, a in p["class_weights"].items()}, _array(p["bias"]), _number(p["l2"])
    ),
}


def fitted_from_params(params: dict) -> FittedFusion:
    """The FittedFusion whose `params()` are `params`. KeyError, TypeError or ValueError for
    parameters that do not make one (weights.json of an older mmfc wrote no rule kind)."""
    return FittedFusion(Temperatures(_by_branch(params["temperatures"])), RULES[params["rule"]](params))


def file_digests(folder: Path) -> dict[str, str]:
    """The sha256 of every Parquet file in a fusion folder, by name: weights.json's "files"."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.glob("*.parquet"))}


def weights_digest(weights: dict) -> str:
    """The sha256 of weights.json's content without its own digest, independent of the layout
    of the text: JSON numbers read back as the floats that were written."""
    content = {key: value for key, value in weights.items() if key != OWN_DIGEST}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_weights(path: Path, weights: dict) -> None:
    """weights.json (JSON-safe values: no infinities), with its own digest, atomically."""
    text = json.dumps({**weights, OWN_DIGEST: weights_digest(weights)}, indent=2) + "\n"
    atomic.write_text(path, text)


@dataclass
class FusionSet:
    folder: Path
    weights: dict  # weights.json as written

    @property
    def selected(self) -> str:
        return self.weights["selected"]

    @property
    def candidates(self) -> list[str]:
        return list(self.weights["methods"])

    def scores(self, name: str) -> ScoreTable:
        """A candidate's score table, or the selected one's for "fused"; DataError when the file
        is not the one this set's weights.json lists."""
        path = self.folder / f"{name}.parquet"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataError(path, f"missing from the fusion folder that {WEIGHTS} describes; {RERUN}") from None
        if hashlib.sha256(data).hexdigest() != self.weights["files"].get(path.name):
            raise DataError(
                path, f"not the file written with {self.folder / WEIGHTS} (its sha256 differs): the folder holds files "
                      f"of two fusion runs, e.g. one killed or rerun meanwhile; {RERUN}"
            )
        return read_scores(path, data)

    def fitted(self, name: str | None = None) -> tuple[str, FittedFusion]:
        """(name, fitted fusion) of the selected method, or of candidate `name`; DataError naming
        weights.json when it holds no complete parameters for it."""
        path = self.folder / WEIGHTS
        name = name or self.selected
        if name not in self.weights["methods"]:
            raise DataError(path, f"unknown fusion method {name!r}; known: {', '.join(self.weights['methods'])}")
        try:
            return name, fitted_from_params(self.weights["methods"][name]["params"])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(path, f"the parameters of fusion method {name!r} are missing or incomplete ({exc!r}); "
                                  f"{RERUN}") from None

    def check_fitted_on(self, modality: str, table: ScoreTable, path: Path) -> None:
        """Refuse a set fitted on other scores of a modality than `path` now holds."""
        fitted_on = (self.weights.get("inputs") or {}).get(modality, {}).get("checkpoint_digest")
        if fitted_on != table.checkpoint_digest:
            raise DataError(
                self.folder / WEIGHTS, f"fitted on {modality} scores of checkpoint {fitted_on}, but {path} now holds "
                                       f"those of checkpoint {table.checkpoint_digest}; {RERUN}"
            )


def open_fusion(folder: str | Path) -> FusionSet:
    """The fusion set in `folder` (a workdir's fusion/): its weights.json, checked to describe a
    whole set. DataError naming the file for a missing, broken or older one."""
    folder = Path(folder)
    path = folder / WEIGHTS
    try:
        weights = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "missing: this run has no fitted fusion yet; made by `mmfc stage fuse` (make fuse)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not JSON ({exc}); {RERUN}") from None
    if not isinstance(weights, dict) or not isinstance(weights.get("methods"), dict) or not weights["methods"]:
        raise DataError(path, f"no 'methods' in the fusion weights; {RERUN}")
    files = weights.get("files")
    if not isinstance(files, dict):
        raise DataError(path, f"lists no digests of its files (written by an older mmfc), so a mixed set cannot be told "
                              f"from a whole one; {RERUN}")
    wanted = [f"{name}.parquet" for name in [*weights["methods"], FUSED]]
    unlisted = [name for name in wanted if name not in files]
    if unlisted:
        raise DataError(path, f"lists no digest of {', '.join(unlisted)}; {RERUN}")
    if weights.get("selected") not in weights["methods"]:
        raise DataError(path, f"selects {weights.get('selected')!r}, which is not among its methods; {RERUN}")
    if files[f"{FUSED}.parquet"] != files[f"{weights['selected']}.parquet"]:
        raise DataError(path, f"{FUSED}.parquet is not a copy of the selected {weights['selected']}.parquet; {RERUN}")
    if OWN_DIGEST not in weights:
        raise DataError(path, f"carries no digest of its own (written by an older mmfc), so a changed parameter cannot "
                              f"be told from a fitted one; {RERUN}")
    if weights[OWN_DIGEST] != weights_digest(weights):
        raise DataError(path, f"changed since stage 4 wrote it (its content no longer matches the sha256 it carries): "
                              f"an edited parameter would silently change every prediction; {RERUN}")
    return FusionSet(folder, weights)
