"""Own videos onboard in minutes: pipelines/videos-small.toml end to end on real clips, timed.

The clips are cut from the four real videos of ../shared/realdata/videos (the only real people
we have), as tests/conftest.py `video_folders` cuts them, only more of them: windows of
--frames frames every --stride frames, each also mirrored, so 4 classes of 12 to 64 clips (130
at the defaults), at 480x270 (NTU), 320x240 (UCF101) and 340x256 (Kinetics). Every clip of a
class comes from the same recording, so the accuracies say nothing about a method; the wall
time of each stage is the figure (`mmfc timings`).

    .venv/bin/python bench/bench_videos_small.py                  # about 10 min on 2 cores
    .venv/bin/python bench/bench_videos_small.py --out /tmp/vs --keep
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from mmfc.data.decoding import iter_frames

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "videos-small.toml"
# class -> (real video, size the clips are written at)
SOURCES = {
    "drink": ("S001C001P001R001A001_rgb.avi", (480, 270)),
    "hug": ("ntu_sample_A055_hugging.avi", (480, 270)),
    "makeup": ("ucf101_v_ApplyEyeMakeup_g01_c01.avi", (320, 240)),
    "armwrestle": ("kinetics_arm_wrestling_demo.mp4", (340, 256)),
}

# Every stage, in the order make runs them.
STAGES = [("poses",), ("crops",), *((step, "--modality", branch) for branch in ("rgb", "skel") for step in ("train", "scores")),
          ("fuse",), ("report",)]


def cut_clips(root: Path, frames: int, stride: int) -> int:
    """root/<class>/<class>_g<group>_c<clip>.avi; a window and its mirror share a group, as do
    two neighbouring windows (they overlap)."""
    count = 0
    for label, (name, size) in SOURCES.items():
        video = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in iter_frames(REALDATA / "videos" / name)]
        for number, start in enumerate(range(0, len(video) - frames + 1, stride)):
            for mirrored in (False, True):
                path = root / label / f"{label}_g{number // 2:02d}_c{2 * number + mirrored:02d}.avi"
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, size)
                for frame in video[start : start + frames]:
                    writer.write(cv2.flip(frame, 1) if mirrored else frame)
                writer.release()
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the clips and the run (default: a temporary one)")
    parser.add_argument("--frames", type=int, default=32, help="frames per clip")
    parser.add_argument("--stride", type=int, default=8, help="frames between clip starts")
    parser.add_argument("--keep", action="store_true", help="keep the clips and the run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="more --set overrides")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="mmfc-videos-small-"))
    clips = cut_clips(out / "videos", args.frames, args.stride)
    overrides = [f"data.root={json.dumps(str(out / 'videos'))}", f"workdir={json.dumps(str(out / 'run'))}",
                 f"data.num_classes={len(SOURCES)}", *args.overrides]
    sets = [arg for item in overrides for arg in ("--set", item)]

    def mmfc(*command: str) -> str:
        result = subprocess.run([sys.executable, "-m", "mmfc", *command, "--pipeline", str(PIPELINE), *sets],
                                capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"mmfc {' '.join(command)} failed:\n{result.stderr}")
        return result.stdout

    print(mmfc("info"))
    started = time.perf_counter()
    for stage in STAGES:
        mmfc("stage", *stage)
    wall = time.perf_counter() - started
    print(mmfc("timings"))
    weights = json.loads((out / "run" / "fusion" / "weights.json").read_text())
    best = {m: max(json.loads(line)["val_top1"] for line in (out / "run" / "train" / m / "metrics.jsonl").read_text().splitlines())
            for m in ("rgb", "skel")}
    print(json.dumps({"clips": clips, "wall_seconds": round(wall, 1), "best_val_top1": best,
                      "fusion": weights["selected"], "report": str(out / "run" / "report" / "report.html")}, indent=2))
    if not args.keep and args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
