"""The RGB branch: a 2D ResNet over the T segments of a clip, temporal average consensus.

Frames run through the network as one batch [N*T, C, H, W] in channels_last memory (faster
convolutions on CPU and on tensor cores); the block type adds the temporal modelling
(mmfc.models.temporal). Parameter names follow torchvision's ResNet so an ImageNet state dict
loads by name (`load_pretrained`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmfc.errors import DataError
from mmfc.models.temporal import BasicBlock, BlockSpec, BlockVariant, Bottleneck

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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
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
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), nn.BatchNorm2d(outplanes)
        )
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


# ---------------------------------------------------------------------------------------------
# ImageNet weights


def load_pretrained(model: RGBNet, path: str | Path) -> tuple[list[str], list[str]]:
    """Fill the backbone from a local torchvision-layout ResNet state dict; never downloads.

    Returns (missing, unexpected): the model's entries the file did not fill (the temporal
    modules, and fc when the class count differs) and the file's entries nothing used. Temporal
    Aggregation takes the diagonal blocks of conv2/bn2 for its fragments 2..4, so a TA block
    starts as a block-diagonal version of the ImageNet 3x3 conv.
    """
    source = read_state_dict(path)
    target = model.state_dict()
    # Match and check everything first, so a bad file leaves the model untouched.
    plan: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, current in target.items():
        value = source_value(source, key)
        if value is None or (key.startswith("fc.") and value[1].shape != current.shape):
            continue
        source_key, tensor = value
        if tensor.shape != current.shape:
            raise DataError(
                path,
                f"{source_key} has shape {list(tensor.shape)}, the model's {key} needs {list(current.shape)}"
                + width_hint(model),
            )
        plan[key] = tensor
        used.add(source_key)
    if not plan:
        raise DataError(path, "no ResNet weights in it (expected torchvision keys such as conv1.weight)")
    with torch.no_grad():
        for key, tensor in plan.items():
            target[key].copy_(tensor)
    missing = [key for key in target if key not in plan]
    unexpected = sorted(set(source) - used)
    return missing, unexpected


def width_hint(model: RGBNet) -> str:
    # Res2Net widths are the likeliest cause of a mismatch with a torchvision file.
    if not model.fragment_width:
        return ""
    return (
        f"; the model has Res2Net widths (rgb.model.fragment_width = {model.fragment_width}), "
        "torchvision-layout ImageNet weights need fragment_width = 0"
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(path, "no such pretrained weights file") from None
    except Exception as exc:  # torch.load raises many types for a corrupt or foreign file
        raise DataError(path, f"not a torch state dict: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise DataError(path, "expected a dict of parameter name -> tensor")
    return {key.removeprefix("module."): value for key, value in data.items()}


def source_value(source: dict[str, torch.Tensor], key: str) -> tuple[str, torch.Tensor] | None:
    """The file's tensor for one model entry, or None when the file has nothing for it."""
    if ".ta.convs." in key or ".ta.bns." in key:
        return temporal_aggregation_source(source, key)
    if key in source:
        return key, source[key]
    return None


def temporal_aggregation_source(source: dict[str, torch.Tensor], key: str) -> tuple[str, torch.Tensor] | None:
    # key: layerX.Y.ta.convs.I.weight or layerX.Y.ta.bns.I.<param>; fragment I + 1 of 4.
    block, rest = key.split(".ta.", 1)
    kind, index, param = rest.split(".", 2)
    source_key = f"{block}.{'conv2' if kind == 'convs' else 'bn2'}.{param}"
    if source_key not in source:
        return None
    tensor = source[source_key]
    if tensor.dim() == 0:  # num_batches_tracked
        return source_key, tensor
    width = tensor.shape[0] // 4
    lo, hi = (int(index) + 1) * width, (int(index) + 2) * width
    if kind == "convs":
        return source_key, tensor[lo:hi, lo:hi]
    return source_key, tensor[lo:hi]
