"""mmfc/stage_frame.py: the lock, leftovers, saved pipeline, timing and summary of every stage, and
the manifests that decide whether an output is current."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from mmfc import lock
from mmfc.config import load_pipeline
from mmfc.errors import DataError
from mmfc.stage_frame import Stage, manifest_path, run_stage, stale_reason
from mmfc.timings import read_timings

SETTINGS = ("data", "rgb")


def quiet() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=300), out


def example(tmp_path: Path, *overrides: str):
    cfg = load_pipeline(None, [f"workdir={json.dumps(str(tmp_path / 'run'))}", *overrides])
    output = cfg.paths.root / "things" / "a.txt"
    stage = Stage("things", "mmfc stage things", lock="things", settings=SETTINGS, outputs=(output,))
    return cfg, stage, output


def produce(cfg, stage, output: Path, inputs=(), text: str = "made") -> None:
    with run_stage(cfg, stage, quiet()[0]) as run:
        with run.producing(output, inputs):
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text)


def test_a_run_holds_the_lock_times_itself_saves_the_pipeline_and_sums_up(tmp_path):
    cfg, stage, output = example(tmp_path)
    console, out = quiet()
    with run_stage(cfg, stage, console) as run:
        with pytest.raises(DataError, match=r"\(mmfc stage things, since .*\) is writing here"):
            with lock.hold(cfg.paths.lock("things"), "another run"):
                pass
        run.summary = "3 things made"
    assert out.getvalue() == "things: 3 things made\n"
    assert json.loads(cfg.paths.pipeline.read_text())["workdir"] == cfg.workdir
    assert [(row["stage"], row["ok"]) for row in read_timings(cfg.paths.timings)] == [("things", True)]
    with pytest.raises(RuntimeError), run_stage(cfg, stage, console) as run:
        run.summary = "never printed"
        raise RuntimeError("the work failed")
    assert [(row["stage"], row["ok"]) for row in read_timings(cfg.paths.timings)] == [("things", False)]
    assert "never printed" not in out.getvalue()
    assert lock.holder(cfg.paths.lock("things")) is None  # released either way


def test_a_stage_that_saves_no_pipeline_leaves_it_alone(tmp_path):
    cfg, stage, _ = example(tmp_path)
    with run_stage(cfg, replace(stage, saves_pipeline=False), quiet()[0]):
        pass
    assert not cfg.paths.pipeline.exists()


def test_leftovers_of_the_outputs_are_cleared_and_only_theirs(tmp_path):
    cfg = load_pipeline(None, [f"workdir={json.dumps(str(tmp_path))}"])
    folder, file = tmp_path / "folder", tmp_path / "scores" / "rgb.parquet"
    folder.mkdir()
    file.parent.mkdir()
    left = [folder / ".tmp-0123abcd-x.bin", file.parent / ".tmp-0123abcd-rgb.parquet",
            file.parent / ".tmp-0123abcd-rgb.parquet.manifest.json", tmp_path / ".tmp-0123abcd-folder"]
    kept = [file.parent / ".tmp-0123abcd-skel.parquet", folder / "x.bin"]  # another run's; a finished file
    for path in left + kept:
        path.write_text("half")
    stage = Stage("s", "mmfc stage s", lock="s", settings=(), outputs=(folder, file))
    with run_stage(cfg, stage, quiet()[0]):
        assert not [path for path in left if path.exists()] and all(path.exists() for path in kept)


def test_a_part_run_clears_only_what_its_filter_owns(tmp_path):
    cfg = load_pipeline(None, [f"workdir={json.dumps(str(tmp_path))}"])
    folder = tmp_path / "shards"
    folder.mkdir()
    mine, theirs = folder / ".tmp-0123abcd-shard-00001-ab.zarr", folder / ".tmp-0123abcd-shard-00002-ab.zarr"
    for path in (mine, theirs):
        path.write_text("half")
    stage = Stage("s", "mmfc stage s", lock="s", settings=(), outputs=(folder,), own=lambda t: "00001" in t)
    with run_stage(cfg, stage, quiet()[0]):
        assert not mine.exists() and theirs.exists()


def test_rank_0_alone_goes_through_the_frame(tmp_path):
    cfg, stage, output = example(tmp_path)
    console, out = quiet()
    with lock.hold(cfg.paths.lock("things"), "rank 0"):  # the other ranks take no lock
        with run_stage(cfg, stage, console, main=False) as run:
            with run.producing(output):
                output.parent.mkdir(parents=True)
                output.write_text("rank 1 wrote this")
            run.summary = "from rank 1"
    assert out.getvalue() == "" and not manifest_path(output).exists()
    assert not cfg.paths.pipeline.exists() and not cfg.paths.timings.exists()


# ---------------------------------------------------------------------------------------------
# Current or stale, from the manifest


def test_an_output_is_current_until_a_setting_that_shapes_it_changes(tmp_path):
    cfg, stage, output = example(tmp_path)
    produce(cfg, stage, output)
    assert stale_reason(output, cfg, SETTINGS) is None
    manifest = json.loads(manifest_path(output).read_text())
    assert manifest["digest"] == cfg.digest(*SETTINGS) and manifest["settings"]["rgb"]["train"]["lr"] == 0.01
    # Threads, workers, the jobs backend, another workdir: how the run goes, not what it makes.
    for how in (["rgb.train.threads=3", "rgb.train.loader_workers=0"], ["jobs.n_jobs=1", "jobs.backend=threading"]):
        assert stale_reason(output, load_pipeline(None, [f"workdir={cfg.workdir}", *how]), SETTINGS) is None
    # Sections the stage does not depend on do not matter either.
    assert stale_reason(output, load_pipeline(None, [f"workdir={cfg.workdir}", "skel.train.lr=0.5"]), SETTINGS) is None
    changed = load_pipeline(None, [f"workdir={cfg.workdir}", "rgb.train.lr=0.02", "data.val_seed=3"])
    assert stale_reason(output, changed, SETTINGS) == "made with other settings: data.val_seed, rgb.train.lr"


def test_an_output_is_stale_once_an_input_changes_or_goes(tmp_path):
    cfg, stage, output = example(tmp_path)
    source = tmp_path / "source.bin"
    source.write_bytes(b"one")
    produce(cfg, stage, output, inputs=[source])
    assert stale_reason(output, cfg, SETTINGS) is None
    source.write_bytes(b"two")
    assert stale_reason(output, cfg, SETTINGS) == f"its input {source} changed since"
    source.write_bytes(b"one")
    assert stale_reason(output, cfg, SETTINGS) is None  # the same bytes again
    source.unlink()
    assert stale_reason(output, cfg, SETTINGS) == f"its input {source} is gone"


def test_the_inputs_are_found_again_when_the_run_moves(tmp_path):
    cfg, stage, output = example(tmp_path)
    source = cfg.paths.root / "inputs" / "source.bin"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"one")
    produce(cfg, stage, output, inputs=[source])
    (tmp_path / "run").rename(tmp_path / "moved")
    moved = load_pipeline(None, [f"workdir={json.dumps(str(tmp_path / 'moved'))}"])
    assert stale_reason(tmp_path / "moved" / "things" / "a.txt", moved, SETTINGS) is None


def test_without_its_manifest_an_output_is_stale(tmp_path):
    cfg, stage, output = example(tmp_path)
    assert stale_reason(output, cfg, SETTINGS) == "it does not exist"
    produce(cfg, stage, output)
    manifest_path(output).write_text("{")
    assert stale_reason(output, cfg, SETTINGS).startswith("a.txt.manifest.json is unreadable")
    manifest_path(output).unlink()
    assert "a.txt.manifest.json is missing" in stale_reason(output, cfg, SETTINGS)


def test_a_failed_write_leaves_no_manifest_not_even_the_old_one(tmp_path):
    cfg, stage, output = example(tmp_path)
    produce(cfg, stage, output)
    with pytest.raises(RuntimeError), run_stage(cfg, stage, quiet()[0]) as run:
        with run.producing(output):
            output.write_text("half of the new")  # as a stage writing several files would leave it
            raise RuntimeError("killed")
    assert not manifest_path(output).exists() and stale_reason(output, cfg, SETTINGS) is not None
