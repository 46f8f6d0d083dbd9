"""All four stages and the report through the `mmfc` command, on a tiny synthetic dataset."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
from conftest import TINY_MODELS, tiny_run_overrides
from typer.testing import CliRunner

from mmfc.cli import app
from mmfc.data.synth import generate
from mmfc.scores.format import read_scores

pytestmark = pytest.mark.slow  # every stage through the CLI: `make test-fast` leaves it out

torch.set_num_threads(1)


def test_crops_train_scores_fuse_report_through_the_cli(tmp_path):
    # 3 classes; performer 1 trains, 8 validates, 3 tests (X-Sub), 2 recordings each.
    generate(tmp_path / "synth", per_class=2, actions=[1, 2, 3], performers=[1, 3, 8], cameras=[1],
             frame_size=(160, 90), n_jobs=1)
    overrides = tiny_run_overrides(tmp_path / "synth", tmp_path / "run")
    sets = [arg for item in overrides for arg in ("--set", item)]
    pipeline = ["--pipeline", "pipelines/synth.toml"]
    runner = CliRunner()

    def mmfc(*args: str) -> str:
        result = runner.invoke(app, [*args, *pipeline, *sets])
        assert result.exit_code == 0, result.output
        return result.output

    mmfc("stage", "crops")
    for modality in ("rgb", "skel"):
        mmfc("stage", "train", "--modality", modality)
        mmfc("stage", "scores", "--modality", modality)
    mmfc("stage", "fuse")
    mmfc("stage", "report")
    # Each stage's wall time, in the order they ran, as `make demo` prints them at its end.
    table = mmfc("timings").splitlines()
    assert [line.split()[0] for line in table[1:]] == [
        "crops", "train-rgb", "scores-rgb", "train-skel", "scores-skel", "fuse", "report", "total"]

    run = tmp_path / "run"
    rgb = read_scores(run / "scores" / "rgb.parquet")
    fused = read_scores(run / "fusion" / "fused.parquet")
    assert len(rgb.ids) == 18 and rgb.logits.shape == (18, 3)
    assert sorted(fused.ids) == sorted(rgb.ids)
    weights = json.loads((run / "fusion" / "weights.json").read_text())
    assert weights["fit_split"] == "val"
    report = (run / "report" / "report.md").read_text()
    # Synthetic data, no ablation variant trained: neither the paper's ablation nor its published results.
    assert "fusion: global" in report and "Per-class accuracy" in report and "Ablation" not in report
    assert (run / "report" / "confusion.png").stat().st_size > 0


def test_plain_videos_through_poses_crops_train_scores_fuse(video_folders, pose_models, tmp_path):
    # Class folders cut from the real clips (conftest.video_folders): 6 clips with people, a
    # corrupt file and a clip with nobody; every clip its own group, split by seed 0.
    overrides = [
        f"workdir={json.dumps(str(tmp_path / 'run'))}", f"data.root={json.dumps(str(video_folders))}",
        f"poses.models_dir={json.dumps(str(pose_models))}", "jobs.n_jobs=1", "data.num_classes=3",
        "data.group_pattern=''", "data.test_fraction=0.3", "data.val_fraction=0.3", "data.val_seed=0",
        "crops.size=40", "crops.num_frames=8", "crops.skeleton_frames=16", "jobs.n_jobs=1",
        *TINY_MODELS, "rgb.train.batch_size=2", "skel.train.batch_size=2",  # 3 training clips
    ]
    sets = [arg for item in overrides for arg in ("--set", item)]
    pipeline = ["--pipeline", "pipelines/videos-example.toml"]
    runner = CliRunner()

    def mmfc(*args: str) -> str:
        result = runner.invoke(app, [*args, *pipeline, *sets])
        assert result.exit_code == 0, result.output
        return result.stdout

    info = json.loads(mmfc("info", "--json"))["data"]
    assert info["samples"] == 8 and info["splits"] == {"train": 4, "val": 2, "test": 2}
    mmfc("stage", "poses", "--preview", "2")
    mmfc("stage", "crops")
    for modality in ("rgb", "skel"):
        mmfc("stage", "train", "--modality", modality)
        mmfc("stage", "scores", "--modality", modality)
    mmfc("stage", "fuse")

    run = tmp_path / "run"
    failed = pq.read_table(run / "crops" / "failures.parquet").to_pylist()
    assert {f["id"] for f in failed} == {"makeup/broken_g03_c01", "drink/empty_g04_c01"}
    skel = read_scores(run / "scores" / "skel.parquet")
    fused = read_scores(run / "fusion" / "fused.parquet")
    assert len(skel.ids) == 6 and skel.logits.shape == (6, 3)
    assert sorted(fused.ids) == sorted(skel.ids)
    assert json.loads((run / "fusion" / "weights.json").read_text())["fit_split"] == "val"
