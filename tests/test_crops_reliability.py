"""Stage 1 against a hostile user (issue 10): interrupted reruns, damaged shards, short and
truncated videos, a full disk, two runs at once, and one run split over two drivers."""

from __future__ import annotations

import errno
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import write_clip
from mmfc import atomic, lock
from mmfc.config import load_pipeline
from mmfc.crops import store
from mmfc.crops.stage import run_crops
from mmfc.crops.store import open_crops
from mmfc.data.decoding import read_frames
from mmfc.errors import DataError, DiskFull

REPO = Path(__file__).resolve().parents[1]


def sample_ids(synth_clips: Path) -> list[str]:
    return sorted(p.stem for p in (synth_clips / "nturgb+d_skeletons").glob("*.skeleton"))


def dataset(root: Path, synth_clips: Path, ids: list[str], videos: dict[str, Path] | None = None) -> Path:
    """An NTU layout linking the given samples of `synth_clips` (and replacement videos)."""
    videos = videos or {}
    for sub in ("nturgb+d_skeletons", "nturgb+d_rgb"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in ids:
        skeleton = root / "nturgb+d_skeletons" / f"{name}.skeleton"
        if not skeleton.exists():
            os.symlink(synth_clips / "nturgb+d_skeletons" / f"{name}.skeleton", skeleton)
            os.symlink(videos.get(name, synth_clips / "nturgb+d_rgb" / f"{name}_rgb.avi"), root / "nturgb+d_rgb" / f"{name}_rgb.avi")
    return root


SETTINGS = ["data.missing_list=", "data.class_names=", "data.num_classes=60", "data.val_performers=[]",
            "crops.size=32", "crops.num_frames=4", "crops.skeleton_frames=8", "crops.samples_per_shard=2", "jobs.n_jobs=1"]


def pipeline(root: Path, workdir: Path, *extra: str):
    return load_pipeline(None, [f"data.root={json.dumps(str(root))}", f"workdir={json.dumps(str(workdir))}", *SETTINGS, *extra])


def read_by_id(crops_dir: Path) -> dict[str, list[np.ndarray]]:
    crops = open_crops(crops_dir)
    return {r["id"]: [crops.rgb(i), crops.skeleton(i), crops.keypoints(i), crops.frame_indices(i)]
            for i, r in enumerate(crops.index)}


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        for a, b in zip(got[name], want[name]):
            np.testing.assert_array_equal(a, b)


def said(capfd) -> str:
    """What the stage printed since last asked, with rich's line wrapping undone."""
    return " ".join(capfd.readouterr().err.split())


def stores_on_disk(crops_dir: Path) -> set[str]:
    return {p.stem for p in (crops_dir / store.SHARDS).glob("shard-*.zarr")}


def stores_named(crops_dir: Path) -> set[str]:
    return {r["shard"] for r in pq.read_table(crops_dir / store.INDEX).to_pylist()}


@pytest.fixture(scope="module")
def reference(synth_clips, tmp_path_factory) -> dict:
    """Every sample, cropped by one uninterrupted run."""
    tmp = tmp_path_factory.mktemp("reference")
    root = dataset(tmp / "data", synth_clips, sample_ids(synth_clips)[:7])
    assert run_crops(pipeline(root, tmp / "work")) == 0
    return read_by_id(tmp / "work" / "crops")


# ---------------------------------------------------------------------------------------------
# Issue 10.2: the index never names data that is not there


class Killed(BaseException):
    """Stands for a kill: raised just before a rename or removal, nothing after it runs."""


def kill_at(monkeypatch, event: int) -> itertools.count:
    """Interrupt the stage before its `event`-th rename into place or store removal."""
    count = itertools.count()
    move, remove = atomic.move_into_place, getattr(store, "remove_store", None)

    def counted(real):
        def step(*args):
            if next(count) == event:
                raise Killed
            return real(*args)
        return step

    monkeypatch.setattr(atomic, "move_into_place", counted(move))
    monkeypatch.setattr(store, "remove_store", counted(remove), raising=False)
    return count


@pytest.mark.slow
def test_a_rerun_killed_at_any_step_leaves_an_index_naming_only_what_is_there(tmp_path, synth_clips, reference, monkeypatch):
    ids = sample_ids(synth_clips)[:7]
    base = tmp_path / "base"
    root = dataset(tmp_path / "data", synth_clips, ids[1:])
    assert run_crops(pipeline(root, base)) == 0
    dataset(root, synth_clips, [ids[0]])  # a new sample sorts first: every batch shifts by one

    probe = tmp_path / "probe"
    shutil.copytree(base, probe)
    events = kill_at(monkeypatch, -1)
    assert run_crops(pipeline(root, probe)) == 0
    monkeypatch.undo()
    steps = next(events)
    assert steps >= 8  # stores and parts of 4 batches, the index, removals of the old stores

    for event in range(steps):
        work = tmp_path / f"killed-{event}"
        shutil.copytree(base, work)
        kill_at(monkeypatch, event)
        with pytest.raises(Killed):
            run_crops(pipeline(root, work))
        monkeypatch.undo()
        crops_dir = work / "crops"
        # Whatever index is there now, each row it names reads back as that very sample.
        got = read_by_id(crops_dir)
        assert got and all(name in reference for name in got)
        assert_same(got, {name: reference[name] for name in got})
        assert run_crops(pipeline(root, work)) == 0, f"the rerun after a kill at step {event} failed"
        assert_same(read_by_id(crops_dir), reference)
        assert stores_on_disk(crops_dir) == stores_named(crops_dir)  # nothing unnamed is kept


def test_the_reader_refuses_a_store_that_is_not_the_one_the_index_names(tmp_path, synth_clips):
    ids = sample_ids(synth_clips)[:4]
    root = dataset(tmp_path / "data", synth_clips, ids)
    cfg = pipeline(root, tmp_path / "work")
    assert run_crops(cfg) == 0
    crops_dir = cfg.paths.crops
    first, second = sorted(stores_on_disk(crops_dir))
    # Batch 1's store put where batch 0's is named: same shape, other samples.
    shutil.rmtree(crops_dir / store.SHARDS / f"{first}.zarr")
    shutil.copytree(crops_dir / store.SHARDS / f"{second}.zarr", crops_dir / store.SHARDS / f"{first}.zarr")
    crops = open_crops(crops_dir)
    with pytest.raises(DataError, match=rf"{first}.zarr: damaged shard store: .*not the one the index names; "
                                        rf"it holds 2 stored samples \({ids[0]} to {ids[1]}\)"):
        crops.rgb(0)
    np.testing.assert_array_equal(crops.skeleton(2), open_crops(crops_dir).skeleton(2))  # the other store reads


# ---------------------------------------------------------------------------------------------
# Issue 10.3: damaged shards are found, named and redone


@pytest.mark.slow
def test_damaged_shards_are_named_by_the_reader_and_redone_by_a_rerun(tmp_path, synth_clips, reference, capfd):
    ids = sample_ids(synth_clips)[:7]
    root = dataset(tmp_path / "data", synth_clips, ids)
    cfg = pipeline(root, tmp_path / "work")
    crops_dir = cfg.paths.crops
    assert run_crops(cfg) == 0
    first, second, *_ = sorted(stores_on_disk(crops_dir))
    shards = crops_dir / store.SHARDS

    # A chunk file cut in half, and another one deleted.
    rgb = shards / f"{first}.zarr" / "rgb" / "c" / "0" / "0" / "0" / "0" / "0"
    rgb.write_bytes(rgb.read_bytes()[: rgb.stat().st_size // 2])
    skeleton = shards / f"{second}.zarr" / "skeleton" / "c" / "0" / "0" / "0" / "0" / "0"
    skeleton.unlink()
    crops = open_crops(crops_dir)
    with pytest.raises(DataError, match=rf"{first}.zarr: damaged shard store: rgb/c/0/0/0/0/0 is \d+ bytes, \d+ when "
                                        rf"written; it holds 2 stored samples \({ids[0]} to {ids[1]}\); rerun `mmfc stage crops`"):
        crops.rgb(1)
    with pytest.raises(DataError, match=rf"{second}.zarr: .*skeleton/c/0/0/0/0/0 is missing"):
        crops.skeleton(2)  # never zeros
    assert crops.skeleton(4).any()  # an undamaged store still reads

    capfd.readouterr()
    assert run_crops(cfg) == 0
    err = said(capfd)
    assert f"{first}: rgb/c/0/0/0/0/0 is" in err and f"{second}: skeleton/c/0/0/0/0/0 is missing; redoing it" in err
    assert "crops: 4 done, 3 skipped" in err
    assert_same(read_by_id(crops_dir), reference)
    assert first not in stores_on_disk(crops_dir) and second not in stores_on_disk(crops_dir)

    # Bytes changed in place, size and mtime kept: the cheap check cannot see it, --verify can;
    # and the reader turns the decode error into one message naming the store.
    first = sorted(stores_on_disk(crops_dir))[0]
    rgb = shards / f"{first}.zarr" / "rgb" / "c" / "0" / "0" / "0" / "0" / "0"
    stat = rgb.stat()
    data = bytearray(rgb.read_bytes())
    data[-10] ^= 0xFF  # inside the shard's chunk index, which carries a checksum
    rgb.write_bytes(bytes(data))
    os.utime(rgb, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(DataError, match=rf"{first}.zarr: damaged shard store: cannot decode rgb of {ids[0]} "
                                        r"\(ValueError: .*checksum.*\); it holds 2 stored samples"):
        open_crops(crops_dir).rgb(0)
    assert run_crops(cfg) == 0 and first in stores_on_disk(crops_dir)  # skipped: size and mtime agree
    capfd.readouterr()
    assert run_crops(cfg, verify=True) == 0 and first not in stores_on_disk(crops_dir)
    assert "does not hold what was written (sha256 differs); redoing it" in said(capfd)
    assert_same(read_by_id(crops_dir), reference)


# ---------------------------------------------------------------------------------------------
# Issue 10.4: short and truncated videos are recorded


def test_short_and_truncated_videos_fail_or_warn_with_their_counts(tmp_path, synth_clips):
    normal, short, slightly, cut = sample_ids(synth_clips)[:4]
    rgb = synth_clips / "nturgb+d_rgb"
    lengths = {name: int(Path(synth_clips / "nturgb+d_skeletons" / f"{name}.skeleton").read_text().split()[0])
               for name in (short, slightly, cut)}
    frames = {name: read_frames(rgb / f"{name}_rgb.avi", np.arange(lengths[name])) for name in lengths}
    keep = int(np.ceil(lengths[slightly] * 0.95))
    videos = {
        short: write_clip(tmp_path / "v" / f"{short}.avi", frames[short][:10], (160, 90)),
        slightly: write_clip(tmp_path / "v" / f"{slightly}.avi", frames[slightly][:keep], (160, 90)),
        cut: write_clip(tmp_path / "v" / f"{cut}.avi", frames[cut], (160, 90)),
    }
    videos[cut].write_bytes(videos[cut].read_bytes()[: videos[cut].stat().st_size // 2])
    root = dataset(tmp_path / "data", synth_clips, [normal, short, slightly, cut], videos)
    cfg = pipeline(root, tmp_path / "work")
    assert run_crops(cfg) == 0
    assert run_crops(cfg, strict=True) == 1

    rows = {r["id"]: r for r in pq.read_table(cfg.paths.crops / store.FAILURES).to_pylist()}
    assert sorted(rows) == sorted([short, slightly, cut])
    assert rows[short]["status"] == "failed" and rows[short]["file"] == str(root / "nturgb+d_rgb" / f"{short}_rgb.avi")
    assert rows[short]["reason"].startswith(f"the video decodes 10 frames, its skeleton has {lengths[short]}: under "
                                            "crops.min_video_fraction = 0.9")
    assert rows[cut]["status"] == "failed" and "under crops.min_video_fraction" in rows[cut]["reason"]
    assert rows[slightly]["status"] == "warning"
    assert rows[slightly]["reason"] == (f"the video decodes {keep} frames, its skeleton has {lengths[slightly]}; "
                                        f"stored from the {keep} frames there are")

    crops = open_crops(cfg.paths.crops)
    assert [r["id"] for r in crops.index] == [normal, slightly]
    assert crops.index[1]["video_frames"] == keep
    assert crops.frame_indices(1).max() < keep  # spread over the frames there are, no repeats
    assert len(set(crops.frame_indices(1).tolist())) == 4
    # A lower bound stores the truncated one with a warning instead.
    lenient = pipeline(root, tmp_path / "lenient", "crops.min_video_fraction=0.1")
    assert run_crops(lenient) == 0
    assert len(open_crops(lenient.paths.crops)) == 4


# ---------------------------------------------------------------------------------------------
# Issue 10.5: a full disk is one message, and a rerun finishes the stage


@pytest.mark.slow
def test_a_full_disk_in_stage_1_is_one_message_and_the_rerun_finishes(tmp_path, synth_clips, reference, monkeypatch):
    ids = sample_ids(synth_clips)[:7]
    root = dataset(tmp_path / "data", synth_clips, ids)
    cfg = pipeline(root, tmp_path / "work")
    crops_dir = cfg.paths.crops
    flushes = itertools.count()
    real = store.ShardWriter._flush

    def flush_until_full(writer):
        if next(flushes) == 1:  # the second batch finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(writer)

    monkeypatch.setattr(store.ShardWriter, "_flush", flush_until_full)
    with pytest.raises(DiskFull) as raised:
        run_crops(cfg)
    monkeypatch.undo()
    message = str(raised.value)
    assert message.startswith(str(crops_dir / store.SHARDS / "shard-00001-"))
    assert "the disk is full (" in message and " free there); stage 1 needs about " in message
    assert "more for the 5 samples not yet stored (" in message and "each so far)" in message
    # Nothing half-written: no temporary file, no store without its part file, no index.
    assert not list(crops_dir.rglob(".tmp-*")) and not (crops_dir / store.INDEX).exists()
    assert [p.stem for p in (crops_dir / store.PARTS).glob("*.parquet")] == ["shard-00000"]
    assert len(stores_on_disk(crops_dir)) == 1
    kept = stores_on_disk(crops_dir)

    assert run_crops(cfg) == 0
    assert kept <= stores_on_disk(crops_dir)  # the finished batch was kept, not redone
    assert_same(read_by_id(crops_dir), reference)


# ---------------------------------------------------------------------------------------------
# Issue 10.1: two runs on one workdir; issue 13.3: one run split over two drivers


def mmfc(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmfc", *args]


def cli_settings(root: Path, workdir: Path, *extra: str) -> list[str]:
    """The CLI's arguments for `pipeline(root, workdir, *extra)`: the defaults, overridden."""
    defaults = workdir.parent / "defaults.toml"
    defaults.write_text('name = "defaults"\n')
    return ["--pipeline", str(defaults), f"--set=data.root={root}", f"--set=workdir={workdir}",
            *(f"--set={s}" for s in (*SETTINGS, *extra))]


@pytest.mark.slow
def test_a_second_crops_run_on_the_same_workdir_is_refused_and_the_first_completes(tmp_path, synth_clips, reference):
    root = dataset(tmp_path / "data", synth_clips, sample_ids(synth_clips)[:7])
    work = tmp_path / "work"
    # The first run takes a second per sample, so it is surely still running when the second starts.
    slow = ("import sys, time; import mmfc.crops.stage as stage; from mmfc.cli import app\n"
            "crop = stage.crop_sample\n"
            "stage.crop_sample = lambda *args: (time.sleep(1), crop(*args))[1]\n"
            "app(sys.argv[1:])\n")
    first = subprocess.Popen([sys.executable, "-c", slow, "stage", "crops", *cli_settings(root, work)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock_file = work / ".locks" / "crops"
    deadline = time.monotonic() + 60
    while lock.holder(lock_file) is None and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.poll() is None, "the first run ended before the second started"
    second = subprocess.run(mmfc("stage", "crops", *cli_settings(root, work)), cwd=REPO, capture_output=True, text=True)
    assert first.wait(timeout=120) == 0, first.stderr.read()
    assert second.returncode == 2
    assert f"{lock_file}: pid {first.pid} on " in second.stderr and "(mmfc stage crops, since " in second.stderr
    assert "is writing here; wait for it to end or stop it" in second.stderr and "Traceback" not in second.stderr
    assert_same(read_by_id(work / "crops"), reference)


def comparable(rows: list[dict]) -> list[dict]:
    """Index rows without what names one particular store (fresh suffixes, file mtimes)."""
    return [{k: v for k, v in r.items() if k not in ("shard", "shard_digest")} for r in rows]


@pytest.mark.slow
def test_two_drivers_with_half_the_shards_each_then_a_merge_equal_one_run(tmp_path, synth_clips, reference, capfd):
    root = dataset(tmp_path / "data", synth_clips, sample_ids(synth_clips)[:7])
    whole = pipeline(root, tmp_path / "whole")
    assert run_crops(whole) == 0

    shared = tmp_path / "shared"
    drivers = [subprocess.Popen(mmfc("stage", "crops", *cli_settings(root, shared, f"crops.part={k}/2")), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    for driver in drivers:
        assert driver.wait(timeout=120) == 0, driver.stderr.read()
    crops_dir = shared / "crops"
    assert not (crops_dir / store.INDEX).exists()  # only a run without a part writes the index
    assert sorted(p.stem for p in (crops_dir / store.PARTS).glob("*.parquet")) == [f"shard-0000{k}" for k in range(4)]

    capfd.readouterr()
    merged = pipeline(root, shared)
    assert run_crops(merged) == 0
    assert "0 done, 7 skipped" in said(capfd)  # the merge crops nothing
    assert comparable(open_crops(crops_dir).index) == comparable(open_crops(whole.paths.crops).index)
    assert_same(read_by_id(crops_dir), reference)


@pytest.mark.slow
def test_part_runs_and_a_whole_run_keep_out_of_each_other(tmp_path, synth_clips):
    root = dataset(tmp_path / "data", synth_clips, sample_ids(synth_clips)[:4])
    locks = tmp_path / "work" / ".locks"
    with lock.hold(locks / "crops", "part", shared=True), lock.hold(locks / "crops-part-1-of-2", "mmfc stage crops, part 1/2"):
        with pytest.raises(DataError, match=r"part runs are writing here: pid \d+ .*part 1/2"):
            run_crops(pipeline(root, tmp_path / "work"))
        with pytest.raises(DataError, match="crops a part of another split"):
            run_crops(pipeline(root, tmp_path / "work", "crops.part=1/3"))
        assert run_crops(pipeline(root, tmp_path / "work", "crops.part=2/2")) == 0  # the other half: welcome
    with lock.hold(locks / "crops", "mmfc stage crops"):
        with pytest.raises(DataError, match="is writing here"):
            run_crops(pipeline(root, tmp_path / "work", "crops.part=1/2"))
