"""Opening a trained run (mmfc.run_folder) and reading the fitted fusion back (mmfc.fusion.files)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import SYNTH_PIPELINE, tiny_run_overrides
from mmfc.config import ConfigError
from mmfc.errors import DataError
from mmfc.fusion.selection import CANDIDATES
from mmfc.fusion.files import RULES, open_fusion
from mmfc.scores.format import read_scores
from mmfc.run_folder import open_run

pytestmark = pytest.mark.slow  # opens a trained run: `make test-fast` leaves it out


def test_open_run_reads_the_saved_pipeline_and_both_branches(tiny_run):
    run = open_run(tiny_run)
    assert run.cfg.workdir == str(tiny_run) and run.cfg.crops.size == 40
    assert run.class_names == read_scores(tiny_run / "scores" / "rgb.parquet").class_names
    assert set(run.models) == {"rgb", "skel"} and not any(m.training for m in run.models.values())
    assert run.fusion_method == json.loads((tiny_run / "fusion" / "weights.json").read_text())["selected"]


def test_open_run_with_the_pipeline_file_and_overrides(tiny_run):
    data = tiny_run.parent / "data"
    run = open_run(tiny_run, SYNTH_PIPELINE, overrides=tiny_run_overrides(data, tiny_run))
    assert run.cfg.skel.model.num_frames == 8
    # Another crop size than the run's: refused, naming the checkpoint it does not fit.
    with pytest.raises(DataError, match="best.pt: was trained with another configuration"):
        open_run(tiny_run, SYNTH_PIPELINE, overrides=[*tiny_run_overrides(data, tiny_run), "crops.size=48"])
    with pytest.raises(ConfigError, match="--set applies to a --pipeline file"):
        open_run(tiny_run, overrides=["crops.size=48"])


def test_every_fitted_candidate_read_back_gives_its_stored_scores(tiny_run):
    rgb = read_scores(tiny_run / "scores" / "rgb.parquet")
    skel = read_scores(tiny_run / "scores" / "skel.parquet").aligned_to(rgb.ids)
    weights = json.loads((tiny_run / "fusion" / "weights.json").read_text())
    assert set(weights["methods"]) == set(CANDIDATES)
    # Every rule kind but CTR-GCN's sum of logits, which needs its four skeleton streams.
    assert {entry["params"]["rule"] for entry in weights["methods"].values()} == set(RULES) - {"logit_sum"}
    for name in weights["methods"]:
        _, fitted = open_fusion(tiny_run / "fusion").fitted(name)
        stored = read_scores(tiny_run / "fusion" / f"{name}.parquet").aligned_to(rgb.ids)
        logits = {"rgb": rgb.logits, "skel": skel.logits}
        np.testing.assert_allclose(fitted.log_probabilities(logits), stored.logits, atol=1e-5)


def test_missing_pieces_are_named(tiny_run, tmp_path):
    with pytest.raises(DataError, match="no such run folder"):
        open_run(tmp_path / "nowhere")
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    (copy / "pipeline.json").unlink()
    with pytest.raises(DataError, match="pipeline.json: missing.*pass --pipeline"):
        open_run(copy)
    shutil.copy(tiny_run / "pipeline.json", copy / "pipeline.json")
    (copy / "fusion" / "weights.json").unlink()
    with pytest.raises(DataError, match=r"weights.json: missing.*`mmfc stage fuse`"):
        open_run(copy)
    (copy / "train" / "skel" / "best.pt").unlink()
    with pytest.raises(DataError, match=r"skel/best.pt: missing.*`make train-skel`"):
        open_run(copy)
    # The network is on the device asked for.
    assert next(open_run(tiny_run, device="cpu").models["rgb"].parameters()).device == torch.device("cpu")
