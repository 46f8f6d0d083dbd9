"""The prepared GPU check: training throughput, batch limits, DDP on NCCL, and whether the GPU
waits for data, in one run that prints one table. Run it through bench/gpu_check.sh.

    bench/gpu_check.sh                  # a CUDA machine: full sizes, about 5-8 minutes on one GPU
    bench/gpu_check.sh --device cpu     # the same code path at tiny sizes (tests/test_gpu_check.py)

Measured, each on the same device and in the same process:
  1. RGB training steps (forward, backward, SGD) in bf16 autocast with channels_last weights:
     STAA-R50 at 8x224x224 and the largest batch that fits (batches doubled until the first
     out-of-memory error), then plain R50 (TSN) and TSM-R50 at that batch;
  2. a CTR-GCN training step at batch 64 (NTU: 25 joints, 2 persons, 64 frames);
  3. one epoch of `make demo`'s training of each branch (synth.toml, through the stage runner,
     on the demo's crop store, or on a smaller synthetic one when there is none);
  4. the STAA-R50 step wrapped in DistributedDataParallel, NCCL (gloo on CPU), one process;
  5. the data loader's clips/s from the shards with one worker per core, per branch at the
     sizes of 1 and 2, against those training steps: below them, the GPU waits for data.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from mmfc.branches import RGB, SKEL, Branch
from mmfc.config import Pipeline, TrainConfig, load_pipeline
from mmfc.cores import apply_threads, plan_cores
from mmfc.crops.stage import run_crops
from mmfc.crops.store import open_crops
from mmfc.data.synth import generate
from mmfc.data.layouts import NTU25
from mmfc.models import build_ccl
from mmfc.train.loop import Objective, autocast
from mmfc.train.schedule import build_optimizer
from mmfc.train.stage import run_train, split_indices

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    rgb: list[str]  # the RGB model at the check's size (block set per row)
    skel: list[str]
    skel_batch: int
    first_batch: int  # of the batch search, doubled until out of memory or max_batch
    max_batch: int
    steps: int  # timed steps per measurement, after `warmup` untimed ones
    warmup: int
    loader_batches: int
    # The dataset for the demo epoch when the workdir has no demo crop store: generate() and
    # crop settings (the demo itself: `mmfc synth --per-class 2`, 1,152 clips).
    synth: dict
    store: list[str]  # pipeline overrides that go with that dataset
    demo: list[str]  # synth.toml overrides for the demo epoch


FULL = Sizes(
    rgb=["rgb.model.depth=50", "rgb.model.base_width=64", "rgb.model.segments=8", "rgb.model.input_size=224"],
    skel=["skel.model.base_channels=64", "skel.model.num_frames=64", "skel.model.num_persons=2"],
    skel_batch=64, first_batch=8, max_batch=512, steps=10, warmup=3, loader_batches=6,
    synth=dict(per_class=1), store=[], demo=["rgb.train.epochs=1", "skel.train.epochs=1"],
)
TINY = Sizes(
    rgb=["rgb.model.depth=18", "rgb.model.base_width=4", "rgb.model.segments=2", "rgb.model.input_size=32"],
    skel=["skel.model.base_channels=8", "skel.model.num_frames=8", "skel.model.num_persons=2"],
    skel_batch=4, first_batch=1, max_batch=4, steps=1, warmup=1, loader_batches=1,
    synth=dict(per_class=1, actions=[1, 2, 3], performers=[1, 3, 8], cameras=[1], frame_size=(160, 90)),
    store=["data.val_performers=[8]", "crops.size=40", "crops.num_frames=8", "crops.skeleton_frames=16"],
    demo=["rgb.train.epochs=1", "skel.train.epochs=1", "rgb.model.base_width=4", "rgb.model.input_size=32",
          "rgb.train.batch_size=2", "skel.model.base_channels=8", "skel.model.num_frames=8", "skel.train.batch_size=2"],
)


class Table:
    """Rows printed as they are measured (so a run cut short still shows them) and once more,
    as one table, at the end."""

    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, check: str, batch: str, figure: str, note: str) -> None:
        self.rows.append((check, batch, figure, note))
        print(f"  {check}: batch {batch}, {figure}; {note}", flush=True)

    def print(self) -> None:
        widths = [max(len(r[i]) for r in [("check", "batch", "figure", "note"), *self.rows]) for i in range(4)]
        for row in [("check", "batch", "figure", "note"), tuple("-" * w for w in widths), *self.rows]:
            print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc)


def training_objective(cfg: Pipeline, branch: Branch, num_classes: int, device: torch.device):
    section = branch.section(cfg)
    model = branch.build_model(cfg, num_classes, NTU25)
    objective = Objective(model, build_ccl(section.ccl, num_classes, model.feature_dims)).to(device)
    if branch is RGB:
        objective = objective.to(memory_format=torch.channels_last)
    return objective, build_optimizer(objective.parameters(), section.train)


def step_rate(cfg: Pipeline, branch: Branch, batch: int, sizes: Sizes, device: torch.device,
              wrap=lambda objective: objective) -> float:
    """Training clips/s of `branch` at `batch` on random inputs (bf16 autocast), after warm-up."""
    num_classes = 60
    objective, optimizer = training_objective(cfg, branch, num_classes, device)
    trainer = wrap(objective)
    x = torch.randn(batch, *branch.input_shape(cfg, NTU25), device=device)
    labels = torch.randint(0, num_classes, (batch,), device=device)
    trainer.train()
    elapsed = 0.0
    for step in range(sizes.warmup + sizes.steps):
        sync(device)
        start = time.perf_counter()
        with autocast(device, True):
            _, ce, ccl = trainer(x, labels)
        optimizer.zero_grad(set_to_none=True)
        (ce + ccl).backward()
        optimizer.step()
        sync(device)
        if step >= sizes.warmup:
            elapsed += time.perf_counter() - start
    return sizes.steps * batch / elapsed


def largest_batch(cfg: Pipeline, sizes: Sizes, device: torch.device) -> int:
    """The largest batch, doubling from sizes.first_batch, whose training step fits in memory."""
    fits, batch = 0, sizes.first_batch
    while batch <= sizes.max_batch:
        try:
            step_rate(cfg, RGB, batch, dataclasses.replace(sizes, steps=1, warmup=0), device)
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            break
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        fits, batch = batch, batch * 2
    if not fits:
        raise SystemExit(f"STAA-R50 does not fit one batch of {sizes.first_batch} on {device}")
    return fits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def one_process_group(device: torch.device):
    """A process group of one on a free local port: NCCL on CUDA, gloo on CPU, as training uses."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1,
                            **({"device_id": device} if device.type == "cuda" else {}))
    try:
        yield backend
    finally:
        dist.destroy_process_group()


def ddp(device: torch.device):
    """DDP as mmfc.train.distributed.wrap_model builds it for several processes."""
    def wrap(objective):
        if device.type == "cuda":
            objective = torch.nn.SyncBatchNorm.convert_sync_batchnorm(objective)
            return torch.nn.parallel.DistributedDataParallel(objective, device_ids=[device.index])
        return torch.nn.parallel.DistributedDataParallel(objective)
    return wrap


def demo_store(workdir: Path, tmp: Path, sizes: Sizes) -> tuple[Pipeline, str]:
    """The demo's pipeline on its crop store (<repo>/runs/synth after `make demo`), or on a
    synthetic one written now."""
    demo = REPO / "runs/synth"
    overrides = [f"workdir={json.dumps(str(workdir))}", *sizes.demo]
    if (demo / "crops/index.parquet").is_file() and sizes is FULL:
        return load_pipeline(REPO / "pipelines/synth.toml", [*overrides, f"crops_from={json.dumps(str(demo))}"]), \
            f"the demo's crops ({demo})"
    summary = generate(tmp / "synth", **sizes.synth)
    cfg = load_pipeline(REPO / "pipelines/synth.toml", [
        *overrides, f"data.root={json.dumps(str(tmp / 'synth'))}", f"data.class_names={json.dumps(str(tmp / 'synth/class_names.txt'))}",
        *sizes.store,
    ])
    run_crops(cfg)
    return cfg, f"{summary['samples']} synthetic clips written now (no runs/synth/crops)"


def loader_rate(cfg: Pipeline, branch: Branch, store, batch: int, sizes: Sizes, device: torch.device) -> tuple[float, int]:
    """Training clips/s of the branch's DataLoader over the shards, one worker per core."""
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    dataset = branch.build_dataset(cfg, store, split_indices(store, "train"), train=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", drop_last=False,
                                         generator=torch.Generator().manual_seed(0))
    batches, clips = iter(loader), 0
    next(batches)  # the workers' start-up is not what a long epoch pays per batch
    start = time.perf_counter()
    for _ in range(sizes.loader_batches):
        try:
            x, _, _ = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, _, _ = next(batches)
        clips += len(x)
    return clips / (time.perf_counter() - start), workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (cuda:N) or cpu")
    parser.add_argument("--size", choices=["full", "tiny"], default=None,
                        help="full on CUDA, tiny on CPU unless given")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"no CUDA device: torch {torch.__version__} sees none (install the CUDA build of torch "
                         "into .venv; README, Quick start), or run with --device cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)  # NCCL's device_id and DDP's device_ids need the index
    sizes = {"full": FULL, "tiny": TINY}[args.size or ("full" if device.type == "cuda" else "tiny")]
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
        name = torch.cuda.get_device_name(device)
    # The CPU side of every step on the threads training would take (mmfc/cores.py).
    apply_threads(plan_cores(TrainConfig(), device.type).threads)
    if device.type == "cpu":
        name = f"CPU, {torch.get_num_threads()} threads"
    print(f"gpu_check on {name}; torch {torch.__version__}; {'full' if sizes is FULL else 'tiny'} sizes", flush=True)
    table = Table()
    start = time.perf_counter()

    base = load_pipeline(None, [*sizes.rgb, *sizes.skel])
    batch = largest_batch(load_pipeline(None, [*sizes.rgb, "rgb.model.block=staa"]), sizes, device)
    rates = {}
    for block, label in (("staa", "STAA"), ("plain", "plain (TSN)"), ("tsm", "TSM")):
        cfg = load_pipeline(None, [*sizes.rgb, f"rgb.model.block={block}"])
        rates[block] = step_rate(cfg, RGB, batch, sizes, device)
        m = cfg.rgb.model
        note = "largest batch that fits (doubling)" if block == "staa" else f"{rates[block] / rates['staa']:.2f}x STAA"
        table.add(f"RGB {label}-R{m.depth} {m.segments}x{m.input_size}x{m.input_size} bf16 channels_last",
                  str(batch), f"{rates[block]:.1f} clips/s", note)
    skel_rate = step_rate(base, SKEL, sizes.skel_batch, sizes, device)
    table.add(f"CTR-GCN {base.skel.model.base_channels} ch, {base.skel.model.num_frames} frames bf16",
              str(sizes.skel_batch), f"{skel_rate:.1f} clips/s", f"NTU-25 joints, {base.skel.model.num_persons} persons")
    with one_process_group(device) as backend:
        staa = load_pipeline(None, [*sizes.rgb, "rgb.model.block=staa"])
        ddp_rate = step_rate(staa, RGB, batch, sizes, device, wrap=ddp(device))
    table.add(f"DDP ({backend}, 1 process) RGB STAA", str(batch), f"{ddp_rate:.1f} clips/s",
              f"{ddp_rate / rates['staa']:.2f}x without DDP")

    # Last: the stage runner switches cuDNN's benchmark off and deterministic algorithms on, as
    # training does, which the steps above are not measured with.
    with tempfile.TemporaryDirectory() as tmp:
        cfg, where = demo_store(Path(tmp) / "run", Path(tmp), sizes)
        store = open_crops(cfg.paths.crops)
        train_clips = len(split_indices(store, "train"))
        for branch in (RGB, SKEL):
            epoch_start = time.perf_counter()
            run_train(cfg, branch.name)
            seconds = time.perf_counter() - epoch_start
            table.add(f"one demo epoch, {branch.name} (mmfc stage train, synth.toml)",
                      str(branch.section(cfg).train.batch_size), f"{seconds:.1f} s",
                      f"{train_clips} training clips, validation included; {where}")

        for branch, step, step_batch in ((RGB, rates["staa"], batch), (SKEL, skel_rate, sizes.skel_batch)):
            sized = load_pipeline(None, [*sizes.rgb, *sizes.skel, "rgb.model.block=staa"])
            rate, workers = loader_rate(sized, branch, store, step_batch, sizes, device)
            verdict = f"the {device.type.upper()} waits for data" if rate < step else "the loader keeps up"
            table.add(f"loader {branch.name} from the shards, {workers} workers", str(step_batch),
                      f"{rate:.1f} clips/s", f"{rate / step:.2f}x the training step: {verdict}")

    print(f"\ngpu_check: {time.perf_counter() - start:.0f} s on {name}")
    table.print()


if __name__ == "__main__":
    sys.exit(main())
