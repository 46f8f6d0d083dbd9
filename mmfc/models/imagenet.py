"""ImageNet weights for the RGB branch: a local torchvision-layout ResNet state dict mapped onto
RGBNet, never downloaded.

Every backbone entry loads by its torchvision name. Temporal Aggregation has no ImageNet
counterpart of its own: its fragment convs 2..4 take the diagonal blocks of the 3x3 conv they
replace (conv2/bn2), so a TA block starts as a block-diagonal version of the ImageNet block.
Motion Attention and the temporal convs keep their identity starts.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmfc.errors import DataError
from mmfc.models.resnet import RGBNet

def load_pretrained(model: RGBNet, path: str | Path) -> tuple[list[str], list[str]]:
    """Fill the backbone from the state dict at `path`.

    Returns (missing, unexpected): the model's entries the file did not fill (the temporal
    modules, and fc when the class count differs) and the file's entries nothing used.
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
