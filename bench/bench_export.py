"""torch's two ONNX exporters side by side on the pipeline's two branch networks: the
TorchScript-based one `mmfc export` uses (torch.onnx.export(dynamo=False)) and the
torch.export-based one (dynamo=True, torch's default since 2.9), which needs `onnxscript` (and
`onnx_ir`) besides onnx; without them its rows say so.

Prints, per branch and exporter: the seconds the export took, the graph's size, the largest
absolute difference between onnxruntime's logits and PyTorch's on a batch of 4 random inputs
(the BN statistics set from one such batch first, so the logits have a trained network's scale),
and the milliseconds per clip of each runtime at batch 1 (best of --repeats). Both exporters
run in one process on the same networks, one after the other.

    .venv/bin/python bench/bench_export.py                                  # pipelines/synth.toml's networks
    .venv/bin/python bench/bench_export.py --pipeline pipelines/ntu60-xsub.toml
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import time
import warnings

import numpy as np
import onnxruntime
import torch

from mmfc.branches import BRANCHES
from mmfc.config import load_pipeline
from mmfc.data.layouts import layout_of
from mmfc.export.graphs import OPSET


def calibrated(network: torch.nn.Module, inputs: torch.Tensor) -> torch.nn.Module:
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    network.train()
    with torch.no_grad():
        network(inputs)
    return network.eval()


def export(network: torch.nn.Module, shape: tuple[int, ...], dynamo: bool) -> bytes:
    example = (torch.zeros(2, *shape),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(network, example, dynamo=True, input_names=["x"],
                                        output_names=["logits"], opset_version=OPSET,
                                        dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
            return program.model_proto.SerializeToString()
        buffer = io.BytesIO()
        torch.onnx.export(network, example, buffer, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=OPSET, dynamo=False)
    return buffer.getvalue()


def best_ms(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="pipelines/synth.toml")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cfg = load_pipeline(args.pipeline)
    layout = layout_of(cfg.data)
    have_dynamo = all(importlib.util.find_spec(name) for name in ("onnxscript", "onnx_ir"))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    print(f"{args.pipeline}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'branch':6} {'exporter':12} {'export s':>8} {'MB':>6} {'max |diff|':>10} {'max |logit|':>11} "
          f"{'torch ms':>8} {'ort ms':>7}")
    for name, branch in ((name, BRANCHES[name]) for name in cfg.branches):
        torch.manual_seed(0)
        shape = branch.input_shape(cfg, layout)
        network = calibrated(branch.build_model(cfg, cfg.data.num_classes, layout), torch.randn(4, *shape))
        inputs = torch.randn(4, *shape)
        with torch.no_grad():
            ours = network(inputs).numpy()
            torch_ms = best_ms(lambda: network(inputs[:1]), args.repeats)
        for dynamo in (False, True):
            label = "dynamo" if dynamo else "torchscript"
            if dynamo and not have_dynamo:
                print(f"{name:6} {label:12} (needs onnxscript and onnx_ir, not installed)")
                continue
            started = time.perf_counter()
            graph = export(network, shape, dynamo)
            seconds = time.perf_counter() - started
            session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
            theirs = session.run(["logits"], {"x": inputs.numpy()})[0]
            ort_ms = best_ms(lambda: session.run(["logits"], {"x": inputs[:1].numpy()}), args.repeats)
            print(f"{name:6} {label:12} {seconds:8.1f} {len(graph) / 1e6:6.1f} {np.abs(theirs - ours).max():10.2e} "
                  f"{np.abs(ours).max():11.2f} {torch_ms:8.1f} {ort_ms:7.1f}")


if __name__ == "__main__":
    main()
