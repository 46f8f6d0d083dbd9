"""The skeleton branch: a CTR-GCN-style network (channel-wise topology refinement; Chen et al.,
ICCV 2021), 10 blocks at C-2C-4C channels with temporal stride 2 at blocks 5 and 8.

Input is the raw normalised joint coordinates [N, C, T, V, M]; the network derives its
configured stream itself (`skeleton_stream`), so a checkpoint always knows what it was fed.
"""

from __future__ import annotations

import math
import typing

import torch
import torch.nn.functional as F
from torch import nn

from mmfc.config import SkelStream
from mmfc.data.layouts import Layout
from mmfc.models.graph import adjacency

STREAMS: tuple[str, ...] = typing.get_args(SkelStream)


def skeleton_stream(x: torch.Tensor, stream: str, layout: Layout) -> torch.Tensor:
    """Joint coordinates [N, C, T, V, M] -> the stream's features, same shape.

    bone: joint minus its parent joint (zero for the centre joint, which has no bone);
    motion: frame t+1 minus frame t, zero at the last frame.
    """
    if stream not in STREAMS:
        raise ValueError(f"unknown skeleton stream {stream!r}; known: {', '.join(STREAMS)}")
    if stream.startswith("bone"):
        x = x - x[:, :, :, layout.parents()]
    if stream.endswith("motion"):
        x = F.pad(x[:, :, 1:] - x[:, :, :-1], (0, 0, 0, 0, 0, 1))
    return x


class TopologyRefinement(nn.Module):
    """The weights of one CTR-GC: a shared topology A refined per channel by pairwise joint relations,

    Z_c = sum_v (alpha * Q(x)_c[u, v] + A[u, v]) * W(x)_c[v], with the relation Q from
    tanh(phi(x)_u - psi(x)_v) over temporally pooled features, lifted to C' channels.

    GraphConv computes every subset's CTR-GC at once from these weights.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        # CTR-GCN uses 8 relation channels on the raw coordinates, C/8 deeper in.
        rel = 8 if in_channels <= 9 else in_channels // 8
        self.phi = nn.Conv2d(in_channels, rel, 1)
        self.psi = nn.Conv2d(in_channels, rel, 1)
        self.value = nn.Conv2d(in_channels, out_channels, 1)
        self.lift = nn.Conv2d(rel, out_channels, 1)


class GraphConv(nn.Module):
    """Sum of CTR-GCs over the three graph subsets, BN, residual, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, a: torch.Tensor):
        super().__init__()
        self.subsets = nn.ModuleList(TopologyRefinement(in_channels, out_channels) for _ in range(a.shape[0]))
        self.adjacency = nn.Parameter(a.clone())  # learnt, starting from the skeleton graph
        self.alpha = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(out_channels)
        # Near-zero start: each block begins close to its residual path, as in CTR-GCN.
        nn.init.constant_(self.bn.weight, 1e-6)
        self.down = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The subsets' CTR-GCs summed, computed together: one convolution gives every subset's
        # values, one more every subset's phi and psi, and one grouped convolution lifts all
        # relations, where one module per subset took nine small convolutions and summed their
        # gradients one by one (bench/bench_real.py: 10-18% less time per training step).
        n, _, frames, joints = x.shape
        subsets = self.subsets
        k = len(subsets)
        values = F.conv2d(x, torch.cat([s.value.weight for s in subsets]), torch.cat([s.value.bias for s in subsets]))
        ends = F.conv2d(x, torch.cat([w for s in subsets for w in (s.phi.weight, s.psi.weight)]),
                        torch.cat([b for s in subsets for b in (s.phi.bias, s.psi.bias)]))
        ends = ends.mean(2).view(n, k, 2, -1, joints)  # over time: [N, subset, phi/psi, R, V]
        relation = torch.tanh(ends[:, :, 0].unsqueeze(-1) - ends[:, :, 1].unsqueeze(-2))  # [N, subset, R, V, V]
        lifted = F.conv2d(relation.flatten(1, 2), torch.cat([s.lift.weight for s in subsets]),
                          torch.cat([s.lift.bias for s in subsets]), groups=k)
        topology = lifted.view(n, k, -1, joints, joints) * self.alpha + self.adjacency.unsqueeze(1)  # [N, subset, C', V, V]
        y = torch.einsum("nkcuv,nkctv->nctu", topology, values.view(n, k, -1, frames, joints))
        return F.relu(self.bn(y) + self.down(x))


def temporal_conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = (kernel + (kernel - 1) * (dilation - 1) - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, (kernel, 1), (stride, 1), (pad, 0), (dilation, 1)),
        nn.BatchNorm2d(out_channels),
    )


class MultiScaleTemporalConv(nn.Module):
    """Four branches of C/4 channels: kernel 5 at dilations 1 and 2, max-pool 3, and 1x1."""

    def __init__(self, channels: int, stride: int, kernel: int = 5, dilations: tuple[int, ...] = (1, 2)):
        super().__init__()
        branch = channels // (len(dilations) + 2)

        def entry() -> list[nn.Module]:
            return [nn.Conv2d(channels, branch, 1), nn.BatchNorm2d(branch), nn.ReLU(inplace=True)]

        self.branches = nn.ModuleList(
            nn.Sequential(*entry(), temporal_conv(branch, branch, kernel, stride, d)) for d in dilations
        )
        self.branches.append(
            nn.Sequential(*entry(), nn.MaxPool2d((3, 1), (stride, 1), (1, 0)), nn.BatchNorm2d(branch))
        )
        # The last branch takes the remainder so the output has exactly `channels`.
        rest = channels - branch * (len(dilations) + 1)
        self.branches.append(temporal_conv(channels, rest, 1, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class GCNBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, a: torch.Tensor, stride: int = 1, residual: bool = True):
        super().__init__()
        self.gcn = GraphConv(in_channels, out_channels, a)
        self.tcn = MultiScaleTemporalConv(out_channels, stride)
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = temporal_conv(in_channels, out_channels, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.gcn(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return F.relu(y)


# (in, out) channel multipliers of base_channels and temporal stride of the 10 blocks.
BLOCKS = ((0, 1, 1), (1, 1, 1), (1, 1, 1), (1, 1, 1), (1, 2, 2), (2, 2, 1), (2, 2, 1), (2, 4, 2), (4, 4, 1), (4, 4, 1))
# Blocks after which a pooled feature goes to contrastive learning (as FR-Head on CTR-GCN).
FEATURE_BLOCKS = (3, 6, 8, 9)


class SkelNet(nn.Module):
    def __init__(self, layout: Layout, stream: str, in_channels: int, base_channels: int, num_persons: int, num_classes: int, dropout: float):
        super().__init__()
        self.layout = layout
        self.stream = stream
        self.in_channels = in_channels
        self.num_persons = num_persons
        a = torch.tensor(adjacency(layout))
        self.data_bn = nn.BatchNorm1d(num_persons * layout.num_joints * in_channels)
        blocks = []
        for index, (cin, cout, stride) in enumerate(BLOCKS):
            width_in = in_channels if index == 0 else cin * base_channels
            blocks.append(GCNBlock(width_in, cout * base_channels, a, stride, residual=index > 0))
        self.blocks = nn.ModuleList(blocks)
        self.feature_dims = [BLOCKS[i][1] * base_channels for i in FEATURE_BLOCKS]
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(BLOCKS[-1][1] * base_channels, num_classes)
        init_weights(self, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Joints [N, C, T, V, M] -> logits [N, K]."""
        return self.forward_intermediates(x)[0]

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Joints [N, C, T, V, M] -> (logits [N, K], the pooled feature after each block of
        FEATURE_BLOCKS, [N, C_l]): what contrastive learning reads."""
        n, c, t, v, m = x.shape
        if (c, v, m) != (self.in_channels, self.layout.num_joints, self.num_persons):
            raise ValueError(
                f"expected joints [N, {self.in_channels}, T, {self.layout.num_joints}, {self.num_persons}], got {list(x.shape)}"
            )
        x = skeleton_stream(x, self.stream, self.layout)
        x = self.data_bn(x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t))  # per person-joint-coordinate
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)  # [NM, C, T, V]
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in FEATURE_BLOCKS:
                features.append(pool_persons(x, n))
        logits = self.fc(self.dropout(features[-1]))
        return logits, features


def pool_persons(x: torch.Tensor, n: int) -> torch.Tensor:
    """[N*M, C, T, V] -> [N, C], averaged over time, joints and persons."""
    return x.mean((2, 3)).view(n, -1, x.shape[1]).mean(1)


def init_weights(model: nn.Module, num_classes: int) -> None:
    """CTR-GCN's initialisation (the near-zero graph BN is set by GraphConv itself)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    nn.init.normal_(model.fc.weight, 0, math.sqrt(2.0 / num_classes))
    nn.init.zeros_(model.fc.bias)
