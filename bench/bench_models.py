"""Training-step time of the RGB branch: STAA-R50 against plain R50 (TSN) and TSM-R50.

One step = forward + cross-entropy + backward on the same clips. The variants run interleaved
(plain, tsm, staa, plain, ...) so a change in machine load hits them alike; each figure is the
median over the repeats. Default: CPU, batch 1, 8x112x112 (under a minute on 2 idle cores).

    .venv/bin/python bench/bench_models.py                 # CPU, fp32 and bf16 autocast
    .venv/bin/python bench/bench_models.py --size 224      # the paper's input size
    .venv/bin/python bench/bench_models.py --device cuda   # largest batch that fits, clips/s
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from mmfc.config import RGBModelConfig
from mmfc.models import build_rgb_model

VARIANTS = ("plain", "tsm", "staa")
CLASSES = 174


def build(block: str, args: argparse.Namespace) -> torch.nn.Module:
    cfg = RGBModelConfig(depth=args.depth, base_width=64, block=block, segments=args.segments, input_size=args.size)
    model = build_rgb_model(cfg, CLASSES).to(args.device)  # keeps the model's channels_last weights
    return model.train()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def step(model: torch.nn.Module, clips: torch.Tensor, labels: torch.Tensor, bf16: bool) -> None:
    autocast = torch.autocast(clips.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    with autocast:
        logits = model(clips)
        loss = F.cross_entropy(logits.float(), labels)
    loss.backward()
    model.zero_grad(set_to_none=True)


def time_steps(models: dict, batch: int, args: argparse.Namespace, bf16: bool) -> dict[str, float]:
    """Median seconds per step of each model, measured interleaved."""
    clips = torch.randn(batch, args.segments, 3, args.size, args.size, device=args.device)
    labels = torch.randint(0, CLASSES, (batch,), device=args.device)
    for model in models.values():  # warm-up: allocator, kernel selection
        for _ in range(args.warmup):
            step(model, clips, labels, bf16)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            sync(args.device)
            start = time.perf_counter()
            step(model, clips, labels, bf16)
            sync(args.device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def print_times(title: str, seconds: dict[str, float], batch: int) -> None:
    print(f"\n{title} (batch {batch}, median)")
    for name, value in seconds.items():
        print(f"  {name:>6}: {value * 1000:9.1f} ms/step  {batch / value:8.2f} clips/s")
    print(f"  staa/plain: {seconds['staa'] / seconds['plain']:.2f}x   tsm/plain: {seconds['tsm'] / seconds['plain']:.2f}x")


def cpu_has_bf16() -> bool:
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def fits(model: torch.nn.Module, batch: int, args: argparse.Namespace) -> bool:
    clips = torch.randn(batch, args.segments, 3, args.size, args.size, device="cuda")
    labels = torch.zeros(batch, dtype=torch.long, device="cuda")
    try:
        step(model, clips, labels, bf16=True)
        torch.cuda.synchronize()
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        del clips
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()


def largest_batch(model: torch.nn.Module, args: argparse.Namespace) -> int:
    """Double the batch until a step runs out of memory; the last one that ran."""
    batch = 1
    while batch * 2 <= args.max_batch and fits(model, batch * 2, args):
        batch *= 2
    return batch


def run_cuda(args: argparse.Namespace) -> None:
    torch.backends.cudnn.benchmark = True
    print(f"device: {torch.cuda.get_device_name()}, bf16 autocast, depth {args.depth}, {args.segments}x{args.size}x{args.size}")
    for name in VARIANTS:
        model = build(name, args)
        batch = largest_batch(model, args)
        seconds = time_steps({name: model}, batch, args, bf16=True)[name]
        print(f"  {name:>6}: largest batch {batch:4d}  {seconds * 1000:8.1f} ms/step  {batch / seconds:8.1f} clips/s")
        del model
        torch.cuda.empty_cache()


def run_cpu(args: argparse.Namespace) -> None:
    print(f"device: cpu, {torch.get_num_threads()} threads, depth {args.depth}, {args.segments}x{args.size}x{args.size}")
    models = {name: build(name, args) for name in VARIANTS}
    print_times("fp32", time_steps(models, args.batch, args, bf16=False), args.batch)
    if cpu_has_bf16() or args.force_bf16:
        print_times("bf16 autocast", time_steps(models, args.batch, args, bf16=True), args.batch)
    else:
        print("\nbf16 autocast: skipped, this CPU has no native bf16 (AVX512-BF16/AMX); --force-bf16 runs it emulated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--depth", type=int, default=50, choices=(18, 34, 50))
    parser.add_argument("--batch", type=int, default=1, help="CPU batch; CUDA searches the largest")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=512, help="CUDA: stop doubling here")
    parser.add_argument("--force-bf16", action="store_true", help="CPU: run bf16 even without native support")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.device == "cuda":
        run_cuda(args)
    else:
        run_cpu(args)


if __name__ == "__main__":
    main()
