"""Stage 1: skeleton-guided crops and normalised skeletons of every sample into zarr shards.

Samples are sorted by id and cut into batches of `samples_per_shard`; batch k is shard k, so
the assignment only moves when samples are added or removed. A shard is redone when its part
file is missing or any of its samples changed (source file size or mtime, or crop settings);
otherwise it is skipped. Each job (mmfc.jobs) crops one batch (mmfc.crops.crop) and writes one
complete shard (mmfc.crops.store).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
from rich.console import Console

from mmfc import atomic
from mmfc.config import CropConfig, Pipeline
from mmfc.crops import store
from mmfc.crops.crop import CropJob, crop_sample
from mmfc.crops.preview import write_preview
from mmfc.data.sample import Sample
from mmfc.data.sources import Source, open_source
from mmfc.errors import DataError
from mmfc.jobs import PerWorker, print_failures, run_jobs

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
class ShardTask:
    """What every shard job of a run shares: picklable, no live handles."""

    crops_dir: Path
    job: CropJob
    digest: str
    # The data source lists every sample of the dataset: each worker opens it once per run
    # rather than receiving it with every job.
    source: PerWorker[Source]


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


def crop_batch(samples: list[Sample], name: str, task: ShardTask) -> list[dict]:
    """Crop a batch, write its shard, then its part file. -> the part's rows."""
    source = task.source.get()
    writer = store.ShardWriter(task.crops_dir, name, len(samples), task.job.crops.jpeg_quality)
    rows = []
    try:
        for slot, sample in enumerate(samples):
            row = {**sample_signature(sample, task.digest), "shard": name, "position": slot}
            try:
                stored, fields = crop_sample(source, sample, task.job)
            except DataError as exc:
                rows.append({**row, "status": "failed", "file": exc.path, "reason": exc.reason})
                continue
            writer.add(slot, stored)
            rows.append({**row, **fields, "status": "ok", "file": "", "reason": ""})
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    store.write_part(task.crops_dir, name, rows, ROW_SCHEMA)
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


def run_crops(cfg: Pipeline, strict: bool = False, preview: int = 0) -> int:
    """Stage 1 over every sample of the pipeline's data. -> exit code."""
    console = Console(stderr=True)
    crops_dir = cfg.paths.crops
    opener = PerWorker(open_source, (cfg.data,))
    source = opener.get()  # a sequential run (n_jobs=1) crops with this very source
    samples = sorted(source.samples(), key=lambda s: s.id)
    if not samples:
        raise DataError(cfg.data.root, "the data source lists no samples")
    for sub in (store.SHARDS, store.PARTS):
        (crops_dir / sub).mkdir(parents=True, exist_ok=True)
    job = CropJob(cfg.crops, cfg.data.max_bodies)
    task = ShardTask(crops_dir, job, crop_digest(cfg), opener)
    size = cfg.crops.samples_per_shard
    batches = {store.shard_name(k): samples[i : i + size] for k, i in enumerate(range(0, len(samples), size))}
    remove_stale(crops_dir, set(batches))
    parts = store.read_parts(crops_dir)
    todo = [name for name, batch in batches.items() if not batch_is_current(parts.get(name), batch, task.digest)]
    for name in todo:
        # The part goes first: from here on this shard counts as not done until rewritten.
        (crops_dir / store.PARTS / f"{name}.parquet").unlink(missing_ok=True)

    started = time.perf_counter()
    fresh = run_batches({n: batches[n] for n in todo}, task, cfg.crops, console)
    parts.update(fresh)
    elapsed = time.perf_counter() - started

    rows = [row for name in batches for row in parts[name]]
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [{"id": r["id"], "file": r["file"], "reason": r["reason"]} for r in rows if r["status"] == "failed"]
    write_outputs(crops_dir, cfg, source, ok, failed)
    fresh_rows = [r for part in fresh.values() for r in part]
    summarize(console, crops_dir, fresh_rows, len(rows) - len(fresh_rows), ok, failed, elapsed)
    if preview > 0 and ok:
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


def run_batches(batches: dict[str, list[Sample]], task: ShardTask, crops: CropConfig, console: Console) -> dict[str, list[dict]]:
    """Crop the batches on the configured backend, with a progress bar. -> rows by shard name."""
    names = list(batches)
    done = run_jobs(
        crop_batch, [(batches[name], name, task) for name in names], backend=crops.backend, n_jobs=crops.n_jobs,
        title="crops", unit="samples", sizes=[len(batches[name]) for name in names], console=console,
    )
    return {names[position]: rows for position, rows in done}


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
    print_failures(console, failed, f"{len(failed)} samples failed (not stored; {store.FAILURES})",
                   str(crops_dir / store.FAILURES))
    console.print(
        f"crops: {done} done, {skipped} skipped (unchanged), {len(failed)} failed; "
        f"{written / 1e6:.1f} MB written, {per_sample:.3f} MB/sample on disk, "
        f"{len(ok)} samples stored in {crops_dir} ({rate:.1f} samples/s)"
    )
