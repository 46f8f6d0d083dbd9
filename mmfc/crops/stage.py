"""Stage 1: skeleton-guided crops and normalised skeletons of every sample into zarr shards.

Samples are sorted by id and cut into batches of `samples_per_shard`; batch k is shard k, so
the assignment only moves when samples are added or removed. A shard is redone when its part
file is missing or any of its samples changed (source file size or mtime, or crop settings);
otherwise it is skipped. Each joblib task crops one batch and writes one complete shard.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from mmfc import atomic
from mmfc.config import ConfigError, CropConfig, DataConfig, Pipeline
from mmfc.crops import store
from mmfc.crops.box import MODES, BoxParams, CropPlan, crop_keypoints, plan_crop, render
from mmfc.crops.skeleton import normalize_skeleton
from mmfc.data.sample import Sample, Skeleton
from mmfc.data.sources import open_source
from mmfc.data.video import VideoInfo, probe_video, read_frames, scale_pixels
from mmfc.errors import DataError

BACKENDS = ("loky", "threading", "multiprocessing", "ray", "dask")
SHOWN_FAILURES = 50
FAILURE_SCHEMA = pa.schema([("id", pa.string()), ("file", pa.string()), ("reason", pa.string())])
# One row per sample of a part file; index.parquet holds the "ok" ones. A failed sample has
# no crop fields (null).
ROW_SCHEMA = pa.schema([
    ("id", pa.string()), ("label", pa.int64()), ("split", pa.string()),
    ("shard", pa.string()), ("position", pa.int64()), ("status", pa.string()),
    ("num_frames", pa.int64()), ("frame_indices", pa.list_(pa.int64())),
    ("box", pa.list_(pa.float64())),  # x0, y0, x1, y1 in decoded video pixels
    ("video_width", pa.int64()), ("video_height", pa.int64()), ("video_frames", pa.int64()),
    ("skeleton_frames", pa.int64()),
    ("skeleton_file", pa.string()), ("skeleton_size", pa.int64()), ("skeleton_mtime", pa.int64()),
    ("video_file", pa.string()), ("video_size", pa.int64()), ("video_mtime", pa.int64()),
    ("digest", pa.string()), ("file", pa.string()), ("reason", pa.string()),
])


@dataclass(frozen=True)
class CropJob:
    """What a worker needs besides the samples: picklable, no live handles."""

    crops_dir: Path
    crops: CropConfig
    max_bodies: int
    digest: str
    run_id: str  # workers open the data source once per run


# ---------------------------------------------------------------------------------------------
# One sample


def stored_frame_indices(video_frames: int, count: int) -> np.ndarray:
    """`count` video frames spread evenly over the clip: the centre of each of `count` segments."""
    return np.floor((np.arange(count) + 0.5) * video_frames / count).astype(np.int64)


def nearest_skeleton_frames(
    skeleton_frames: np.ndarray, total_frames: int, stored: np.ndarray, video_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each stored video frame, the nearest skeleton frame and whether it is that very frame.

    The skeleton counts `total_frames` and the decoded video `video_frames`; they can differ by a
    few frames (NTU), so video positions are scaled onto the skeleton's clock first.
    -> (stored_t [F] indices into the skeleton sequence, present [F] bool)
    """
    at = np.round(stored * total_frames / max(video_frames, 1)).astype(np.int64)
    stored_t = np.abs(skeleton_frames[None, :] - at[:, None]).argmin(axis=1)
    return stored_t, skeleton_frames[stored_t] == at


@dataclass
class Prepared:
    """A sample's skeleton in video pixels and its crop plan, before any frame is decoded."""

    video: VideoInfo
    pixels: np.ndarray  # [M, T, V, 2] decoded-video pixels, at most max_bodies persons
    score: np.ndarray  # [M, T, V]
    stored: np.ndarray  # [F] video frame of each stored frame
    stored_t: np.ndarray  # [F] nearest skeleton frame
    present: np.ndarray  # [F] whether that skeleton frame is the stored frame itself
    plan: CropPlan


def prepare_sample(skel: Skeleton, sample: Sample, job: CropJob) -> Prepared:
    c = job.crops
    if skel.num_frames == 0:
        raise DataError(sample.skeleton_path or sample.id, "no body in any frame")
    if sample.video_path is None:
        raise DataError(sample.skeleton_path or sample.id, "no video file found for this sample")
    info = probe_video(sample.video_path)
    if info.frames <= 0:
        raise DataError(sample.video_path, "video has no frames")
    video_size = (info.width, info.height)
    # Keypoints were recorded in the skeleton's frame size; the decoded video may be smaller.
    pixels = scale_pixels(skel.pixels[: job.max_bodies], skel.frame_size, video_size)
    score = skel.score[: job.max_bodies]
    stored = stored_frame_indices(info.frames, c.num_frames)
    stored_t, present = nearest_skeleton_frames(skel.frame_indices, skel.total_frames, stored, info.frames)
    params = BoxParams(c.padding, c.hw_ratio, c.min_box, c.allow_pad)
    plan = plan_crop(pixels, score, stored_t, video_size, c.size, c.mode, params, c.smooth)
    return Prepared(info, pixels, score, stored, stored_t, present, plan)


def crop_sample(source, sample: Sample, job: CropJob) -> tuple[store.StoredSample, dict]:
    """Everything stage 1 stores about one sample, and its index fields. Raises DataError."""
    skel = source.load_skeleton(sample)
    p = prepare_sample(skel, sample, job)
    frames = read_frames(sample.video_path, p.stored)  # [F, H, W, 3]
    keypoints = np.zeros((job.max_bodies, len(p.stored), p.pixels.shape[2], 2), dtype=np.float32)
    keypoints[: p.pixels.shape[0]] = crop_keypoints(p.pixels, p.score, p.stored_t, p.present, p.plan)
    stored_sample = store.StoredSample(
        rgb=render(frames, p.plan),
        frame_indices=p.stored,
        skeleton=normalize_skeleton(skel, job.crops.skeleton_frames, job.max_bodies, job.crops.align),
        keypoints=keypoints,
    )
    row = {
        "num_frames": len(p.stored),
        "frame_indices": p.stored.tolist(),
        "box": list(p.plan.envelope()),
        "video_width": p.video.width,
        "video_height": p.video.height,
        "video_frames": p.video.frames,
        "skeleton_frames": skel.num_frames,
    }
    return stored_sample, row


# ---------------------------------------------------------------------------------------------
# One shard


def file_signature(path: Path | None) -> tuple[int, int]:
    """(size, mtime in ns) of a source file; (-1, -1) when there is none."""
    if path is None:
        return -1, -1
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


def sample_signature(sample: Sample, digest: str) -> dict:
    skel_size, skel_mtime = file_signature(sample.skeleton_path)
    video_size, video_mtime = file_signature(sample.video_path)
    return {
        "id": sample.id,
        "label": int(sample.label),
        "split": sample.split,
        "skeleton_file": str(sample.skeleton_path or ""),
        "skeleton_size": skel_size,
        "skeleton_mtime": skel_mtime,
        "video_file": str(sample.video_path or ""),
        "video_size": video_size,
        "video_mtime": video_mtime,
        "digest": digest,
    }


SIGNATURE_KEYS = tuple(sample_signature(Sample("", 0, "train", None, None), "").keys())


# The data source opened in this process for the current run: (run id, source). Workers are
# reused across batches (and across runs), and shipping an open source, which lists every
# sample of the dataset, with each task would cost more than the task itself.
_SOURCE: list = [None, None]


def worker_source(data: DataConfig, run_id: str):
    if _SOURCE[0] != run_id:
        _SOURCE[:] = [run_id, open_source(data)]
    return _SOURCE[1]


def crop_batch(data: DataConfig, samples: list[Sample], name: str, job: CropJob) -> list[dict]:
    """Crop a batch, write its shard, then its part file. -> the part's rows."""
    source = worker_source(data, job.run_id)
    writer = store.ShardWriter(job.crops_dir, name, len(samples), job.crops.jpeg_quality)
    rows = []
    try:
        for slot, sample in enumerate(samples):
            row = {**sample_signature(sample, job.digest), "shard": name, "position": slot}
            try:
                stored, fields = crop_sample(source, sample, job)
            except DataError as exc:
                rows.append({**row, "status": "failed", "file": exc.path, "reason": exc.reason})
                continue
            writer.add(slot, stored)
            rows.append({**row, **fields, "status": "ok", "file": "", "reason": ""})
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    store.write_part(job.crops_dir, name, rows, ROW_SCHEMA)
    return rows


def batch_is_current(part: list[dict] | None, samples: list[Sample], digest: str) -> bool:
    if part is None or [r["id"] for r in part] != [s.id for s in samples]:
        return False
    for row, sample in zip(part, samples):
        expected = sample_signature(sample, digest)
        if any(row[k] != expected[k] for k in SIGNATURE_KEYS):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# The stage


def crop_digest(cfg: Pipeline) -> str:
    """Hash of every setting that changes what is stored (not how it is computed)."""
    crops = asdict(cfg.crops)
    for key in ("n_jobs", "backend", "samples_per_shard"):
        crops.pop(key)
    data = {k: getattr(cfg.data, k) for k in ("skeleton_frame_size", "layout", "max_bodies")}
    text = json.dumps({"crops": crops, "data": data}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_crop_config(c: CropConfig) -> None:
    if c.mode not in MODES:
        raise ConfigError(f"crops.mode must be one of {', '.join(MODES)}, got {c.mode!r}")
    if c.backend not in BACKENDS:
        raise ConfigError(f"crops.backend must be one of {', '.join(BACKENDS)}, got {c.backend!r}")
    for key in ("size", "num_frames", "skeleton_frames", "samples_per_shard"):
        if getattr(c, key) < 1:
            raise ConfigError(f"crops.{key} must be at least 1, got {getattr(c, key)}")
    if not 1 <= c.jpeg_quality <= 100:
        raise ConfigError(f"crops.jpeg_quality must be in 1..100, got {c.jpeg_quality}")
    if c.padding < 0 or c.hw_ratio < 0 or not 0 <= c.smooth < 1:
        raise ConfigError("crops.padding and crops.hw_ratio must be >= 0 and crops.smooth in [0, 1)")


@contextlib.contextmanager
def joblib_backend(name: str):
    """joblib's backend for the run; ray and dask are imported only when picked.

    ray: `pip install ray`; register_ray() makes "ray" a joblib backend, and ray.init() inside
    it joins the cluster named by RAY_ADDRESS (or starts a local one). dask: `pip install
    distributed`; the Client connects to DASK_SCHEDULER_ADDRESS (or starts a local cluster).
    """
    client = None
    if name == "ray":
        from ray.util.joblib import register_ray

        register_ray()
    elif name == "dask":
        from distributed import Client

        client = Client(os.environ.get("DASK_SCHEDULER_ADDRESS"))
    try:
        with joblib.parallel_config(backend=name):
            yield
    finally:
        if client is not None:
            client.close()


class RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.completed / task.elapsed if task.elapsed and task.completed else 0.0
        return Text(f"{speed:.1f} samples/s", style="progress.data.speed")


def run_crops(cfg: Pipeline, strict: bool = False, preview: int = 0) -> int:
    """Stage 1 over every sample of the pipeline's data. -> exit code."""
    check_crop_config(cfg.crops)
    console = Console(stderr=True)
    crops_dir = cfg.paths.crops
    source = open_source(cfg.data)
    run_id = uuid.uuid4().hex
    _SOURCE[:] = [run_id, source]  # a sequential run (n_jobs=1) crops with this very source
    samples = sorted(source.samples(), key=lambda s: s.id)
    if not samples:
        raise DataError(cfg.data.root, "the data source lists no samples")
    for sub in (store.SHARDS, store.PARTS):
        (crops_dir / sub).mkdir(parents=True, exist_ok=True)
    job = CropJob(crops_dir, cfg.crops, cfg.data.max_bodies, crop_digest(cfg), run_id)
    size = cfg.crops.samples_per_shard
    batches = {store.shard_name(k): samples[i : i + size] for k, i in enumerate(range(0, len(samples), size))}
    remove_stale(crops_dir, set(batches))
    parts = store.read_parts(crops_dir)
    todo = [name for name, batch in batches.items() if not batch_is_current(parts.get(name), batch, job.digest)]
    for name in todo:
        # The part goes first: from here on this shard counts as not done until rewritten.
        (crops_dir / store.PARTS / f"{name}.parquet").unlink(missing_ok=True)

    started = time.perf_counter()
    fresh = run_batches(cfg.data, {n: batches[n] for n in todo}, job, console)
    parts.update(fresh)
    elapsed = time.perf_counter() - started

    rows = [row for name in batches for row in parts[name]]
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [{"id": r["id"], "file": r["file"], "reason": r["reason"]} for r in rows if r["status"] == "failed"]
    write_outputs(crops_dir, cfg, source, ok, failed)
    fresh_rows = [r for part in fresh.values() for r in part]
    summarize(console, crops_dir, fresh_rows, len(rows) - len(fresh_rows), ok, failed, elapsed)
    if preview > 0 and ok:
        from mmfc.crops.preview import write_preview

        path = write_preview(crops_dir, source, {s.id: s for s in samples}, job, preview)
        console.print(f"preview: {path}")
    if not ok or (strict and failed):
        return 1
    return 0


def remove_stale(crops_dir: Path, names: set[str]) -> None:
    """Shards left by an earlier run over more samples, and temp stores of a killed run."""
    for part in (crops_dir / store.PARTS).glob("shard-*.parquet"):
        if part.stem not in names:
            store.remove_shard(crops_dir, part.stem)
    for shard in (crops_dir / store.SHARDS).glob("shard-*.zarr"):
        if shard.stem not in names:
            store.remove_shard(crops_dir, shard.stem)
    for folder in (crops_dir / store.SHARDS, crops_dir / store.PARTS, crops_dir):
        atomic.remove_leftovers(folder)


def run_batches(data: DataConfig, batches: dict[str, list[Sample]], job: CropJob, console: Console) -> dict[str, list[dict]]:
    """Crop the batches in parallel with a progress bar. -> rows by shard name."""
    total = sum(len(b) for b in batches.values())
    results = {}
    columns = (
        TextColumn("crops"), BarColumn(), MofNCompleteColumn(), RateColumn(), TextColumn("left"), TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("crops", total=total)
        if not batches:
            return results
        with joblib_backend(job.crops.backend):
            parallel = joblib.Parallel(n_jobs=job.crops.n_jobs, return_as="generator_unordered")
            for rows in parallel(joblib.delayed(crop_batch)(data, b, n, job) for n, b in batches.items()):
                results[rows[0]["shard"]] = rows
                progress.advance(task, len(rows))
    return results


def write_outputs(crops_dir: Path, cfg: Pipeline, source, ok: list[dict], failed: list[dict]) -> None:
    store.write_meta(crops_dir, {
        "class_names": list(source.class_names),
        "num_classes": int(source.num_classes),
        "layout": cfg.data.layout,
        "crops": asdict(cfg.crops),
        "digest": crop_digest(cfg),
    })
    store.write_table_atomic(crops_dir / store.FAILURES, failed, schema=FAILURE_SCHEMA)
    store.write_table_atomic(crops_dir / store.INDEX, ok, schema=ROW_SCHEMA)


def summarize(console: Console, crops_dir: Path, fresh: list[dict], skipped: int, ok: list[dict],
              failed: list[dict], elapsed: float) -> None:
    done = sum(r["status"] == "ok" for r in fresh)
    written = sum(store.disk_bytes(crops_dir / store.SHARDS / f"{n}.zarr") for n in {r["shard"] for r in fresh})
    total_bytes = store.disk_bytes(crops_dir / store.SHARDS)
    per_sample = total_bytes / max(len(ok), 1) / 1e6
    rate = len(fresh) / elapsed if elapsed > 0 and fresh else 0.0
    if failed:
        table = Table(title=f"{len(failed)} samples failed (not stored; {store.FAILURES})")
        for col in ("id", "file", "reason"):
            table.add_column(col, overflow="fold")
        for f in failed[:SHOWN_FAILURES]:
            table.add_row(f["id"], f["file"], f["reason"])
        console.print(table)
        if len(failed) > SHOWN_FAILURES:
            console.print(f"... and {len(failed) - SHOWN_FAILURES} more in {crops_dir / store.FAILURES}")
    console.print(
        f"crops: {done} done, {skipped} skipped (unchanged), {len(failed)} failed; "
        f"{written / 1e6:.1f} MB written, {per_sample:.3f} MB/sample on disk, "
        f"{len(ok)} samples stored in {crops_dir} ({rate:.1f} samples/s)"
    )
