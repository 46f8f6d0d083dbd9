"""Opening a trained run (mmfc.run_folder) and reading the fitted fusion back (mmfc.fusion.files)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmfc.cli import app
from mmfc.config import ConfigError
from mmfc.errors import DataError
from mmfc.fusion.selection import CANDIDATES
from mmfc.fusion.files import RULES, open_fusion
from mmfc.scores.format import read_scores
from mmfc.run_folder import open_run
from mmfc.train.checkpoint import FORMAT, UnverifiedCheckpoint, digest_path, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow  # opens a trained run: `make test-fast` leaves it out


def test_open_run_rebuilds_both_branches_from_their_checkpoints(tiny_run):
    run = open_run(tiny_run)
    # The settings of the tiny run (conftest.tiny_run_overrides), none of them defaults, come
    # from the checkpoints: no pipeline file is read.
    assert run.cfg.workdir == str(tiny_run) and run.cfg.crops.size == 40 and run.cfg.crops.num_frames == 8
    assert run.cfg.skel.model.num_frames == 8 and run.cfg.rgb.model.segments == 4 and run.cfg.data.layout == "ntu25"
    assert run.class_names == read_scores(tiny_run / "scores" / "rgb.parquet").class_names
    assert set(run.models) == {"rgb", "skel"} and not any(m.training for m in run.models.values())
    assert run.fusion_method == json.loads((tiny_run / "fusion" / "weights.json").read_text())["selected"]
    header = load_checkpoint(tiny_run / "train" / "skel" / "best.pt")
    assert header["format"] == FORMAT and set(header["settings"]) == {"name", "data", "poses", "crops", "skel", "scores"}


def test_open_run_rebuilds_every_branch_the_fusion_takes(tiny_streams_run, ucla_run):
    """RGB and two streams, each network from its own checkpoint's section (the bone stream's own
    width); a skeleton-only run: its streams alone, in their layout."""
    run = open_run(tiny_streams_run)
    assert run.branches == ["rgb", "joint", "bone"] == json.loads((tiny_streams_run / "fusion" / "weights.json")
                                                                   .read_text())["branches"]
    assert run.video_branches == ["rgb"] and run.skeleton_branches == ["joint", "bone"]
    assert (run.cfg.joint.model.base_channels, run.cfg.bone.model.base_channels) == (8, 4)
    assert (run.cfg.joint.model.stream, run.cfg.bone.model.stream) == ("joint", "bone")
    widths = {name: sum(p.numel() for p in run.models[name].parameters()) for name in ("joint", "bone")}
    assert widths["joint"] > widths["bone"]
    assert set(run.fusion.branches) <= set(run.branches) and run.skeleton_channels == 3

    skeletons = open_run(ucla_run)
    assert skeletons.branches == ["joint", "bone"] and skeletons.video_branches == []
    assert (skeletons.layout.name, skeletons.pose_source, skeletons.skeleton_channels) == ("kinect20", "kinect-v1", 3)
    assert skeletons.cfg.bone.model.num_persons == 1  # pipelines/nw-ucla.toml's [skel], from the checkpoint
    assert len(skeletons.class_names) == 10


def test_overrides_change_only_how_this_machine_runs_the_run(tiny_run):
    run = open_run(tiny_run, overrides=["poses.models_dir=/opt/blazepose", "jobs.n_jobs=1", "crops_from=/elsewhere"])
    assert run.cfg.poses.models_dir == "/opt/blazepose" and run.cfg.jobs.n_jobs == 1
    assert run.cfg.paths.crops == Path("/elsewhere/crops")
    with pytest.raises(ConfigError, match=r"--set crops.size: .* set by its checkpoints; .*poses.models_dir"):
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
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("pipeline.json"))
    (copy / "train" / "skel" / "best.pt").unlink()
    with pytest.raises(DataError, match=r"skel/best.pt: missing.*`make train-skel`"):
        open_run(copy)
    # The fusion names the branches to open.
    (copy / "fusion" / "weights.json").unlink()
    with pytest.raises(DataError, match=r"weights.json: missing.*`mmfc stage fuse`"):
        open_run(copy)
    # The network is on the device asked for.
    assert next(open_run(tiny_run, device="cpu").models["rgb"].parameters()).device == torch.device("cpu")


def _rewrite(path: Path, change) -> None:
    """The checkpoint at `path` saved again (with its digest) after `change(state)`."""
    state = load_checkpoint(path)
    change(state)
    save_checkpoint(path, state)


def test_damaged_foreign_older_or_mismatched_checkpoints_are_refused(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    rgb, skel = copy / "train" / "rgb" / "best.pt", copy / "train" / "skel" / "best.pt"
    original = rgb.read_bytes()

    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    rgb.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"rgb/best.pt: damaged"):
        open_run(copy)

    torch.save({"model": {"w": torch.zeros(2)}, "epoch": 3}, rgb)
    digest_path(rgb).unlink()
    with pytest.warns(UnverifiedCheckpoint), pytest.raises(DataError, match="rgb/best.pt: not an mmfc checkpoint"):
        open_run(copy)

    rgb.write_bytes(original)
    shutil.copy(tiny_run / "train" / "rgb" / "best.pt.sha256", digest_path(rgb))
    _rewrite(rgb, lambda state: [state.pop(key) for key in ("format", "settings")])
    with pytest.raises(DataError, match=r"rgb/best.pt: written by an older mmfc.*retrain it \(`make train-rgb`\)"):
        open_run(copy)

    shutil.copy(skel, rgb)
    shutil.copy(digest_path(skel), digest_path(rgb))
    with pytest.raises(DataError, match="rgb/best.pt: holds a 'skel' model, not 'rgb'"):
        open_run(copy)

    shutil.copy(tiny_run / "train" / "rgb" / "best.pt", rgb)
    shutil.copy(tiny_run / "train" / "rgb" / "best.pt.sha256", digest_path(rgb))
    _rewrite(skel, lambda state: state["settings"]["crops"].update(size=48))
    with pytest.raises(DataError, match=r"skel/best.pt: its 'crops' settings differ from those of the rgb branch's "
                                        r"checkpoint \(size: 40 vs 48\)"):
        open_run(copy)

    # A branch retrained (here: one weight moved) after the fusion was fitted on its scores.
    shutil.copy(tiny_run / "train" / "skel" / "best.pt", skel)
    shutil.copy(tiny_run / "train" / "skel" / "best.pt.sha256", digest_path(skel))
    _rewrite(skel, lambda state: next(iter(state["model"].values())).add_(1e-3))
    with pytest.raises(DataError, match=r"skel/best.pt: is not the checkpoint the fusion was fitted on .*rerun "
                                        r"`mmfc stage scores --modality skel` and `mmfc stage fuse`"):
        open_run(copy)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="the export extra is not installed")
def test_a_run_copied_without_its_pipeline_predicts_and_exports(tiny_run, tmp_path):
    """The checkpoints alone rebuild the networks: a copy without pipeline.json (and away from the
    pipeline file it was made with) predicts as the run does, and exports."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("pipeline.json", "export"))
    sample = read_scores(tiny_run / "fusion" / "fused.parquet").rows("test").ids[0]
    clip = tiny_run.parent / "data" / "nturgb+d_rgb" / f"{sample}_rgb.avi"
    skeleton = tiny_run.parent / "data" / "nturgb+d_skeletons" / f"{sample}.skeleton"
    runner = CliRunner()
    outputs = []
    for run in (tiny_run, copy):
        result = runner.invoke(app, ["predict", str(clip), "--run", str(run), "--skeleton", str(skeleton), "--json"])
        assert result.exit_code == 0, result.output
        (summary,) = json.loads(result.stdout)
        summary.pop("timings")
        outputs.append(summary)
    assert outputs[0] == outputs[1] and outputs[0]["skeleton"] == f"file {sample}.skeleton"
    result = runner.invoke(app, ["export", "--run", str(copy), "--out", str(tmp_path / "onnx"), "--check", "2"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert manifest["pipeline"] == "synth" and manifest["branches"]["skel"]["input"]["shape"] == ["batch", 3, 8, 25, 2]
    assert not (copy / "pipeline.json").exists()
