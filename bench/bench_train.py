"""Stage 2 throughput: clip loading from the crop store and training steps per modality.

Builds a small synthetic crop store with the pipeline's crop settings (real stage 1), then
measures, side by side in one run:
  - loading: training clips/s (decode + augmentation) and evaluation clips/s, per modality;
  - training: clips/s of forward + backward + SGD step at the pipeline's model sizes, fp32
    against bf16 autocast (CPU autocast is what train.amp_cpu switches on).

    .venv/bin/python bench/bench_train.py                      # synth.toml models, 1-2 min on 2 cores
    .venv/bin/python bench/bench_train.py --pipeline pipelines/ntu60-xsub.toml --steps 2   # full-size models
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from mmfc.branches import BRANCHES, Branch
from mmfc.config import load_pipeline
from mmfc.crops.stage import run_crops
from mmfc.crops.store import open_crops
from mmfc.data.synth import generate
from mmfc.models import build_ccl
from mmfc.train.loop import Objective, autocast
from mmfc.train.schedule import build_optimizer
from mmfc.train.stage import split_indices


def build_store(root: Path, pipeline: Path, threads: int):
    generate(root / "synth", per_class=1, actions=list(range(1, 13)), performers=[1, 3, 8], cameras=[1], n_jobs=threads)
    cfg = load_pipeline(pipeline, [
        f"workdir={json.dumps(str(root / 'run'))}", f"data.root={json.dumps(str(root / 'synth'))}",
        "data.source=ntu", "data.protocol=xsub", "data.num_classes=12", "data.class_names=",
        "data.layout=ntu25", "data.val_performers=[8]", f"jobs.n_jobs={threads}",
    ])
    run_crops(cfg)
    return cfg


def loading_rate(dataset, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        dataset[i % len(dataset)]
    return count / (time.perf_counter() - start)


def training_rate(cfg, branch: Branch, store, steps: int, amp: bool) -> float:
    torch.manual_seed(0)
    section = branch.section(cfg)
    model = branch.build_model(cfg, store.num_classes, store.layout)
    objective = Objective(model, build_ccl(section.ccl, store.num_classes, model.feature_dims))
    objective.train()
    optimizer = build_optimizer(objective.parameters(), section.train)
    dataset = branch.build_dataset(cfg, store, split_indices(store, "train"), train=True)
    batch_size = section.train.batch_size
    batch = [dataset[i % len(dataset)] for i in range(batch_size)]
    x, labels = torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch])
    device = torch.device("cpu")
    elapsed = 0.0
    for step in range(steps + 1):  # the first step warms up allocators and is not timed
        start = time.perf_counter()
        with autocast(device, amp):
            _, ce, ccl = objective(x, labels)
        optimizer.zero_grad()
        (ce + ccl).backward()
        optimizer.step()
        if step:
            elapsed += time.perf_counter() - start
    return steps * batch_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", type=Path, default=Path("pipelines/synth.toml"))
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per setting")
    parser.add_argument("--clips", type=int, default=24, help="clips loaded per loading measurement")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_store(Path(tmp), args.pipeline, args.threads)
        store = open_crops(cfg.paths.crops)
        train_idx = split_indices(store, "train")
        print(f"pipeline {args.pipeline}: crops {cfg.crops.size}px x {cfg.crops.num_frames} frames; "
              f"{len(store)} samples; torch threads {args.threads}")
        print(f"rgb model: depth {cfg.rgb.model.depth} width {cfg.rgb.model.base_width} {cfg.rgb.model.block} "
              f"{cfg.rgb.model.segments}x{cfg.rgb.model.input_size}px, batch {cfg.rgb.train.batch_size}; "
              f"skel model: {cfg.skel.model.base_channels} channels, {cfg.skel.model.num_frames} frames, "
              f"batch {cfg.skel.train.batch_size}")
        print(f"{'modality':8} {'load train clips/s':>19} {'load eval clips/s':>18} "
              f"{'train fp32 clips/s':>19} {'train bf16 clips/s':>19}")
        for name, branch in ((name, BRANCHES[name]) for name in cfg.branches):
            train_rate = loading_rate(branch.build_dataset(cfg, store, train_idx, train=True), args.clips)
            eval_rate = loading_rate(branch.build_dataset(cfg, store, train_idx, train=False), args.clips)
            fp32 = training_rate(cfg, branch, store, args.steps, amp=False)
            bf16 = training_rate(cfg, branch, store, args.steps, amp=True)
            print(f"{name:8} {train_rate:19.1f} {eval_rate:18.1f} {fp32:19.1f} {bf16:19.1f}")


if __name__ == "__main__":
    main()
