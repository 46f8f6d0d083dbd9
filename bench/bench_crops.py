"""Stage-1 benchmarks, measured side by side in one run.

(a) stage-1 wall time against its floor: decoding the same frames of the same videos and
    nothing else (goal: at most 1.3x the floor);
(b) reading a training batch from the shards against decoding and cropping the same clips
    online, as PYSKL / MMAction2 pipelines do every epoch (goal: at least 20x faster);
(c) bytes per sample and PSNR of the JPEG codec at several qualities, beside lossless zstd.

Data: the real NTU clip S001C001P001R001A001 (from ../shared/realdata beside the checkout),
linked under --copies sample names; or a dataset in the NTU raw layout with --root (e.g.
`mmfc synth`).

    .venv/bin/python bench/bench_crops.py                      # default, about a minute
    .venv/bin/python bench/bench_crops.py --copies 16 --n-jobs -1
    .venv/bin/python bench/bench_crops.py --root data/synth --limit 64
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

# Runnable from a checkout without `make setup` having installed the package.
from mmfc import atomic
from mmfc.config import load_pipeline
from mmfc.crops import store
from mmfc.crops.box import BoxParams, CropPlan, clip_box, render
from mmfc.crops.codec import decode_frames, encode_frames
from mmfc.crops.crop import stored_frame_indices
from mmfc.crops.stage import run_crops
from mmfc.data.ntu import NTUSource, load_skeleton
from mmfc.data.decoding import probe_video, read_frames, scale_pixels

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"
CLIP = "S001C001P001R001A001"


def real_root(folder: Path, copies: int) -> Path:
    """An NTU layout with the real clip linked under `copies` sample names."""
    (folder / "nturgb+d_skeletons").mkdir(parents=True)
    (folder / "nturgb+d_rgb").mkdir()
    for k in range(copies):
        name = f"S001C001P001R{k + 1:03d}A001"
        os.symlink(REAL / "ntu_skeleton" / f"{CLIP}.skeleton", folder / "nturgb+d_skeletons" / f"{name}.skeleton")
        os.symlink(REAL / "videos" / f"{CLIP}_rgb.avi", folder / "nturgb+d_rgb" / f"{name}_rgb.avi")
    return folder


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def timed(work) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its threads) of work(). CPU time is the
    steadier figure on a shared machine; with n_jobs=1 all the work runs in this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_stage(root: Path, work: Path, args) -> tuple[tuple, tuple, int, float]:
    """(a): -> ((stage wall, cpu), (floor wall, cpu), samples, MB per sample)"""
    overrides = [f"data.root={root}", f"workdir={work}", "data.missing_list=", "data.class_names=",
                 "data.num_classes=60", "data.val_performers=[]", f"jobs.n_jobs={args.n_jobs}",
                 f"crops.samples_per_shard={args.per_shard}"]
    cfg = load_pipeline(None, overrides)
    samples = sorted(NTUSource(cfg.data).samples(), key=lambda s: s.id)[: args.limit or None]

    def floor_one(video: Path) -> None:
        read_frames(video, stored_frame_indices(probe_video(video).frames, cfg.crops.num_frames))

    import joblib

    def floor_run() -> tuple[float, float]:
        return timed(lambda: joblib.Parallel(n_jobs=args.n_jobs)(
            joblib.delayed(floor_one)(s.video_path) for s in samples))

    if args.limit:
        cfg = load_pipeline(None, overrides)
        cfg.data.root = str(_limited_root(root, work.parent / "limited", samples))

    def stage_run() -> tuple[float, float]:
        shutil.rmtree(cfg.paths.crops, ignore_errors=True)
        return timed(lambda: run_crops(cfg))

    # Alternated and best-of-two: other processes on the machine slow either side at random.
    floor, stage = floor_run(), stage_run()
    floor, stage = min(floor, floor_run()), min(stage, stage_run())
    mb = atomic.bytes_in(cfg.paths.crops / store.SHARDS) / len(samples) / 1e6
    return stage, floor, len(samples), mb


def _limited_root(root: Path, folder: Path, samples) -> Path:
    (folder / "nturgb+d_skeletons").mkdir(parents=True)
    (folder / "nturgb+d_rgb").mkdir()
    for s in samples:
        os.symlink(s.skeleton_path.resolve(), folder / "nturgb+d_skeletons" / s.skeleton_path.name)
        os.symlink(s.video_path.resolve(), folder / "nturgb+d_rgb" / s.video_path.name)
    return folder


def online_clip(skeleton_path: Path, video: Path, segments: int, size: int) -> np.ndarray:
    """What an online pipeline does per clip and epoch: parse the pose, decode, crop, resize."""
    skel, _ = load_skeleton(skeleton_path)
    info = probe_video(video)
    pixels = scale_pixels(skel.pixels, skel.frame_size, (info.width, info.height))
    box = clip_box(pixels, skel.score, (info.width, info.height), BoxParams())
    frames = read_frames(video, stored_frame_indices(info.frames, segments))
    plan = CropPlan(np.tile(box, (segments, 1, 1)), np.zeros(len(pixels), dtype=int), size)
    return render(frames, plan)


def bench_read(crops_dir: Path, batch: int, segments: int, repeats: int) -> tuple[float, float, float]:
    """(b): -> (seconds per batch from shards, 8 of 32 frames; all frames; online decode+crop)"""
    crops = store.open_crops(crops_dir)
    n = len(crops)
    picks = np.linspace(0, crops.config["num_frames"] - 1, segments).round().astype(int)
    crops.rgb(0, picks)  # open the arrays once, as a long-lived DataLoader worker would
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(repeats):
        for i in rng.integers(0, n, batch):
            crops.rgb(int(i), picks)
            crops.keypoints(int(i))
    segment_read = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        for i in rng.integers(0, n, batch):
            crops.rgb(int(i))
    full_read = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for i in rng.integers(0, n, batch):
        row = crops.index[int(i)]
        online_clip(Path(row["skeleton_file"]), Path(row["video_file"]), segments, 224)
    online = time.perf_counter() - start
    return segment_read, full_read, online


def bench_codec(crops_dir: Path, sizes: list[int], qualities: list[int]) -> list[tuple]:
    """(c): uncompressed crops of the first sample at each size, JPEG at each quality vs zstd."""
    crops = store.open_crops(crops_dir)
    row = crops.index[0]
    skel, _ = load_skeleton(Path(row["skeleton_file"]))
    video = Path(row["video_file"])
    info = probe_video(video)
    frames = read_frames(video, np.asarray(row["frame_indices"]))
    pixels = scale_pixels(skel.pixels, skel.frame_size, (info.width, info.height))
    box = clip_box(pixels, skel.score, (info.width, info.height), BoxParams())
    results = []
    for size in sizes:
        plan = CropPlan(np.tile(box, (len(frames), 1, 1)), np.zeros(len(pixels), dtype=int), size)
        raw = render(frames, plan)  # [F, S, S, 3] the uncompressed crop
        scale = 32 / len(raw)  # figures per 32-frame sample
        lossless = zarr.create_array(
            store=zarr.storage.MemoryStore(), shape=raw.shape, dtype="uint8", chunks=(1, size, size, 3),
            compressors=ZstdCodec(level=9), fill_value=0,
        )
        lossless[:] = raw
        zstd_bytes = sum(len(v) for k, v in lossless.store._store_dict.items() if "/c/" in k or k.startswith("c/"))
        results.append((size, "zstd-9 (lossless)", zstd_bytes * scale / 1e6, float("inf")))
        for q in qualities:
            data = encode_frames(raw, q)
            back = decode_frames(data, raw.shape)
            results.append((size, f"jpeg q{q}", len(data) * scale / 1e6, psnr(back, raw)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="dataset in the NTU raw layout instead of the real clip")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N samples of --root")
    parser.add_argument("--copies", type=int, default=6, help="sample names linked to the real clip")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--per-shard", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = args.root or real_root(tmp / "ntu", args.copies)
        stage, floor, count, mb = bench_stage(root, tmp / "work", args)
        print(f"(a) stage 1 over {count} samples (32 frames, 256 px, n_jobs={args.n_jobs}): "
              f"{stage[0]:.2f} s wall, {stage[1]:.2f} s CPU; decoding the same frames only: "
              f"{floor[0]:.2f} s wall, {floor[1]:.2f} s CPU; ratio {stage[0] / floor[0]:.2f}x wall, "
              f"{stage[1] / floor[1]:.2f}x CPU (goal <= 1.3x); {count / stage[0]:.2f} samples/s; "
              f"{mb:.3f} MB/sample on disk")
        crops_dir = tmp / "work" / "crops"
        seg, full, online = bench_read(crops_dir, args.batch, segments=8, repeats=5)
        print(f"(b) batch of {args.batch} clips x 8 frames: shards {seg * 1e3:.1f} ms "
              f"(all 32 frames: {full * 1e3:.1f} ms); online decode+crop {online * 1e3:.0f} ms; "
              f"speed-up {online / seg:.0f}x (goal >= 20x)")
        print("(c) per 32-frame sample: size  codec  MB  PSNR dB (vs the uncompressed crop)")
        for size, codec, mbytes, quality in bench_codec(crops_dir, [224, 256], [70, 80, 90, 95]):
            print(f"    {size}  {codec:18s} {mbytes:6.3f}  {quality:5.1f}")


if __name__ == "__main__":
    main()
