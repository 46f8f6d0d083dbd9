"""Stage 0: poses for a dataset of plain videos (data.source = "videos"), as a PYSKL pickle.

Each video is one job (mmfc.jobs, on the backend of the pipeline's [jobs] section): estimate and track
everyone's pose (mmfc/poses/video_poses.py) and write the result to poses/videos/<video>.pkl,
atomically. That file records the video's size and mtime, the digest of the pose settings
(Pipeline.digest) and the model files' hashes; a rerun skips every video whose file is current,
so a killed run keeps each finished video and redoes none. A video that cannot be read, or where nobody is found, is a failure: recorded the
same way, listed in poses/failures.parquet and shown at the end; the others go on.

Then poses/poses.pkl is assembled from the per-video files: a PYSKL pose pickle
({'split': {'train', 'val', 'test'}, 'annotations': [...]}) that mmfc.data.pose_pickle reads and
stages 1 to 4 take through the videos source. 'train' lists the whole training side (as PYSKL
splits do), 'val' the part of it carved out for validation. The pickle is only rewritten when
its content changes, so make sees stage 1 as out of date only then.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

from mmfc import atomic
from mmfc.config import ConfigError, Pipeline
from mmfc.data.pickles import load_pickle
from mmfc.data.sample import Sample
from mmfc.data.sources import open_source
from mmfc.data.decoding import probe_video
from mmfc.errors import DataError
from mmfc.jobs import PerWorker, print_failures, run_jobs
from mmfc.poses.video_poses import estimate_poses
from mmfc.poses.frame_poses import BlazePose, EstimatorSettings
from mmfc.poses.model_files import MODEL_FILES, model_paths
from mmfc.poses.preview import write_preview
from mmfc.stage_frame import Stage, run_stage

PICKLE = "poses.pkl"
VIDEOS = "videos"
FAILURES = "failures.parquet"
PREVIEW = "preview.png"
FAILURE_SCHEMA = pa.schema([("id", pa.string()), ("file", pa.string()), ("reason", pa.string())])


@dataclass(frozen=True)
class PoseJob:
    """What every video job of a run shares: picklable, no live handles."""

    videos_dir: Path
    settings: EstimatorSettings
    layout: str
    digest: str
    # The models are loaded once per worker process, not sent with every video.
    models: PerWorker[BlazePose]


# What a video's poses depend on besides the video and the model files.
POSE_SETTINGS = ("poses", "data.layout")
# The model files' hashes: a new estimator version that brings models (as the close-up path did)
# redoes every video.
MODELS = {name: sha for name, (_, sha) in MODEL_FILES.items()}


def poses_stage(cfg: Pipeline) -> Stage:
    """Stage 0 makes no part of a trained run by itself: stage 1 saves the pipeline."""
    return Stage("poses", "mmfc stage poses", lock="poses", settings=POSE_SETTINGS,
                 outputs=(cfg.paths.poses, cfg.paths.poses / VIDEOS), saves_pipeline=False)


def result_name(sample_id: str) -> str:
    """A file name for a sample id (which may hold '/'): readable, and unique by its hash."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id)[-80:]
    return f"{readable}-{hashlib.sha1(sample_id.encode()).hexdigest()[:8]}.pkl"


def video_signature(sample: Sample, digest: str) -> dict:
    """What a video's result is made from: the video (its size and mtime), the settings (their
    digest) and the model files (their hashes)."""
    try:
        st = os.stat(sample.video_path)
        size, mtime = st.st_size, st.st_mtime_ns
    except (OSError, TypeError):
        size, mtime = -1, -1
    return {"id": sample.id, "video": str(sample.video_path), "size": size, "mtime": mtime, "digest": digest,
            "models": MODELS}


def read_result(path: Path) -> dict | None:
    """A per-video result file, or None when there is none or it is unreadable."""
    try:
        return load_pickle(path)  # refuses any global but numpy's arrays: a pickle can run code
    except DataError:  # a file from another version, damaged, or not ours: redo the video
        return None


# ---------------------------------------------------------------------------------------------
# One video


def worker_models(models_dir: Path) -> BlazePose:
    """The models of one job worker, which runs them, its cut-outs and its decoder on one thread
    each: the stage's parallelism is its workers (OpenCV's default, a thread per core in every
    worker, would make n_jobs workers compete for the same cores)."""
    cv2.setNumThreads(1)
    return BlazePose(models_dir, threads=1)


def pose_video(sample: Sample, job: PoseJob) -> dict:
    """Estimate one video and write its result file. -> the result (without the arrays)."""
    result = {"signature": video_signature(sample, job.digest), "id": sample.id}
    started = time.perf_counter()
    try:
        fps = probe_video(sample.video_path).fps or 30.0
        tracks = estimate_poses(
            sample.video_path, None, job.settings.max_persons, job.layout, settings=job.settings,
            models=job.models.get(),
        )
        if tracks.num_persons == 0:
            raise DataError(sample.video_path, f"nobody found in any of its {tracks.total_frames} frames")
        result.update(status="ok", annotation=tracks.annotation(sample.id, sample.label, fps), frames=tracks.total_frames,
                      persons=tracks.num_persons, file="", reason="")
    except DataError as exc:
        result.update(status="failed", annotation=None, frames=0, persons=0, file=exc.path, reason=exc.reason)
    except cv2.error as exc:  # a frame OpenCV decoded but cannot process (an odd pixel format)
        result.update(status="failed", annotation=None, frames=0, persons=0, file=str(sample.video_path),
                      reason=f"OpenCV could not process a frame: {exc.msg or exc}")
    result["seconds"] = time.perf_counter() - started
    atomic.write_bytes(job.videos_dir / result_name(sample.id), pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    return {k: v for k, v in result.items() if k != "annotation"}


# ---------------------------------------------------------------------------------------------
# The stage


def run_poses(cfg: Pipeline, strict: bool = False, preview: int = 0) -> int:
    """Stage 0 over every video of the pipeline's data. -> exit code."""
    console = Console(stderr=True)
    with run_stage(cfg, poses_stage(cfg), console):
        if cfg.data.source != "videos":
            raise ConfigError(f"stage poses is for data.source = 'videos' (plain videos); this pipeline's is {cfg.data.source!r}")
        model_paths(cfg.poses.models_dir)  # missing models: one message naming `make setup-pose`, before any job
        return _run_poses(cfg, strict, preview, console)


def _run_poses(cfg: Pipeline, strict: bool, preview: int, console: Console) -> int:
    poses_dir = cfg.paths.poses
    videos_dir = poses_dir / VIDEOS
    videos_dir.mkdir(parents=True, exist_ok=True)
    source = open_source(cfg.data)
    samples = sorted(source.samples(), key=lambda s: s.id)
    if not samples:
        raise DataError(cfg.data.root, "the data source lists no videos")
    p = cfg.poses
    settings = EstimatorSettings.of(p)
    job = PoseJob(videos_dir, settings, cfg.data.layout, cfg.digest(*POSE_SETTINGS),
                  PerWorker(worker_models, (p.models_dir,)))
    names = {s.id: result_name(s.id) for s in samples}
    for stale in set(f.name for f in videos_dir.glob("*.pkl")) - set(names.values()):
        (videos_dir / stale).unlink()

    results: dict[str, dict] = {}
    todo = []
    for s in samples:
        found = read_result(videos_dir / names[s.id])
        if found is not None and found["signature"] == video_signature(s, job.digest):
            results[s.id] = found
        else:
            todo.append(s)
    # Frame counts weigh the jobs on the progress bar (frames/s); opening every container is
    # I/O, so threads do it.
    sizes = [0] * len(todo)
    for position, frames in run_jobs(_frames, [(s,) for s in todo], backend="threading", n_jobs=cfg.jobs.n_jobs,
                                     title="probing", unit="videos", console=console):
        sizes[position] = frames
    started = time.perf_counter()
    fresh = {}
    for position, result in run_jobs(
        pose_video, [(s, job) for s in todo], backend=cfg.jobs.backend, n_jobs=cfg.jobs.n_jobs,
        title="poses", unit="frames", sizes=sizes, console=console,
    ):
        fresh[todo[position].id] = result
    elapsed = time.perf_counter() - started
    for sample_id in fresh:  # the workers wrote them; read back with their arrays
        results[sample_id] = read_result(videos_dir / names[sample_id])

    ok = [results[s.id] for s in samples if results[s.id]["status"] == "ok"]
    failed = [{k: results[s.id][k] for k in ("id", "file", "reason")} for s in samples if results[s.id]["status"] == "failed"]
    write_pickle(poses_dir / PICKLE, samples, {r["id"]: r["annotation"] for r in ok})
    write_failures(poses_dir / FAILURES, failed)
    summarize(console, poses_dir, list(fresh.values()), len(samples) - len(fresh), ok, failed, elapsed)
    if preview > 0 and ok:
        by_id = {s.id: s for s in samples}
        picks = [ok[k] for k in np.linspace(0, len(ok) - 1, min(preview, len(ok))).round().astype(int)]
        rows = [(r["annotation"], by_id[r["id"]].video_path, source.class_names[by_id[r["id"]].label]) for r in picks]
        console.print(f"preview: {write_preview(poses_dir / PREVIEW, rows, cfg.data.layout)}", markup=False)
    if not ok or (strict and failed):
        return 1
    return 0


def _frames(sample: Sample) -> int:
    """The video's frame count, to weigh its job on the progress bar (1 if it cannot be read)."""
    try:
        return max(probe_video(sample.video_path).frames, 1)
    except DataError:
        return 1


def write_pickle(path: Path, samples: list[Sample], annotations: dict[str, dict]) -> None:
    """The PYSKL pickle of every video with poses; left alone when its content is unchanged."""
    split = {
        "train": [s.id for s in samples if s.split in ("train", "val") and s.id in annotations],
        "val": [s.id for s in samples if s.split == "val" and s.id in annotations],
        "test": [s.id for s in samples if s.split == "test" and s.id in annotations],
    }
    data = pickle.dumps(
        {"split": split, "annotations": [annotations[s.id] for s in samples if s.id in annotations]},
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    if path.is_file() and path.read_bytes() == data:
        return
    atomic.write_bytes(path, data)


def write_failures(path: Path, failed: list[dict]) -> None:
    table = pa.Table.from_pylist(failed, schema=FAILURE_SCHEMA)
    with atomic.atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def summarize(console: Console, poses_dir: Path, fresh: list[dict], skipped: int, ok: list[dict],
              failed: list[dict], elapsed: float) -> None:
    print_failures(console, failed, f"{len(failed)} videos failed (no poses; {FAILURES})", str(poses_dir / FAILURES))
    done = [r for r in fresh if r["status"] == "ok"]
    frames = sum(r["frames"] for r in done)
    rate = frames / elapsed if elapsed > 0 and frames else 0.0
    persons = {}
    for r in ok:
        persons[r["persons"]] = persons.get(r["persons"], 0) + 1
    tracked = ", ".join(f"{count} with {m} {'person' if m == 1 else 'persons'}" for m, count in sorted(persons.items()))
    console.print(
        f"poses: {len(done)} videos done ({frames} frames, {rate:.1f} frames/s), {skipped} skipped (unchanged), "
        f"{len(failed)} failed; {len(ok)} videos in {poses_dir / PICKLE} ({tracked or 'none'})", markup=False
    )
