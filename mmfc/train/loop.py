"""One training epoch and one evaluation pass, the same in one process and under DDP."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mmfc.config import TrainConfig
from mmfc.metrics import mean_class_accuracy, topk_accuracy
from mmfc.train.distributed import DistEnv, all_gather_arrays, all_reduce_sum


class Objective(torch.nn.Module):
    """The network and its contrastive head as one module.

    DDP must see both: the CCL projections get gradients that have to be averaged over ranks,
    and the CCL prototypes are buffers that rank 0 broadcasts, so every rank keeps the same ones.
    """

    def __init__(self, model: torch.nn.Module, ccl: torch.nn.Module):
        super().__init__()
        self.model = model
        self.ccl = ccl

    def forward(self, x: torch.Tensor, labels: torch.Tensor):
        """-> logits [N, K], cross-entropy, CCL term (already weighted; 0 when switched off)."""
        logits, features = self.model.forward_intermediates(x)
        ce = F.cross_entropy(logits.float(), labels)
        return logits, ce, self.ccl(features, logits, labels)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast where asked for; a no-op context otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def amp_enabled(cfg: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast: cfg.amp on CUDA; on CPU only when amp_cpu asks for it explicitly."""
    return cfg.amp if device.type == "cuda" else cfg.amp_cpu


StepReport = Callable[[dict], None]


def train_epoch(
    objective: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    env: DistEnv,
    amp: bool,
    on_step: StepReport | None = None,
) -> dict[str, float]:
    """One pass over this rank's share of the training data; means over all ranks' samples."""
    objective.train()
    sums = {"loss": 0.0, "ce": 0.0, "ccl": 0.0, "correct": 0.0, "count": 0.0}
    start = time.perf_counter()
    for x, labels, _ in loader:
        x, labels = x.to(env.device, non_blocking=True), labels.to(env.device, non_blocking=True)
        with autocast(env.device, amp):
            logits, ce, ccl = objective(x, labels)
        loss = ce + ccl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        n = len(labels)
        sums["loss"] += loss.item() * n
        sums["ce"] += ce.item() * n
        sums["ccl"] += ccl.item() * n
        sums["correct"] += (logits.argmax(1) == labels).sum().item()
        sums["count"] += n
        if on_step is not None:
            on_step({
                "clips": n,
                "loss": loss.item(),
                "acc": sums["correct"] / sums["count"],
                "clips_per_s": sums["count"] / (time.perf_counter() - start),
            })
    total = all_reduce_sum(sums, env)
    count = max(total["count"], 1.0)
    return {
        "train_loss": total["loss"] / count,
        "train_ce": total["ce"] / count,
        "train_ccl": total["ccl"] / count,
        "train_top1": total["correct"] / count,
    }


@torch.no_grad()
def predict(
    model: torch.nn.Module, loader: torch.utils.data.DataLoader, device: torch.device, amp: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits of this process's samples. -> store indices int64 [N], labels int64 [N], logits float32 [N, K]"""
    model.eval()
    indices, labels, logits = [], [], []
    for x, y, index in loader:
        with autocast(device, amp):
            out = model(x.to(device, non_blocking=True))
        logits.append(out.float().cpu().numpy())
        labels.append(y.numpy())
        indices.append(index.numpy())
    if not logits:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    return np.concatenate(indices), np.concatenate(labels), np.concatenate(logits)


def evaluate(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    env: DistEnv,
    amp: bool,
    num_classes: int,
) -> dict[str, float]:
    """Validation loss and accuracies over every rank's samples."""
    indices, labels, logits = predict(model, loader, env.device, amp)
    if logits.shape[1] == 0:
        logits = logits.reshape(0, num_classes)
    indices, labels, logits = all_gather_arrays([indices, labels, logits], env)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    return {
        "val_loss": loss,
        "val_top1": topk_accuracy(logits, labels, 1),
        "val_top5": topk_accuracy(logits, labels, 5),
        "val_mean_class": mean_class_accuracy(logits, labels, num_classes),
    }
