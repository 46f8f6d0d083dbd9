"""A branch network as an ONNX graph with one named input and one output, `logits`, and running
such a graph in onnxruntime.

The graph is traced by torch's TorchScript-based exporter (`torch.onnx.export(dynamo=False)`),
which writes the file itself: it needs only torch, every op of both branches (the temporal
shift's pad and concatenation, motion attention's frame differences, the graph convolution's
einsum) has a translation, and it runs offline in seconds. The newer torch.export-based
exporter (`dynamo=True`, torch's default since 2.9) gives graphs as close to PyTorch but needs
`onnxscript` and `onnx_ir` on top, took several times as long, and could not convert to opset
17 (bench/bench_export.py; docs/decisions.md, "Export"). The onnx package then adds the documentation to the graph and
checks it.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmfc import atomic

# ONNX opset of the graphs: onnxruntime has run it since 1.13 (2022), and the pyproject pins 1.18 on.
OPSET = 17
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
EXTRA_PACKAGES = ("onnx", "onnxruntime")
# The largest difference between onnxruntime's and PyTorch's logits an export accepts: 1e-4 for
# logits within +-10 (a trained network's usual range), 1e-5 of the largest logit beyond, since
# float32 kernels that sum in another order differ by a few units in the last place, relative to
# the values summed. A deep network's float32 logits can be that far from its float64 ones in
# PyTorch itself (ResNet-50: 2-6e-5), and no float32 runtime can be asked to agree more closely
# than float32 allows: up to FLOAT32_MARGIN times PyTorch's own float32 error is accepted too.
PARITY_TOLERANCE = 1e-4
PARITY_SCALE = 10.0
FLOAT32_MARGIN = 2.0


def parity_bound(reference: np.ndarray, float32_error: float) -> float:
    """The accepted difference from `reference`, PyTorch's logits (or fused scores), whose
    largest difference from the same in float64 is `float32_error`."""
    return max(PARITY_TOLERANCE * max(1.0, float(np.abs(reference).max()) / PARITY_SCALE),
               FLOAT32_MARGIN * float32_error)


class MissingExtra(Exception):
    """onnx or onnxruntime is not installed: the optional extra `export`."""


def require_extra() -> None:
    missing = [name for name in EXTRA_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra(f"exporting needs {' and '.join(missing)}, the optional extra: pip install 'mmfc[export]'")


def export_graph(
    network: nn.Module,
    input_shape: tuple[int, ...],
    input_name: str,
    path: Path,
    doc: str,
    input_doc: str,
    output_doc: str,
    metadata: dict[str, str],
) -> None:
    """Write `network` (in eval mode) as an ONNX graph: input `input_name`, float32
    [batch, *input_shape] with a dynamic batch axis; output `logits`, float32 [batch, K]. The
    docs go into the graph's doc strings, `metadata` into its metadata properties."""
    require_extra()
    import onnx

    # A batch of 2: a trace at batch 1 could fold the batch size into a reshape as a constant.
    example = torch.zeros(2, *input_shape)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The trace turns the networks' checks of the input shape into constants (TracerWarning);
        # the graph declares that shape instead, and onnxruntime refuses any other. The other two
        # are the exporter's notice that it is the older one, and a note that it keeps a strided
        # slice as an op rather than folding it.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        torch.onnx.export(
            network,
            (example,),
            buffer,
            input_names=[input_name],
            output_names=[OUTPUT_NAME],
            dynamic_axes={input_name: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}},
            opset_version=OPSET,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    model.doc_string = doc
    model.graph.input[0].doc_string = input_doc
    model.graph.output[0].doc_string = output_doc
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    atomic.write_bytes(path, model.SerializeToString())


def onnx_logits(path: Path, input_name: str, inputs: np.ndarray) -> np.ndarray:
    """The graph at `path` run by onnxruntime on the CPU. -> float32 [N, K]"""
    require_extra()
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # As many threads as torch is allowed: tests and workers pin both to the same budget.
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {input_name: np.ascontiguousarray(inputs, dtype=np.float32)})[0]


@torch.no_grad()
def torch_logits(network: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """The logits of the network itself (in eval mode), on its device. -> float32 [N, K]"""
    device = next(network.parameters()).device
    return network(torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(device)).cpu().numpy()


@torch.no_grad()
def float64_logits(network: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """The logits of a float64 copy of the network on the CPU: what float32 approximates."""
    reference = copy.deepcopy(network).cpu().double()
    return reference(torch.from_numpy(np.asarray(inputs, dtype=np.float64))).numpy()
