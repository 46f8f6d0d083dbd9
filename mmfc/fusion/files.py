"""Stage 4's files, read as the one set they were written as: the reader for every stage after.

`<workdir>/fusion/` holds `<candidate>.parquet` for every candidate, `fused.parquet` (a copy of
the selected one) and `weights.json`. The stage builds the folder under a temporary name and
swaps it into place whole (mmfc.atomic), and weights.json lists the sha256 of every Parquet file
beside it: a file from another run (a rerun that was killed, or one that swapped the folder
while a reader was between two files) is refused when read, never mixed in.

    fusion = open_fusion(cfg.paths.fusion)
    fusion.weights["selected"], fusion.scores("fused"), fusion.scores("global")
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mmfc.errors import DataError
from mmfc.scores.format import ScoreTable, read_scores

WEIGHTS = "weights.json"
FUSED = "fused"  # fused.parquet: the selected candidate's scores
RERUN = "rerun `mmfc stage fuse` (stage 4)"


def file_digests(folder: Path) -> dict[str, str]:
    """The sha256 of every Parquet file in a fusion folder, by name: weights.json's "files"."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.glob("*.parquet"))}


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
        raise DataError(path, "missing; made by `mmfc stage fuse` (stage 4)") from None
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
    return FusionSet(folder, weights)
