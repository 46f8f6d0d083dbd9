"""mmfc.lock: one run per output folder; stale locks of killed runs are taken over."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time

import pytest
from rich.console import Console

from mmfc import lock
from mmfc.errors import DataError


def quiet() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200), out


def test_a_second_holder_is_refused_with_who_holds_it(tmp_path):
    path = tmp_path / "x.lock"
    with lock.hold(path, "mmfc stage crops"):
        with pytest.raises(DataError, match=rf"pid \d+ on {socket.gethostname()} \(mmfc stage crops, since .*\) is writing here"):
            with lock.hold(path, "mmfc stage crops"):
                pass
        assert "mmfc stage crops" in lock.holder(path)
    assert lock.holder(path) is None and path.read_text() == ""  # released: emptied, not removed
    with lock.hold(path, "again"):  # free again
        pass


def test_a_killed_holder_is_taken_over_with_a_message(tmp_path):
    path = tmp_path / "x.lock"
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from mmfc import lock\n"
        f"with lock.hold({str(path)!r}, 'mmfc stage train'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    with pytest.raises(DataError, match=rf"pid {child.pid} .*mmfc stage train"):
        with lock.hold(path, "mmfc stage train"):
            pass
    child.kill()
    child.wait()
    assert json.loads(path.read_text())["pid"] == child.pid  # a kill leaves the holder's record
    console, out = quiet()
    with lock.hold(path, "mmfc stage train", console=console):
        assert json.loads(path.read_text())["pid"] != child.pid
    assert f"taking over the lock of pid {child.pid}" in out.getvalue() and "no longer running" in out.getvalue()


def test_a_holder_on_another_host_is_never_taken_over(tmp_path):
    path = tmp_path / "x.lock"
    path.write_text(json.dumps({"pid": 4242, "host": "node-7", "command": "mmfc stage crops", "started": "then"}))
    with pytest.raises(DataError, match="pid 4242 on node-7 .* cannot be checked from this host; delete the file"):
        with lock.hold(path, "mmfc stage crops"):
            pass


def test_shared_holders_coexist_and_keep_out_an_exclusive_one(tmp_path):
    path = tmp_path / "x.lock"
    with lock.hold(path, "part 1/2", shared=True), lock.hold(path, "part 2/2", shared=True):
        with pytest.raises(DataError, match="another run is writing here"):
            with lock.hold(path, "whole"):
                pass
    with lock.hold(path, "whole"):
        with pytest.raises(DataError, match="whole"):
            with lock.hold(path, "part 1/2", shared=True):
                pass


def test_the_lock_is_released_when_the_block_raises(tmp_path):
    path = tmp_path / "x.lock"
    with pytest.raises(RuntimeError):
        with lock.hold(path, "x"):
            raise RuntimeError("boom")
    started = time.monotonic()
    with lock.hold(path, "y"):
        pass
    assert time.monotonic() - started < 1


# ---------------------------------------------------------------------------------------------
# Every stage runner that writes takes the lock of what it writes


def runners(cfg):
    from mmfc.fusion.stage import run_fuse
    from mmfc.report.stage import run_report
    from mmfc.scores.stage import run_scores
    from mmfc.train.stage import run_train

    paths = cfg.paths
    return {
        "train rgb": (lambda: run_train(cfg, "rgb"), paths.lock("train-rgb")),
        "train skel": (lambda: run_train(cfg, "skel"), paths.lock("train-skel")),
        "scores rgb": (lambda: run_scores(cfg, "rgb"), paths.lock("scores-rgb")),
        "scores skel": (lambda: run_scores(cfg, "skel"), paths.lock("scores-skel")),
        "fuse": (lambda: run_fuse(cfg), paths.lock("fusion")),
        "report": (lambda: run_report(cfg), paths.lock("report")),
    }


@pytest.mark.parametrize("name", ["train rgb", "train skel", "scores rgb", "scores skel", "fuse", "report"])
def test_each_stage_is_refused_while_its_lock_is_held_and_only_then(tmp_path, name):
    from mmfc.config import load_pipeline

    cfg = load_pipeline(None, [f"workdir={tmp_path}"])
    table = runners(cfg)
    run, path = table[name]
    with lock.hold(path, "the other run"):
        with pytest.raises(DataError, match=r"\(the other run, since .*\) is writing here"):
            run()
    # The other branch's lock (make -j2 train-rgb train-skel) does not stand in the way: the
    # run goes on to find its input missing.
    twin = {"train rgb": "train skel", "train skel": "train rgb", "scores rgb": "scores skel", "scores skel": "scores rgb"}
    if name in twin:
        with lock.hold(table[twin[name]][1], "the other branch"):
            with pytest.raises(DataError, match="no stage-1 output|no such checkpoint"):
                run()


def test_the_pose_stage_takes_its_lock(tmp_path, pose_models):
    from mmfc.config import load_pipeline
    from mmfc.poses.stage import run_poses

    cfg = load_pipeline(None, [f"workdir={tmp_path}", "data.source=videos", "data.layout=coco17", f"data.root={tmp_path}",
                               f"poses.models_dir={json.dumps(str(pose_models))}"])
    with lock.hold(cfg.paths.lock("poses"), "the other run"):
        with pytest.raises(DataError, match="is writing here"):
            run_poses(cfg)
