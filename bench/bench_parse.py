"""NTU .skeleton parsing speed: mmfc's bulk parser against a line-by-line Python parser.

    .venv/bin/python bench/bench_parse.py              # the 6 real files (synthetic if absent)
    .venv/bin/python bench/bench_parse.py --synthetic  # generated files of realistic size
    .venv/bin/python bench/bench_parse.py --seconds 5 --parallel-files 3000

Prints files/s and MB/s of both parsers measured in the same run, the speed-up, and the
time to parse the 56,578 skeleton files of NTU RGB+D 60 on 2 cores (joblib over files),
extrapolated from a parallel run over repeated files.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from mmfc.data.ntu import load_skeleton, parse_skeleton

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "ntu_skeleton"
NTU60_FILES = 56_578


def naive_parse(path: Path) -> tuple[int, dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """The straightforward reference: one readline() and float() per value, arrays at the end."""
    bodies: dict[int, dict[str, list]] = {}
    with open(path) as f:
        num_frames = int(f.readline())
        for frame in range(num_frames):
            for _ in range(int(f.readline())):
                info = f.readline().split()
                body = bodies.setdefault(int(info[0]), {"frames": [], "joints": [], "info": []})
                num_joints = int(f.readline())
                body["joints"].append([[float(v) for v in f.readline().split()] for _ in range(num_joints)])
                body["info"].append([float(v) for v in info])
                body["frames"].append(frame)
    return num_frames, {
        body_id: (np.array(b["frames"]), np.array(b["joints"], np.float32), np.array(b["info"], np.float32))
        for body_id, b in bodies.items()
    }


def synthetic_files(folder: Path, count: int = 6, seed: int = 0) -> list[Path]:
    """Files shaped like the release: 70-130 frames, 1-2 bodies, 7-significant-digit values."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        frames, persons = int(rng.integers(70, 130)), 1 + i % 3 // 2
        lines = [str(frames)]
        for _ in range(frames):
            lines.append(str(persons))
            for p in range(persons):
                lines.append(f"{72057594037931101 + p} 0 1 1 1 1 0 {rng.normal():.7g} {rng.normal():.7g} 2")
                lines.append("25")
                joints = rng.normal(size=(25, 12)) * [0.3, 0.5, 0.2, 30, 30, 100, 100, 0.5, 0.5, 0.5, 0.5, 0]
                joints += [0, 0, 3.5, 260, 180, 960, 540, 0, 0, 0, 0, 2]
                lines += [" ".join(f"{v:.7g}" for v in row) for row in joints]
        path = folder / f"S001C001P{i + 1:03d}R001A001.skeleton"
        path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
        paths.append(path)
    return paths


def interleaved_times(parsers: dict, paths: list[Path], seconds: float) -> dict[str, np.ndarray]:
    """Seconds per pass over all files, for each parser, passes taken in turn.

    Taking the passes in turn exposes every parser to the same load from other processes; the
    fastest pass is the figure least disturbed by them, the median the typical one.
    """
    times: dict[str, list[float]] = {name: [] for name in parsers}
    start = time.perf_counter()
    while time.perf_counter() - start < seconds * len(parsers) or len(times[next(iter(parsers))]) < 3:
        for name, parse in parsers.items():
            tic = time.perf_counter()
            for path in paths:
                parse(path)
            times[name].append(time.perf_counter() - tic)
    return {name: np.array(values) for name, values in times.items()}


def naive_count(path: Path) -> int:
    return naive_parse(path)[0]


def parse_count(path: Path) -> int:
    return parse_skeleton(path).num_frames


def load_count(path: Path) -> int:
    return load_skeleton(path)[0].num_frames


def parallel_rate(work, paths: list[Path], total: int, jobs: int) -> float:
    """Files/s of `jobs` worker processes over `total` files (the given ones, repeated)."""
    files = [paths[i % len(paths)] for i in range(total)]
    with Parallel(n_jobs=jobs, batch_size=64) as parallel:
        parallel(delayed(work)(p) for p in paths)  # start the workers before timing
        start = time.perf_counter()
        parallel(delayed(work)(p) for p in files)
        return total / (time.perf_counter() - start)


def check_agreement(paths: list[Path]) -> None:
    for path in paths:
        num_frames, naive = naive_parse(path)
        fast = parse_skeleton(path)
        assert num_frames == fast.num_frames and naive.keys() == fast.bodies.keys(), path
        for body_id, (frames, joints, _) in naive.items():
            np.testing.assert_array_equal(frames, fast.bodies[body_id].frames)
            np.testing.assert_array_equal(joints, fast.bodies[body_id].joints)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", action="store_true", help="Generated files even if real ones exist.")
    parser.add_argument("--seconds", type=float, default=3.0, help="Seconds of 1-process passes per parser.")
    parser.add_argument("--parallel-files", type=int, default=1500, help="Files parsed in the parallel run.")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if REALDATA.is_dir() and not args.synthetic:
            paths, kind = sorted(REALDATA.glob("*.skeleton")), "real NTU files"
        else:
            paths, kind = synthetic_files(Path(tmp)), "synthetic files"
        size = sum(p.stat().st_size for p in paths) / len(paths)
        print(f"{len(paths)} {kind}, mean {size / 1e3:.0f} kB; CPU cores visible: {os.cpu_count()}")
        check_agreement(paths)
        print("both parsers agree on every frame, body ID and joint value")

        parsers = {
            "line-by-line (reference)": naive_parse,
            "mmfc parse_skeleton": parse_skeleton,
            "mmfc load_skeleton (+select)": load_skeleton,
        }
        times = interleaved_times(parsers, paths, args.seconds)
        megabytes = size * len(paths) / 1e6
        header = ("files/s", "MB/s", "(median:", "files/s", "MB/s)")
        print(f"{'1 process, fastest pass':36s} {header[0]:>8s} {header[1]:>6s} {header[2]:>9s} "
              f"{header[3]:>7s} {header[4]:>6s}")
        for name, passes in times.items():
            best, typical = passes.min(), np.median(passes)
            print(f"{name:36s} {len(paths) / best:8.0f} {megabytes / best:6.1f} {'':9s} "
                  f"{len(paths) / typical:7.0f} {megabytes / typical:6.1f}")
        naive, fast = times["line-by-line (reference)"], times["mmfc parse_skeleton"]
        print(f"speed-up of parse_skeleton over line-by-line: {naive.min() / fast.min():.1f}x on the "
              f"fastest passes, {np.median(naive) / np.median(fast):.1f}x on the median passes "
              f"({len(naive)} passes each)")

        runs = (("line-by-line", naive_count), ("parse_skeleton", parse_count), ("load_skeleton", load_count))
        for name, work in runs:
            rate = parallel_rate(work, paths, args.parallel_files, args.jobs)
            minutes = NTU60_FILES / rate / 60
            print(
                f"{name} on {args.jobs} processes: {rate:.0f} files/s -> NTU60 ({NTU60_FILES:,} files) "
                f"in {minutes:.1f} min (files of {size / 1e3:.0f} kB)"
            )


if __name__ == "__main__":
    main()
