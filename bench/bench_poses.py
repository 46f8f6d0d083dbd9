"""The pose stage (stage 0) on real clips: speed against its floor, and accuracy figures.

    .venv/bin/python bench/bench_poses.py               # speed and accuracy
    .venv/bin/python bench/bench_poses.py --repeats 5   # more interleaved speed repeats

Speed, one worker on one core (one LiteRT thread, one decoder thread, one OpenCV thread), on the two 1080p NTU
clips and the 320x240 UCF101 close-up:
- stage: estimate_poses over the whole clip (decode, detect, track, landmarks, decode outputs,
  and on close-ups the face and hand models of mmfc/poses/face.py and hands.py);
- floor: decoding the same frames and running the landmark model once per person per frame
  (as many as the stage found), nothing else: issue 11's floor, whose ratio has the goal of
  at most 1.3x;
- floor with parts: the floor plus every face and hand model run the stage made (counted on
  the warm-up run), so the ratio to it is what the estimator's own bookkeeping costs. On the
  NTU clips no part model runs and the two floors are one.
All are timed interleaved, the median kept. From frames/s per core follows the wall time of
NTU RGB+D 60's 5.1 M frames on 16 cores (one worker per core, joblib over videos).

Accuracy (issue 11, point 5): the three real clips of ../shared/realdata against their
references (tests/pose_accuracy.py). Then how steady the close-up's PCK is: the UCF clip again
with one value in a thousand of each frame one grey level up or down (`--perturbed` seeds), the
size of the differences between two OpenCV releases' warps, which tracking can carry far.
Needs `make setup-pose` and ../shared/realdata.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from mmfc.data.decoding import iter_frames, probe_video, read_frames
from mmfc.poses import detection
from mmfc.poses.video_poses import PoseTracks, estimate_poses
from mmfc.poses.frame_poses import BlazePose
from mmfc.poses.region import region_from_points

ROOT = Path(__file__).resolve().parents[1]
# The real-clip references and figures are the tests' (tests/pose_accuracy.py), not the package's.
sys.path.insert(0, str(ROOT / "tests"))
import pose_accuracy as accuracy  # noqa: E402
REALDATA = ROOT.parent / "shared" / "realdata"
MODELS = ROOT / "models" / "blazepose"
NTU60_FRAMES = 5.1e6
CORES = 16


def time_stage(video: Path, models: BlazePose) -> tuple[float, PoseTracks]:
    started = time.perf_counter()
    tracks = estimate_poses(video, MODELS, 2, "ntu25", models=models)
    return time.perf_counter() - started, tracks


def part_models(models: BlazePose) -> dict[str, object]:
    """The face and hand models' interpreters, by name."""
    return {"face detector": models.face.detector, "face mesh": models.face.mesh,
            "hand re-crop": models.hand.recrop, "hand landmarks": models.hand.hand}


def count_part_runs(models: BlazePose, video: Path) -> tuple[dict[str, int], PoseTracks]:
    """Run the stage once, counting every part model run."""
    counts = {}
    for name, interpreter in part_models(models).items():
        counts[name] = 0
        invoke = interpreter.invoke

        def counted(name=name, invoke=invoke):
            counts[name] += 1
            invoke()

        interpreter.invoke = counted
    try:
        _, tracks = time_stage(video, models)
    finally:
        for interpreter in part_models(models).values():
            del interpreter.invoke  # back to the class's method
    return counts, tracks


def time_floor(video: Path, models: BlazePose, persons: np.ndarray, tensor: np.ndarray,
               part_runs: dict[str, int] | None = None) -> float:
    """Decode every frame and run the landmark model persons[t] times on frame t (on a real
    person's crop, cut once: the model's speed depends a little on what it sees); with
    part_runs, also each part model that many times over the clip, spread evenly over the
    frames (on a blank input)."""
    landmarker = models.landmarker
    frames = len(persons)
    parts = []
    for name, count in (part_runs or {}).items():
        interpreter = part_models(models)[name]
        detail = interpreter.get_input_details()[0]
        runs = np.diff(np.round(np.linspace(0, count, frames + 1))).astype(int)
        parts.append((interpreter, detail["index"], np.zeros(detail["shape"], np.float32), runs))
    started = time.perf_counter()
    for t, _ in enumerate(iter_frames(video, threads=1)):
        for _ in range(int(persons[t])):
            landmarker.set_tensor(models._lm_in, tensor)
            landmarker.invoke()
        for interpreter, index, blank, runs in parts:
            for _ in range(runs[t]):
                interpreter.set_tensor(index, blank)
                interpreter.invoke()
    return time.perf_counter() - started


def speed(repeats: int, models: BlazePose) -> None:
    print("speed: one core (1 LiteRT thread, 1 decoder thread, 1 OpenCV thread), median of", repeats, "interleaved runs")
    print(f"{'clip':<36} {'frames':>6} {'persons':>7} {'part runs':>9} {'stage fps':>9} {'floor fps':>9} "
          f"{'stage/floor':>11} {'stage/floor+parts':>17}")
    rates = []
    for name in (f"{accuracy.NTU_CLIP}_rgb.avi", accuracy.HUG_CLIP, accuracy.UCF_CLIP):
        video = REALDATA / "videos" / name
        part_runs, tracks = count_part_runs(models, video)  # warm-up, persons and part runs
        persons = (tracks.keypoint_score > 0).any(axis=-1).sum(axis=0)
        first_frame = next(iter_frames(video))
        detected = models.detect(first_frame, True, detection.MIN_SCORE)
        region = region_from_points(detected.keypoints[0, 0], detected.keypoints[0, 1])
        tensor = models.landmark_input(first_frame, True, region)
        stage_times, floor_times, with_parts = [], [], []
        for _ in range(repeats):
            stage_times.append(time_stage(video, models)[0])
            floor_times.append(time_floor(video, models, persons, tensor))
            with_parts.append(time_floor(video, models, persons, tensor, part_runs) if any(part_runs.values()) else floor_times[-1])
        frames = tracks.total_frames
        stage, floor, floor_parts = (statistics.median(x) for x in (stage_times, floor_times, with_parts))
        if name != accuracy.UCF_CLIP:
            rates.append(frames / stage)
        runs = sum(part_runs.values())
        print(f"{name:<36} {frames:>6} {persons.mean():>7.2f} {runs / frames:>9.2f} {frames / stage:>9.1f} "
              f"{frames / floor:>9.1f} {stage / floor:>10.2f}x {stage / floor_parts:>16.2f}x")
    per_core = min(rates)
    hours = NTU60_FRAMES / (per_core * CORES) / 3600
    print(f"1080p frames/s per core: {per_core:.1f} (the slower NTU clip); NTU60's 5.1 M frames on "
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
    print(f"  UCF101 {accuracy.UCF_CLIP}: PCK@0.1 of the person box diagonal over the confident HRNet "
          f"joints, the box of those joints {100 * f['ucf_pck']:.1f}% [>= 80]; the box of all 17 "
          f"reference joints {100 * f['ucf_pck_all_joints_box']:.1f}%")
    print(f"  hugging {accuracy.HUG_CLIP}: two tracks on {f['hug_frames_two_tracks']} of {f['hug_frames']} "
          f"frames [>= 90%]; identity swaps between neighbouring frames {f['hug_identity_swaps']} [0]")


def perturbed_pck(seeds: int, models: BlazePose) -> None:
    video = REALDATA / "videos" / accuracy.UCF_CLIP
    info = probe_video(video)
    clean = read_frames(video, range(info.frames))
    reference, score = accuracy.ucf_reference(REALDATA)
    values, split = [], 0
    for seed in range(1, seeds + 1):
        tracks = estimate_poses(accuracy.nudged(clean, seed), MODELS, 2, "coco17", models=models, fps=info.fps)
        values.append(accuracy.pck(tracks.keypoint[0, : len(reference)], reference, score))
        split += tracks.num_persons > 1
    print(f"  UCF101 with one value in a thousand one grey level off, {seeds} seeds: PCK min "
          f"{100 * min(values):.1f}%, median {100 * statistics.median(values):.1f}%, max {100 * max(values):.1f}%; "
          f"the person on more than one track in {split} of {seeds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--perturbed", type=int, default=10, help="seeds of the perturbed close-up runs")
    args = parser.parse_args()
    if not REALDATA.is_dir():
        raise SystemExit(f"needs the real clips in {REALDATA}")
    # One core: OpenCV's cut-outs (the stage's, not the floor's) would otherwise spread over
    # every core and flatter the stage against its floor.
    cv2.setNumThreads(1)
    models = BlazePose(MODELS, threads=1)
    speed(args.repeats, models)
    figures(models)
    perturbed_pck(args.perturbed, models)


if __name__ == "__main__":
    main()
