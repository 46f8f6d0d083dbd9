"""The four skeleton streams of pipelines/nw-ucla.toml and the fusion fitted over them, on real
NW-UCLA (cross-view): each stream alone, the fixed ensembles the peers use (PYSKL's 1:1:1:1,
CTR-GCN's 0.6:0.6:0.4:0.4) and the fusion stage 4 selects, on the same test clips, each with
its 95% interval and a paired test against the joint stream (docs/benchmarks.md, "Real
recordings").

    .venv/bin/python bench/bench_streams.py                    # the side-by-side schedule of bench_real
    .venv/bin/python bench/bench_streams.py --width 32 --epochs 20   # pipelines/nw-ucla.toml's own

Every stream trains with the same settings and seed, one process at a time, on one crop store;
stage 4 then fits and selects the fusion on validation (a tenth of the training recordings) as
`make fuse` does; test chooses nothing. A rerun reuses what finished (each stage resumes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_real import FULL_SCHEDULE, REALDATA, REPO, Schedule, percent, print_table, run_stage

STREAMS = ("joint", "bone", "joint_motion", "bone_motion")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REALDATA / "nw_ucla", help="the folder holding all_sqe/")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "streams")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6, help="CTR-GCN's epochs, each of 5 passes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not (args.data / "all_sqe").is_dir():
        print(f"bench_streams: {args.data / 'all_sqe'}: no such folder (--data names the folder holding it)",
              file=sys.stderr)
        return 2
    epochs, warmup, step = FULL_SCHEDULE
    schedule = Schedule(args.width, args.epochs, round(args.epochs * warmup / epochs), round(args.epochs * step / epochs))

    from mmfc.config import CTRGCN_FUSION, pyskl_ratios, single_fusion
    from mmfc.fusion.files import open_fusion
    from mmfc.stats import accuracy_interval, compare_paired

    pipeline = REPO / "pipelines" / "nw-ucla.toml"
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "log.txt"
    settings = [f"workdir={json.dumps(str(args.out))}", f"data.root={json.dumps(str(args.data))}", "jobs.n_jobs=1",
                f"skel.train.seed={args.seed}", f"skel.train.threads={args.threads}", "skel.train.loader_workers=0",
                f"branches={json.dumps(list(STREAMS))}", *schedule.mmfc_settings()]
    print(f"bench_streams: {schedule.describe()}, seed {args.seed}, {args.threads} thread(s); under {args.out}",
          flush=True)
    if not (args.out / "crops" / "index.parquet").is_file():
        run_stage("crops", pipeline, settings, log)
    for stream in STREAMS:
        run_stage("train", pipeline, settings, log, branch=stream)
        run_stage("scores", pipeline, settings, log, branch=stream)
        print(f"bench_streams: {stream} trained and scored", flush=True)
    run_stage("fuse", pipeline, settings, log)

    fusion = open_fusion(args.out / "fusion")
    selected = fusion.selected
    methods = fusion.candidates
    shown = ([(single_fusion(s), f"{s} alone") for s in STREAMS]
             + [(name, "PYSKL's equal sum of probabilities") for name in pyskl_ratios(STREAMS)]
             + [(CTRGCN_FUSION, "CTR-GCN's ensemble.py, logits 0.6:0.6:0.4:0.4")]
             + [(name, f"fitted on validation: `{name}`") for name in ("global", "per_class", "adaptive") if name in methods]
             + [(selected, f"**selected by stage 4** (`{selected}`)")])
    test_hits = {}
    for candidate, _ in shown:
        table = fusion.scores(candidate)
        test = [i for i, split in enumerate(table.splits) if split == "test"]
        test_hits[candidate] = table.logits[test].argmax(1) == table.labels[test]
    rows = []
    for candidate, name in shown:
        hits = test_hits[candidate]
        ci = accuracy_interval(int(hits.sum()), len(hits), seed=0)
        step_text = ""
        if candidate != single_fusion("joint"):
            paired = compare_paired(hits, test_hits[single_fusion("joint")], seed=0)
            step_text = f"{100 * paired.difference:+.1f} (p {paired.p_value:.2g})"
        rows.append(f"| {name} | {percent(hits.mean())} ({percent(ci.low)}-{percent(ci.high)}) | {step_text} |")
    weights = fusion.weights["methods"][selected].get("branch_shares") or {}
    notes = [f"{len(hits)} test clips; the fusion fitted on validation only."]
    if weights:
        notes.append("Each stream's share of the selected fusion: "
                     + ", ".join(f"{stream} {share:.2f}" for stream, share in weights.items()))
    print_table(f"NW-UCLA, the four streams and their fusion ({schedule.describe()}, seed {args.seed})",
                "| system | test top-1 % (95% interval) | against the joint stream, points (paired) |", rows, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
