"""The two branches and the contrastive loss, built from their configs.

RGB:      build_rgb_model(cfg, num_classes) -> RGBNet; forward [N, T, 3, H, W] -> (logits, 4 features)
Skeleton: build_skel_model(cfg, num_classes, layout) -> SkelNet; forward [N, C, T, V, M] -> (logits, 4 features)
CCL:      build_ccl(cfg, num_classes, model.feature_dims); forward (features, logits, labels) -> weighted term
"""

from __future__ import annotations

from mmfc.config import ConfigError, RGBModelConfig, SkelModelConfig
from mmfc.data.layouts import Layout
from mmfc.models.ccl import ContrastiveLoss, build_ccl
from mmfc.models.ctrgcn import STREAMS, SkelNet, skeleton_stream
from mmfc.models.resnet import DEPTHS, RGBNet, load_pretrained
from mmfc.models.temporal import BLOCK_VARIANTS, Bottleneck

# Coordinates per joint when the config leaves in_channels at 0.
LAYOUT_CHANNELS = {"ntu25": 3, "coco17": 2}

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
    if cfg.block not in BLOCK_VARIANTS:
        raise ConfigError(f"rgb.model.block {cfg.block!r}: expected one of {', '.join(BLOCK_VARIANTS)}")
    if cfg.depth not in DEPTHS:
        raise ConfigError(f"rgb.model.depth {cfg.depth}: expected one of {', '.join(map(str, DEPTHS))}")
    check_fragment_width(cfg)
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


def check_fragment_width(cfg: RGBModelConfig) -> None:
    if not cfg.fragment_width:
        return
    if DEPTHS[cfg.depth][0] is not Bottleneck:
        raise ConfigError(f"rgb.model.fragment_width applies to depth 50 only (bottleneck blocks), not depth {cfg.depth}")
    # Each fragment is fragment_width * base_width / 64 wide at the first stage, rounded down.
    if cfg.fragment_width < 0 or cfg.fragment_width * cfg.base_width < 64:
        raise ConfigError(
            f"rgb.model.fragment_width {cfg.fragment_width}: with base_width {cfg.base_width} the fragments "
            "would be empty; it needs fragment_width * base_width >= 64"
        )


def build_skel_model(cfg: SkelModelConfig, num_classes: int, layout: Layout) -> SkelNet:
    if cfg.stream not in STREAMS:
        raise ConfigError(f"skel.model.stream {cfg.stream!r}: expected one of {', '.join(STREAMS)}")
    if not cfg.in_channels and layout.name not in LAYOUT_CHANNELS:
        raise ConfigError(f"skel.model.in_channels: set it for layout {layout.name!r}")
    in_channels = cfg.in_channels or LAYOUT_CHANNELS[layout.name]
    return SkelNet(
        layout=layout,
        stream=cfg.stream,
        in_channels=in_channels,
        base_channels=cfg.base_channels,
        num_persons=cfg.num_persons,
        num_classes=num_classes,
        dropout=cfg.dropout,
    )
