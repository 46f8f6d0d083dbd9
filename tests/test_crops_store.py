"""The JPEG zarr codec, shard stores with failed-sample holes, and the reader stage 2 uses."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest
import zarr

from mmfc import atomic
from mmfc.crops import store
from mmfc.crops.codec import CODEC_NAME, JpegCodec, decode_frames, encode_frames
from mmfc.crops.stage import ROW_SCHEMA, remove_unnamed_stores
from mmfc.data.layouts import NTU25
from mmfc.errors import DataError


def smooth_frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Natural-ish images: smooth gradients and blobs, so JPEG behaves as on video. [n,S,S,3]"""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    frames = []
    for _ in range(n):
        cx, cy, r = rng.random(3)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (0.02 + 0.1 * r))
        img = np.stack([x * 200, y * 180 + 40 * blob, 120 * blob + 60 * x * y], -1)
        frames.append(np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8))
    return np.stack(frames)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def test_codec_round_trip_is_close_and_smaller():
    frames = smooth_frames(3, 96)
    data = encode_frames(frames, quality=90)
    back = decode_frames(data, frames.shape)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert psnr(back, frames) > 35
    assert len(data) < frames.nbytes / 5
    assert len(encode_frames(frames, quality=50)) < len(data)


def test_codec_rejects_bad_settings_and_round_trips_its_metadata():
    with pytest.raises(ValueError):
        JpegCodec(quality=0)
    codec = JpegCodec(quality=77)
    assert codec.to_dict() == {"name": CODEC_NAME, "configuration": {"quality": 77}}
    assert JpegCodec.from_dict(codec.to_dict()) == codec


def test_codec_inside_a_zarr_shard(tmp_path):
    frames = smooth_frames(4, 64).reshape(2, 2, 64, 64, 3)
    array = zarr.create_array(
        tmp_path / "a.zarr", shape=frames.shape, dtype="uint8", chunks=(1, 1, 64, 64, 3),
        shards=frames.shape, serializer=JpegCodec(quality=95), compressors=None, fill_value=0,
    )
    array[:] = frames
    assert len(list((tmp_path / "a.zarr").rglob("c/*/*/*/*/*"))) == 1  # one shard file
    reopened = zarr.open_array(tmp_path / "a.zarr", mode="r")
    assert psnr(reopened[1, 0], frames[1, 0]) > 38


def stored(seed: int, frames: int = 3, size: int = 32) -> store.StoredSample:
    rng = np.random.default_rng(seed)
    return store.StoredSample(
        rgb=smooth_frames(frames, size, seed),
        frame_indices=np.arange(frames) * 10 + seed,
        skeleton=rng.normal(size=(3, 8, 25, 2)).astype(np.float32),
        keypoints=rng.random((2, frames, 25, 2)).astype(np.float32),
    )


META = {"class_names": ["a", "b", "c"], "num_classes": 3, "layout": NTU25.to_dict(), "group_kind": "performer",
        "crops": {"size": 32}}


def make_store(crops_dir: Path, samples: dict[int, store.StoredSample], slots: int, meta: dict = META) -> Path:
    """A one-shard store whose slots not in `samples` failed, and its index. -> the store"""
    for sub in (store.SHARDS, store.PARTS):
        (crops_dir / sub).mkdir(parents=True, exist_ok=True)
    path = store.new_store_path(crops_dir, "shard-00000")
    with atomic.atomic_path(path) as tmp:
        writer = store.ShardWriter(tmp, slots, jpeg_quality=95)
        for slot, sample in samples.items():
            writer.add(slot, sample)
        digest = writer.finish([f"s{slot}" for slot in range(slots)])
    rows = [{"id": f"s{slot}", "label": slot % 3, "split": "train", "group": f"P{slot % 2}", "shard": path.stem,
             "shard_digest": digest, "position": slot, "status": "ok"} for slot in samples]
    store.write_table_atomic(crops_dir / store.INDEX, rows, ROW_SCHEMA, metadata=meta)
    return path


def test_reader_returns_what_was_written_across_files_and_holes(tmp_path):
    # 20 slots span two zarr shard files (16 samples each); slots 1 and 17 failed.
    samples = {slot: stored(slot) for slot in range(20) if slot not in (1, 17)}
    make_store(tmp_path, samples, slots=20)
    crops = store.open_crops(tmp_path)
    assert len(crops) == 18 and crops.num_classes == 3 and crops.layout == NTU25
    for i, row in enumerate(crops.index):
        want = samples[row["position"]]
        assert psnr(crops.rgb(i), want.rgb) > 35
        np.testing.assert_array_equal(crops.skeleton(i), want.skeleton)
        np.testing.assert_array_equal(crops.keypoints(i), want.keypoints)
        np.testing.assert_array_equal(crops.frame_indices(i), want.frame_indices)
        np.testing.assert_array_equal(crops.rgb(i, [2, 0]), crops.rgb(i)[[2, 0]])
    assert not list(tmp_path.rglob(".tmp-*"))



def test_an_index_without_groups_is_refused_with_what_to_rerun(tmp_path):
    make_store(tmp_path, {0: stored(0)}, slots=1)
    rows = [{k: v for k, v in row.items() if k != "group"} for row in store.read_index_rows(tmp_path)]
    older = {k: v for k, v in META.items() if k != "group_kind"}
    store.write_table_atomic(tmp_path / store.INDEX, rows, ROW_SCHEMA.remove(ROW_SCHEMA.get_field_index("group")),
                             metadata=older)
    with pytest.raises(DataError, match=r"index.parquet: written by an older mmfc, without the samples' groups; "
                                        r"rerun `mmfc stage crops`"):
        store.open_crops(tmp_path)

def _read_in_child(crops: store.CropStore) -> np.ndarray:
    return crops.rgb(1)


def test_reader_works_after_pickling_into_another_process(tmp_path):
    make_store(tmp_path, {0: stored(0), 1: stored(1)}, slots=2)
    crops = store.open_crops(tmp_path)
    here = crops.rgb(1)  # opens arrays in this process first
    assert pickle.loads(pickle.dumps(crops))._arrays == {}
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        there = pool.apply(_read_in_child, (crops,))
    np.testing.assert_array_equal(here, there)


def test_missing_output_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="index.parquet"):
        store.open_crops(tmp_path)


def test_a_rewritten_shard_is_a_new_store_and_the_old_one_goes_once_nothing_names_it(tmp_path):
    first = make_store(tmp_path, {0: stored(0)}, slots=1)
    second = make_store(tmp_path, {0: stored(5)}, slots=1)
    assert first != second and first.is_dir()  # never rewritten in place
    crops = store.open_crops(tmp_path)
    np.testing.assert_array_equal(crops.frame_indices(0), stored(5).frame_indices)
    remove_unnamed_stores(tmp_path)
    assert sorted(p.name for p in (tmp_path / store.SHARDS).iterdir()) == [second.name]


def test_the_index_carries_the_layout_whole(tmp_path):
    """A declared layout reads back from the store alone; a store written before layouts were kept
    whole names a built-in one; a broken layout is one DataError naming the index."""
    stick = {"name": "stick3", "joints": ["neck", "hand_l", "hand_r"], "bones": [["hand_l", "neck"], ["hand_r", "neck"]],
             "center": "neck", "pairs": [["hand_l", "hand_r"]], "channels": 2, "align": []}
    make_store(tmp_path / "declared", {0: stored(0)}, slots=1, meta={**META, "layout": stick})
    assert store.open_crops(tmp_path / "declared").layout.to_dict() == stick
    make_store(tmp_path / "older", {0: stored(0)}, slots=1, meta={**META, "layout": "ntu25"})
    assert store.open_crops(tmp_path / "older").layout == NTU25
    make_store(tmp_path / "broken", {0: stored(0)}, slots=1, meta={**META, "layout": {**stick, "center": "head"}})
    with pytest.raises(DataError, match="center = 'head' is not one of the joints"):
        store.open_crops(tmp_path / "broken")
