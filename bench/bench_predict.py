"""Speed of `mmfc predict` on a 10 s 1080p clip on 2 cores, broken down by step.

The clip is the real NTU clip (1920x1080, 103 frames) looped to 10 s and written to /tmp; the
skeleton comes from the pose estimator, as for any plain video. Steps: decode (the one pass over
the video), poses (BlazePose on every frame), crop (stage 1's crop of the clip), rgb and skel
(each branch's logits, stage 3's code), fusion. Goal: everything but decode and poses under 25%
of the total.

    python bench/bench_predict.py --run runs/synth
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import torch

from mmfc.data.decoding import iter_frames, probe_video
from mmfc.predict.predictor import PoseModels, predict_video
from mmfc.run_folder import open_run

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def looped_clip(source: Path, seconds: float, out: Path, size: tuple[int, int] = (1920, 1080),
                fps: float | None = None) -> Path:
    """`source` looped (forward, then backward, so the motion has no jump) to `seconds`, at
    `size` (width, height) and `fps` (default: the source's)."""
    if out.is_file():
        return out
    fps = fps or probe_video(source).fps or 30
    frames = [cv2.resize(f, size) if f.shape[1::-1] != size else f for f in iter_frames(source)]
    wanted = round(seconds * fps)
    cycle = frames + frames[-2:0:-1]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for t in range(wanted):
        writer.write(cycle[t % len(cycle)])
    writer.release()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/synth"))
    parser.add_argument("--video", type=Path, default=REALDATA / "videos" / "S001C001P001R001A001_rgb.avi")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="runs after a warm-up run; the fastest is shown")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    clip = looped_clip(args.video, args.seconds, Path("/tmp") / f"mmfc-bench-predict-{args.seconds:g}s-1080p.mp4")
    run = open_run(args.run)
    poses = PoseModels(run.cfg.poses.models_dir, args.threads)
    best = None
    for attempt in range(args.repeat + 1):
        started = time.perf_counter()
        prediction, *_ = predict_video(run, clip, poses=poses)
        wall = time.perf_counter() - started
        if attempt and (best is None or wall < best[0]):
            best = (wall, prediction)
    wall, prediction = best
    steps = prediction.timings
    rest = sum(v for k, v in steps.items() if k not in ("decode", "poses"))
    print(json.dumps({
        "video": str(clip), "frames": prediction.frames, "threads": args.threads, "skeleton": prediction.skeleton,
        "wall_seconds": round(wall, 3),
        "steps_seconds": {k: round(v, 3) for k, v in steps.items()},
        "steps_percent": {k: round(100 * v / wall, 1) for k, v in steps.items()},
        "other_seconds": round(wall - sum(steps.values()), 3),
        "not_decode_or_poses_percent": round(100 * rest / wall, 1),
        "fused_top1": prediction.top(prediction.probabilities["fused"][0], 1)[0],
    }, indent=2))


if __name__ == "__main__":
    main()
