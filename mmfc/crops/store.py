"""Stage-1 storage: zarr v3 shard stores, their Parquet index, and the reader stage 2 uses.

Layout of the crops folder:
    shards/shard-00012.zarr/   one zarr group per batch of N samples (slot k = position k):
        rgb [N, F, S, S, 3] uint8, one JPEG per frame, SAMPLES_PER_FILE samples per shard file
        skeleton [N, C, T, V, M] float32, keypoints [N, M, F, V, 2] float32, frame_indices [N, F]
    parts/shard-00012.parquet  the rows of that batch (stored and failed), written after the
                               shard is in place: a part file means its shard is complete
    index.parquet              the stored rows of every part, rebuilt at the end of a run
    failures.parquet           id, file, reason of the samples that could not be read
    meta.json                  class names, layout, number of classes, crop settings
Every file and shard store appears under its final name only once complete (mmfc.atomic).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr
from zarr.codecs import ZstdCodec
from zarr.core.sync import sync

from mmfc import atomic
from mmfc.crops.codec import JpegCodec
from mmfc.errors import DataError

SHARDS = "shards"
PARTS = "parts"
INDEX = "index.parquet"
FAILURES = "failures.parquet"
META = "meta.json"


@dataclass
class StoredSample:
    rgb: np.ndarray  # [F, S, S, 3] uint8
    frame_indices: np.ndarray  # [F] int64, video frame of each stored frame
    skeleton: np.ndarray  # [C, T, V, M] float32
    keypoints: np.ndarray  # [M, F, V, 2] float32, crop-normalised


def shard_name(number: int) -> str:
    return f"shard-{number:05d}"


def write_table_atomic(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    """Write rows as Parquet atomically; an identical file is left alone, so its mtime only moves
    when its content does (make decides from mtimes whether stage 2 is out of date)."""
    table = pa.Table.from_pylist(rows, schema=schema)
    if path.is_file():
        try:
            if pq.read_table(path).equals(table):
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


class ShardWriter:
    """Builds one shard store for a batch of samples under a temp name; `commit` moves it in.

    The sample in slot k of the batch is stored at position k; a slot that is never filled (a
    failed sample) stays all zero.
    """

    def __init__(self, crops_dir: Path, name: str, slots: int, jpeg_quality: int):
        self.final = crops_dir / SHARDS / f"{name}.zarr"
        self.tmp = atomic.temp_sibling(self.final)
        self.group = zarr.open_group(self.tmp, mode="w")
        self.slots = slots
        self.jpeg_quality = jpeg_quality
        self.rgb: zarr.Array | None = None
        self.block: dict[int, np.ndarray] = {}  # slot -> rgb, the block not yet written
        # slot -> the small arrays, written at the end; frames are not kept past their block.
        self.small: dict[int, dict[str, np.ndarray]] = {}

    def add(self, slot: int, sample: StoredSample) -> None:
        if self.rgb is None:
            self.rgb = self._create_rgb(sample.rgb.shape)
        if self.block and slot // SAMPLES_PER_FILE != next(iter(self.block)) // SAMPLES_PER_FILE:
            self._flush()
        self.block[slot] = sample.rgb
        self.small[slot] = {key: getattr(sample, key) for key in SMALL_ARRAYS}

    def _create_rgb(self, frames_shape: tuple[int, ...]) -> zarr.Array:
        shape = (self.slots, *frames_shape)
        # One frame per inner chunk: a training clip of 8 out of 32 frames decodes only those 8.
        return self.group.create_array(
            "rgb", shape=shape, dtype="uint8", chunks=(1, 1, *frames_shape[1:]),
            shards=(SAMPLES_PER_FILE, *frames_shape), serializer=JpegCodec(quality=self.jpeg_quality),
            compressors=None, fill_value=0,
            # Checking every frame for all-zero costs more than its JPEG; a failed slot's black
            # frames take about 1 kB.
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

    def commit(self) -> Path:
        """Write what is left, then move the finished store to its final name."""
        if self.block:
            self._flush()
        if self.small:
            for key in SMALL_ARRAYS:
                self._write_small(key)
        # The caller has already removed the part file that vouched for an old store under this
        # name, so a kill while the new one replaces it only costs redoing this shard.
        atomic.move_into_place(self.tmp, self.final)
        return self.final

    def _write_small(self, key: str) -> None:
        example = next(iter(self.small.values()))[key]
        data = np.zeros((self.slots, *example.shape), dtype=example.dtype)
        for slot, arrays in self.small.items():
            data[slot] = arrays[key]
        self.group.create_array(
            key, shape=data.shape, dtype=data.dtype, chunks=(1, *data.shape[1:]), shards=data.shape,
            compressors=ZstdCodec(level=3), fill_value=0,
        )[:] = data

    def discard(self) -> None:
        atomic.discard(self.tmp)


def remove_shard(crops_dir: Path, name: str) -> None:
    """Drop a shard and its part file, the part first so no index ever points at a gone shard."""
    (crops_dir / PARTS / f"{name}.parquet").unlink(missing_ok=True)
    shutil.rmtree(crops_dir / SHARDS / f"{name}.zarr", ignore_errors=True)


def write_part(crops_dir: Path, name: str, rows: list[dict], schema: pa.Schema) -> None:
    write_table_atomic(crops_dir / PARTS / f"{name}.parquet", rows, schema)


def read_parts(crops_dir: Path) -> dict[str, list[dict]]:
    """The rows of every finished shard, by shard name."""
    parts = {}
    for path in sorted((crops_dir / PARTS).glob("shard-*.parquet")):
        parts[path.stem] = pq.read_table(path).to_pylist()
    return parts


def write_meta(crops_dir: Path, meta: dict) -> None:
    atomic.write_bytes(crops_dir / META, json.dumps(meta, indent=2).encode())


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ---------------------------------------------------------------------------------------------
# Reading


class CropStore:
    """Random access to stage-1 output by position in `index`.

    Zarr arrays are opened on first use in each process (and dropped when pickled), so a store
    handed to DataLoader workers opens its own file handles in each worker.
    """

    def __init__(self, crops_dir: str | Path):
        self.root = Path(crops_dir)
        index_path = self.root / INDEX
        meta_path = self.root / META
        for path in (index_path, meta_path):
            if not path.exists():
                raise DataError(path, "no stage-1 output here; run `mmfc stage crops` first")
        self.index: list[dict] = pq.read_table(index_path).to_pylist()
        meta = json.loads(meta_path.read_text())
        self.class_names: list[str] = meta["class_names"]
        self.layout: str = meta["layout"]
        self.num_classes: int = meta["num_classes"]
        self.config: dict = meta["crops"]
        self._arrays: dict[tuple[str, str], zarr.Array] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    def _array(self, i: int, key: str) -> tuple[zarr.Array, int]:
        if self._pid != os.getpid():  # forked: handles of the parent are not ours
            self._arrays, self._pid = {}, os.getpid()
        row = self.index[i]
        cache_key = (row["shard"], key)
        if cache_key not in self._arrays:
            path = self.root / SHARDS / f"{row['shard']}.zarr"
            try:
                self._arrays[cache_key] = zarr.open_array(path, path=key, mode="r")
            except (FileNotFoundError, zarr.errors.NodeNotFoundError):
                raise DataError(path, f"shard store missing array {key!r}; rerun `mmfc stage crops`") from None
        return self._arrays[cache_key], row["position"]

    def rgb(self, i: int, frames: list[int] | np.ndarray | None = None) -> np.ndarray:
        """uint8 [F, S, S, 3]; `frames` picks stored frames (only those are decoded)."""
        array, pos = self._array(i, "rgb")
        if frames is None:
            return array[pos]
        # One concurrent request per frame: zarr's orthogonal selection over a shard is several
        # times slower than reading the frames one by one (bench/bench_crops.py).
        wanted = [int(f) for f in frames]
        reads = [array.async_array.getitem((pos, f)) for f in wanted]

        async def gather() -> list:
            return await asyncio.gather(*reads)

        return np.stack(sync(gather()))

    def skeleton(self, i: int) -> np.ndarray:
        """float32 [C, T, V, M], normalised and resampled."""
        array, pos = self._array(i, "skeleton")
        return array[pos]

    def keypoints(self, i: int) -> np.ndarray:
        """float32 [M, F, V, 2] in [0, 1] of the stored crop, 0 where missing."""
        array, pos = self._array(i, "keypoints")
        return array[pos]

    def frame_indices(self, i: int) -> np.ndarray:
        """int64 [F]: the video frame each stored frame came from."""
        array, pos = self._array(i, "frame_indices")
        return array[pos]


def open_crops(crops_dir: str | Path) -> CropStore:
    return CropStore(crops_dir)
