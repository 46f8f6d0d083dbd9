"""Learning-rate schedule: linear warm-up, then cosine decay or steps of 0.1 at milestones.

The schedule is a function of training progress in epochs, so the same code serves an update
every iteration (fractional progress) and an update once per epoch (whole epochs only).
"""

from __future__ import annotations

import math

import torch

from mmfc.config import TrainConfig


def lr_factor(progress: float, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate after `progress` epochs of training."""
    if progress < cfg.warmup_epochs:
        # Ramp from a small positive rate, not zero, so the first step already moves.
        return (progress + 1e-3) / (cfg.warmup_epochs + 1e-3)
    if cfg.schedule == "step":
        return 0.1 ** sum(progress >= m for m in cfg.milestones)
    decay_span = max(cfg.epochs - cfg.warmup_epochs, 1e-8)
    done = min((progress - cfg.warmup_epochs) / decay_span, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * done))


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int, done_epochs: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepped once per iteration; with lr_step "epoch" it only changes per epoch.

    A resumed run starts it at `done_epochs` (the optimizer's state loaded, so its groups hold
    their base rate): the position is counted in epochs, not in the saved step count, because a
    run resumed with another number of processes takes another number of steps per epoch.
    """
    per_epoch = cfg.lr_step == "epoch"

    def factor(step: int) -> float:
        progress = step / steps_per_epoch
        return lr_factor(math.floor(progress) if per_epoch else progress, cfg)

    # LambdaLR steps once on creation, from last_epoch to last_epoch + 1.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=done_epochs * steps_per_epoch - 1)


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )
