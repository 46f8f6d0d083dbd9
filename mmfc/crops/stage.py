"""Stage 1: skeleton-guided crops and normalised skeletons of every sample into zarr shards.

Samples are sorted by id and cut into batches of `samples_per_shard`; batch k is shard k, so
the assignment only moves when samples are added or removed. A batch is redone when its part
file is missing, any of its samples changed (source file size or mtime, or crop settings), or
its store fails the check (every file at its recorded size and mtime; `verify`: its sha256);
otherwise it is skipped. Each job (mmfc.jobs) crops one batch (mmfc.crops.crop) and writes one
complete store under a new name, then its part file (mmfc.crops.store). Only the driver writes
the index, and only then are stores that nothing names any more removed. A dataset of which no
sample has a video is stored as skeletons alone (the index's "modalities" says so).

`crops.part = "k/n"` crops only every n-th batch from the k-th: drivers on several machines
share one workdir, each with its own part, and a run without a part assembles the index (it
crops whatever no part did). The crops folder is locked (mmfc.lock): exclusively by a whole
run, shared by part runs, each of which also holds the lock of its own part.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
from rich.console import Console
from rich.markup import escape

from mmfc import atomic, lock
from mmfc.config import JobsConfig, Pipeline
from mmfc.crops import store
from mmfc.crops.crop import CropJob, crop_sample
from mmfc.crops.preview import write_preview
from mmfc.cores import available_memory, usable_cores
from mmfc.data.decoding import probe_video
from mmfc.data.sample import Sample
from mmfc.data.sources import Source, open_source
from mmfc.errors import DataError, DiskFull, format_bytes
from mmfc.jobs import PerWorker, print_failures, run_jobs
from mmfc.stage_frame import Stage, run_stage

# What could not be stored ("failed") and what was stored with a warning ("warning").
FAILURE_SCHEMA = pa.schema([("id", pa.string()), ("file", pa.string()), ("reason", pa.string()), ("status", pa.string())])
# One row per sample of a part file; index.parquet holds the "ok" ones. A failed sample has
# no crop fields (null). `shard` names the store, `shard_digest` the sha256 of its manifest.
# `group` (the sample's, mmfc.data.sample.Sample) is set in the index alone, from the data source
# when the index is written: it changes nothing stored, so no batch is redone for it.
ROW_SCHEMA = pa.schema([
    ("id", pa.string()), ("label", pa.int64()), ("split", pa.string()), ("group", pa.string()),
    ("shard", pa.string()), ("shard_digest", pa.string()), ("position", pa.int64()), ("status", pa.string()),
    ("num_frames", pa.int64()), ("frame_indices", pa.list_(pa.int64())),
    ("box", pa.list_(pa.float64())),  # x0, y0, x1, y1 in decoded video pixels (no video: the skeleton's frame)
    ("video_width", pa.int64()), ("video_height", pa.int64()), ("video_frames", pa.int64()),  # null: no video
    ("skeleton_frames", pa.int64()),
    ("skeleton_file", pa.string()), ("skeleton_size", pa.int64()), ("skeleton_mtime", pa.int64()),
    ("video_file", pa.string()), ("video_size", pa.int64()), ("video_mtime", pa.int64()),
    ("digest", pa.string()), ("file", pa.string()), ("reason", pa.string()), ("warning", pa.string()),
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


SIGNATURE_KEYS = tuple(sample_signature(Sample("", 0, "train", None, None, ""), "").keys())


def crop_batch(samples: list[Sample], batch: str, task: ShardTask) -> list[dict]:
    """Crop a batch into a new store, then write its part file. -> the part's rows."""
    source = task.source.get()
    path = store.new_store_path(task.crops_dir, batch)
    rows = []
    with atomic.atomic_path(path) as tmp:
        writer = store.ShardWriter(tmp, len(samples), task.job.crops.jpeg_quality)
        for slot, sample in enumerate(samples):
            row = {**sample_signature(sample, task.digest), "shard": path.stem, "position": slot}
            try:
                stored, fields = crop_sample(source, sample, task.job)
            except DataError as exc:
                rows.append({**row, "status": "failed", "file": exc.path, "reason": exc.reason, "warning": ""})
                continue
            writer.add(slot, stored)
            rows.append({**row, **fields, "status": "ok", "file": str(sample.video_path or ""), "reason": ""})
        digest = writer.finish([s.id for s in samples])
    rows = [{**row, "shard_digest": digest} for row in rows]
    store.write_part(task.crops_dir, batch, rows, ROW_SCHEMA)
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


# What a stored crop depends on besides its sample's files (the digest in every part row).
CROP_SETTINGS = ("crops", "data.skeleton_frame_size", "data.layout", "data.declared_layout", "data.max_bodies")
# The batch number in the name of a shard's store or part file (store.shard_name).
SHARD_NUMBER = re.compile(r"shard-(\d+)[-.]")


def crop_digest(cfg: Pipeline, video: bool) -> str:
    """The digest of CROP_SETTINGS, told apart for a store of skeletons alone (CropJob.video):
    a dataset that gains its videos is cropped anew."""
    digest = cfg.digest(*CROP_SETTINGS)
    return digest if video else hashlib.sha256(f"{digest} skeletons only".encode()).hexdigest()[:16]


def crops_stage(cfg: Pipeline, part: tuple[int, int] | None) -> Stage:
    """A part run owns only its own shards' and part files' temporary files (others write beside)."""
    crops_dir = cfg.paths.crops

    def own(target: str) -> bool:
        found = SHARD_NUMBER.match(target)
        return found is not None and int(found[1]) % part[1] == part[0] - 1

    return Stage("crops", "mmfc stage crops", lock="crops", settings=CROP_SETTINGS,
                 outputs=(crops_dir, crops_dir / store.SHARDS, crops_dir / store.PARTS),
                 own=None if part is None else own)


def run_crops(cfg: Pipeline, strict: bool = False, preview: int = 0, verify: bool = False) -> int:
    """Stage 1 over every sample of the pipeline's data (or over one part of it). -> exit code

    `verify` checks every stored shard's files by content (sha256), not only by size and mtime."""
    console = Console(stderr=True)
    crops_dir = cfg.paths.crops
    part = cfg.crops.part_of()
    with run_stage(cfg, crops_stage(cfg, part), console, hold=crops_lock(cfg.paths.lock("crops"), part, console)):
        return _run_crops(cfg, crops_dir, part, strict, preview, verify, console)


def _run_crops(cfg: Pipeline, crops_dir: Path, part: tuple[int, int] | None, strict: bool, preview: int,
               verify: bool, console: Console) -> int:
    opener = PerWorker(open_source, (cfg.data,))
    source = opener.get()  # a sequential run (n_jobs=1) crops with this very source
    samples = sorted(source.samples(), key=lambda s: s.id)
    if not samples:
        raise DataError(cfg.data.root, "the data source lists no samples")
    for sub in (store.SHARDS, store.PARTS):
        (crops_dir / sub).mkdir(parents=True, exist_ok=True)
    # A dataset of which no sample has a video is stored as skeletons alone.
    job = CropJob.of(cfg, video=any(s.video_path is not None for s in samples))
    task = ShardTask(crops_dir, job, crop_digest(cfg, job.video), opener)
    if not job.video:
        console.print("no sample of the data has a video: storing skeletons only, for the branches that need no "
                      "video (a pose pickle's data.video_root, or an NTU root's nturgb+d_rgb/, gives none)", markup=False)
    size = cfg.crops.samples_per_shard
    batches = {store.shard_name(k): samples[i : i + size] for k, i in enumerate(range(0, len(samples), size))}
    mine = batches if part is None else {
        name: batch for k, (name, batch) in enumerate(batches.items()) if k % part[1] == part[0] - 1
    }
    if part is None:
        remove_stale(crops_dir, set(batches))
    parts = store.read_parts(crops_dir)
    todo = []
    for name, batch in mine.items():
        if not batch_is_current(parts.get(name), batch, task.digest):
            todo.append(name)
            continue
        first = parts[name][0]
        problem = store.check_store(crops_dir / store.SHARDS / f"{first['shard']}.zarr", first["shard_digest"],
                                    mtimes=True, contents=verify)
        if problem:
            console.print(f"[yellow]{escape(first['shard'])}[/]: {escape(problem)}; redoing it", highlight=False)
            todo.append(name)

    check_memory(cfg, [batches[n] for n in todo])
    started = time.perf_counter()
    fresh: dict[str, list[dict]] = {}
    try:
        run_batches({n: batches[n] for n in todo}, task, cfg.jobs, console, fresh)
    except DiskFull as exc:
        raise stage_disk_full(exc, crops_dir, fresh, sum(len(batches[n]) for n in todo if n not in fresh)) from None
    parts.update(fresh)
    elapsed = time.perf_counter() - started

    rows = [row for name in mine for row in parts[name]]
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [{"id": r["id"], "file": r["file"], "reason": r["reason"], "status": "failed"} for r in rows if r["status"] == "failed"]
    if part is None:  # files the source could not place in a split: failed, never in a shard
        failed += [{"id": Path(file).stem, "file": file, "reason": reason, "status": "failed"}
                   for file, reason in source.unreadable.items()]
    warned = [{"id": r["id"], "file": r["file"], "reason": r["warning"], "status": "warning"} for r in ok if r["warning"]]
    fresh_rows = [r for rows_ in fresh.values() for r in rows_]
    if part is not None:
        summarize(console, crops_dir, fresh_rows, len(rows) - len(fresh_rows), ok, failed, warned, elapsed)
        console.print(f"part {part[0]}/{part[1]}: {len(mine)} of {len(batches)} shards; run `mmfc stage crops` "
                      "without crops.part once every part is done, to assemble the index", markup=False)
        return 0 if ok or not rows else 1
    group_of = {sample.id: sample.group for sample in samples}
    write_outputs(crops_dir, cfg, source, job.video, [{**row, "group": group_of[row["id"]]} for row in ok], failed + warned)
    remove_unnamed_stores(crops_dir)
    summarize(console, crops_dir, fresh_rows, len(rows) - len(fresh_rows), ok, failed, warned, elapsed)
    if preview > 0 and ok:
        path = write_preview(crops_dir, source, {s.id: s for s in samples}, job, preview)
        console.print(f"preview: {path}", markup=False)
    if not ok or (strict and failed):
        return 1
    return 0


@contextlib.contextmanager
def crops_lock(main: Path, part: tuple[int, int] | None, console: Console) -> Iterator[None]:
    """The whole stage holds the crops' lock alone; a part run holds it shared, with its own
    part's lock, and is refused beside parts of another split (whose shards would overlap)."""
    with contextlib.ExitStack() as held:
        if part is None:
            try:
                held.enter_context(lock.hold(main, "mmfc stage crops", console=console))
            except DataError:
                holders = [h for h in map(lock.holder, sorted(main.parent.glob(f"{main.name}-part-*"))) if h]
                if not holders:
                    raise
                raise DataError(main, f"part runs are writing here: {'; '.join(holders)}; "
                                      "assemble the index once they have ended") from None
        else:
            k, n = part
            what = f"mmfc stage crops, part {k}/{n}"
            held.enter_context(lock.hold(main, what, shared=True, console=console))
            held.enter_context(lock.hold(main.with_name(f"{main.name}-part-{k}-of-{n}"), what, console=console))
            for other in sorted(main.parent.glob(f"{main.name}-part-*")):
                if not other.name.endswith(f"-of-{n}") and (holder := lock.holder(other)):
                    raise DataError(other, f"{holder} crops a part of another split; the parts of one run share n")
        yield


# Copies of a sample's decoded frames a worker holds at once (read, then stacked into one array),
# beside the crops rendered from them.
FRAME_COPIES = 2


def check_memory(cfg: Pipeline, todo: list[list[Sample]]) -> None:
    """Refuse, before any work, a run whose workers would need more memory than this machine has
    free: each holds one sample's crops.num_frames decoded frames (at the size of the first
    video) and their crops at once. On a cluster each worker must fit on its own."""
    free = available_memory()
    video = next((s.video_path for batch in todo for s in batch if s.video_path is not None), None)
    if free is None or video is None:
        return
    try:
        info = probe_video(video)
    except DataError:
        return  # the sample's own job records it
    c = cfg.crops
    per_worker = c.num_frames * (info.width * info.height * 3 * FRAME_COPIES + c.size * c.size * 3)
    local = cfg.jobs.backend not in ("ray", "dask")
    cores = usable_cores()
    workers = min(len(todo), cores if cfg.jobs.n_jobs == -1 else min(cfg.jobs.n_jobs, cores)) if local else 1
    if per_worker * workers > free:
        raise DataError(cfg.paths.crops, f"stage 1 would need about {format_bytes(per_worker * workers)} of memory at "
                                         f"once ({workers} worker(s), each holding crops.num_frames = {c.num_frames} "
                                         f"frames of {info.width}x{info.height} and their {c.size} px crops), and "
                                         f"this machine has {format_bytes(free)} free: lower crops.num_frames, "
                                         "crops.size or jobs.n_jobs")


def stage_disk_full(exc: DiskFull, crops_dir: Path, fresh: dict[str, list[dict]], samples_left: int) -> DiskFull:
    """The disk filled up: how much more the stage needs, from what this run's shards took."""
    stored = [r for rows in fresh.values() for r in rows]
    names = {r["shard"] for r in stored}
    per_sample = sum(atomic.bytes_in(crops_dir / store.SHARDS / f"{n}.zarr") for n in names) / max(len(stored), 1)
    if not stored:  # nothing finished in this run: judge by what earlier runs stored, if anything
        earlier = store.read_index_rows(crops_dir)
        per_sample = atomic.bytes_in(crops_dir / store.SHARDS) / max(len(earlier), 1) if earlier else 0
    if not per_sample:
        return exc
    return DiskFull(exc.path, exc.free, f"stage 1 needs about {format_bytes(per_sample * samples_left)} more for the "
                                        f"{samples_left} samples not yet stored ({format_bytes(per_sample)} each so far)")


def remove_stale(crops_dir: Path, names: set[str]) -> None:
    """Part files of batches past the end (the dataset shrank), and stores that neither the index
    nor a part file names (a kill between a store and its part)."""
    for part in (crops_dir / store.PARTS).glob("shard-*.parquet"):
        if part.stem not in names:
            part.unlink()
    remove_unnamed_stores(crops_dir)


def remove_unnamed_stores(crops_dir: Path) -> None:
    """Delete the stores that neither the index nor any part file names: the index read at any
    moment only names stores that are there."""
    named = {row["shard"] for row in store.read_index_rows(crops_dir)}
    named |= {row["shard"] for rows in store.read_parts(crops_dir).values() for row in rows}
    for path in (crops_dir / store.SHARDS).glob("shard-*.zarr"):
        if path.stem not in named:
            store.remove_store(path)


def run_batches(batches: dict[str, list[Sample]], task: ShardTask, jobs: JobsConfig, console: Console,
                done: dict[str, list[dict]]) -> None:
    """Crop the batches on the configured backend, with a progress bar, into `done` (rows by
    batch name) as each finishes: when one fails, `done` holds those that did not."""
    names = list(batches)
    for position, rows in run_jobs(
        crop_batch, [(batches[name], name, task) for name in names], backend=jobs.backend, n_jobs=jobs.n_jobs,
        title="crops", unit="samples", sizes=[len(batches[name]) for name in names], console=console,
    ):
        done[names[position]] = rows


def write_outputs(crops_dir: Path, cfg: Pipeline, source, video: bool, ok: list[dict], failures: list[dict]) -> None:
    """failures.parquet, then the index with the stage's metadata, switched in by one rename."""
    store.write_table_atomic(crops_dir / store.FAILURES, failures, schema=FAILURE_SCHEMA)
    store.write_table_atomic(crops_dir / store.INDEX, ok, schema=ROW_SCHEMA, metadata={
        "class_names": list(source.class_names),
        "num_classes": int(source.num_classes),
        "layout": source.layout.to_dict(),
        "group_kind": source.group_kind,
        "pose_source": source.pose_source,
        "crops": asdict(cfg.crops),
        "digest": crop_digest(cfg, video),
        "modalities": list(store.MODALITIES_WITH_VIDEO if video else store.SKELETON_ONLY),
    })


def summarize(console: Console, crops_dir: Path, fresh: list[dict], skipped: int, ok: list[dict],
              failed: list[dict], warned: list[dict], elapsed: float) -> None:
    done = sum(r["status"] == "ok" for r in fresh)
    written = sum(atomic.bytes_in(crops_dir / store.SHARDS / f"{n}.zarr") for n in {r["shard"] for r in fresh})
    total_bytes = atomic.bytes_in(crops_dir / store.SHARDS)
    per_sample = total_bytes / max(len(ok), 1) / 1e6
    rate = len(fresh) / elapsed if elapsed > 0 and fresh else 0.0
    table = str(crops_dir / store.FAILURES)
    print_failures(console, failed, f"{len(failed)} samples failed (not stored; {store.FAILURES})", table)
    print_failures(console, warned, f"{len(warned)} samples stored with a warning ({store.FAILURES})", table)
    console.print(
        f"crops: {done} done, {skipped} skipped (unchanged), {len(failed)} failed, {len(warned)} with a warning; "
        f"{written / 1e6:.1f} MB written, {per_sample:.3f} MB/sample on disk, "
        f"{len(ok)} samples stored in {crops_dir} ({rate:.1f} samples/s)", markup=False
    )
