"""The pose stage (stage 0) on real clips: speed against its floor, and accuracy figures.

    .venv/bin/python bench/bench_poses.py               # speed and accuracy
    .venv/bin/python bench/bench_poses.py --repeats 5   # more interleaved speed repeats

Speed, one worker on one core (one LiteRT thread, one decoder thread), 1080p NTU clips:
- stage: estimate_poses over the whole clip (decode, detect, track, landmarks, decode outputs);
- floor: decoding the same frames and running the landmark model once per person per frame
  (as many as the stage found), nothing else.
Both are timed interleaved, the median kept; the ratio is the issue's goal (at most 1.3x).
From frames/s per core follows the wall time of NTU RGB+D 60's 5.1 M frames on 16 cores
(one worker per core, joblib over videos).

Accuracy (issue 11, point 5): the three real clips of ../shared/realdata against their
references (mmfc/poses/accuracy.py). Needs `make setup-pose` and ../shared/realdata.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from mmfc.data.video import iter_frames
from mmfc.poses import accuracy, detection
from mmfc.poses.estimate import PoseTracks, estimate_poses
from mmfc.poses.estimator import BlazePose
from mmfc.poses.region import region_from_points

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
MODELS = ROOT / "models" / "blazepose"
NTU60_FRAMES = 5.1e6
CORES = 16


def time_stage(video: Path, models: BlazePose) -> tuple[float, PoseTracks]:
    started = time.perf_counter()
    tracks = estimate_poses(video, MODELS, 2, "ntu25", models=models)
    return time.perf_counter() - started, tracks


def time_floor(video: Path, models: BlazePose, persons: np.ndarray, tensor: np.ndarray) -> float:
    """Decode every frame and run the landmark model persons[t] times on frame t (on a real
    person's crop, cut once: the model's speed depends a little on what it sees)."""
    landmarker = models.landmarker
    started = time.perf_counter()
    for t, _ in enumerate(iter_frames(video, threads=1)):
        for _ in range(int(persons[t])):
            landmarker.set_tensor(models._lm_in, tensor)
            landmarker.invoke()
    return time.perf_counter() - started


def speed(repeats: int, models: BlazePose) -> None:
    print("speed: one core (1 LiteRT thread, 1 decoder thread), median of", repeats, "interleaved runs")
    print(f"{'clip':<34} {'frames':>6} {'persons/frame':>13} {'stage fps':>9} {'floor fps':>9} {'stage/floor':>11}")
    rates = []
    for name in (f"{accuracy.NTU_CLIP}_rgb.avi", accuracy.HUG_CLIP):
        video = REALDATA / "videos" / name
        stage_times, floor_times = [], []
        _, tracks = time_stage(video, models)  # warm-up, and the persons per frame
        persons = (tracks.keypoint_score > 0).any(axis=-1).sum(axis=0)
        first_frame = next(iter_frames(video))
        detected = models.detect(first_frame, True, detection.MIN_SCORE)
        region = region_from_points(detected.keypoints[0, 0], detected.keypoints[0, 1])
        tensor = models.landmark_input(first_frame, True, region)
        for _ in range(repeats):
            stage_times.append(time_stage(video, models)[0])
            floor_times.append(time_floor(video, models, persons, tensor))
        frames = tracks.total_frames
        stage, floor = statistics.median(stage_times), statistics.median(floor_times)
        rates.append(frames / stage)
        print(f"{name:<34} {frames:>6} {persons.mean():>13.2f} {frames / stage:>9.1f} {frames / floor:>9.1f} {stage / floor:>10.2f}x")
    per_core = min(rates)
    hours = NTU60_FRAMES / (per_core * CORES) / 3600
    print(f"1080p frames/s per core: {per_core:.1f} (the slower clip); NTU60's 5.1 M frames on "
          f"{CORES} cores: {hours:.1f} h")


def figures(models: BlazePose) -> None:
    videos = REALDATA / "videos"
    ntu = estimate_poses(accuracy.ntu_video(REALDATA), MODELS, 2, "ntu25", models=models)
    ucf = estimate_poses(videos / accuracy.UCF_CLIP, MODELS, 2, "coco17", models=models)
    hug = estimate_poses(videos / accuracy.HUG_CLIP, MODELS, 2, "ntu25", models=models)
    f = accuracy.real_clip_figures(ntu, ucf, hug, REALDATA)
    print("accuracy (issue 11 goals in brackets):")
    print(f"  NTU {accuracy.NTU_CLIP}: person found in {f['ntu_frames_found']} of {f['ntu_frames']} frames "
          f"[all]; median error over the 12 limb joints {f['ntu_median_limb_error_px']:.1f} px [<= 15]")
    print(f"  UCF101 {accuracy.UCF_CLIP}: PCK@0.1 of the person box diagonal, confident HRNet joints "
          f"{100 * f['ucf_pck']:.1f}% [>= 80]")
    print(f"  hugging {accuracy.HUG_CLIP}: two tracks on {f['hug_frames_two_tracks']} of {f['hug_frames']} "
          f"frames [>= 90%]; identity swaps between neighbouring frames {f['hug_identity_swaps']} [0]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not REALDATA.is_dir():
        raise SystemExit(f"needs the real clips in {REALDATA}")
    models = BlazePose(MODELS, threads=1)
    speed(args.repeats, models)
    figures(models)


if __name__ == "__main__":
    main()
