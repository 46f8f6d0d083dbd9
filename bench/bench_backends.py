"""Stage 1 on each backend of mmfc.jobs, side by side in one run: loky, Dask and Ray at 1 and 2
workers over the same 48 synthetic clips.

Prints each configuration's wall time, each engine's overhead against loky at the same number of
workers (goal: at most 10% at 2 workers) and its speed-up from 1 to 2 workers. Workers is jobs.n_jobs:
loky's worker processes (at 1 it runs in this process, as joblib does), and on Dask (a
LocalCluster of 2 one-thread worker processes) and Ray (a local Ray with 2 CPUs) the cap on jobs
running at once; both engines are started as mmfc starts them for a run
(mmfc.jobs.local_dask_cluster, init_local_ray), and before any timing, as a cluster is up when a
pipeline joins it. Each configuration then runs once untimed (its workers' imports), and then
in `--rounds` rounds, each running every configuration once, in an order that turns round by
round (and runs backwards every other round), so that each sits at each place equally often.
A run of a few seconds on a shared machine varies by a fifth from one minute to the next, more
than the overheads measured, so the figures are ratios taken within a round, against the loky
run beside them: the median over the rounds, and their range. The crop settings are the
defaults (32 frames of 256 px, as the NTU pipelines); `--clips` clips (96) in batches of 4 give
24 jobs. Before the rounds, each engine's own CPU use with nothing submitted is measured (this
process and its children, 10 s), for the LocalCluster with mmfc's settings
(mmfc.jobs.DASK_LOCAL_CONFIG) and, for comparison, one with Dask's defaults, and for Ray.

    .venv/bin/python bench/bench_backends.py               # about six minutes on 2 cores
    .venv/bin/python bench/bench_backends.py --rounds 12
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from mmfc.config import load_pipeline
from mmfc.crops.stage import run_crops
from mmfc.data.synth import generate
from mmfc.jobs import init_local_ray, local_dask_cluster

REPO = Path(__file__).resolve().parents[1]


def crop_once(root: Path, workdir: Path, backend: str, workers: int) -> float:
    shutil.rmtree(workdir, ignore_errors=True)
    cfg = load_pipeline(None, [
        f"workdir={json.dumps(str(workdir))}", f"data.root={json.dumps(str(root))}", "data.num_classes=12",
        f"data.class_names={json.dumps(str(root / 'class_names.txt'))}", "data.val_performers=[]",
        "crops.samples_per_shard=4", f"jobs.backend={backend}", f"jobs.n_jobs={workers}",
    ])
    started = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # the progress bars
        assert run_crops(cfg) == 0
    return time.perf_counter() - started


def idle_cores(seconds: float = 10.0) -> float:
    """CPU time of this process and its children over `seconds` of doing nothing, in cores."""
    import psutil

    time.sleep(2)  # the engine's start-up settles
    processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
    before = [sum(p.cpu_times()[:2]) for p in processes]
    time.sleep(seconds)
    return sum(sum(p.cpu_times()[:2]) - b for p, b in zip(processes, before)) / seconds


def engines_idle() -> dict[str, float]:
    """Each engine's idle CPU, in cores: Dask with mmfc's settings and with its own, Ray."""
    import ray

    idle = {}
    with local_dask_cluster(n_workers=2):
        idle["dask, mmfc's LocalCluster settings"] = idle_cores()
    with local_dask_cluster(n_workers=2, settings={}):
        idle["dask, Dask's default settings"] = idle_cores()
    init_local_ray(num_cpus=2, log_to_driver=False)
    try:
        idle["ray, local"] = idle_cores()
    finally:
        ray.shutdown()
    return idle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8, help="rounds of one timed run of every configuration")
    parser.add_argument("--clips", type=int, default=96, help="synthetic clips (12 classes, a multiple of 12)")
    args = parser.parse_args()

    import ray
    from distributed import Client

    tmp = Path(tempfile.mkdtemp(prefix="bench_backends_"))
    try:
        root = tmp / "synth"
        performers = max(1, args.clips // 12)
        summary = generate(root, per_class=1, actions=list(range(1, 13)), performers=list(range(1, performers + 1)), cameras=[1])
        print(f"{summary['samples']} clips, {summary['frames']} frames at 480x270 (mmfc synth, 12 classes x {performers} performers)")
        configs = [(backend, workers) for workers in (1, 2) for backend in ("loky", "dask", "ray")]
        idle = engines_idle()
        rounds: list[dict[tuple[str, int], float]] = []
        with local_dask_cluster(n_workers=2) as cluster, Client(cluster):
            init_local_ray(num_cpus=2, log_to_driver=False)
            try:
                for config in configs:
                    crop_once(root, tmp / "work", *config)  # the workers' imports, the page cache
                for r in range(args.rounds):
                    order = configs[r % len(configs):] + configs[:r % len(configs)]
                    order = order[::-1] if r % 2 else order
                    rounds.append({config: crop_once(root, tmp / "work", *config) for config in order})
            finally:
                ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    clips = summary["samples"]

    def ratios(config, against) -> list[float]:
        return [times[config] / times[against] for times in rounds]

    print(f"\nstage 1, {clips} clips, {args.rounds} rounds: median seconds; ratios within a round, median [range]")
    print(f"{'backend':8} {'workers':>7} {'seconds':>8} {'clips/s':>8} {'vs loky':>22} {'1->2 workers':>20}")
    for backend in ("loky", "dask", "ray"):
        for workers in (1, 2):
            s = statistics.median(t[backend, workers] for t in rounds)
            against = ratios((backend, workers), ("loky", workers))
            overhead = f"{statistics.median(against) - 1:+.1%} [{min(against) - 1:+.0%}, {max(against) - 1:+.0%}]"
            speedups = [1 / x for x in ratios((backend, 2), (backend, 1))]
            speedup = f"{statistics.median(speedups):.2f}x [{min(speedups):.2f}, {max(speedups):.2f}]" if workers == 2 else ""
            print(f"{backend:8} {workers:>7} {s:>8.2f} {clips / s:>8.1f} {overhead:>22} {speedup:>20}")
    print("\nidle CPU with nothing submitted (this process and its children, 10 s):")
    for name, cores in idle.items():
        print(f"  {name:38} {cores:.3f} cores")
    for backend in ("dask", "ray"):
        overhead = statistics.median(ratios((backend, 2), ("loky", 2))) - 1
        verdict = "within" if overhead <= 0.10 else "over"
        print(f"{backend} at 2 workers: {overhead:+.1%} against loky, median of {args.rounds} rounds ({verdict} the 10% goal)")


if __name__ == "__main__":
    main()
