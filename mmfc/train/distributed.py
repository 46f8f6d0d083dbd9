"""Data-parallel training under torchrun, and the same code path in a single process.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them the run is one process of a world
of one, so nothing else in the training code needs to know which case it is in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only this process writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed() -> DistEnv:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU), or run alone."""
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank, world_size, local_rank, device)


def teardown_distributed(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from a tuple such as (seed, epoch) or (seed, epoch, index)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class ShardedSampler(torch.utils.data.Sampler[int]):
    """This rank's share of an epoch's order over the positions range(size) of a dataset.

    Like DistributedSampler, the order depends only on (seed, epoch), never on what ran before,
    so a resumed run sees the same batches. Training (shuffle) may cap the epoch at `limit`
    samples and drops the remainder that does not divide by the world size, so every rank takes
    the same number of steps; evaluation keeps every sample exactly once, without padding, so
    all-gathered metrics count no sample twice.
    """

    def __init__(self, size: int, env: DistEnv, shuffle: bool, seed: int = 0, limit: int = 0):
        self.size = size
        self.env = env
        self.shuffle = shuffle
        self.seed = seed
        self.limit = limit
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        rank, world = self.env.rank, self.env.world_size
        if not self.shuffle:
            return list(range(rank, self.size, world))
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        perm = torch.randperm(self.size, generator=generator).tolist()
        if self.limit:
            perm = perm[: self.limit]
        usable = len(perm) - len(perm) % world
        return perm[rank:usable:world]

    def __iter__(self):
        return iter(self._order())

    def __len__(self) -> int:
        return len(self._order())


def all_reduce_sum(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """Sum each value over all ranks (a no-op in one process)."""
    if not env.distributed:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_comm_device(env))
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist()))


def all_gather_arrays(arrays: list[np.ndarray], env: DistEnv) -> list[np.ndarray]:
    """Concatenate each array over ranks, rank 0's rows first (a no-op in one process)."""
    if not env.distributed:
        return arrays
    gathered: list[list[np.ndarray] | None] = [None] * env.world_size
    dist.all_gather_object(gathered, arrays)
    return [np.concatenate([part[i] for part in gathered]) for i in range(len(arrays))]


def all_gather_objects(obj, env: DistEnv) -> list:
    if not env.distributed:
        return [obj]
    gathered: list = [None] * env.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def broadcast_buffers(module: torch.nn.Module, env: DistEnv) -> None:
    """Copy rank 0's buffers (BN running statistics, CCL prototypes) to every rank.

    DDP broadcasts them only at the start of each forward, so after the last training step the
    ranks differ; evaluating or saving without this would mix several models.
    """
    if not env.distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


def wrap_model(module: torch.nn.Module, env: DistEnv) -> torch.nn.Module:
    """DistributedDataParallel in a multi-process run, the module itself otherwise.

    On CUDA BatchNorm becomes SyncBatchNorm so statistics cover the global batch. gloo has no
    SyncBatchNorm, so on CPU each rank normalises with its own batch statistics and the ranks
    only agree through the averaged gradients (and rank 0's broadcast BN buffers).
    """
    if not env.distributed:
        return module
    if env.device.type == "cuda":
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=[env.local_rank])
    return torch.nn.parallel.DistributedDataParallel(module)


def _comm_device(env: DistEnv) -> torch.device:
    # NCCL only reduces CUDA tensors; gloo reduces CPU ones.
    return env.device if env.device.type == "cuda" else torch.device("cpu")
