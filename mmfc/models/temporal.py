"""The paper's temporal pieces of the RGB branch (docs/method.md, section 2), as modules a residual
block holds (mmfc.models.resnet).

A 2D CNN sees a clip as frames [N*T, C, H, W]; every module here knows T (`segments`) and views
the frames as [N, T, C, H, W] to look across time:

    TemporalShift         TSM: 1/8 of the channels to t-1, 1/8 to t+1, zero padded
    MotionAttention       TEA's motion excitation: a channel gate from frame differences
    TemporalAggregation   TEA's multiple temporal aggregation, Res2Net-like fragments
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def split_clips(x: torch.Tensor, segments: int) -> torch.Tensor:
    """[N*T, ...] -> [N, T, ...]"""
    return x.view(x.shape[0] // segments, segments, *x.shape[1:])


# ---------------------------------------------------------------------------------------------
# TSM


def temporal_shift(x: torch.Tensor, segments: int, fold_div: int = 8) -> torch.Tensor:
    """Move 1/fold_div of the channels one frame back in time and 1/fold_div one frame forward.

    x: [N*T, C, H, W]. Channels [0, C/8) at frame t take the value of frame t+1 (they move to
    t-1), channels [C/8, C/4) take frame t-1 (they move to t+1); frames shifted in from outside
    the clip are zeros, the other channels stay. Built by one concatenation along the channel
    axis of the channels_last layout: half the memory traffic of filling zeros and copying in.
    """
    nt, c, h, w = x.shape
    clips = split_clips(x, segments).permute(0, 1, 3, 4, 2)  # [N, T, H, W, C]
    fold = c // fold_div
    back = F.pad(clips[:, 1:, ..., :fold], (0, 0, 0, 0, 0, 0, 0, 1))  # zero frame at the end
    ahead = F.pad(clips[:, :-1, ..., fold : 2 * fold], (0, 0, 0, 0, 0, 0, 1, 0))  # at the start
    out = torch.cat([back, ahead, clips[..., 2 * fold :]], dim=-1)  # [N, T, H, W, C]
    return out.view(nt, h, w, c).permute(0, 3, 1, 2)  # [NT, C, H, W], channels_last


class TemporalShift(nn.Module):
    def __init__(self, segments: int):
        super().__init__()
        self.segments = segments

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return temporal_shift(x, self.segments)


# ---------------------------------------------------------------------------------------------
# Motion Attention (TEA's motion excitation)


class MotionAttention(nn.Module):
    """Y = X + X * (sigmoid(A) - 0.5), A from the feature difference between neighbouring frames."""

    def __init__(self, channels: int, segments: int, reduction: int = 16):
        super().__init__()
        mid = max(channels // reduction, 1)
        self.segments = segments
        self.squeeze = nn.Conv2d(channels, mid, 1, bias=False)
        self.squeeze_bn = nn.BatchNorm2d(mid)
        self.motion_conv = nn.Conv2d(mid, mid, 3, padding=1, groups=mid, bias=False)
        self.expand = nn.Conv2d(mid, channels, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(channels)
        # A = 0 makes the gate sigmoid(0) - 0.5 = 0: the block starts as its plain counterpart
        # (and as the ImageNet network it may be loaded from).
        nn.init.zeros_(self.expand_bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt = x.shape[0]
        xr = self.squeeze_bn(self.squeeze(x))  # [NT, C/r, H, W]
        # The difference and the global average pool are both linear, so pooling first gives
        # the same GAP(M) while the difference runs on [N, T, C/r] instead of full maps.
        ahead = split_clips(self.motion_conv(xr).mean((2, 3)), self.segments)  # [N, T, C/r]
        here = split_clips(xr.mean((2, 3)), self.segments)  # [N, T, C/r]
        motion = F.pad(ahead[:, 1:] - here[:, :-1], (0, 0, 0, 1))  # [N, T, C/r], M(T) = 0
        gate = self.expand_bn(self.expand(motion.reshape(nt, -1, 1, 1)))  # [NT, C, 1, 1]
        return x + x * (torch.sigmoid(gate) - 0.5)


# ---------------------------------------------------------------------------------------------
# Temporal Aggregation (TEA's multiple temporal aggregation, Res2Net-like)


def identity_temporal_conv(channels: int) -> nn.Conv1d:
    """Depthwise kernel-3 convolution over time, initialised to pass its input through."""
    conv = nn.Conv1d(channels, channels, 3, padding=1, groups=channels, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0, 1] = 1.0
    return conv


def apply_temporal_conv(conv: nn.Conv1d, x: torch.Tensor, segments: int) -> torch.Tensor:
    """Run a depthwise Conv1d along the time axis of frames [N*T, C, H, W].

    One grouped Conv1d over every pixel's time series; on CPU this is 2-5x faster than the
    equivalent (3, 1, 1) Conv3d, whose depthwise backward has no fast kernel.
    """
    nt, c, h, w = x.shape
    n = nt // segments
    series = x.reshape(n, segments, c, h * w).permute(0, 3, 2, 1).reshape(n * h * w, c, segments)  # [NHW, C, T]
    out = conv(series).view(n, h * w, c, segments)
    # Back to frames, laid out channels_last like the rest of the network.
    return out.permute(0, 3, 1, 2).reshape(nt, h, w, c).permute(0, 3, 1, 2)  # [NT, C, H, W]


class TemporalAggregation(nn.Module):
    """Four channel fragments; fragment 1 passes, fragments 2..4 each get a temporal and a
    spatial conv, each fed the output of the previous one (the hierarchy) when `chain` is set.

    O1 = X1 (average-pooled when strided); Oi = act(BN(conv3x3(tconv(Xi + O(i-1))))), i = 2..4.
    docs/method.md, section 2, chains from O1 on; Res2Net/TEA start the chain one fragment later.
    `activate` is False inside a basic block, where the residual add and its ReLU follow.
    """

    fragments = 4

    def __init__(self, channels: int, segments: int, stride: int = 1, chain: bool = True, activate: bool = True):
        super().__init__()
        if channels % self.fragments:
            raise ValueError(f"temporal aggregation needs channels divisible by 4, got {channels}")
        width = channels // self.fragments
        self.segments = segments
        self.chain = chain
        self.activate = activate
        self.tconvs = nn.ModuleList(identity_temporal_conv(width) for _ in range(self.fragments - 1))
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False) for _ in range(self.fragments - 1)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(self.fragments - 1))
        self.pool = nn.AvgPool2d(3, stride, 1) if stride > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = torch.chunk(x, self.fragments, dim=1)  # 4 x [NT, C/4, H, W]
        outputs = [self.pool(pieces[0])]
        for piece, tconv, conv, bn in zip(pieces[1:], self.tconvs, self.convs, self.bns):
            if self.chain:
                piece = piece + outputs[-1]
            out = bn(conv(apply_temporal_conv(tconv, piece, self.segments)))
            outputs.append(F.relu(out) if self.activate else out)
        return torch.cat(outputs, dim=1)  # [NT, C, H', W']
