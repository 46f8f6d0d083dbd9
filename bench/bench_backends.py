"""Stage 1 on each backend of mmfc.jobs, side by side in one run: loky, Dask and Ray at 1 and 2
workers over the same 48 synthetic clips.

Prints each run's wall time, each engine's overhead against loky at the same number of workers
(goal: at most 10% at 2 workers) and its speed-up from 1 to 2 workers. Workers is jobs.n_jobs:
loky's worker processes (at 1 it runs in this process, as joblib does), and on Dask (a
LocalCluster of 2 one-thread worker processes) and Ray (a local Ray with 2 CPUs) the cap on jobs
running at once; both engines are started as mmfc starts them for a run
(mmfc.jobs.local_dask_cluster, init_local_ray), and before any timing, as a cluster is up when a
pipeline joins it. Each configuration then runs once untimed (its workers' imports), and
`--repeats` timed runs back to back, as a long stage keeps its workers busy; the configurations
go forward, then backward, so that a load drifting on a shared machine weighs on all alike, and
each one's fastest run counts. The crop settings are the defaults (32 frames of 256 px, as the
NTU pipelines); 48 clips in batches of 4 give 12 jobs.

    .venv/bin/python bench/bench_backends.py               # about four minutes on 2 cores
    .venv/bin/python bench/bench_backends.py --repeats 3   # best of 6 per configuration
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per configuration and pass; the fastest counts")
    args = parser.parse_args()

    import ray
    from distributed import Client

    tmp = Path(tempfile.mkdtemp(prefix="bench_backends_"))
    try:
        root = tmp / "synth"
        summary = generate(root, per_class=1, actions=list(range(1, 13)), performers=[1, 2, 3, 4], cameras=[1])
        print(f"{summary['samples']} clips, {summary['frames']} frames at 480x270 (mmfc synth, 12 classes x 4 performers)")
        configs = [(backend, workers) for workers in (1, 2) for backend in ("loky", "dask", "ray")]
        times: dict[tuple[str, int], list[float]] = {config: [] for config in configs}
        with local_dask_cluster(n_workers=2) as cluster, Client(cluster):
            init_local_ray(num_cpus=2, log_to_driver=False)
            try:
                # Forward, then backward: a load that drifts weighs on every configuration alike.
                for config in configs + configs[::-1]:
                    crop_once(root, tmp / "work", *config)  # the workers' imports, the page cache
                    times[config] += [crop_once(root, tmp / "work", *config) for _ in range(args.repeats)]
            finally:
                ray.shutdown()
        seconds = {config: min(t) for config, t in times.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    clips = summary["samples"]
    print(f"\nstage 1, {clips} clips (best of {2 * args.repeats})")
    print(f"{'backend':8} {'workers':>7} {'seconds':>8} {'clips/s':>8} {'vs loky':>8} {'1->2 workers':>13}")
    for backend in ("loky", "dask", "ray"):
        for workers in (1, 2):
            s = seconds[backend, workers]
            overhead = s / seconds["loky", workers] - 1
            speedup = f"{seconds[backend, 1] / s:.2f}x" if workers == 2 else ""
            print(f"{backend:8} {workers:>7} {s:>8.2f} {clips / s:>8.1f} {overhead:>+8.1%} {speedup:>13}")
    for backend in ("dask", "ray"):
        overhead = seconds[backend, 2] / seconds["loky", 2] - 1
        verdict = "within" if overhead <= 0.10 else "over"
        print(f"{backend} at 2 workers: {overhead:+.1%} against loky ({verdict} the 10% goal)")


if __name__ == "__main__":
    main()
