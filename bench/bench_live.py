"""Speed of `mmfc live` on 2 cores: per-window latency, throughput and windows dropped.

Two runs trained on stage 0's poses of clips cut from the real videos (bench_videos_small.py's
clips, pipelines/videos-small.toml's networks, a few epochs: the figures are speed, not
accuracy): "skel" (the skeleton branch alone, on the same crops) and "rgb+skel". Each is fed the
real clips looped (S001C001P001R001A001: one person; the NTU hugging clip: two) at 640x480 and
1920x1080, as `mmfc live FILE --realtime` plays them (a camera's pace, frames read on their own
thread, windows the run cannot keep up with dropped), with 2 s windows every 0.5 s:

- latency: from the last frame of a window read to its label out (median, 95th percentile);
- dropped: windows dropped of those filled, and frames the estimator never saw;
- throughput: frames per second when the same clip is read whole as fast as it goes (no pace);
- for rgb+skel at 640x480, the largest frame rate (of FPS_STEPS) at which no window is dropped.

--soak S plays the real clips looped for S seconds (300 for the 5-minute figure) at 25 fps and
640x480 through the skeleton run, and reports windows dropped and the process's memory (RSS)
after the first minute and at the end.

    PYTHONPATH=. .venv/bin/python bench/bench_live.py --out /tmp/mmfc-bench-live       # about 15 min
    PYTHONPATH=. nice -n 10 .venv/bin/python bench/bench_live.py --out /tmp/mmfc-bench-live --rows none --soak 300
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import psutil
import torch

from bench_predict import looped_clip
from bench_videos_small import SOURCES, cut_clips
from mmfc.data.decoding import iter_frames
from mmfc.live.session import LiveOptions, LiveSession
from mmfc.live.source import parse_source
from mmfc.predict.predictor import PoseModels
from mmfc.run_folder import open_run

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "videos-small.toml"
PEOPLE = {1: "S001C001P001R001A001_rgb.avi", 2: "ntu_sample_A055_hugging.avi"}
SIZES = {"640x480": (640, 480), "1080p": (1920, 1080)}
FPS_STEPS = (25, 20, 15, 10, 5)


def train_runs(out: Path, epochs: int) -> dict[str, Path]:
    """The two runs (made once, then reused): rgb+skel, and skel alone on the same crops."""
    runs = {"rgb+skel": out / "run-rgb-skel", "skel": out / "run-skel"}
    common = [f"data.root={json.dumps(str(out / 'videos'))}", f"data.num_classes={len(SOURCES)}",
              f"rgb.train.epochs={epochs}", f"skel.train.epochs={epochs}"]
    plans = {
        "rgb+skel": ([f"workdir={json.dumps(str(runs['rgb+skel']))}"],
                     [("poses",), ("crops",), *((step, "--modality", b) for b in ("rgb", "skel") for step in ("train", "scores")),
                      ("fuse",)]),
        "skel": ([f"workdir={json.dumps(str(runs['skel']))}", 'branches=["skel"]',
                  f"crops_from={json.dumps(str(runs['rgb+skel']))}"],
                 [("train", "--modality", "skel"), ("scores", "--modality", "skel"), ("fuse",)]),
    }
    if not (out / "videos").is_dir():
        cut_clips(out / "videos", 32, 16)
    for name, (overrides, stages) in plans.items():
        if (runs[name] / "fusion" / "weights.json").is_file():
            continue
        sets = [arg for item in [*common, *overrides] for arg in ("--set", item)]
        for stage in stages:
            result = subprocess.run([sys.executable, "-m", "mmfc", "stage", *stage, "--pipeline", str(PIPELINE), *sets],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"mmfc stage {' '.join(stage)} ({name}) failed:\n{result.stderr}")
    return runs


def play(run, clip: Path, fps: float | None, realtime: bool, poses: PoseModels) -> dict:
    """One session of `clip` through `run` (2 s windows every 0.5 s). -> its LiveStats as a dict"""
    session = LiveSession(run, parse_source(str(clip)), LiveOptions(fps=fps, realtime=realtime), poses,
                          emit=lambda line: None, tell=lambda text: None)
    return session.run().to_dict()


def row(name: str, size: str, people: int, paced: dict, whole: dict, fps: float) -> str:
    latency = paced["latency_ms"]
    return (f"| {name} | {size} | {people} | {fps:g} | {paced['dropped']} of {paced['windows']} | "
            f"{paced['frames_dropped']} of {paced['frames']} | {latency['median']} | {latency['p95']} | {whole['fps']} |")


def soak(run, out: Path, seconds: float, poses: PoseModels) -> dict:
    """The real clips (one person, then two) looped for `seconds` at 25 fps, 640x480, with the
    process's memory sampled every 5 s."""
    parts = [looped_clip(REALDATA / "videos" / PEOPLE[n], 10, out / f"soak-part-{n}.mp4", (640, 480), 25) for n in (1, 2)]
    clip = out / f"soak-{seconds:g}s.mp4"
    if not clip.is_file():
        frames = [f for part in parts for f in iter_frames(part)]
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 480))
        for t in range(round(seconds * 25)):
            writer.write(frames[t % len(frames)])
        writer.release()
    process, samples, done = psutil.Process(), [], threading.Event()

    def sample() -> None:
        started = time.perf_counter()
        while not done.wait(5.0):
            samples.append((time.perf_counter() - started, process.memory_info().rss))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stats = play(run, clip, None, True, poses)
    done.set()
    sampler.join()
    after_minute = [rss for t, rss in samples if t >= 60] or [samples[-1][1]]
    first, last = after_minute[0], statistics.median(rss for _, rss in samples[-3:])
    return {"seconds": seconds, "windows": stats["windows"], "dropped": stats["dropped"],
            "frames_dropped": stats["frames_dropped"], "frames": stats["frames"], "latency_ms": stats["latency_ms"],
            "rss_mb_after_1_min": round(first / 2**20, 1), "rss_mb_at_end": round(last / 2**20, 1),
            "rss_growth_percent": round(100 * (last - first) / first, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/mmfc-bench-live"), help="clips, runs, looped videos")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each branch (speed does not depend on them)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each row's looped clip")
    parser.add_argument("--rows", choices=("all", "none"), default="all", help="the latency and throughput rows")
    parser.add_argument("--only", choices=("skel", "rgb+skel"), default=None, help="the rows of this run alone")
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of the long real-time stream (0: none)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    # The machine may be shared: the load says how many cores the figures really had.
    print(f"load average before: {os.getloadavg()[0]:.1f} (1 min)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = {name: open_run(path) for name, path in train_runs(args.out, args.epochs).items()}
    poses = PoseModels(runs["skel"].cfg.poses.models_dir)
    if args.rows == "all":
        print("| run | size | people | stream fps | windows dropped | frames dropped | latency median ms | "
              "latency p95 ms | throughput fps (unpaced) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, run in runs.items():
            if args.only not in (None, name):
                continue
            for size, pixels in SIZES.items():
                for people, source in PEOPLE.items():
                    clip = looped_clip(REALDATA / "videos" / source, args.seconds,
                                       args.out / f"{Path(source).stem}-{size}-{args.seconds:g}s.mp4", pixels, 25)
                    paced, whole = play(run, clip, None, True, poses), play(run, clip, None, False, poses)
                    print(row(name, size, people, paced, whole, 25), flush=True)
        clip = args.out / f"{Path(PEOPLE[1]).stem}-640x480-{args.seconds:g}s.mp4"
        for fps in FPS_STEPS if args.only in (None, "rgb+skel") else ():
            paced = play(runs["rgb+skel"], clip, fps, True, poses)
            print(f"rgb+skel, 640x480, 1 person at {fps} fps: {paced['dropped']} of {paced['windows']} windows dropped, "
                  f"{paced['frames_dropped']} of {paced['frames']} frames, latency median {paced['latency_ms']['median']} ms",
                  flush=True)
            if paced["dropped"] == 0:
                break
    if args.soak:
        print(json.dumps({"soak": soak(runs["skel"], args.out, args.soak, poses)}, indent=2))
    print(f"load average after: {os.getloadavg()[0]:.1f} (1 min)")


if __name__ == "__main__":
    main()
