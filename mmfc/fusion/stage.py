"""Stage 4: fit every fusion method on the validation rows of the two score files, apply to all.

Reads <workdir>/scores/{rgb,skel}.parquet; writes <workdir>/fusion/<method>.parquet for each
method, fused.parquet (a copy of the method named by fusion.method) and weights.json (fitted
parameters and validation metrics of each method), the last so it marks the stage as done.
The test rows are scored but never looked at while fitting or choosing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from mmfc import atomic, lock
from mmfc.config import Pipeline
from mmfc.errors import DataError
from mmfc.fusion.methods import FusionMethod, Temperatures, fit_methods
from mmfc.metrics import log_softmax, nll
from mmfc.scores.format import ScoreTable, check_compatible, read_scores, split_metrics, write_scores

FIT_SPLIT = "val"


def run_fuse(cfg: Pipeline) -> None:
    with lock.hold(cfg.paths.fusion / lock.LOCK, "mmfc stage fuse"):
        _fuse(cfg)


def _fuse(cfg: Pipeline) -> None:
    rgb_path, skel_path = score_path(cfg, "rgb"), score_path(cfg, "skel")
    rgb, skel = read_scores(rgb_path), read_scores(skel_path)
    check_compatible(rgb, skel, rgb_path, skel_path)
    skel = skel.aligned_to(rgb.ids)

    val_rgb, val_skel = rgb.rows(FIT_SPLIT), skel.rows(FIT_SPLIT)
    if not val_rgb.ids:
        raise DataError(
            rgb_path,
            f"no rows in split {FIT_SPLIT!r}: fusion weights are fit on validation only, never on test; "
            "carve a validation split out of training (data.val_performers or data.val_fraction) and rerun stages 1-3",
        )
    methods = fit_methods(
        val_rgb.logits, val_skel.logits, val_rgb.labels, cfg.fusion.grid, cfg.fusion.metric, cfg.fusion.per_class_l2
    )

    out = cfg.paths.fusion
    checkpoint_digest = hashlib.sha256(f"{rgb.checkpoint_digest}+{skel.checkpoint_digest}".encode()).hexdigest()[:16]
    report = {}
    for name, method in methods.items():
        fused = _fused_table(rgb, skel, method, name, checkpoint_digest, cfg.digest())
        write_scores(out / f"{name}.parquet", fused)
        report[name] = {"params": method.params(), "val": split_metrics(fused.rows(FIT_SPLIT))}
    with atomic.atomic_path(out / "fused.parquet") as tmp:
        shutil.copyfile(out / f"{cfg.fusion.method}.parquet", tmp)

    temperatures = methods["global"].temperatures
    weights = {
        "fit_split": FIT_SPLIT,
        "num_fit_samples": len(val_rgb.ids),
        "num_classes": rgb.num_classes,
        "metric": cfg.fusion.metric,
        "grid": cfg.fusion.grid,
        "selected": cfg.fusion.method,
        "fused_file": "fused.parquet",
        "inputs": {
            "rgb": {"path": str(rgb_path), "checkpoint_digest": rgb.checkpoint_digest},
            "skel": {"path": str(skel_path), "checkpoint_digest": skel.checkpoint_digest},
        },
        "single_modality_val": _single_modality_metrics(val_rgb, val_skel, temperatures),
        "methods": report,
    }
    atomic.write_text(out / "weights.json", json.dumps(weights, indent=2) + "\n")


def score_path(cfg: Pipeline, modality: str) -> Path:
    """Where stage 3 writes a modality's scores; DataError naming the stage when absent."""
    path = cfg.paths.scores / f"{modality}.parquet"
    if not path.is_file():
        raise DataError(path, f"missing; written by `mmfc stage scores --modality {modality}` (stage 3)")
    return path


def _fused_table(
    rgb: ScoreTable, skel: ScoreTable, method: FusionMethod, name: str, checkpoint_digest: str, pipeline_digest: str
) -> ScoreTable:
    # Stored as log-probabilities: the same argmax and softmax, and no large offsets per row.
    scores = log_softmax(method.apply(rgb.logits, skel.logits)).astype(np.float32)
    return ScoreTable(
        ids=rgb.ids,
        splits=rgb.splits,
        labels=rgb.labels,
        logits=scores,
        modality=f"fusion:{name}",
        checkpoint_digest=checkpoint_digest,
        pipeline_digest=pipeline_digest,
        class_names=rgb.class_names,
    )


def _single_modality_metrics(val_rgb: ScoreTable, val_skel: ScoreTable, temperatures: Temperatures) -> dict:
    result = {}
    for name, table, temperature in (("rgb", val_rgb, temperatures.rgb), ("skel", val_skel, temperatures.skel)):
        metrics = split_metrics(table)
        metrics["temperature"] = temperature
        metrics["nll_calibrated"] = nll(table.logits / temperature, table.labels)
        result[name] = metrics
    return result

