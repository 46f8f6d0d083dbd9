"""How many threads training uses, so that it never asks for more cores than it has (and how much
memory a stage may still take, `available_memory`).

torch starts one intra-op thread per core and OpenCV as many again. That is right on an idle
machine and ruinous on a shared one: every parallel op ends in a barrier that waits for its
slowest thread, and a thread that shares its core with another busy process is descheduled for
whole time slices, so each small op can cost milliseconds instead of microseconds. On 2 busy
cores the demo's training steps ran several times slower with torch's default 2 threads than
with 1 (bench/bench_threads.py; docs/benchmarks.md, section 10).

"auto" therefore counts the cores this process may run on (its CPU affinity, shared among the
training processes torchrun starts on this node), takes off the cores other processes keep busy
(measured from /proc/stat over a moment) and the DataLoader's worker processes, and uses the rest.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import torch

from mmfc.config import TrainConfig

AUTO = "auto"
# How long the other processes' CPU use is sampled for: long enough to see a busy process as
# one core's worth, short beside a stage's start-up.
BUSY_SAMPLE_SECONDS = 0.3
# On CPU a training step of either branch takes several times as long as loading its batch
# (bench/bench_train.py measures both), so one loader worker per four
# free cores keeps the step fed without taking cores from the step itself.
CPU_CORES_PER_WORKER = 4
# On CUDA the step does not need the CPU: every core but the main process's loads data, up to
# this many workers (each holds the open crop store and its prefetched batches in memory).
MAX_CUDA_WORKERS = 8


@dataclass(frozen=True)
class CorePlan:
    threads: int  # torch intra-op threads (and OpenCV's) of this process
    loader_workers: int  # DataLoader worker processes, one thread each
    cores: int  # the cores this process may use
    busy_elsewhere: float  # cores' worth of CPU that other processes used while it looked

    def describe(self) -> str:
        return (f"{self.threads} thread(s), {self.loader_workers} loader worker(s) on {self.cores} core(s), "
                f"{self.busy_elsewhere:.1f} of them busy with other processes")


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask: taskset, cgroups' cpusets, Slurm)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks on macOS and Windows
        return os.cpu_count() or 1


def available_memory(meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes this process may still take without swapping: the machine's MemAvailable, or less
    where its cgroup (a container, a Slurm job) allows less; None where neither says."""
    sizes = []
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                sizes.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            sizes.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(sizes) if sizes else None


def processes_on_this_node() -> int:
    """Training processes sharing this machine's cores: torchrun's LOCAL_WORLD_SIZE, else 1."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def busy_elsewhere(seconds: float = BUSY_SAMPLE_SECONDS, stat: Path = Path("/proc/stat")) -> float:
    """Cores' worth of CPU time other processes use now; 0 where /proc/stat does not exist.

    This process sleeps while it samples, so all the busy time it sees is someone else's. The
    machine-wide share is scaled to this process's cores (a cpuset on a larger machine).
    """
    before = _cpu_times(stat)
    if before is None:
        return 0.0
    time.sleep(seconds)
    after = _cpu_times(stat)
    busy, total = after[0] - before[0], after[1] - before[1]
    return usable_cores() * busy / total if total > 0 else 0.0


def _cpu_times(stat: Path) -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs, from the first line of /proc/stat."""
    try:
        fields = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice, already in user and nice]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def plan_cores(cfg: TrainConfig, device_type: str, busy: float | None = None) -> CorePlan:
    """Threads and loader workers for one training (or scoring) process, from cfg.threads and
    cfg.loader_workers: a number is taken as it is, "auto" as the module docstring says."""
    cores = max(1, usable_cores() // processes_on_this_node())
    if busy is None:
        # Under torchrun the other ranks starting up beside this one would count as busy.
        busy = busy_elsewhere() if processes_on_this_node() == 1 else 0.0
    free = max(1, cores - round(busy))
    if cfg.loader_workers != AUTO:
        workers = int(cfg.loader_workers)
    elif device_type == "cuda":
        workers = min(MAX_CUDA_WORKERS, free - 1)
    else:
        workers = free // CPU_CORES_PER_WORKER
    threads = int(cfg.threads) if cfg.threads != AUTO else max(1, free - workers)
    return CorePlan(threads=threads, loader_workers=workers, cores=cores, busy_elsewhere=busy)


def apply_threads(threads: int) -> None:
    """Use `threads` intra-op threads in torch and OpenCV from now on in this process."""
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    try:
        # The inter-op pool only runs torch.jit forks, which mmfc never uses; one thread keeps
        # it from adding to the count. torch allows setting it once, before first use.
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def loader_worker_init(worker_id: int) -> None:
    """DataLoader worker_init_fn: a worker decodes one clip at a time on one thread; its
    parallelism is the number of workers."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
