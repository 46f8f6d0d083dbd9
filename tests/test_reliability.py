"""What a hostile probe and a first-time user found (issue 26, items 1-9), on small generated data:
one clear message instead of a traceback or a silent wrong answer, nothing half-written, and no
worker outliving its run. The same points on a trained run are in test_reliability_runs.py."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmfc.cli import app
from mmfc.config import ConfigError, DataConfig, Pipeline, load_pipeline, save_pipeline
from mmfc.data.pose_pickle import read_pose_pickle
from mmfc.data.video_dataset import VideoFolderSource
from mmfc.errors import DataError, DiskFull
from mmfc.fusion.files import open_fusion
from mmfc.fusion.stage import run_fuse
from mmfc.jobs import run_jobs
from mmfc.scores.format import ScoreTable, write_scores

SYNTH = Path(__file__).resolve().parents[1] / "pipelines" / "synth.toml"


def mmfc(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def one_error_line(output: str) -> str:
    """The one `error:` line of a refused command (and nothing that looks like a traceback)."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert "Traceback" not in output and len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


# ---------------------------------------------------------------------------------------------
# 1. fusion/weights.json carries its own digest


def fitted_fusion(tmp_path: Path) -> Pipeline:
    """Stage 4 run on generated score files of 60 samples in 3 classes."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    splits = ["val"] * 30 + ["test"] * 30
    ids = [f"S{i:03d}" for i in range(60)]
    cfg = Pipeline(workdir=str(tmp_path / "run"))
    cfg.fusion.grid = 11
    for modality, signal in (("rgb", 2.0), ("skel", 1.0)):
        logits = rng.normal(size=(60, 3)) + signal * np.eye(3)[labels]
        write_scores(cfg.paths.scores / f"{modality}.parquet", ScoreTable(
            ids, splits, labels, logits.astype(np.float32), modality, f"ck-{modality}", "pd", ["a", "b", "c"],
            groups=[f"P{i % 4}" for i in range(60)], group_kind="performer"))
    run_fuse(cfg)
    return cfg


def test_an_edited_fusion_parameter_is_refused_naming_weights_json(tmp_path):
    cfg = fitted_fusion(tmp_path)
    path = cfg.paths.fusion / "weights.json"
    assert open_fusion(cfg.paths.fusion).fitted("global")  # as written, it reads
    text = path.read_text()
    weights = json.loads(text)
    rule = weights["methods"]["global"]["params"]["weights"]
    rule["rgb"] += 0.5
    path.write_text(json.dumps(weights, indent=2))
    with pytest.raises(DataError, match=rf"{path}: changed since stage 4 wrote it") as refused:
        open_fusion(cfg.paths.fusion)
    assert "rerun `mmfc stage fuse`" in str(refused.value)
    # Laid out otherwise but holding the same values, it is the same file.
    path.write_text(json.dumps(json.loads(text)))
    assert open_fusion(cfg.paths.fusion).fitted("global")
    # One written before weights.json carried its digest cannot be told from an edited one.
    del weights["sha256"]
    path.write_text(json.dumps(weights))
    with pytest.raises(DataError, match="carries no digest of its own"):
        open_fusion(cfg.paths.fusion)


# ---------------------------------------------------------------------------------------------
# 2. and 7. settings: finite floats, bounds at load, nesting


@pytest.mark.parametrize("override, key", [
    ("data.test_fraction=nan", "data.test_fraction"),
    ("rgb.train.lr=nan", "rgb.train.lr"),
    ("rgb.train.lr=inf", "rgb.train.lr"),
    ("crops.padding=nan", "crops.padding"),
    ("crops.min_box=-inf", "crops.min_box"),
    ("skel.ccl.level_weights=[0.1, 0.2, nan, 1.0]", "skel.ccl.level_weights"),
])
def test_a_float_setting_must_be_finite(override: str, key: str):
    with pytest.raises(ConfigError, match=rf"{key} must be a finite number, got -?(nan|inf)"):
        load_pipeline(SYNTH, [override])


def test_nan_in_a_pipeline_file_is_refused_by_mmfc_info(tmp_path):
    pipeline = tmp_path / "p.toml"
    pipeline.write_text("[data]\ntest_fraction = nan\n")
    line = one_error_line(mmfc("info", "--pipeline", pipeline)[1])
    assert f"{pipeline}: data.test_fraction must be a finite number, got nan" in line


def test_sizes_that_would_take_tens_of_gib_are_refused_at_load():
    with pytest.raises(ConfigError, match="crops.num_frames must be at most 1024, got 100000"):
        load_pipeline(SYNTH, ["crops.num_frames=100000"])
    with pytest.raises(ConfigError, match="crops.size must be at most 1024"):
        load_pipeline(SYNTH, ["crops.size=20000"])


def test_deeply_nested_toml_is_one_message(tmp_path):
    nested = "[" * 3000 + "]" * 3000
    pipeline = tmp_path / "deep.toml"
    pipeline.write_text(f"name = {nested}\n")
    line = one_error_line(mmfc("info", "--pipeline", pipeline)[1])
    assert f"{pipeline}: not a pipeline file (arrays or tables nested too deep to read)" in line
    with pytest.raises(ConfigError, match="--set name: a value nested too deep"):
        load_pipeline(SYNTH, [f"name={nested}"])


# ---------------------------------------------------------------------------------------------
# 5. and 7. video ids, CSVs and odd folders


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def videos(root: Path, num_classes: int = 2) -> DataConfig:
    return DataConfig(source="videos", root=str(root), layout="coco17", num_classes=num_classes)


def test_csv_clips_outside_its_folder_keep_unique_stable_ids(tmp_path):
    for label in ("drink", "hug"):
        touch(tmp_path / "videos" / label / "clip001.mp4")
    elsewhere = touch(tmp_path / "elsewhere" / "drink" / "clip002.mp4")
    csv = tmp_path / "lists" / "train.csv"
    csv.parent.mkdir()
    csv.write_text("path,label\n../videos/drink/clip001.mp4,drink\n../videos/hug/clip001.mp4,hug\n"
                   f"{elsewhere},drink\n./../lists/../videos/hug/clip001.mp4,hug\n")
    with pytest.raises(DataError, match=r"two videos have the id '../videos/hug/clip001'"):
        VideoFolderSource(videos(csv))  # one file listed twice, however its path is written
    csv.write_text("\n".join(csv.read_text().splitlines()[:-1]) + "\n")
    ids = sorted(s.id for s in VideoFolderSource(videos(csv)).samples())
    assert ids == sorted(["../videos/drink/clip001", "../videos/hug/clip001", str(elsewhere.with_suffix(""))])
    # The same from another working folder: nothing in an id depends on where mmfc runs.
    here = Path.cwd()
    try:
        os.chdir(tmp_path / "videos")
        assert sorted(s.id for s in VideoFolderSource(videos(csv)).samples()) == ids
    finally:
        os.chdir(here)


def test_class_folders_linked_from_elsewhere_keep_their_names(tmp_path):
    for label in ("drink", "hug"):
        touch(tmp_path / "store" / f"{label}-takes" / "clip001.mp4")
        (tmp_path / "root").mkdir(exist_ok=True)
        (tmp_path / "root" / label).symlink_to(tmp_path / "store" / f"{label}-takes")
    source = VideoFolderSource(videos(tmp_path / "root"))
    assert sorted((s.id, s.label) for s in source.samples()) == [("drink/clip001", 0), ("hug/clip001", 1)]


def test_a_symlink_loop_in_a_class_folder_is_left_out_and_counted(tmp_path):
    touch(tmp_path / "root" / "drink" / "a.mp4")
    touch(tmp_path / "root" / "hug" / "b.mp4")
    (tmp_path / "root" / "drink" / "x.mp4").symlink_to(tmp_path / "root" / "drink" / "y.mp4")
    (tmp_path / "root" / "drink" / "y.mp4").symlink_to(tmp_path / "root" / "drink" / "x.mp4")
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(f'[data]\nsource = "videos"\nroot = "{tmp_path / "root"}"\nnum_classes = 2\nlayout = "coco17"\n')
    result = CliRunner().invoke(app, ["info", "--pipeline", str(pipeline), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["samples"] == 2
    assert data["excluded"] == {"not a readable file (a broken symlink, a symlink loop, or a folder)": 2}


def test_a_csv_with_a_byte_order_mark_reads_as_excel_wrote_it(tmp_path):
    touch(tmp_path / "a.mp4")
    touch(tmp_path / "b.mp4")
    csv = tmp_path / "list.csv"
    csv.write_bytes("path,label,split\na.mp4,walk,train\nb.mp4,run,test\n".encode("utf-8-sig"))
    samples = VideoFolderSource(videos(csv)).samples()
    assert sorted((s.id, s.split) for s in samples) == [("a", "train"), ("b", "test")]


# ---------------------------------------------------------------------------------------------
# 7. outputs that cannot be written: one message, before any work


def test_a_stage_with_a_workdir_that_cannot_be_made_says_so_in_one_line(tmp_path, read_only_folder):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = one_error_line(mmfc("stage", "fuse", "--pipeline", SYNTH, "--set", f"workdir={blocker / 'run'}")[1])
    assert line == f"error: {blocker}: a file, not a folder, where the folder {blocker / 'run' / '.locks'} is to be"
    line = one_error_line(mmfc("stage", "crops", "--pipeline", SYNTH, "--set", f"workdir={read_only_folder / 'run'}")[1])
    assert line.startswith(f"error: {read_only_folder / 'run'}: cannot create or write this folder (")


def test_predict_checks_its_output_folder_and_options_before_any_work(tmp_path, read_only_folder):
    video, run = tmp_path / "clip.avi", tmp_path / "no-run"  # neither is looked at: the checks come first
    blocker = tmp_path / "taken"
    blocker.write_text("")
    for args, said in [
        (["--jobs", "0"], "--jobs 0: give a number of workers, or -1 for one per core"),
        (["--window", "nan"], "--window nan: give a positive number of seconds"),
        (["--window", "2", "--stride", "inf"], "--stride inf: give a positive number of seconds"),
        (["--threshold", "2"], "--threshold 2.0: give a probability from 0 up to (not including) 1"),
        (["--threshold", "nan"], "--threshold nan: give a probability"),
        (["--out", blocker], f"{blocker}: a file, not a folder"),
        (["--out", read_only_folder / "out"], f"{read_only_folder / 'out'}: cannot create or write this folder"),
    ]:
        code, output = mmfc("predict", video, "--run", run, *args)
        assert code == 2 and said in one_error_line(output), (args, output)


def test_a_folder_that_is_not_a_run_is_named_as_such(tmp_path):
    line = one_error_line(mmfc("predict", tmp_path / "clip.avi", "--run", tmp_path)[1])
    assert line.startswith(f"error: {tmp_path}: not a run: no train/ folder here")


# ---------------------------------------------------------------------------------------------
# 6. a video writer on a full disk


def test_an_annotated_video_that_does_not_fit_is_disk_full_and_leaves_nothing(tiny_disk):
    from mmfc.predict.outputs import write_video

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(30)]
    target = tiny_disk / "clip" / "annotated.mp4"
    with pytest.raises(DiskFull, match=rf"{target}: the disk is full"):
        write_video(target, frames, 10.0)
    assert list(target.parent.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# 3. the pose source, recorded by the sources


def test_each_source_says_where_its_poses_come_from(tmp_path, realdata):
    from mmfc.data.sample import BLAZEPOSE, KINECT, UNRECORDED

    plain = tmp_path / "plain.pkl"
    annotation = {"frame_dir": "clip", "label": 0, "keypoint": np.zeros((1, 4, 17, 2), np.float32)}
    plain.write_bytes(pickle.dumps([annotation]))
    assert read_pose_pickle(plain).pose_source == UNRECORDED
    plain.write_bytes(pickle.dumps([{**annotation, "pose_source": BLAZEPOSE}]))
    assert read_pose_pickle(plain).pose_source == BLAZEPOSE

    from mmfc.data.sources import describe_selection, open_source

    skeletons = tmp_path / "ntu" / "nturgb+d_skeletons"
    skeletons.mkdir(parents=True)
    (skeletons / "S001C001P001R001A001.skeleton").symlink_to(realdata / "ntu_skeleton" / "S001C001P001R001A001.skeleton")
    assert open_source(DataConfig(source="ntu", root=str(tmp_path / "ntu"), num_classes=60)).pose_source == KINECT
    touch(tmp_path / "videos" / "walk" / "a.mp4")
    assert describe_selection(videos(tmp_path / "videos", 1))["pose_source"] == BLAZEPOSE


# ---------------------------------------------------------------------------------------------
# 4. a skeleton of another length than its video


def test_a_skeleton_file_of_another_length_is_noted_or_refused(realdata):
    from mmfc.data.layouts import NTU25
    from mmfc.data.ntu import load_skeleton
    from mmfc.data.sample import KINECT
    from mmfc.predict.skeletons import SkeletonInput, fit_to_video

    path = realdata / "ntu_skeleton" / "S001C001P001R001A001.skeleton"  # 103 frames
    found = SkeletonInput(load_skeleton(path, 2, (1920, 1080))[0], NTU25, f"file {path.name}", pose_source=KINECT)
    assert fit_to_video(found, path, 103, 0.9) is found
    assert fit_to_video(found, path, 104, 0.9) is found  # NTU's video and skeleton often differ by one
    noted = fit_to_video(found, path, 110, 0.9)
    assert noted.note == "the skeleton has 103 frames, the video 110; its frames were matched to the video's by time"
    with pytest.raises(DataError, match=rf"{path}: the skeleton has 103 frames, the video 1320: not the skeleton "
                                        r"of this video"):
        fit_to_video(found, path, 1320, 0.9)


# ---------------------------------------------------------------------------------------------
# 9. a run's paths, resolved when it is made


def test_the_saved_pipeline_holds_absolute_paths_for_what_a_run_reads_later(tmp_path):
    cfg = load_pipeline(SYNTH, [f"workdir={tmp_path / 'run'}", "crops_from=runs/shared"])
    assert cfg.poses.models_dir == "models/blazepose"
    save_pipeline(cfg)
    saved = json.loads(cfg.paths.pipeline.read_text())
    assert saved["poses"]["models_dir"] == str(Path.cwd() / "models" / "blazepose")
    assert saved["crops_from"] == str(Path.cwd() / "runs" / "shared")
    assert saved["data"]["root"] == cfg.data.root  # only the stages read it: as given


def test_a_missing_pose_model_names_the_full_path_it_looked_for(tmp_path):
    from mmfc.poses.model_files import model_paths

    here = Path.cwd()
    try:
        os.chdir(tmp_path)
        with pytest.raises(DataError) as missing:
            model_paths("models/blazepose")
    finally:
        os.chdir(here)
    assert missing.value.path.startswith(str(tmp_path / "models" / "blazepose") + "/")
    assert "pose model file is missing" in missing.value.reason


# ---------------------------------------------------------------------------------------------
# 7. memory a stage will need, 8. more workers than cores


def test_available_memory_is_the_smaller_of_the_machine_and_its_cgroup(tmp_path):
    from mmfc.cores import available_memory

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemAvailable:   20000000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert available_memory(meminfo, cgroup) == 20000000 * 1024
    (cgroup / "memory.max").write_text("max\n")
    assert available_memory(meminfo, cgroup) == 20000000 * 1024
    (cgroup / "memory.max").write_text(f"{8 << 30}\n")
    (cgroup / "memory.current").write_text(f"{3 << 30}\n")
    assert available_memory(meminfo, cgroup) == 5 << 30
    assert available_memory(tmp_path / "none", tmp_path / "none") is None


def add(x: int, y: int) -> int:
    return x + y


def test_more_workers_than_cores_are_capped_with_a_note():
    from rich.console import Console

    console = Console(record=True, width=300)
    cores = len(os.sched_getaffinity(0))
    asked = cores + 3
    results = dict(run_jobs(add, [(x, 1) for x in range(5)], backend="loky", n_jobs=asked, title="t", console=console))
    assert results == {x: x + 1 for x in range(5)}
    assert f"jobs.n_jobs = {asked} is more than the {cores} cores this process may use: {cores} workers at once" in \
        " ".join(console.export_text().split())
