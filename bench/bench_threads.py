"""Training steps beside busy processes: torch's default thread count against train.threads "auto".

Builds a small synthetic crop store (real stage 1, as bench_train.py), starts `--busy`
CPU-burning processes, and times forward + backward + SGD steps of both branches at the
pipeline's model sizes and batch sizes, alternating the two settings in one run (old, new, old,
new, ...) so that the machine's own load shifts both alike:
  - old: torch's default, one intra-op thread per core (what training used before "auto");
  - new: mmfc.cores.plan_cores with the pipeline's train section ("auto": the cores this process
    may use, less those the other processes keep busy and the loader workers).

    .venv/bin/python bench/bench_threads.py                # synth.toml (the demo's models), 1 busy process
    .venv/bin/python bench/bench_threads.py --busy 0       # only what else the machine runs
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_train import build_store, training_rate

from mmfc.branches import BRANCHES
from mmfc.cores import apply_threads, plan_cores, usable_cores
from mmfc.crops.store import open_crops


def burn() -> None:
    """A process that keeps one core busy until it is terminated."""
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", type=Path, default=Path("pipelines/synth.toml"))
    parser.add_argument("--busy", type=int, default=1, help="CPU-burning processes beside training")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per measurement (after one untimed)")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per setting, alternating")
    args = parser.parse_args()
    old_threads = torch.get_num_threads()  # torch's default, before anything sets it

    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_store(Path(tmp), args.pipeline, old_threads)
        store = open_crops(cfg.paths.crops)
        declared = {name: BRANCHES[name] for name in cfg.branches}
        burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(args.busy)]
        for process in burners:
            process.start()
        try:
            time.sleep(0.5)  # the burners are running before "auto" looks
            plans = {name: plan_cores(branch.section(cfg).train, "cpu") for name, branch in declared.items()}
            print(f"pipeline {args.pipeline}; {usable_cores()} cores; {args.busy} busy process(es) started; "
                  f"{args.steps} timed step(s) per measurement, {args.repeats} measurements per setting")
            for name, plan in plans.items():
                print(f"  {name} auto: {plan.describe()}")
            rates: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.repeats):
                for setting in ("old", "new"):
                    for name, branch in declared.items():
                        apply_threads(old_threads if setting == "old" else plans[name].threads)
                        rate = training_rate(cfg, branch, store, args.steps, amp=False)
                        rates.setdefault((name, setting), []).append(rate)
        finally:
            for process in burners:
                process.terminate()

    # The columns of docs/benchmarks.md, section 10: torch's default threads against "auto".
    print(f"{'branch':7} {'batch':>5} {'default threads':>15} {'default clips/s':>15} {'auto threads':>12} "
          f"{'auto clips/s':>12} {'auto/default':>12}")
    for name, branch in declared.items():
        old, new = (statistics.median(rates[name, setting]) for setting in ("old", "new"))
        print(f"{name:7} {branch.section(cfg).train.batch_size:5d} {old_threads:15d} {old:15.2f} "
              f"{plans[name].threads:12d} {new:12.2f} {new / old:11.1f}x")


if __name__ == "__main__":
    main()
