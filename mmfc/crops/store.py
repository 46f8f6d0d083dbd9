"""Stage-1 storage: zarr v3 shard stores, their Parquet index, and the reader stage 2 uses.

Layout of the crops folder:
    shards/shard-00012-3f9a01c2.zarr/   batch 12 of N samples as written by one run (a fresh
                               suffix each time: a finished store is never rewritten in place)
        rgb [N, F, S, S, 3] uint8, one JPEG per frame, SAMPLES_PER_FILE samples per shard file
                               (absent from the stores of a dataset without videos)
        skeleton [N, C, T, V, M] float32, keypoints [N, M, F, V, 2] float32, frame_indices [N, F]
        manifest.json          the id in each slot, and size, mtime and sha256 of every file
    parts/shard-00012.parquet  the rows of batch 12 (stored and failed), naming its store and the
                               sha256 of that store's manifest; written once the store is in place
    index.parquet              the stored rows of every part, each with its sample's group, and
                               the stage's metadata (class names, the joint layout whole, what
                               the groups are, the pose source, crop settings, the modalities
                               held: "video" and "skeleton", or "skeleton" alone); the one file
                               a reader opens first
    failures.parquet           id, file, reason of what could not be read, and of the samples
                               stored with a warning (a video shorter than its skeleton)
Every file and store appears under its final name only once complete (mmfc.atomic). A store is
removed only once neither the index nor a part file names it, so the index read at any moment
names only stores that are there; the reader checks that each one it opens is the store the
index names (the manifest's digest and the slot's id) and whole (every file there, at its size).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr
from zarr.codecs import ZstdCodec
from zarr.core.sync import sync

from mmfc import atomic
from mmfc.config import ConfigError
from mmfc.crops.codec import JpegCodec, decode_frames, encode_frames
from mmfc.data.layouts import Layout, stored_layout
from mmfc.errors import DataError

SHARDS = "shards"
PARTS = "parts"
INDEX = "index.parquet"
FAILURES = "failures.parquet"
MANIFEST = "manifest.json"
# The key of the stage's metadata in index.parquet's schema.
META_KEY = "mmfc.crops"


# What a store holds (the index's "modalities"): frames and skeletons, or skeletons alone.
MODALITIES_WITH_VIDEO = ("video", "skeleton")
SKELETON_ONLY = ("skeleton",)


@dataclass
class StoredSample:
    rgb: np.ndarray | None  # [F, S, S, 3] uint8; None in a store without video
    frame_indices: np.ndarray  # [F] int64, video frame of each stored frame
    skeleton: np.ndarray  # [C, T, V, M] float32
    keypoints: np.ndarray  # [M, F, V, 2] float32, crop-normalised


def shard_name(number: int) -> str:
    return f"shard-{number:05d}"


def write_table_atomic(path: Path, rows: list[dict], schema: pa.Schema, metadata: dict | None = None) -> None:
    """Write rows as Parquet atomically, with `metadata` (JSON) in the file's schema; an identical
    file is left alone, so its mtime only moves when its content does (make decides from mtimes
    whether stage 2 is out of date)."""
    if metadata is not None:
        schema = schema.with_metadata({META_KEY: json.dumps(metadata, sort_keys=True)})
    table = pa.Table.from_pylist(rows, schema=schema)
    if path.is_file():
        try:
            old = pq.read_table(path)
            if old.equals(table) and old.schema.metadata == table.schema.metadata:
                return
        except (pa.ArrowInvalid, OSError):
            pass  # unreadable: overwrite it
    with atomic.atomic_path(path) as tmp:
        pq.write_table(table, tmp)


# ---------------------------------------------------------------------------------------------
# Writing


# Samples per zarr shard file inside a shard store. A block is encoded and written in one go
# (a partial write would rewrite the whole file), so this bounds a worker's memory to a block
# of raw frames (16 x 32 x 256 x 256 x 3 = 100 MB) while keeping files few and large.
SAMPLES_PER_FILE = 16
SMALL_ARRAYS = ("skeleton", "keypoints", "frame_indices")


def new_store_path(crops_dir: Path, batch: str) -> Path:
    """A name no store of this batch has had: a rerun writes beside the old store, never over it."""
    return crops_dir / SHARDS / f"{batch}-{uuid.uuid4().hex[:8]}.zarr"


class ShardWriter:
    """Builds one shard store for a batch of samples in the (temporary) folder `path`.

    The sample in slot k of the batch is stored at position k; a slot that is never filled (a
    failed sample) stays all zero. `finish` writes the manifest last and returns its digest.
    """

    def __init__(self, path: Path, slots: int, jpeg_quality: int):
        self.path = path
        self.group = zarr.open_group(path, mode="w")
        self.slots = slots
        self.jpeg_quality = jpeg_quality
        self.rgb: zarr.Array | None = None
        self.block: dict[int, np.ndarray] = {}  # slot -> rgb, the block not yet written
        # slot -> the small arrays, written at the end; frames are not kept past their block.
        self.small: dict[int, dict[str, np.ndarray]] = {}

    def add(self, slot: int, sample: StoredSample) -> None:
        self.small[slot] = {key: getattr(sample, key) for key in SMALL_ARRAYS}
        if sample.rgb is None:  # a store without video
            return
        if self.rgb is None:
            self.rgb = self._create_rgb(sample.rgb.shape)
        if self.block and slot // SAMPLES_PER_FILE != next(iter(self.block)) // SAMPLES_PER_FILE:
            self._flush()
        self.block[slot] = sample.rgb

    def _create_rgb(self, frames_shape: tuple[int, ...]) -> zarr.Array:
        shape = (self.slots, *frames_shape)
        # One frame per inner chunk: a training clip of 8 out of 32 frames decodes only those 8.
        return self.group.create_array(
            "rgb", shape=shape, dtype="uint8", chunks=(1, 1, *frames_shape[1:]),
            shards=(SAMPLES_PER_FILE, *frames_shape), serializer=JpegCodec(quality=self.jpeg_quality),
            compressors=None, fill_value=0,
            # Checking every frame for all-zero costs more than its JPEG; a failed slot's black
            # frames take about 1 kB. Every file is then written, so a missing one is damage.
            config={"write_empty_chunks": True},
        )

    def _flush(self) -> None:
        first = next(iter(self.block)) // SAMPLES_PER_FILE * SAMPLES_PER_FILE
        stop = min(first + SAMPLES_PER_FILE, self.slots)
        frames = next(iter(self.block.values()))
        data = np.zeros((stop - first, *frames.shape), dtype=np.uint8)  # [B, F, S, S, 3]
        for slot, rgb in self.block.items():
            data[slot - first] = rgb
        self.rgb[first:stop] = data
        self.block = {}

    def finish(self, ids: list[str]) -> str:
        """Write what is left and the manifest (`ids`: the sample of each slot). -> its digest"""
        if self.block:
            self._flush()
        if self.small:
            for key in SMALL_ARRAYS:
                self._write_small(key)
        files = {}
        for file in sorted(f for f in self.path.rglob("*") if f.is_file()):
            st = file.stat()
            with open(file, "rb") as fh:
                sha = hashlib.file_digest(fh, "sha256").hexdigest()
            files[file.relative_to(self.path).as_posix()] = [st.st_size, st.st_mtime_ns, sha]
        data = json.dumps({"ids": ids, "files": files}, indent=1).encode()
        (self.path / MANIFEST).write_bytes(data)
        return hashlib.sha256(data).hexdigest()[:16]

    def _write_small(self, key: str) -> None:
        example = next(iter(self.small.values()))[key]
        data = np.zeros((self.slots, *example.shape), dtype=example.dtype)
        for slot, arrays in self.small.items():
            data[slot] = arrays[key]
        self.group.create_array(
            key, shape=data.shape, dtype=data.dtype, chunks=(1, *data.shape[1:]), shards=data.shape,
            compressors=ZstdCodec(level=3), fill_value=0,
        )[:] = data


def check_store(path: Path, digest: str, *, mtimes: bool, contents: bool) -> str | None:
    """Whether the store at `path` is the one whose manifest has `digest`, with every file at its
    recorded size (and mtime, when `mtimes`; a file whose mtime moved is checked by content).
    `contents` checks every file's sha256. -> what is wrong, in words, or None"""
    try:
        data = (path / MANIFEST).read_bytes()
    except FileNotFoundError:
        return "the store or its manifest is missing"
    if hashlib.sha256(data).hexdigest()[:16] != digest:
        return f"its {MANIFEST} is not the one the index names"
    for name, (size, mtime, sha) in json.loads(data)["files"].items():
        try:
            st = os.stat(path / name)
        except FileNotFoundError:
            return f"{name} is missing"
        if st.st_size != size:
            return f"{name} is {st.st_size} bytes, {size} when written"
        if contents or (mtimes and st.st_mtime_ns != mtime):
            with open(path / name, "rb") as fh:
                if hashlib.file_digest(fh, "sha256").hexdigest() != sha:
                    return f"{name} does not hold what was written (sha256 differs)"
    return None


def remove_store(path: Path) -> None:
    """Take a store out of sight with one rename, then delete it (a kill leaves a .tmp- leftover)."""
    hidden = atomic.temp_sibling(path)
    os.replace(path, hidden)
    atomic.discard(hidden)


def write_part(crops_dir: Path, batch: str, rows: list[dict], schema: pa.Schema) -> None:
    write_table_atomic(crops_dir / PARTS / f"{batch}.parquet", rows, schema)


def read_parts(crops_dir: Path) -> dict[str, list[dict]]:
    """The rows of every finished batch, by batch name (an unreadable part counts as not done)."""
    parts = {}
    for path in sorted((crops_dir / PARTS).glob("shard-*.parquet")):
        try:
            parts[path.stem] = pq.read_table(path).to_pylist()
        except (pa.ArrowInvalid, OSError):
            continue
    return parts


def read_index_rows(crops_dir: Path) -> list[dict]:
    """The index's rows, or none when it is absent or unreadable (used to keep what it names)."""
    try:
        return pq.read_table(crops_dir / INDEX).to_pylist()
    except (FileNotFoundError, pa.ArrowInvalid, OSError):
        return []


# ---------------------------------------------------------------------------------------------
# Reading


class CropStore:
    """Random access to stage-1 output by position in `index`.

    Zarr arrays are opened on first use in each process (and dropped when pickled), so a store
    handed to DataLoader workers opens its own file handles in each worker. Each shard store is
    checked when first opened (check_store: the one the index names, every file at its size), and
    any error while reading it becomes one DataError naming the store and the samples it holds.
    """

    def __init__(self, crops_dir: str | Path):
        self.root = Path(crops_dir)
        index_path = self.root / INDEX
        if not index_path.exists():
            raise DataError(index_path, "no stage-1 output here; run `mmfc stage crops` first")
        try:
            table = pq.read_table(index_path)
            meta = json.loads((table.schema.metadata or {})[META_KEY.encode()])
        except (pa.ArrowInvalid, OSError, KeyError, json.JSONDecodeError) as exc:
            raise DataError(index_path, f"not a stage-1 index of this mmfc version ({exc}); rerun `mmfc stage crops`") from None
        if "group" not in table.column_names or "group_kind" not in meta:
            raise DataError(index_path, "written by an older mmfc, without the samples' groups; rerun `mmfc stage crops` "
                                        "(it keeps the stored shards and rewrites the index)")
        self.index: list[dict] = table.to_pylist()
        self.class_names: list[str] = meta["class_names"]
        try:
            self.layout: Layout = stored_layout(meta["layout"], "its joint layout")
        except ConfigError as exc:
            raise DataError(index_path, f"{exc}; rerun `mmfc stage crops`") from None
        # What the index rows' `group` are: "performer", "source video", "group".
        self.group_kind: str = meta["group_kind"]
        # Which sensor or estimator the skeletons came from (mmfc.data.sample); "" in an index
        # written before stage 1 recorded it.
        self.pose_source: str = meta.get("pose_source", "")
        self.num_classes: int = meta["num_classes"]
        self.config: dict = meta["crops"]
        # Stores written before stage 1 could store skeletons alone all hold video.
        self.modalities: tuple[str, ...] = tuple(meta.get("modalities", MODALITIES_WITH_VIDEO))
        # shard -> (slot, id) of each of its stored samples
        self._by_shard: dict[str, list[tuple[int, str]]] = {}
        for row in self.index:
            self._by_shard.setdefault(row["shard"], []).append((row["position"], row["id"]))
        self._arrays: dict[tuple[str, str], zarr.Array] = {}
        self._checked: set[str] = set()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.index)

    @property
    def has_video(self) -> bool:
        return "video" in self.modalities

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"], state["_checked"] = {}, set()
        return state

    def _array(self, i: int, key: str) -> tuple[zarr.Array, int]:
        if self._pid != os.getpid():  # forked: handles of the parent are not ours
            self._arrays, self._checked, self._pid = {}, set(), os.getpid()
        row = self.index[i]
        path = self.root / SHARDS / f"{row['shard']}.zarr"
        if row["shard"] not in self._checked:
            problem = check_store(path, row["shard_digest"], mtimes=False, contents=False)
            if problem is None:
                problem = _wrong_slot(path, self._by_shard[row["shard"]])
            if problem:
                raise self._damaged(path, row["shard"], problem)
            self._checked.add(row["shard"])
        cache_key = (row["shard"], key)
        if cache_key not in self._arrays:
            try:
                self._arrays[cache_key] = zarr.open_array(path, path=key, mode="r")
            except Exception as exc:  # noqa: BLE001 (whatever zarr raises, the message names the store)
                raise self._damaged(path, row["shard"], f"cannot open array {key!r}: {exc}") from None
        return self._arrays[cache_key], row["position"]

    def _damaged(self, path: Path, shard: str, problem: str) -> DataError:
        ids = [sample for _, sample in self._by_shard[shard]]
        held = ids[0] if len(ids) == 1 else f"{ids[0]} to {ids[-1]}"
        return DataError(path, f"damaged shard store: {problem}; it holds {len(ids)} stored "
                               f"{'sample' if len(ids) == 1 else 'samples'} ({held}); "
                               "rerun `mmfc stage crops` (it redoes damaged shards)")

    def _read(self, i: int, key: str, read):
        array, pos = self._array(i, key)
        try:
            return read(array, pos)
        except Exception as exc:  # noqa: BLE001 (a decode error of any kind: checksum, JPEG, truncated file)
            row = self.index[i]
            path = self.root / SHARDS / f"{row['shard']}.zarr"
            raise self._damaged(path, row["shard"], f"cannot decode {key} of {row['id']} "
                                                    f"({type(exc).__name__}: {exc})") from None

    def rgb(self, i: int, frames: list[int] | np.ndarray | None = None) -> np.ndarray:
        """uint8 [F, S, S, 3]; `frames` picks stored frames (only those are decoded)."""
        if not self.has_video:
            raise DataError(self.root, "holds skeletons only (its dataset has no videos): there are no frames to read")
        if frames is None:
            return self._read(i, "rgb", lambda array, pos: array[pos])
        # One concurrent request per frame: zarr's orthogonal selection over a shard is several
        # times slower than reading the frames one by one (bench/bench_crops.py).
        wanted = [int(f) for f in frames]

        def read(array, pos):
            reads = [array.async_array.getitem((pos, f)) for f in wanted]

            async def gather() -> list:
                return await asyncio.gather(*reads)

            return np.stack(sync(gather()))

        return self._read(i, "rgb", read)

    def skeleton(self, i: int) -> np.ndarray:
        """float32 [C, T, V, M], normalised and resampled."""
        return self._read(i, "skeleton", lambda array, pos: array[pos])

    def keypoints(self, i: int) -> np.ndarray:
        """float32 [M, F, V, 2] in [0, 1] of the stored crop, 0 where missing."""
        return self._read(i, "keypoints", lambda array, pos: array[pos])

    def frame_indices(self, i: int) -> np.ndarray:
        """int64 [F]: the video frame each stored frame came from."""
        return self._read(i, "frame_indices", lambda array, pos: array[pos])


def _wrong_slot(path: Path, slots: list[tuple[int, str]]) -> str | None:
    """The first (slot, id) the index names that the store's manifest does not hold, in words."""
    ids = json.loads((path / MANIFEST).read_bytes())["ids"]
    for position, sample in slots:
        if not 0 <= position < len(ids) or ids[position] != sample:
            return f"slot {position} does not hold {sample}, as the index says"
    return None


def open_crops(crops_dir: str | Path) -> CropStore:
    return CropStore(crops_dir)


class MemoryCrops:
    """Samples cropped in memory, read as a CropStore reads its shards: the branches' datasets
    take either. Frames go through the store's JPEG codec (one JPEG per frame, at the run's
    quality), so a clip cropped here is, bit for bit, what stage 1 would have stored and stage 3
    would have read back.

    `config` and `layout` are the crop store's metadata: the crop settings and the joint layout.
    """

    def __init__(self, config: dict, layout: Layout, jpeg_quality: int):
        self.config = config
        self.layout = layout
        self.jpeg_quality = jpeg_quality
        self.index: list[dict] = []
        self._samples: list[StoredSample] = []

    def add(self, sample_id: str, sample: StoredSample) -> int:
        """Store one sample (its frames JPEG-coded as in a shard; a sample without video, its
        skeleton alone); -> its position. Unlabelled samples read back with label -1."""
        rgb = sample.rgb
        if rgb is not None:
            rgb = decode_frames(encode_frames(rgb, self.jpeg_quality), rgb.shape)
        self._samples.append(StoredSample(rgb, sample.frame_indices, sample.skeleton, sample.keypoints))
        self.index.append({"id": sample_id, "label": -1})
        return len(self._samples) - 1

    def __len__(self) -> int:
        return len(self._samples)

    def rgb(self, i: int, frames: list[int] | np.ndarray | None = None) -> np.ndarray:
        rgb = self._samples[i].rgb
        if rgb is None:
            raise DataError(self.index[i]["id"], "cropped from a skeleton without video: there are no frames to read")
        return rgb if frames is None else rgb[np.asarray(frames, dtype=np.int64)]

    def skeleton(self, i: int) -> np.ndarray:
        return self._samples[i].skeleton

    def keypoints(self, i: int) -> np.ndarray:
        return self._samples[i].keypoints

    def frame_indices(self, i: int) -> np.ndarray:
        return self._samples[i].frame_indices
