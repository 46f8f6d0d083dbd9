"""Stage 0 on a class-folder dataset cut from the real clips: the pickle, failures, resuming."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mmfc.cli import app
from mmfc.config import load_pipeline
from mmfc.data.pickles import load_pickle
from mmfc.data.pose_pickle import PosePickleSource, read_pose_pickle
from mmfc.data.sources import open_source
from mmfc.poses.stage import run_poses
from test_pose_pickle import RunsCode

pytestmark = pytest.mark.slow  # stage 0 on real clips: `make test-fast` leaves it out

REPO = Path(__file__).resolve().parents[1]


def overrides(root: Path, workdir: Path, models: Path) -> list[str]:
    return [
        f"workdir={json.dumps(str(workdir))}", f"data.root={json.dumps(str(root))}",
        f"poses.models_dir={json.dumps(str(models))}", "jobs.n_jobs=1", "data.num_classes=3",
        "data.val_fraction=0.5", "data.test_fraction=0.34",
    ]


@pytest.fixture(scope="module")
def first_run(video_folders: Path, pose_models: Path, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("run")
    cfg = load_pipeline(REPO / "pipelines" / "videos-example.toml", overrides(video_folders, workdir, pose_models))
    assert run_poses(cfg, preview=3) == 0
    return workdir


def test_stage_writes_a_pyskl_pickle_and_records_failures(first_run: Path, video_folders: Path):
    poses = first_run / "poses"
    pk = read_pose_pickle(poses / "poses.pkl")
    ids = [a["frame_dir"] for a in pk.annotations]
    assert ids == sorted(ids) and len(ids) == 6
    assert sorted(pk.split) == ["test", "train", "val"]
    assert sorted(pk.split["train"] + pk.split["test"]) == ids and set(pk.split["val"]) <= set(pk.split["train"])
    by_id = {a["frame_dir"]: a for a in pk.annotations}
    hug = by_id["hug/hug_g01_c01"]
    assert hug["keypoint"].shape == (2, 24, 17, 2) and hug["keypoint"].dtype == np.float32
    assert hug["keypoint_score"].shape == (2, 24, 17) and hug["keypoint_3d"].shape == (2, 24, 17, 3)
    assert hug["img_shape"] == (270, 480) and hug["total_frames"] == 24 and hug["label"] == 1
    assert by_id["drink/drink_g01_c01"]["keypoint"].shape[0] == 1
    failures = pq.read_table(poses / "failures.parquet").to_pylist()
    reasons = {f["id"]: f["reason"] for f in failures}
    assert set(reasons) == {"makeup/broken_g03_c01", "drink/empty_g04_c01"}
    assert "cannot open video" in reasons["makeup/broken_g03_c01"] or "no frame" in reasons["makeup/broken_g03_c01"]
    assert reasons["drink/empty_g04_c01"] == "nobody found in any of its 12 frames"
    assert (poses / "preview.png").stat().st_size > 0


def test_the_pickle_reads_unchanged_and_feeds_the_videos_source(first_run: Path, video_folders: Path, pose_models: Path):
    from mmfc.config import DataConfig

    pickle_path = first_run / "poses" / "poses.pkl"
    plain = PosePickleSource(DataConfig(source="pose_pickle", root=str(pickle_path), num_classes=3, layout="coco17",
                                        val_by="group", val_fraction=0.0))
    assert len(plain.samples()) == 6
    skel = plain.load_skeleton(plain.samples()[0])
    assert skel.layout == "coco17" and skel.points.shape[-1] == 2
    cfg = load_pipeline(REPO / "pipelines" / "videos-example.toml", overrides(video_folders, first_run, pose_models))
    assert cfg.data.poses == str(pickle_path)
    source = open_source(cfg.data)
    by_id = {s.id: s for s in source.samples()}
    skel = source.load_skeleton(by_id["hug/hug_g01_c01"])
    assert skel.num_persons == 2 and skel.frame_size == (480, 270)
    from mmfc.errors import DataError

    with pytest.raises(DataError, match="stage 0 found no poses"):
        source.load_skeleton(by_id["drink/empty_g04_c01"])


def test_stage_0_can_keep_all_33_landmarks(first_run: Path, video_folders: Path, pose_models: Path, tmp_path: Path):
    """data.layout = "mediapipe33": the same people, every landmark (COCO-17 is a subset of them),
    and stage 1 stores all 33 joints."""
    from mmfc.crops.crop import CropJob, crop_sample
    from mmfc.poses.joints import COCO17

    cfg = load_pipeline(REPO / "pipelines" / "videos-example.toml",
                        [*overrides(video_folders, tmp_path, pose_models), "data.layout=mediapipe33"])
    assert run_poses(cfg) == 0
    every = {a["frame_dir"]: a for a in read_pose_pickle(tmp_path / "poses" / "poses.pkl").annotations}
    subset = {a["frame_dir"]: a for a in read_pose_pickle(first_run / "poses" / "poses.pkl").annotations}
    assert every.keys() == subset.keys()
    coco = [next(iter(weights)) for weights in COCO17]
    for clip, ann in every.items():
        assert ann["keypoint"].shape[2] == 33 and ann["layout"] == "mediapipe33"
        np.testing.assert_array_equal(ann["keypoint"][:, :, coco], subset[clip]["keypoint"])
    source = open_source(cfg.data)
    sample = next(s for s in source.samples() if s.id == "hug/hug_g01_c01")
    stored, _ = crop_sample(source, sample, CropJob.of(cfg))
    assert stored.skeleton.shape == (2, cfg.crops.skeleton_frames, 33, 2) and stored.keypoints.shape[2] == 33


def test_a_rerun_redoes_nothing(first_run: Path, video_folders: Path, pose_models: Path):
    poses = first_run / "poses"
    before = {p.name: p.stat().st_mtime_ns for p in (poses / "videos").iterdir()}
    pickle_mtime = (poses / "poses.pkl").stat().st_mtime_ns
    cfg = load_pipeline(REPO / "pipelines" / "videos-example.toml", overrides(video_folders, first_run, pose_models))
    assert run_poses(cfg) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (poses / "videos").iterdir()} == before
    assert (poses / "poses.pkl").stat().st_mtime_ns == pickle_mtime


def test_killed_then_resumed_gives_the_same_poses(first_run: Path, video_folders: Path, pose_models: Path, tmp_path: Path):
    workdir = tmp_path / "killed"
    sets = [arg for item in overrides(video_folders, workdir, pose_models) for arg in ("--set", item)]
    command = [sys.executable, "-m", "mmfc", "stage", "poses", "--pipeline", str(REPO / "pipelines" / "videos-example.toml"), *sets]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    videos = workdir / "poses" / "videos"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and len(list(videos.glob("*.pkl"))) < 2:
        time.sleep(0.05)
    process.kill()
    process.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in videos.glob("*.pkl")}
    assert 2 <= len(finished) < 8, "the kill should land mid-run"
    assert not (workdir / "poses" / "poses.pkl").exists()
    cfg = load_pipeline(REPO / "pipelines" / "videos-example.toml", overrides(video_folders, workdir, pose_models))
    assert run_poses(cfg) == 0
    for name, mtime in finished.items():
        assert (videos / name).stat().st_mtime_ns == mtime  # kept, not redone
    assert not list(videos.glob(".tmp-*"))
    resumed = pickle.loads((workdir / "poses" / "poses.pkl").read_bytes())
    uninterrupted = pickle.loads((first_run / "poses" / "poses.pkl").read_bytes())
    assert resumed["split"] == uninterrupted["split"]
    for a, b in zip(resumed["annotations"], uninterrupted["annotations"], strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_cli_names_the_make_target_when_models_are_missing(video_folders: Path, tmp_path: Path):
    sets = [arg for item in overrides(video_folders, tmp_path / "run", tmp_path / "no-models") for arg in ("--set", item)]
    result = CliRunner().invoke(app, ["stage", "poses", "--pipeline", "pipelines/videos-example.toml", *sets])
    assert result.exit_code == 2 and "make setup-pose" in result.output and "pose_detection.tflite" in result.output
    # Its workdir in tmp_path: the refused run records its timing there, not in the checkout's runs/.
    other = CliRunner().invoke(app, ["stage", "poses", "--pipeline", "pipelines/synth.toml",
                                     "--set", f"workdir={json.dumps(str(tmp_path / 'synth'))}"])
    assert other.exit_code == 2 and "data.source = 'videos'" in other.output


def test_a_per_video_file_that_would_run_code_is_redone_not_run(first_run: Path, video_folders: Path,
                                                                pose_models: Path, tmp_path: Path):
    workdir = tmp_path / "copy"
    shutil.copytree(first_run, workdir)
    videos = workdir / "poses" / "videos"
    planted = sorted(videos.glob("*.pkl"))[0]
    marker = tmp_path / "ran"
    planted.write_bytes(pickle.dumps(RunsCode(marker)))
    untouched = {p.name: p.stat().st_mtime_ns for p in videos.glob("*.pkl") if p != planted}
    cfg = load_pipeline(REPO / "pipelines" / "videos-example.toml", overrides(video_folders, workdir, pose_models))
    assert run_poses(cfg) == 0
    assert not marker.exists()
    assert {p.name: p.stat().st_mtime_ns for p in videos.glob("*.pkl") if p != planted} == untouched
    assert load_pickle(planted)["id"]  # the video was estimated again
