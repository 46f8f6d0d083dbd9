"""All four stages and the report through the `mmfc` command, on a tiny synthetic dataset."""

from __future__ import annotations

import json
import pickle
import re

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
        # Each stage ends with its summary line.
        assert re.search(rf"train-{modality}: best val top-1 \d+\.\d% at epoch 1 of 1 \(.*best.pt\)",
                         mmfc("stage", "train", "--modality", modality))
        assert re.search(rf"scores-{modality}: top-1 train \d+\.\d%, val \d+\.\d%, test \d+\.\d% \(.*parquet\)",
                         mmfc("stage", "scores", "--modality", modality))
    fused = mmfc("stage", "fuse")
    assert re.search(r"fuse: selected \w+ \(.*\); top-1 val / test: \w+ [\d.]+% / [\d.]+%, rgb [\d.]+% / [\d.]+%, "
                     r"skel [\d.]+% / [\d.]+%", fused)
    assert re.search(r"report: .*report.html and .*report.md", mmfc("stage", "report"))
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


def test_rgb_and_two_skeleton_streams_through_train_scores_fuse_report(tmp_path):
    """Three declared branches, each trained, scored, fused with the others and reported; the
    streams take [skel]'s tiny settings, one with an override of its own."""
    generate(tmp_path / "synth", per_class=2, actions=[1, 2, 3], performers=[1, 3, 8], cameras=[1],
             frame_size=(160, 90), n_jobs=1)
    overrides = [*tiny_run_overrides(tmp_path / "synth", tmp_path / "run"), 'branches=["rgb", "joint", "bone"]',
                 "bone.model.base_channels=4"]
    sets = [arg for item in overrides for arg in ("--set", item)]
    runner = CliRunner()

    def mmfc(*args: str) -> str:
        result = runner.invoke(app, [*args, "--pipeline", "pipelines/synth.toml", *sets])
        assert result.exit_code == 0, result.output
        return result.output

    assert mmfc("branches").split() == ["rgb", "joint", "bone"]
    mmfc("stage", "crops")
    for branch in ("rgb", "joint", "bone"):
        mmfc("stage", "train", "--modality", branch)
        mmfc("stage", "scores", "--modality", branch)
    assert re.search(r"fuse: selected \w+ .*; top-1 val / test: \w+ [\d.]+% / [\d.]+%, rgb [\d.]+% / [\d.]+%, "
                     r"joint [\d.]+% / [\d.]+%, bone [\d.]+% / [\d.]+%", mmfc("stage", "fuse"))
    mmfc("stage", "report")

    run = tmp_path / "run"
    weights = json.loads((run / "fusion" / "weights.json").read_text())
    assert weights["branches"] == ["rgb", "joint", "bone"]
    assert list(weights["methods"]) == ["rgb_alone", "joint_alone", "bone_alone", "pyskl_1_1_1", "global", "adaptive",
                                        "per_class"]
    bone = torch.load(run / "train" / "bone" / "best.pt", weights_only=True)
    assert bone["modality"] == "bone" and bone["settings"]["bone"]["model"] == {
        **bone["settings"]["bone"]["model"], "stream": "bone", "base_channels": 4}
    joint = torch.load(run / "train" / "joint" / "best.pt", weights_only=True)
    assert joint["settings"]["joint"]["model"]["base_channels"] == 8  # [skel]'s, from TINY_MODELS
    scores = {b: read_scores(run / "scores" / f"{b}.parquet") for b in weights["branches"]}
    assert all(t.logits.shape == (18, 3) for t in scores.values())
    md = (run / "report" / "report.md").read_text()
    assert "Branches fused: `rgb`, `joint`, `bone`" in md and "Fusion weights per branch" in md
    assert "ensemble of the 3 branches" in md and "Skeleton ensemble of this run (joint + bone" in md
    assert not (run / "train" / "skel").exists()


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


def test_a_csv_s_groups_shape_the_fusion_s_folds(tmp_path):
    """A CSV whose group column differs from the file names (the recording, shared by clips of
    every class): stage 1 writes each clip's group into the crop index, stage 3 copies it into the
    score files, and stage 4's cross-validation folds keep those groups apart."""
    from mmfc.config import load_pipeline
    from mmfc.crops.stage import run_crops
    from mmfc.crops.store import open_crops
    from mmfc.data.ntu import load_skeleton, parse_name
    from mmfc.fusion.stage import run_fuse
    from mmfc.scores.stage import run_scores
    from mmfc.train.stage import run_train

    data = tmp_path / "synth"
    generate(data, per_class=2, actions=[1, 2, 3], performers=[1, 3, 8], cameras=[1], frame_size=(160, 90), n_jobs=1)
    rows, annotations, group_of = ["path,label,split,group"], [], {}
    for skeleton_file in sorted((data / "nturgb+d_skeletons").glob("*.skeleton")):
        name = parse_name(skeleton_file.stem)
        sample_id = f"nturgb+d_rgb/{skeleton_file.stem}_rgb"
        split = {1: "train", 8: "val", 3: "test"}[name.performer]
        group_of[sample_id] = f"take{name.replication}"
        rows.append(f"{sample_id}.avi,action{name.action},{split},{group_of[sample_id]}")
        # The Kinect joints' colour pixels as 2D poses, as stage 0 would write them.
        skeleton, _ = load_skeleton(skeleton_file)
        annotations.append({"frame_dir": sample_id, "label": name.label, "keypoint": skeleton.pixels,
                            "keypoint_score": skeleton.score, "frame_inds": skeleton.frame_indices,
                            "img_shape": (1080, 1920), "total_frames": skeleton.total_frames})
    (data / "clips.csv").write_text("\n".join(rows) + "\n")
    (data / "poses.pkl").write_bytes(pickle.dumps({"annotations": annotations}))
    cfg = load_pipeline("pipelines/synth.toml", [
        *tiny_run_overrides(data, tmp_path / "run"), "data.source=videos",
        f"data.root={json.dumps(str(data / 'clips.csv'))}", f"data.poses={json.dumps(str(data / 'poses.pkl'))}",
        "skel.model.in_channels=2",
    ])
    assert run_crops(cfg) == 0
    store = open_crops(cfg.paths.crops)
    assert {row["id"]: row["group"] for row in store.index} == group_of and store.group_kind == "group"
    for modality in ("rgb", "skel"):
        run_train(cfg, modality)
        run_scores(cfg, modality)
        scores = read_scores(cfg.paths.scores / f"{modality}.parquet")
        assert scores.groups == [group_of[i] for i in scores.ids] and scores.group_kind == "group"
    run_fuse(cfg)
    # Validation: 6 clips in 2 recordings. Named by their files alone, each clip would be its own
    # group and the 5 folds stratified by class.
    cv = json.loads((cfg.paths.fusion / "weights.json").read_text())["cv"]
    assert (cv["grouped_by"], cv["num_groups"], cv["folds"], cv["fold_sizes"]) == ("group", 2, 2, [3, 3])
