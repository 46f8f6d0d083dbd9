"""Issue 26, items 1-9, on a trained run and real processes: an edited fusion refused by predict and
export, the pose source a run was trained on and the warning on poses of another, a skeleton of
another length, a full disk under `predict --out`, a run used from another folder, stage 1's
memory check, and batch workers that stop with their driver however it ends."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mmfc.cli import app
from mmfc.crops.store import open_crops
from mmfc.errors import DataError
from mmfc.run_folder import open_run
from mmfc.scores.format import read_scores
from mmfc.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # trained runs, real clips through the estimator, subprocess kills

REPO = Path(__file__).resolve().parents[1]


def mmfc(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def mmfc_json(*args) -> list[dict]:
    """What `mmfc predict ... --json` prints on stdout, the command having succeeded."""
    result = CliRunner().invoke(app, [str(a) for a in args] + ["--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def sample_clip(run: Path) -> tuple[Path, Path]:
    """A test clip of the run's generated data: its video and its .skeleton."""
    sample_id = read_scores(run / "fusion" / "fused.parquet").rows("test").ids[0]
    data = run.parent / "data"
    return data / "nturgb+d_rgb" / f"{sample_id}_rgb.avi", data / "nturgb+d_skeletons" / f"{sample_id}.skeleton"


# ---------------------------------------------------------------------------------------------
# 1. an edited weights.json; 7. an export that cannot be written


def test_predict_and_export_refuse_an_edited_fusion_weight(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    path = run / "fusion" / "weights.json"
    weights = json.loads(path.read_text())
    selected = weights["selected"]
    params = weights["methods"][selected]["params"]
    # The first number of the fitted parameters (a weight, a temperature, the scale), at any depth.
    node, key = params, None
    while key is None:
        key = next((k for k, v in node.items() if isinstance(v, float)), None)
        if key is None:
            node = next(v for v in node.values() if isinstance(v, dict))
    node[key] += 8.0  # one digit changed by hand
    path.write_text(json.dumps(weights, indent=2))
    with pytest.raises(DataError, match=rf"{path}: changed since stage 4 wrote it"):
        open_run(run)
    video, skeleton = sample_clip(run)
    for args in (["predict", video, "--run", run, "--skeleton", skeleton], ["export", "--run", run, "--out", tmp_path / "x"]):
        code, output = mmfc(*args)
        assert code == 2 and "Traceback" not in output, output
        assert output.strip().splitlines()[-1].startswith(f"error: {path}: changed since stage 4 wrote it"), output
    assert not (tmp_path / "x").exists()


def test_export_to_a_folder_that_cannot_be_written_is_one_line_before_the_export(tiny_run, read_only_folder):
    code, output = mmfc("export", "--run", tiny_run, "--out", read_only_folder / "onnx")
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in output, output
    assert lines[0].startswith(f"error: {read_only_folder}: cannot create or write this folder (")


# ---------------------------------------------------------------------------------------------
# 3. the pose source a run was trained on, and a warning on poses from elsewhere


def test_the_run_knows_the_pose_source_it_was_trained_on(tiny_run):
    assert open_crops(tiny_run / "crops").pose_source == "kinect"
    for branch in ("rgb", "skel"):
        assert load_checkpoint(tiny_run / "train" / branch / "best.pt")["pose_source"] == "kinect"
    assert open_run(tiny_run).pose_source == "kinect"


def test_estimated_poses_on_a_kinect_run_carry_a_warning_everywhere(tiny_run, realdata, pose_models, tmp_path):
    video = realdata / "videos" / "S001C001P001R001A001_rgb.avi"
    kinect = realdata / "ntu_skeleton" / "S001C001P001R001A001.skeleton"
    out = tmp_path / "out"
    summary = mmfc_json("predict", video, "--run", tiny_run, "--out", out)[0]
    assert summary["warning"].startswith("the run's skeleton branches were trained on Kinect v2 joints (NTU .skeleton "
                                         "files), and these poses come from stage 0's BlazePose estimator")
    assert json.loads((out / video.stem / "prediction.json").read_text())["warning"] == summary["warning"]
    assert set(pq.read_table(out / "predictions.parquet").column("warning").to_pylist()) == {summary["warning"]}
    # The annotated video: a red band above every frame.
    capture = cv2.VideoCapture(str(out / video.stem / "annotated.mp4"))
    ok, first = capture.read()
    capture.release()
    band = first[2:8, :, ::-1].reshape(-1, 3).astype(int)  # RGB
    assert ok and (np.abs(band - (200, 0, 0)).max(axis=1) < 40).mean() > 0.5
    # The table: a WARNING line, and the title says not to trust it.
    code, output = mmfc("predict", video, "--run", tiny_run)
    said = " ".join(output.split())
    assert code == 0 and "WARNING: the run's skeleton branches were trained on Kinect v2 joints" in said
    assert "UNRELIABLE, see the warning" in said
    # The clip's own Kinect skeleton: what the run was trained on, no warning.
    assert mmfc_json("predict", video, "--run", tiny_run, "--skeleton", kinect)[0]["warning"] == ""


# ---------------------------------------------------------------------------------------------
# 4. a skeleton of another length


def test_a_skeleton_of_another_video_is_refused_and_a_near_one_noted(tiny_run, realdata):
    video = realdata / "videos" / "S001C001P001R001A001_rgb.avi"  # 103 frames
    other = realdata / "ntu_skeleton" / "S001C001P001R001A011.skeleton"  # 82 frames
    code, output = mmfc("predict", video, "--run", tiny_run, "--skeleton", other)
    assert code == 2 and f"error: {other}: the skeleton has 82 frames, the video 103: not the skeleton of this video" \
        in " ".join(output.split())
    near = realdata / "ntu_skeleton" / "S002C001P003R001A003.skeleton"  # 100 frames
    notes = mmfc_json("predict", video, "--run", tiny_run, "--skeleton", near)[0]["notes"]
    assert "the skeleton has 100 frames, the video 103; its frames were matched to the video's by time" in notes


# ---------------------------------------------------------------------------------------------
# 6. a full disk under predict --out


def test_predict_out_on_a_full_disk_keeps_no_broken_video(tiny_run, tiny_disk):
    video, skeleton = sample_clip(tiny_run)
    out = tiny_disk / "out"
    code, output = mmfc("predict", video, "--run", tiny_run, "--skeleton", skeleton, "--out", out)
    said = " ".join(output.split())
    assert code == 2 and "Traceback" not in output, output
    assert f"error: {out / video.stem / 'annotated.mp4'}: the disk is full" in said
    assert not (out / video.stem / "annotated.mp4").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]
    assert not list(out.rglob("results/*.json"))  # a rerun with space redoes the video


# ---------------------------------------------------------------------------------------------
# 9. a run used from any folder


def test_predict_from_another_working_folder_finds_the_pose_models(tiny_run, realdata, pose_models, tmp_path):
    assert Path(open_run(tiny_run).cfg.poses.models_dir).is_absolute()  # as the checkpoints carry it
    video = realdata / "videos" / "S001C001P001R001A001_rgb.avi"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-m", "mmfc", "predict", str(video), "--run", str(tiny_run), "--json"],
                          cwd=elsewhere, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["skeleton"] == "estimated (BlazePose)"


# ---------------------------------------------------------------------------------------------
# 7. stage 1's memory, checked before it starts


def test_stage_1_refuses_a_run_its_workers_could_not_hold(synth_clips, tmp_path, monkeypatch):
    import mmfc.crops.stage as crops_stage
    from test_crops_reliability import dataset, pipeline, sample_ids

    root = dataset(tmp_path / "data", synth_clips, sample_ids(synth_clips)[:4])
    cfg = pipeline(root, tmp_path / "work", "crops.num_frames=1000", "crops.size=256")
    monkeypatch.setattr(crops_stage, "available_memory", lambda: 200_000_000)
    with pytest.raises(DataError, match=r"crops: stage 1 would need about 283.\d MB of memory at once \(1 worker\(s\), "
                                        r"each holding crops.num_frames = 1000 frames of 160x90 and their 256 px crops\), "
                                        r"and this machine has 200.0 MB free"):
        crops_stage.run_crops(cfg)
    assert not list((tmp_path / "work" / "crops" / "shards").iterdir())


# ---------------------------------------------------------------------------------------------
# 8. workers stop with their driver


DRIVER = """
import sys, time
from pathlib import Path
from mmfc.jobs import run_jobs

def job(i, out):
    import os
    Path(out, f"start-{i}-{os.getpid()}").touch()
    time.sleep(60)
    Path(out, f"done-{i}").touch()

if __name__ == "__main__":
    for _ in run_jobs(job, [(i, sys.argv[2]) for i in range(6)], backend=sys.argv[1], n_jobs=2, title="jobs"):
        pass
"""


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("backend, stop", [
    ("loky", signal.SIGTERM), ("loky", signal.SIGINT), ("loky", signal.SIGKILL),
    ("multiprocessing", signal.SIGTERM), ("multiprocessing", signal.SIGKILL),
    ("dask", signal.SIGTERM), ("dask", signal.SIGKILL), ("ray", signal.SIGTERM), ("ray", signal.SIGKILL),
])
def test_a_stopped_driver_leaves_no_worker_running(backend, stop, tmp_path):
    if backend in ("dask", "ray"):
        pytest.importorskip("distributed" if backend == "dask" else "ray")
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    out = tmp_path / "out"
    out.mkdir()
    # Ray's daemons are started by the driver; a temporary folder of their own tells this test's
    # apart (a short path: Ray's sockets live there, and a socket's path has at most 107 bytes).
    ray_tmp = Path(tempfile.mkdtemp(prefix="mmfc-ray-"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": str(ray_tmp)}
    driver = subprocess.Popen([sys.executable, str(script), backend, str(out)], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("start-*"))) < 2 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.2)
        workers = [int(p.name.rsplit("-", 1)[1]) for p in out.glob("start-*")]
        assert len(workers) == 2, f"the jobs did not start (driver exit code {driver.poll()})"
        driver.send_signal(stop)
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in workers if alive(pid)], "a worker still runs its job"
        assert not list(out.glob("done-*"))
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
        # What a failing run leaves: its workers, and what a killed driver's local Ray left behind.
        started = [int(p.name.rsplit("-", 1)[1]) for p in out.glob("start-*")]
        for pid in [pid for pid in started if alive(pid)] + _processes_of(ray_tmp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _processes_of(folder: Path) -> list[int]:
    """The processes whose command line names `folder`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(folder).encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            pass
    return found
