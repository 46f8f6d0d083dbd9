"""`mmfc inspect` and `mmfc info` on real files, through the typer CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmfc.cli import app
from test_pose_pickle import hostile_pickle

PIPELINE = str(Path(__file__).parents[1] / "pipelines" / "ntu60-xsub.toml")
NAMES = ["S001C001P001R001A001", "S001C003P008R002A058", "S002C001P003R001A003", "S003C001P015R001A034"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run_json(runner: CliRunner, args: list[str]) -> dict:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_inspect_skeleton(runner: CliRunner, realdata: Path):
    report = run_json(runner, ["inspect", str(realdata / "ntu_skeleton" / "S001C003P008R002A058.skeleton")])
    assert report["kind"] == "ntu_skeleton" and report["frames"] == 70
    assert sorted(b["body_id"] for b in report["bodies"]) == [72057594037944734, 72057594037944738]
    assert len(report["selection"]["persons"]) == 2
    assert all(b["kept"] and b["reason"].startswith("kept") for b in report["selection"]["bodies"])
    assert report["name"]["action"] == 58
    low, high = report["ranges"]["colorX"]
    assert 0 < low < high < 1920
    assert 0.5 < report["tracking"]["tracked"] <= 1.0


def test_inspect_video(runner: CliRunner, realdata: Path):
    report = run_json(runner, ["inspect", str(realdata / "videos" / "S001C001P001R001A001_rgb.avi")])
    assert (report["frames"], report["width"], report["height"]) == (103, 1920, 1080)


def test_inspect_pickles(runner: CliRunner, realdata: Path):
    report = run_json(runner, ["inspect", str(realdata / "pose_pkl" / "derived_ntu6_2d_pyskl.pkl")])
    assert report["samples"] == 6 and report["splits"]["xsub_train"] == 4
    assert report["keypoint"]["joints"] == [25] and report["keypoint"]["channels"] == [2]
    k400 = run_json(runner, ["inspect", str(realdata / "pose_pkl" / "mmaction2_k400_pose_index_sample.pkl")])
    assert k400["samples"] == 100 and k400["with_keypoints"] == 0


def make_root(tmp_path: Path, realdata: Path) -> Path:
    skeletons = tmp_path / "nturgb+d_skeletons"
    skeletons.mkdir()
    for name in NAMES:
        (skeletons / f"{name}.skeleton").symlink_to(realdata / "ntu_skeleton" / f"{name}.skeleton")
    return tmp_path


def test_inspect_dataset_root(runner: CliRunner, tmp_path: Path, realdata: Path):
    report = run_json(runner, ["inspect", str(make_root(tmp_path, realdata))])
    assert report["dataset"] == "NTU RGB+D 60" and report["skeleton_files"] == 4
    # Performers 1, 8, 15 train under X-Sub, 3 tests; cameras 1 test and 3 train under X-View.
    assert report["protocols"]["xsub"] == {"train": 3, "test": 1}
    assert report["protocols"]["xview"] == {"train": 1, "test": 3}
    assert report["classes"]["A058 handshaking"] == 1


def test_info_counts(runner: CliRunner, tmp_path: Path, realdata: Path):
    root = make_root(tmp_path, realdata)
    missing = tmp_path / "missing.txt"
    missing.write_text("S003C001P015R001A034\n")
    report = run_json(runner, ["info", "--json", "--pipeline", PIPELINE, "--set", f"data.root={root}",
                               "--set", f"data.missing_list={missing}"])
    data = report["data"]
    assert report["pipeline"]["data"]["root"] == str(root)
    assert data["samples"] == 3
    # ntu60-xsub carves performers 8, 19, 34 out of training as validation.
    assert data["splits"] == {"train": 1, "val": 1, "test": 1}
    assert data["excluded"] == {"in the missing-skeleton list": 1}
    assert data["video"] == {"with": 0, "without": 3}
    assert data["classes"]["handshaking"] == {"train": 0, "val": 1, "test": 0}
    assert len(data["classes"]) == 60
    assert data["validation_groups"] == {"P008": 1}


def test_info_prints_a_summary_and_names_few_validation_groups(runner: CliRunner, tmp_path: Path):
    # UCF101's names: the group number is the person and recording, shared by every class.
    for name in ("Archery", "Biking"):
        for group in (1, 2, 3, 4):
            for clip in (1, 2):
                path = tmp_path / "ucf" / name / f"v_{name}_g{group:02d}_c{clip:02d}.avi"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")  # listing never decodes
    args = ["info", "--pipeline", str(Path(PIPELINE).parent / "videos-small.toml"), "--set", f"data.root={tmp_path / 'ucf'}",
            "--set", "data.num_classes=2", "--set", "data.test_fraction=0.25", "--set", "data.val_fraction=0.34"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = run_json(runner, [*args, "--json"])["data"]
    groups = data["validation_groups"]
    assert len(groups) == 1 and sum(groups.values()) == data["splits"]["val"] == 4
    (group, count), = groups.items()
    lines = result.stdout.splitlines()
    assert lines[0] == f"videos-small: 16 samples of 2 classes from {tmp_path / 'ucf'} (source videos, joints coco17)"
    assert lines[1] == f"splits: {data['splits']['train']} train, 4 val, {data['splits']['test']} test"
    assert f"validation: 4 samples in 1 group: {group} (4)" in lines
    assert [line.split() for line in lines if line.startswith(("Archery", "total"))] == [
        ["Archery", *map(str, data["classes"]["Archery"].values())], ["total", *map(str, data["splits"].values())]]
    assert f"warning: {tmp_path / 'ucf'}: validation holds 1 group ({group}: 4 samples), fewer than 3" in result.stderr
    # No validation at all: stage 4 would stop, and info says so before any stage runs.
    result = runner.invoke(app, [*args, "--set", "data.val_fraction=0"])
    assert result.exit_code == 0 and "validation: 0 samples in 0 groups" in result.stdout
    assert "validation is empty, and stage 4 fits the fusion on validation alone" in result.stderr


def test_bad_key_exits_2_with_one_message(runner: CliRunner):
    result = runner.invoke(app, ["info", "--pipeline", PIPELINE, "--set", "data.rot=/x"])
    assert result.exit_code == 2
    assert "unknown key 'data.rot'" in result.output and "data.root" in result.output
    assert "Traceback" not in result.output
    assert result.output.count("error:") == 1


def test_data_errors_exit_2(runner: CliRunner, tmp_path: Path):
    result = runner.invoke(app, ["info", "--pipeline", PIPELINE, "--set", f"data.root={tmp_path}"])
    assert result.exit_code == 2 and "no nturgb+d_skeletons/ folder" in result.output
    (tmp_path / "notes.txt").write_text("hello")
    result = runner.invoke(app, ["inspect", str(tmp_path / "notes.txt")])
    assert result.exit_code == 2 and "unknown file type '.txt'" in result.output


def test_inspect_refuses_a_pickle_that_would_run_code(runner: CliRunner, tmp_path: Path):
    marker = tmp_path / "ran"
    result = runner.invoke(app, ["inspect", str(hostile_pickle(tmp_path / "evil.pkl", marker))])
    assert result.exit_code == 2 and "evil.pkl: refused: the pickle asks for io.open" in result.output
    assert not marker.exists()
