"""The RGB branch: a 2D ResNet over the T segments of a clip, temporal average consensus.

Laid out like torchvision's resnet.py: conv helpers, the two residual blocks, the network. The
block type adds the paper's temporal modelling (the modules are in mmfc.models.temporal):

    plain  TSN: the ordinary ResNet block
    tsm    TSM: the temporal shift before conv1 (a residual shift: the identity is unshifted)
    ma     Motion Attention after the first conv unit
    ta     Temporal Aggregation in place of the 3x3 conv unit
    staa   both MA and TA

Frames run through the network as one batch [N*T, C, H, W] in channels_last memory (faster
convolutions on CPU and on tensor cores). Parameter names are torchvision's (conv1, bn1, ...,
layer1.0.conv2, downsample.0, fc), so an ImageNet state dict loads by name
(mmfc.models.imagenet); the temporal modules add `ma.*` and `ta.*`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmfc.models.temporal import MotionAttention, TemporalAggregation, TemporalShift


@dataclass(frozen=True)
class BlockVariant:
    shift: bool
    motion_attention: bool
    temporal_aggregation: bool


# The choices of rgb.model.block (config.RGBBlock).
BLOCK_VARIANTS = {
    "plain": BlockVariant(shift=False, motion_attention=False, temporal_aggregation=False),
    "tsm": BlockVariant(shift=True, motion_attention=False, temporal_aggregation=False),
    "ma": BlockVariant(shift=False, motion_attention=True, temporal_aggregation=False),
    "ta": BlockVariant(shift=False, motion_attention=False, temporal_aggregation=True),
    "staa": BlockVariant(shift=False, motion_attention=True, temporal_aggregation=True),
}


@dataclass(frozen=True)
class BlockSpec:
    """What every block of a network shares."""

    variant: BlockVariant
    segments: int
    ma_reduction: int
    # Res2Net's baseWidth for the bottleneck's inner width (bottleneck_width); 0: torchvision's.
    # Basic blocks have no inner width to change (config refuses it for them).
    fragment_width: int


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


def optional(present: bool, make) -> nn.Module:
    """The module `make()` builds, or nn.Identity where the variant leaves it out."""
    return make() if present else nn.Identity()


class BasicBlock(nn.Module):
    """[shift], 3x3 conv (strided), BN, ReLU, [MA], TA | 3x3 conv + BN, + residual, ReLU.

    TA replaces the stride-1, width-keeping conv2/bn2; its fragments are left without ReLU
    because the residual add and its ReLU follow.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, spec: BlockSpec, first: bool):
        super().__init__()
        variant = spec.variant
        self.shift = optional(variant.shift, lambda: TemporalShift(spec.segments))
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.ma = optional(variant.motion_attention, lambda: MotionAttention(planes, spec.segments, spec.ma_reduction))
        self.temporal_aggregation = variant.temporal_aggregation
        if variant.temporal_aggregation:
            # The first block of a stage changes resolution or width: no hierarchy there.
            self.ta = TemporalAggregation(planes, spec.segments, 1, chain=not first, activate=False)
        else:
            self.conv2 = conv3x3(planes, planes)
            self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample if downsample is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.downsample(x)
        out = self.relu(self.bn1(self.conv1(self.shift(x))))  # [NT, C, H/s, W/s]
        out = self.ma(out)
        out = self.ta(out) if self.temporal_aggregation else self.bn2(self.conv2(out))
        return self.relu(out + identity)


def bottleneck_width(planes: int, fragment_width: int) -> int:
    """Inner width of a bottleneck whose output is planes * 4.

    torchvision: planes. Res2Net (fragment_width 26 for 26w x 4s): 4 fragments of
    floor(planes * fragment_width / 64) channels, so the 1x1 convs widen and TA's three
    fragment convs carry the cost of TEA's backbone.
    """
    if not fragment_width:
        return planes
    return TemporalAggregation.fragments * (planes * fragment_width // 64)


class Bottleneck(nn.Module):
    """[shift], 1x1 conv, BN, ReLU, [MA], TA | 3x3 conv + BN + ReLU, 1x1 conv, BN, + residual, ReLU.

    The stride sits on the 3x3 conv (or TA) as in torchvision; the inner width (conv1 to conv3)
    is spec.fragment_width's (bottleneck_width).
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, spec: BlockSpec, first: bool):
        super().__init__()
        variant = spec.variant
        width = bottleneck_width(planes, spec.fragment_width)
        self.shift = optional(variant.shift, lambda: TemporalShift(spec.segments))
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.ma = optional(variant.motion_attention, lambda: MotionAttention(width, spec.segments, spec.ma_reduction))
        self.temporal_aggregation = variant.temporal_aggregation
        if variant.temporal_aggregation:
            self.ta = TemporalAggregation(width, spec.segments, stride, chain=not first)
        else:
            self.conv2 = conv3x3(width, width, stride)
            self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample if downsample is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.downsample(x)
        out = self.relu(self.bn1(self.conv1(self.shift(x))))  # [NT, width, H, W]
        out = self.ma(out)
        # [NT, width, H/s, W/s]
        out = self.ta(out) if self.temporal_aggregation else self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))  # [NT, 4 planes, H/s, W/s]
        return self.relu(out + identity)


# The choices of rgb.model.depth (config.RGBDepth): block type and blocks per stage.
DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class RGBNet(nn.Module):
    def __init__(
        self,
        depth: int,
        base_width: int,
        variant: BlockVariant,
        segments: int,
        num_classes: int,
        dropout: float,
        ma_reduction: int,
        fragment_width: int,
    ):
        super().__init__()
        block, counts = DEPTHS[depth]
        self.segments = segments
        self.fragment_width = fragment_width
        spec = BlockSpec(variant=variant, segments=segments, ma_reduction=ma_reduction, fragment_width=fragment_width)
        self.conv1 = nn.Conv2d(3, base_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = base_width
        stages = []
        for index, count in enumerate(counts):
            planes = base_width * 2**index
            stage, inplanes = make_stage(block, inplanes, planes, count, 1 if index == 0 else 2, spec)
            stages.append(stage)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dims = [base_width * 2**i * block.expansion for i in range(4)]
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clips [N, T, 3, H, W] -> logits [N, K]."""
        return self.forward_intermediates(x)[0]

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Clips [N, T, 3, H, W] -> (logits [N, K], the feature of each stage averaged over its
        pixels and the segments, [N, C_l] for the 4 stages): what contrastive learning reads."""
        n, t = x.shape[:2]
        if x.dim() != 5 or t != self.segments or x.shape[2] != 3:
            raise ValueError(f"expected clips [N, {self.segments}, 3, H, W], got {list(x.shape)}")
        x = x.reshape(n * t, *x.shape[2:]).contiguous(memory_format=torch.channels_last)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # [NT, C, H/4, W/4]
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)  # [NT, C_l, H_l, W_l]
            features.append(x.mean((2, 3)).view(n, t, -1).mean(1))  # [N, C_l]
        frames = x.mean((2, 3))  # [NT, C]
        logits = self.fc(self.dropout(frames)).view(n, t, -1).mean(1)  # consensus: [N, K]
        return logits, features


def make_stage(block, inplanes: int, planes: int, count: int, stride: int, spec: BlockSpec) -> tuple[nn.Sequential, int]:
    outplanes = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != outplanes:
        downsample = nn.Sequential(conv1x1(inplanes, outplanes, stride), nn.BatchNorm2d(outplanes))
    blocks = [block(inplanes, planes, stride, downsample, spec, first=True)]
    blocks += [block(outplanes, planes, 1, None, spec, first=False) for _ in range(count - 1)]
    return nn.Sequential(*blocks), outplanes


def init_weights(model: nn.Module) -> None:
    """torchvision's ResNet initialisation for the 2D convs, their weights stored channels_last
    like the activations (Module.to(memory_format=...) cannot do this: it fails on the 5D
    temporal conv weights). The temporal modules keep the identity starts they set themselves."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
