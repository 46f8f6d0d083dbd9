"""Stage 1 end to end on the real NTU clip S001C001P001R001A001: crop quality, downscaled video,
failures, kill-and-resume, and redoing only what changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from mmfc.config import load_pipeline
from mmfc.crops.box import kept_joints
from mmfc.crops.stage import run_crops
from mmfc.crops.store import open_crops
from mmfc.data.ntu import load_skeleton
from mmfc.data.decoding import read_frames
from conftest import REALDATA as REAL

CLIP = "S001C001P001R001A001"
SKELETON = REAL / "ntu_skeleton" / f"{CLIP}.skeleton"
VIDEO = REAL / "videos" / f"{CLIP}_rgb.avi"
SMALL = (480, 270)

pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real test data folder {REAL} is absent")


def ntu_root(root: Path, clips: dict[str, tuple[Path | None, Path | None]]) -> Path:
    """An NTU release layout holding links to the given skeleton and video files per name."""
    (root / "nturgb+d_skeletons").mkdir(parents=True)
    (root / "nturgb+d_rgb").mkdir()
    for name, (skeleton, video) in clips.items():
        if skeleton is not None:
            os.symlink(skeleton, root / "nturgb+d_skeletons" / f"{name}.skeleton")
        if video is not None:
            os.symlink(video, root / "nturgb+d_rgb" / f"{name}_rgb.avi")
    return root


def pipeline(root: Path, workdir: Path, *extra: str):
    return load_pipeline(None, [
        f"data.root={root}", f"workdir={workdir}", "data.missing_list=", "data.num_classes=60",
        "crops.size=64", "crops.num_frames=6", "crops.skeleton_frames=16", "jobs.n_jobs=1", *extra,
    ])


@pytest.fixture(scope="module")
def small_video(tmp_path_factory) -> Path:
    """The real clip downscaled to 480x270, as NTU releases are often stored."""
    frames = read_frames(VIDEO, np.arange(103))
    path = tmp_path_factory.mktemp("small") / f"{CLIP}_rgb.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, SMALL)
    for frame in frames:
        writer.write(cv2.cvtColor(cv2.resize(frame, SMALL, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def full_size_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    root = ntu_root(tmp / "ntu", {CLIP: (SKELETON, VIDEO)})
    assert run_crops(pipeline(root, tmp / "work")) == 0
    return open_crops(tmp / "work" / "crops")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


@pytest.mark.slow
def test_real_clip_crop_holds_the_whole_person(full_size_run):
    crops = full_size_run
    assert [r["id"] for r in crops.index] == [CLIP] and crops.index[0]["label"] == 0
    assert crops.class_names[0] == "drink water" and crops.layout.name == "ntu25"
    rgb, kp, skel = crops.rgb(0), crops.keypoints(0), crops.skeleton(0)
    assert rgb.shape == (6, 64, 64, 3) and kp.shape == (2, 6, 25, 2) and skel.shape == (3, 16, 25, 2)
    # Every joint the Kinect tracked at a stored frame is inside the crop.
    skeleton, _ = load_skeleton(SKELETON)
    at = np.searchsorted(skeleton.frame_indices, crops.frame_indices(0))
    tracked = kept_joints(skeleton.pixels[0, at], skeleton.score[0, at])  # [F, V]
    assert tracked.sum() > 100
    inside = kp[0][tracked]
    assert ((inside > 0) & (inside < 1)).all()
    # The person fills most of the crop: padding 0.25 leaves the extent at 1/1.25 of the side.
    span = inside.max(axis=0) - inside.min(axis=0)
    assert span.max() > 0.7
    box = crops.index[0]["box"]
    assert box[2] - box[0] == pytest.approx(box[3] - box[1])  # square
    assert rgb.mean() > 40  # real image content, not padding
    assert np.abs(skel[:, 0, 20, 0]).max() < 1e-6  # centred on joint 21 of the first frame


@pytest.mark.slow
def test_downscaled_video_gives_the_same_crop(tmp_path, small_video, full_size_run):
    root = ntu_root(tmp_path / "ntu", {CLIP: (SKELETON, small_video)})
    assert run_crops(pipeline(root, tmp_path / "work")) == 0
    small = open_crops(tmp_path / "work" / "crops")
    assert small.index[0]["video_width"] == SMALL[0]
    np.testing.assert_allclose(small.keypoints(0), full_size_run.keypoints(0), atol=0.01)
    assert psnr(small.rgb(0), full_size_run.rgb(0)) > 28


def test_failed_samples_are_listed_and_the_rest_stored(tmp_path, small_video):
    truncated = tmp_path / "truncated.skeleton"
    truncated.write_bytes(SKELETON.read_bytes()[:5000])
    root = ntu_root(tmp_path / "ntu", {
        CLIP: (SKELETON, small_video),
        "S001C001P001R002A001": (truncated, small_video),
        "S001C001P001R001A002": (SKELETON, None),
    })
    cfg = pipeline(root, tmp_path / "work")
    assert run_crops(cfg) == 0
    assert run_crops(cfg, strict=True) == 1
    crops = open_crops(tmp_path / "work" / "crops")
    assert [r["id"] for r in crops.index] == [CLIP]
    failures = pq.read_table(tmp_path / "work" / "crops" / "failures.parquet").to_pylist()
    assert sorted(f["id"] for f in failures) == ["S001C001P001R001A002", "S001C001P001R002A001"]
    assert all(f["reason"] and f["file"] for f in failures)


def test_nothing_succeeding_exits_non_zero(tmp_path, small_video):
    truncated = tmp_path / "truncated.skeleton"
    truncated.write_bytes(SKELETON.read_bytes()[:5000])
    root = ntu_root(tmp_path / "ntu", {CLIP: (truncated, small_video)})
    assert run_crops(pipeline(root, tmp_path / "work")) == 1


RESUME_NAMES = [f"S001C001P001R001A00{a}" for a in range(1, 5)]


def store_names(shards: Path) -> list[str]:
    """The store of each batch, in batch order (a redone batch gets a new name)."""
    return sorted(p.name for p in shards.glob("shard-*.zarr"))


def read_all(crops_dir: Path) -> dict[str, tuple]:
    crops = open_crops(crops_dir)
    return {r["id"]: (crops.rgb(i), crops.keypoints(i), crops.skeleton(i), r["box"]) for i, r in enumerate(crops.index)}


@pytest.mark.slow
def test_kill_then_resume_matches_an_uninterrupted_run(tmp_path, small_video):
    root = ntu_root(tmp_path / "ntu", {name: (SKELETON, small_video) for name in RESUME_NAMES})
    args = [f"--set=workdir={tmp_path / 'killed'}", *[f"--set={s}" for s in (
        f"data.root={root}", "data.missing_list=", "data.class_names=", "data.num_classes=60",
        "data.val_performers=[]", "crops.size=64", "crops.num_frames=6",
        "crops.skeleton_frames=16", "jobs.n_jobs=1", "crops.samples_per_shard=1",
    )]]
    command = [sys.executable, "-m", "mmfc", "stage", "crops", "--pipeline", "pipelines/synth.toml"]
    repo = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(command + args, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_part = tmp_path / "killed" / "crops" / "parts" / "shard-00000.parquet"
    deadline = time.monotonic() + 60
    while not first_part.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()
    process.wait()
    crops_dir = tmp_path / "killed" / "crops"
    assert first_part.exists() and not (crops_dir / "index.parquet").exists(), "the run ended before the kill"
    first_shard = store_names(crops_dir / "shards")[0]

    cfg = load_pipeline("pipelines/synth.toml", [a.removeprefix("--set=") for a in args])
    assert run_crops(cfg) == 0
    assert store_names(crops_dir / "shards")[0] == first_shard  # the finished shard was not redone
    assert not list(crops_dir.rglob(".tmp-*"))
    resumed = read_all(crops_dir)

    # The uninterrupted run also runs in parallel worker processes: same output either way.
    clean_cfg = load_pipeline(
        "pipelines/synth.toml",
        [a.removeprefix("--set=") for a in args] + [f"workdir={tmp_path / 'clean'}", "jobs.n_jobs=2"],
    )
    assert run_crops(clean_cfg) == 0
    clean = read_all(tmp_path / "clean" / "crops")
    assert sorted(resumed) == sorted(clean) == RESUME_NAMES
    for name in RESUME_NAMES:
        for a, b in zip(resumed[name], clean[name]):
            np.testing.assert_array_equal(a, b)


def test_rerun_skips_and_a_change_redoes_only_what_it_affects(tmp_path, small_video):
    videos = {}
    for name in RESUME_NAMES[:3]:
        videos[name] = tmp_path / f"{name}.avi"
        shutil.copy(small_video, videos[name])
    root = ntu_root(tmp_path / "ntu", {name: (SKELETON, videos[name]) for name in videos})
    cfg = pipeline(root, tmp_path / "work", "crops.samples_per_shard=1")
    shards = tmp_path / "work" / "crops" / "shards"

    def stamps() -> list[str]:
        names = store_names(shards)
        assert len(names) == 3
        return names

    assert run_crops(cfg) == 0
    before = stamps()
    index = tmp_path / "work" / "crops" / "index.parquet"
    index_stamp = index.stat().st_mtime_ns
    assert run_crops(cfg) == 0
    assert stamps() == before  # nothing changed, nothing rewritten
    assert index.stat().st_mtime_ns == index_stamp  # so make sees stage 2 as up to date

    os.utime(videos[RESUME_NAMES[1]], ns=(time.time_ns(), time.time_ns()))
    assert run_crops(cfg) == 0
    after = stamps()
    assert after[0] == before[0] and after[2] == before[2] and after[1] != before[1]

    padded = pipeline(root, tmp_path / "work", "crops.samples_per_shard=1", "crops.padding=0.5")
    assert run_crops(padded) == 0
    assert all(a != b for a, b in zip(stamps(), after))
    crops = open_crops(tmp_path / "work" / "crops")
    assert len(crops) == 3 and crops.config["padding"] == 0.5
