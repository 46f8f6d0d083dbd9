"""Class-aware contrastive learning on intermediate features (docs/method.md, section 3).

`build_ccl` returns a module whose forward(features, logits, labels) gives the already weighted
term lambda * sum_l w_l L_l; the training loss is CE + that. Per level the loss is one of:

    frhead  FR-Head (Zhou et al., CVPR 2023): cosine scores to momentum class prototypes, the
            true-class score pushed by the centres of the class's false negatives and false
            positives in the batch.
    supcon  supervised contrastive loss (Khosla et al., NeurIPS 2020).

Both run in float32 with autocast off: the temperatures (1/0.125, 1/0.07) and the
normalisations are too sharp for bf16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmfc.config import CCLConfig, ConfigError


@dataclass
class ConfusionMasks:
    """[B, K] 0/1 masks from the predictions of a batch."""

    tp: torch.Tensor  # label k and predicted k
    fn: torch.Tensor  # label k, predicted something else
    fp: torch.Tensor  # predicted k, label something else


def confusion_masks(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> ConfusionMasks:
    truth = F.one_hot(labels, num_classes).float()
    predicted = F.one_hot(logits.argmax(1), num_classes).float()
    tp = truth * predicted
    return ConfusionMasks(tp=tp, fn=truth - tp, fp=predicted - tp)


def class_means(f: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature of the masked samples of each class: ([K, d], present [K] bool)."""
    counts = mask.sum(0)  # [K]
    means = mask.t() @ f / counts.clamp(min=1).unsqueeze(1)  # [K, d]
    return means, counts > 0


class FRHeadLevel(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, cfg: CCLConfig):
        super().__init__()
        self.num_classes = num_classes
        self.momentum = cfg.momentum
        self.margin = cfg.margin
        self.tau = cfg.tau
        self.project = nn.Linear(in_dim, cfg.dim)
        # A buffer: saved in checkpoints, broadcast by DistributedDataParallel, no gradient.
        self.register_buffer("prototypes", F.normalize(torch.randn(num_classes, cfg.dim), dim=1))

    @torch.no_grad()
    def update_prototypes(self, f: torch.Tensor, tp: torch.Tensor) -> None:
        """mu_k <- m mu_k + (1 - m) mean(f of TP of k), only for classes with TP samples."""
        means, present = class_means(f, tp)
        moved = self.momentum * self.prototypes + (1 - self.momentum) * means
        self.prototypes.copy_(torch.where(present.unsqueeze(1), moved, self.prototypes))

    def forward(self, feature: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        f = F.normalize(self.project(feature), dim=1)  # [B, d]
        logits = logits.detach()
        masks = confusion_masks(logits, labels, self.num_classes)
        if self.training:  # evaluation batches must not move the prototypes
            self.update_prototypes(f.detach(), masks.tp)
        # The error centres keep their gradient (as in FR-Head); only the prototypes are fixed.
        fn_centres, has_fn = class_means(f, masks.fn)  # [K, d], [K]
        fp_centres, has_fp = class_means(f, masks.fp)
        s = f @ F.normalize(self.prototypes, dim=1).t()  # [B, K]
        # Only the true-class entry moves, more for samples the classifier is less sure of.
        push = (1 - logits.softmax(1)) * F.one_hot(labels, self.num_classes) * self.margin  # [B, K]
        fn_term = (f @ F.normalize(fn_centres, dim=1).t() - 1) * push * has_fn
        fp_term = (-(f @ F.normalize(fp_centres, dim=1).t()) - 1) * push * has_fp
        return F.cross_entropy((s + fn_term) / self.tau, labels) + F.cross_entropy((s + fp_term) / self.tau, labels)


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """-(1/|P(i)|) sum_p log(exp(z_i.z_p/tau) / sum_{a != i} exp(z_i.z_a/tau)), mean over the
    anchors that have a positive (z L2-normalised, [B, d])."""
    b = z.shape[0]
    self_mask = torch.eye(b, dtype=torch.bool, device=z.device)
    sim = (z @ z.t() / tau).masked_fill(self_mask, float("-inf"))  # [B, B]
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positives = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~self_mask
    count = positives.sum(1)
    per_anchor = log_prob.masked_fill(~positives, 0.0).sum(1) / count.clamp(min=1)
    has_positive = (count > 0).float()
    return -(per_anchor * has_positive).sum() / has_positive.sum().clamp(min=1)


class SupConLevel(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, cfg: CCLConfig):
        super().__init__()
        self.tau = cfg.supcon_tau
        # Khosla et al. contrast the output of a one-hidden-layer MLP, not the feature itself.
        self.project = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, cfg.dim))

    def forward(self, feature: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return supcon_loss(F.normalize(self.project(feature), dim=1), labels, self.tau)


# The choices of <branch>.ccl.kind (config.CCLKind).
LEVEL_KINDS = {"frhead": FRHeadLevel, "supcon": SupConLevel}


class ContrastiveLoss(nn.Module):
    """lambda * sum_l w_l L_l over the feature levels with a non-zero weight."""

    def __init__(self, weight: float, level_weights: list[float], levels: dict[int, nn.Module]):
        super().__init__()
        self.weight = weight
        self.num_levels = len(level_weights)
        self.level_weights = level_weights
        # Keys are level indices as strings (ModuleDict keys); levels with weight 0 have no
        # module, so no parameter sits unused (DistributedDataParallel rejects those).
        self.levels = nn.ModuleDict({str(i): level for i, level in levels.items()})

    def forward(self, features: list[torch.Tensor], logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), device=logits.device)
        if self.weight == 0 or not self.levels:
            return total
        if len(features) != self.num_levels:
            raise ValueError(f"contrastive loss built for {self.num_levels} feature levels, got {len(features)}")
        with torch.autocast(device_type=logits.device.type, enabled=False):
            for key, level in self.levels.items():
                i = int(key)
                total = total + self.level_weights[i] * level(features[i].float(), logits.float(), labels)
        return self.weight * total


def build_ccl(cfg: CCLConfig, num_classes: int, feature_dims: list[int]) -> ContrastiveLoss:
    if len(feature_dims) > len(cfg.level_weights):
        raise ConfigError(
            f"ccl.level_weights has {len(cfg.level_weights)} weights for {len(feature_dims)} feature levels"
        )
    # Deepest levels last: with fewer features than weights, the last weights apply.
    weights = list(cfg.level_weights[len(cfg.level_weights) - len(feature_dims) :])
    levels = {}
    if cfg.weight != 0:
        levels = {
            i: LEVEL_KINDS[cfg.kind](dim, num_classes, cfg)
            for i, (dim, w) in enumerate(zip(feature_dims, weights))
            if w != 0
        }
    return ContrastiveLoss(cfg.weight, weights, levels)
