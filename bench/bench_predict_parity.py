"""Parity of `mmfc predict` with the stages: the test clips of a synthetic run, predicted from their
raw videos and .skeleton files, against the run's own fusion/fused.parquet.

Runs the command itself (`mmfc predict --skeleton <dataset>/nturgb+d_skeletons --out ...` over a
list file of the test videos) and compares its predictions.parquet with fused.parquet: the share
of clips with the same fused top-1 class, and the top-1 accuracy of each (goal: >= 99% agree,
accuracies within 0.5 points).

    python bench/bench_predict_parity.py --run runs/synth --data data/synth
    python bench/bench_predict_parity.py --run runs/synth --data data/synth --out /tmp/parity

The output folder keeps one result file per video, so an interrupted bench goes on where it stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mmfc.scores.format import read_scores

MMFC = Path(sys.executable).with_name("mmfc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/synth"))
    parser.add_argument("--data", type=Path, default=Path("data/synth"), help="the run's dataset (NTU layout)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/mmfc-predict-parity"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="only the first N test clips (0: all)")
    args = parser.parse_args()

    fused = read_scores(args.run / "fusion" / "fused.parquet").rows("test")
    ids = fused.ids[: args.limit or None]
    args.out.mkdir(parents=True, exist_ok=True)
    listing = args.out / "videos.txt"
    listing.write_text("".join(f"{(args.data / 'nturgb+d_rgb' / f'{i}_rgb.avi').resolve()}\n" for i in ids))
    command = [str(MMFC), "predict", str(listing), "--run", str(args.run), "--skeleton",
               str(args.data / "nturgb+d_skeletons"), "--out", str(args.out), "--no-draw", "--json", "--jobs", str(args.jobs)]
    print(" ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started

    rows = {Path(r["input"]).name.removesuffix("_rgb.avi"): r for r in pq.read_table(args.out / "predictions.parquet").to_pylist()}
    names = fused.class_names
    stored = [names[int(k)] for k in fused.logits[: len(ids)].argmax(axis=1)]
    predicted = [rows[i]["top1"] for i in ids]
    truth = [names[int(k)] for k in fused.labels[: len(ids)]]
    agree = np.mean([a == b for a, b in zip(stored, predicted)])
    failed = [i for i in ids if rows[i]["status"] != "ok"]
    figures = {
        "clips": len(ids),
        "failed": len(failed),
        "agree_top1_percent": round(100 * float(agree), 2),
        "stages_top1_percent": round(100 * float(np.mean([a == b for a, b in zip(stored, truth)])), 2),
        "predict_top1_percent": round(100 * float(np.mean([a == b for a, b in zip(predicted, truth)])), 2),
        "max_probability_difference": round(float(max(
            abs(rows[i]["top1_probability"] - float(np.exp(row.max() - np.logaddexp.reduce(row))))
            for i, row in zip(ids, fused.logits) if rows[i]["status"] == "ok")), 6),
        "seconds": round(seconds, 1),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
