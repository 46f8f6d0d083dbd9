"""How fast `mmfc synth` writes samples, where the time goes, and what the video codec costs.

    .venv/bin/python bench/bench_synth.py          # 12 samples, ~15 s on 2 cores
    .venv/bin/python bench/bench_synth.py --full   # also the whole default dataset (288 clips)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mmfc.data.synth import generate
from mmfc.data.synth.actions import FPS
from mmfc.data.synth.clip import SampleKey, compose_clip
from mmfc.data.synth.render import render_clip
from mmfc.data.synth.writer import DEFAULT_FRAME_SIZE, skeleton_text

KEYS = [SampleKey(1, camera, performer, 1, action)
        for action in (1, 4, 7, 10) for performer, camera in ((1, 1), (3, 2), (6, 3))]


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _encode(frames: np.ndarray, fourcc: str, path: Path) -> tuple[int, float]:
    """(bytes, mean absolute decode error) of one clip in one codec."""
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    capture = cv2.VideoCapture(str(path))
    errors = []
    for frame in frames:
        ok, decoded = capture.read()
        errors.append(np.abs(decoded.astype(int) - frame).mean() if ok else np.nan)
    capture.release()
    return path.stat().st_size, float(np.mean(errors))


def stage_breakdown(tmp: Path) -> None:
    totals = {"compose": 0.0, "skeleton text": 0.0, "render": 0.0, "XVID enc+dec": 0.0, "MJPG enc+dec": 0.0}
    sizes = {"XVID": 0, "MJPG": 0}
    errors = {"XVID": [], "MJPG": []}
    frames_total = 0
    for key in KEYS:
        clip, seconds = _timed(lambda: compose_clip(key, seed=0))
        totals["compose"] += seconds
        _, seconds = _timed(lambda: skeleton_text(clip))
        totals["skeleton text"] += seconds
        frames, seconds = _timed(lambda: render_clip(clip, DEFAULT_FRAME_SIZE, seed=0))
        totals["render"] += seconds
        frames_total += len(frames)
        for codec in ("XVID", "MJPG"):
            (size, error), seconds = _timed(lambda: _encode(frames, codec, tmp / f"clip_{codec}.avi"))
            totals[f"{codec} enc+dec"] += seconds
            sizes[codec] += size
            errors[codec].append(error)
    width, height = DEFAULT_FRAME_SIZE
    print(f"per-stage time, {len(KEYS)} clips, {frames_total} frames of {width}x{height} (ms per clip):")
    for stage, seconds in totals.items():
        print(f"  {stage:<14} {1000 * seconds / len(KEYS):7.1f}")
    print("codec comparison, same frames (the dataset writes XVID):")
    for codec in ("XVID", "MJPG"):
        print(f"  {codec}: {sizes[codec] / frames_total / 1024:6.1f} KiB/frame, "
              f"mean abs decode error {np.mean(errors[codec]):.2f} / 255")


def end_to_end(tmp: Path, full: bool) -> None:
    subset = dict(actions=[1, 4, 7, 10], performers=[1, 3, 6], cameras=[1, 2, 3])
    for n_jobs in (1, 2):
        summary = generate(tmp / f"subset_{n_jobs}", seed=0, n_jobs=n_jobs, **subset)
        rate = summary["samples"] / summary["seconds"]
        print(f"generate 36 clips, n_jobs={n_jobs}: {summary['seconds']:.1f} s "
              f"({rate:.1f} clips/s), {summary['bytes'] / 2**20:.1f} MiB")
    if full:
        summary = generate(tmp / "full", seed=0)
        print(f"generate default dataset ({summary['samples']} clips, all cores): "
              f"{summary['seconds']:.1f} s, {summary['bytes'] / 2**20:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="also generate the whole default dataset")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        stage_breakdown(Path(tmp))
        end_to_end(Path(tmp), args.full)


if __name__ == "__main__":
    main()
