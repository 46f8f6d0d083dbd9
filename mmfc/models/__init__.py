"""The two branches and the contrastive loss, built from their configs.

RGB:      build_rgb_model(cfg, num_classes) -> RGBNet; forward [N, T, 3, H, W] -> logits
Skeleton: build_skel_model(cfg, num_classes, layout) -> SkelNet; forward [N, C, T, V, M] -> logits
CCL:      build_ccl(cfg, num_classes, model.feature_dims); forward (features, logits, labels) -> weighted term

Both networks' `forward` gives the logits alone (what scoring and the exported graphs use);
`forward_intermediates` gives (logits, the pooled features of four depths) for the
contrastive loss during training.

The configs were validated when the pipeline was loaded (mmfc.config); mmfc.branches builds
the right one for a branch name.
"""

from __future__ import annotations

from mmfc.config import RGBModelConfig, SkelModelConfig
from mmfc.data.layouts import Layout
from mmfc.models.ccl import ContrastiveLoss, build_ccl
from mmfc.models.ctrgcn import SkelNet, skeleton_stream
from mmfc.models.imagenet import load_pretrained
from mmfc.models.resnet import BLOCK_VARIANTS, RGBNet

__all__ = [
    "ContrastiveLoss",
    "RGBNet",
    "SkelNet",
    "build_ccl",
    "build_rgb_model",
    "build_skel_model",
    "load_pretrained",
    "skeleton_stream",
]


def build_rgb_model(cfg: RGBModelConfig, num_classes: int) -> RGBNet:
    """The RGB network as configured, from scratch; cfg.pretrained is applied by the caller
    with load_pretrained(model, cfg.pretrained), which reports what it did not fill."""
    return RGBNet(
        depth=cfg.depth,
        base_width=cfg.base_width,
        variant=BLOCK_VARIANTS[cfg.block],
        segments=cfg.segments,
        num_classes=num_classes,
        dropout=cfg.dropout,
        ma_reduction=cfg.ma_reduction,
        fragment_width=cfg.fragment_width,
    )


def build_skel_model(cfg: SkelModelConfig, num_classes: int, layout: Layout) -> SkelNet:
    return SkelNet(
        layout=layout,
        stream=cfg.stream,
        in_channels=cfg.in_channels or layout.channels,
        base_channels=cfg.base_channels,
        num_persons=cfg.num_persons,
        num_classes=num_classes,
        dropout=cfg.dropout,
    )
