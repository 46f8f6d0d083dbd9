"""Datasets without videos: stage 1 stores their skeletons alone, the store says so, and the RGB
branch asked for on them is one clear message; a real NW-UCLA subset, two skeleton streams,
through stages 1 to 4 and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mmfc.branches import BRANCHES, check_store_feeds
from mmfc.cli import app
from mmfc.config import ConfigError, load_pipeline
from mmfc.crops.stage import run_crops
from mmfc.crops.store import INDEX, META_KEY, open_crops
from mmfc.errors import DataError
from mmfc.fusion.stage import run_fuse
from mmfc.report.stage import run_report
from mmfc.scores.format import read_scores
from mmfc.scores.stage import run_scores
from mmfc.train.stage import run_train
from conftest import SMALL_CROPS, TINY_MODELS, nw_ucla_subset, skeleton_only_ntu

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


def test_an_ntu_download_without_videos_is_stored_as_skeletons(realdata: Path, tmp_path: Path):
    root = skeleton_only_ntu(realdata, tmp_path / "ntu")
    cfg = load_pipeline(None, [f"data.root={root}", f"workdir={tmp_path / 'run'}", "data.num_classes=60", *SMALL_CROPS])
    assert run_crops(cfg, strict=True, preview=3) == 0
    crops = open_crops(cfg.paths.crops)
    assert len(crops) == 6 and not crops.has_video and crops.modalities == ("skeleton",)
    assert not (cfg.paths.crops / "failures.parquet").exists() or not pq.read_table(cfg.paths.crops / "failures.parquet").num_rows
    assert (cfg.paths.crops / "preview.png").stat().st_size > 0
    assert not any((cfg.paths.crops / "shards").glob("*/rgb"))
    for i, row in enumerate(crops.index):
        assert row["video_width"] is None and row["video_frames"] is None
        # The box is planned in the frame the colour keypoints were recorded in (1920x1080).
        x0, y0, x1, y1 = row["box"]
        assert x1 > x0 and y1 > y0 and -1920 < x0 < 1920 and -1080 < y0 < 1080
        skeleton = crops.skeleton(i)
        assert skeleton.shape == (3, 16, 25, 2) and np.abs(skeleton).sum() > 0
        keypoints = crops.keypoints(i)
        assert keypoints.shape == (2, 4, 25, 2) and (keypoints >= 0).all() and (keypoints <= 1).all() and keypoints.any()
    with pytest.raises(DataError) as caught:
        crops.rgb(0)
    assert caught.value.path == str(cfg.paths.crops) and "holds skeletons only" in caught.value.reason


def test_a_pose_pickle_without_video_root_is_stored_as_skeletons(realdata: Path, tmp_path: Path):
    cfg = load_pipeline(None, [
        f"data.root={realdata / 'pose_pkl' / 'derived_ntu6_2d_pyskl.pkl'}", f"workdir={tmp_path / 'run'}",
        "data.source=pose_pickle", "data.train_split=xsub_train", "data.test_split=xsub_val", "data.val_by=group",
        "data.val_fraction=0", "data.num_classes=60", *SMALL_CROPS,
    ])
    assert run_crops(cfg, strict=True) == 0
    crops = open_crops(cfg.paths.crops)
    assert len(crops) == 6 and not crops.has_video
    metadata = json.loads(pq.read_schema(cfg.paths.crops / INDEX).metadata[META_KEY.encode()])
    assert metadata["modalities"] == ["skeleton"]


def test_only_the_branches_without_video_read_a_skeleton_store(realdata: Path, tmp_path: Path):
    root = skeleton_only_ntu(realdata, tmp_path / "ntu")
    cfg = load_pipeline(None, [f"data.root={root}", f"workdir={tmp_path / 'run'}", "data.num_classes=60", *SMALL_CROPS])
    assert run_crops(cfg) == 0
    crops = open_crops(cfg.paths.crops)
    check_store_feeds(BRANCHES["skel"], crops, cfg.branches)
    with pytest.raises(DataError) as caught:
        check_store_feeds(BRANCHES["rgb"], crops, cfg.branches)
    assert caught.value.path == str(cfg.paths.crops)
    assert "holds skeletons only (its dataset has no videos)" in caught.value.reason
    assert "`mmfc stage train --modality skel`" in caught.value.reason


def test_info_says_which_branches_the_data_supports(realdata: Path, tmp_path: Path):
    settings = ["info", "-p", str(PIPELINES / "nw-ucla.toml"), "--set", f"data.root={realdata / 'nw_ucla'}"]
    summary = CliRunner().invoke(app, settings)
    assert summary.exit_code == 0, summary.output
    assert "branch joint: supported" in summary.output and "branch bone_motion: supported" in summary.output
    result = CliRunner().invoke(app, [*settings, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["video"] == {"with": 0, "without": 1484}
    assert data["branches"] == dict.fromkeys(["joint", "bone", "joint_motion", "bone_motion"], "supported")
    # An NTU download without videos: the declared RGB branch is there, and not supported.
    root = skeleton_only_ntu(realdata, tmp_path / "ntu")
    (tmp_path / "ntu.toml").write_text(f'[data]\nroot = "{root}"\nnum_classes = 60\n')
    result = CliRunner().invoke(app, ["info", "-p", str(tmp_path / "ntu.toml"), "--json"])
    assert result.exit_code == 0, result.output
    branches = json.loads(result.stdout)["data"]["branches"]
    assert list(branches) == ["rgb", "skel"] and branches["skel"] == "supported"
    assert branches["rgb"].startswith("not supported: it learns from video frames")


@pytest.mark.slow
def test_a_real_skeleton_only_dataset_trains_scores_fuses_and_reports_two_streams(realdata: Path, tmp_path: Path):
    names = nw_ucla_subset(realdata, tmp_path / "ucla" / "all_sqe")
    assert len(names) == 60
    overrides = [f"data.root={tmp_path / 'ucla'}", f"workdir={tmp_path / 'run'}", "data.val_by=performer",
                 "data.val_performers=[2]", 'branches=["joint", "bone"]']
    cfg = load_pipeline(PIPELINES / "nw-ucla.toml", [*overrides, *SMALL_CROPS, *TINY_MODELS])
    assert run_crops(cfg, preview=2) == 0
    crops = open_crops(cfg.paths.crops)
    assert len(crops) == 60 and not crops.has_video
    assert {r["split"] for r in crops.index} == {"train", "val", "test"}
    for stream in ("joint", "bone"):
        run_train(cfg, stream)
        assert (cfg.paths.train(stream) / "best.pt").is_file()
        run_scores(cfg, stream)
        scores = read_scores(cfg.paths.scores / f"{stream}.parquet")
        assert sorted(scores.ids) == sorted(n[: -len(".json")] for n in names)
        assert scores.logits.shape == (60, 10) and np.isfinite(scores.logits).all()
    run_fuse(cfg)
    weights = json.loads((cfg.paths.fusion / "weights.json").read_text())
    assert weights["branches"] == ["joint", "bone"] and "pyskl_1_1" in weights["methods"]
    assert weights["cv"]["grouped_by"] == "recording"  # its views kept in one fold
    run_report(cfg)
    md = (cfg.paths.report / "report.md").read_text()
    assert "Branches fused: `joint`, `bone`" in md and "Joint branch of this run (CTR-GCN joint" in md
    # TINY_MODELS' RGB network costs less than either tiny stream: no subset fits its cost.
    assert "No branch costs at most one RGB branch as this pipeline configures it" in md
    for runner in (run_train, run_scores):
        with pytest.raises(ConfigError, match="the nw_ucla source holds skeletons only"):
            runner(cfg, "rgb")
    assert not cfg.paths.train("rgb").exists()
    # The command line: one message naming what the pipeline declares, no traceback.
    result = CliRunner().invoke(app, ["stage", "train", "-p", str(PIPELINES / "nw-ucla.toml"), "--modality", "rgb",
                                      *(f"--set={item}" for item in overrides)])
    assert result.exit_code == 2
    assert ("error: --modality rgb: the pipeline declares the branches ['joint', 'bone'], not 'rgb' (the nw_ucla "
            "source holds skeletons only, and 'rgb' learns from video frames)") in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_training_a_stream_reads_each_stored_skeleton_once_per_epoch(realdata: Path, tmp_path: Path, monkeypatch):
    """Four streams trained one after the other read the crop store once per epoch each: every
    training and validation sample once, nothing more (issue 24's speed goal)."""
    from mmfc.crops.store import CropStore

    nw_ucla_subset(realdata, tmp_path / "ucla" / "all_sqe")
    cfg = load_pipeline(PIPELINES / "nw-ucla.toml", [
        f"data.root={tmp_path / 'ucla'}", f"workdir={tmp_path / 'run'}", "data.val_by=performer",
        "data.val_performers=[2]", *SMALL_CROPS, *TINY_MODELS, "skel.train.epochs=2",
    ])
    assert run_crops(cfg) == 0
    crops = open_crops(cfg.paths.crops)
    splits = [row["split"] for row in crops.index]
    batch = cfg.joint.train.batch_size
    per_epoch = splits.count("train") // batch * batch + splits.count("val")  # whole batches of training samples
    reads: list[int] = []
    original = CropStore.skeleton

    def counted(store, i):
        reads.append(i)
        return original(store, i)

    monkeypatch.setattr(CropStore, "skeleton", counted)
    for stream in ("joint", "bone"):
        reads.clear()
        run_train(cfg, stream)
        assert len(reads) == 2 * per_epoch
        assert not {i for i in reads if splits[i] == "test"}
