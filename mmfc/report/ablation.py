"""The paper's ablation as declared in ablation.toml beside this module: the one table that the
report's ablation section and `make ablation` (the Makefile reads the same file) both follow."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from mmfc.fusion.files import FUSED

TABLE = Path(__file__).with_name("ablation.toml")
# Whose score file, relative to a run's workdir, gives a variant's number.
SCORE_FILES = {"rgb": "scores/rgb.parquet", "skel": "scores/skel.parquet", "fusion": f"fusion/{FUSED}.parquet"}


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    scores: Literal["rgb", "skel", "fusion"]
    paper: float | None = None
    overrides: tuple[str, ...] = ()
    own_crops: bool = False
    step_from: str | None = None

    @property
    def score_file(self) -> str:
        return SCORE_FILES[self.scores]

    @property
    def trained(self) -> bool:
        """Whether `make ablation` trains it; if not, the main run's scores stand for it."""
        return bool(self.overrides)


def read_ablation(path: Path = TABLE) -> list[Variant]:
    """The variants in the table's order; ValueError naming the file and the entry that does not
    fit (a key unknown or missing, a score file or a step that names nothing)."""
    known = {f.name for f in fields(Variant)}
    variants = []
    for number, entry in enumerate(tomllib.loads(path.read_text(encoding="utf-8"))["variant"], start=1):
        unknown = sorted(set(entry) - known)
        if unknown or not {"name", "label", "scores"} <= set(entry) or entry["scores"] not in SCORE_FILES:
            raise ValueError(f"{path}: variant {number} ({entry.get('name')!r}) has unknown keys {unknown}, lacks "
                             f"name, label or scores, or its scores is not one of {list(SCORE_FILES)}")
        variants.append(Variant(**{**entry, "overrides": tuple(entry.get("overrides", ()))}))
    names = {v.name for v in variants}
    for v in variants:
        if v.step_from is not None and v.step_from not in names:
            raise ValueError(f"{path}: variant {v.name!r} steps from {v.step_from!r}, which is no variant")
    return variants
