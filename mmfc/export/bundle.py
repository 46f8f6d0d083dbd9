"""A trained run as an export folder that needs nothing from mmfc to use:

    <out>/<branch>.onnx         every branch's best network (graphs.py): rgb.onnx, joint.onnx,
                                bone.onnx, ...: one named float32 input with a dynamic batch
                                axis, one output `logits` [batch, K]
    <out>/manifest.json         what feeds each input (axes, value range, normalisation), the
                                settings preprocess.py reads, the poses the run needs, the
                                classes, the outputs, the fusion recipe over every branch
                                (recipe.py) and the parity measured when the folder was written
    <out>/apply_fusion.py       the recipe applied with numpy
    <out>/preprocess.py         a clip's keypoints (and frames, for an RGB graph) -> every
                                graph's input, with numpy (and OpenCV for frames), as stage 1
                                crops and stage 3 samples

Before the folder is written, onnxruntime runs every graph on samples of the run's own crop
store and its logits are compared with PyTorch's on the same inputs, and the recipe applied to
onnxruntime's logits with PyTorch's logits fused by mmfc itself (FittedFusion.apply); a
difference above graphs.parity_bound (1e-4 for logits within +-10, unless PyTorch's own float32
logits are further than that from float64's) fails the export. The folder is written under a temporary
name and renamed when complete (mmfc.atomic): a reader sees a whole export or none, and two
exports to one folder leave the one that finished last.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from mmfc import atomic
from mmfc.branches import get_branch
from mmfc.config import Pipeline
from mmfc.crops.store import open_crops
from mmfc.errors import DataError
from mmfc.crops.crop import CropJob
from mmfc.data.layouts import Layout
from mmfc.data.sample import BLAZEPOSE, describe_pose_source
from mmfc.export import apply_fusion, preprocess
from mmfc.export.graphs import (
    BATCH_AXIS,
    OPSET,
    OUTPUT_NAME,
    parity_bound,
    export_graph,
    float64_logits,
    onnx_logits,
    require_extra,
    torch_logits,
)
from mmfc.export.recipe import fusion_recipe
from mmfc.run_folder import TrainedRun

FORMAT = "mmfc-onnx-export"
# 2: the fusion recipe takes the logits by branch name; 3: one graph per branch of the run, and
# preprocess.py's inputs by branch (its settings per branch), frames only for an RGB graph.
VERSION = 3
MANIFEST = "manifest.json"


def export_onnx(run: TrainedRun, out: Path, check_samples: int = 8) -> dict:
    """Write the export folder `out` for `run` and return its manifest. `check_samples` store
    samples are run through both runtimes first (0: no check). DataError when `out` is
    something other than an earlier export, or when the graphs disagree with PyTorch."""
    require_extra()
    out = Path(out)
    _check_target(out)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "run": str(run.workdir),
        "pipeline": run.cfg.name,
        "exporter": f"torch {torch.__version__}, torch.onnx.export(dynamo=False), opset {OPSET}",
        "class_names": list(run.class_names),
        "branches": {},
        "poses": pose_requirement(run),
        "preprocess": preprocess_settings(run.cfg, run.layout, run.branches),
        "test_time": (
            f"mmfc scores a sample with the mean logits of {run.cfg.scores.clips} evenly spaced clip(s): clip c of C "
            "takes each segment's frame at (c + 0.5) / C of the segment; the recipe is applied to those means"
        ),
        "fusion": {**fusion_recipe(run.fusion_method, run.fusion), "fitted": str(run.cfg.paths.fusion / "weights.json")},
    }
    with atomic.atomic_path(out) as tmp:
        tmp.mkdir()
        for name, network in run.models.items():
            manifest["branches"][name] = _export_branch(run, name, network, tmp)
        shutil.copyfile(apply_fusion.__file__, tmp / "apply_fusion.py")
        shutil.copyfile(preprocess.__file__, tmp / "preprocess.py")
        if check_samples:
            parity = manifest["parity"] = check_parity(run, tmp, manifest, check_samples)
            for name, difference in parity["max_abs_diff"].items():
                if difference > parity["bound"][name]:
                    raise DataError(out / manifest["branches"].get(name, {}).get("file", MANIFEST),
                                    f"onnxruntime and PyTorch differ by {difference:.3g} ({name}), more than "
                                    f"{parity['bound'][name]:.3g}; nothing was written (--check 0 writes it unchecked)")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def preprocess_settings(cfg: Pipeline, layout: Layout, branches: list[str]) -> dict:
    """What preprocess.py reads: stage 1's skeleton settings (and its crop settings where a branch
    reads frames), each branch's sampling and normalisation, the clips averaged."""
    c = cfg.crops
    graphs = {}
    for name in branches:
        branch = get_branch(name)
        spec, section = branch.input_spec(cfg, layout), branch.section(cfg)
        if branch.needs_video:
            graphs[name] = {"kind": "rgb", "input": spec["name"], "segments": section.model.segments,
                            "input_size": section.model.input_size, "mean": spec["mean"], "std": spec["std"]}
        else:
            graphs[name] = {"kind": "skeleton", "input": spec["name"], "num_frames": section.model.num_frames,
                            "num_persons": section.model.num_persons, "normalize": section.input.normalize,
                            "sampling": section.input.sampling}
    frames = any(graph["kind"] == "rgb" for graph in graphs.values())
    settings = {
        "script": "preprocess.py: graph_inputs(manifest['preprocess'], keypoints, scores"
                  + (", frames, video_frames)" if frames else ")"),
        "skeleton": {
            "frames": c.skeleton_frames, "max_bodies": cfg.data.max_bodies, "align": c.align,
            "center": CropJob.of(cfg, layout).center, "align_axes": layout.align_axes, "pad": c.pad_skeleton,
        },
        "branches": graphs,
        "clips": cfg.scores.clips,
    }
    if frames:
        settings["crop"] = {
            "mode": c.mode, "padding": c.padding, "hw_ratio": c.hw_ratio, "min_box": c.min_box,
            "allow_pad": c.allow_pad, "smooth": c.smooth, "size": c.size, "num_frames": c.num_frames,
            "jpeg_quality": c.jpeg_quality, "max_bodies": cfg.data.max_bodies,
        }
    return settings


def pose_requirement(run: TrainedRun) -> dict:
    """Where the run's keypoints came from (its `pose_source`, as its checkpoints record it): the
    skeleton branches learnt their positions and stage 1 planned every crop on them, so new
    clips need keypoints of the same kind."""
    cfg, layout, pose_source = run.cfg, run.layout, run.pose_source
    channels = run.skeleton_channels
    source = describe_pose_source(pose_source) if pose_source else "not recorded (a run of an older mmfc)"
    if pose_source == BLAZEPOSE:
        source += (f" (`mmfc stage poses`, or `mmfc predict` without --skeleton): pose_landmark_full tracking up "
                   f"to {cfg.poses.max_persons} people, its landmarks mapped to {layout.name}, in image pixels")
    return {
        "layout": layout.name,
        "joints": layout.num_joints,
        "coordinates": channels,
        "source": source,
        "requirement": (
            f"keypoints must come from the same estimator (or sensor) and the same joint layout ({layout.name}, "
            f"{layout.num_joints} joints, {channels} coordinates each) as the run was trained on: the skeleton "
            "graphs learnt where that estimator puts each joint"
            + (" and the RGB crop is planned on them" if run.video_branches else "")
            + "; keypoints of another estimator give confident wrong answers"
        ),
    }


def _check_target(out: Path) -> None:
    """The export replaces the folder it is written to: only an empty one or an earlier export."""
    if out.is_dir() and any(out.iterdir()):
        try:
            earlier = json.loads((out / MANIFEST).read_text()).get("format")
        except (OSError, ValueError, AttributeError):
            earlier = None
        if earlier != FORMAT:
            raise DataError(out, "exists and is not an mmfc export; an export replaces its folder, so choose another --out")
    elif out.exists() and not out.is_dir():
        raise DataError(out, "is a file; --out names the folder the export is written to")


def _export_branch(run: TrainedRun, name: str, network: torch.nn.Module, folder: Path) -> dict:
    branch = get_branch(name)
    spec = branch.input_spec(run.cfg, run.layout)
    shape = branch.input_shape(run.cfg, run.layout)
    entry = {
        "file": f"{name}.onnx",
        "checkpoint_digest": run.checkpoint_digests[name],
        "model": branch.describe(run.cfg, run.layout),
        "input": {**spec, "dtype": "float32", "shape": [BATCH_AXIS, *shape]},
        "output": {
            "name": OUTPUT_NAME,
            "dtype": "float32",
            "shape": [BATCH_AXIS, len(run.class_names)],
            "values": "raw class scores (before softmax), in the order of class_names",
        },
    }
    input_doc = "; ".join(f"{key}: {value}" for key, value in entry["input"].items() if key != "name")
    export_graph(
        network.cpu(),
        shape,
        spec["name"],
        folder / entry["file"],
        doc=f"mmfc {branch.label} branch ({entry['model']['model']}) of the run {run.workdir}, "
            f"{len(run.class_names)} classes; manifest.json beside this file describes it",
        input_doc=input_doc,
        output_doc=f"{entry['output']['values']}: " + ", ".join(run.class_names),
        metadata={"mmfc_branch": name, "class_names": json.dumps(run.class_names),
                  "checkpoint_digest": run.checkpoint_digests[name]},
    )
    return entry


def check_parity(run: TrainedRun, folder: Path, manifest: dict, samples: int) -> dict:
    """Largest absolute difference between onnxruntime and PyTorch on `samples` samples of the
    run's crop store, per branch and fused, with the largest value, PyTorch's own float32 error
    and the accepted bound (graphs.parity_bound)."""
    try:
        store = open_crops(run.cfg.paths.crops)
    except DataError as exc:
        raise DataError(exc.path, f"{exc.reason} (the parity check runs the graphs on its samples; --check 0 skips it)") from None
    # Evenly spaced over the store, every split alike: deterministic, and not only one class.
    indices = np.unique(np.linspace(0, len(store) - 1, min(samples, len(store))).round().astype(int)).tolist()
    theirs, ours, exact = {}, {}, {}
    for name, entry in manifest["branches"].items():
        dataset = get_branch(name).build_dataset(run.cfg, store, indices, False, 0, 1)
        inputs = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
        theirs[name] = onnx_logits(folder / entry["file"], entry["input"]["name"], inputs)
        ours[name] = torch_logits(run.models[name], inputs)
        exact[name] = float64_logits(run.models[name], inputs)
    theirs["fused"] = apply_fusion.apply_fusion(manifest["fusion"], dict(theirs))
    ours["fused"] = run.fusion.apply(dict(ours))
    exact["fused"] = run.fusion.apply(dict(exact))
    float32_error = {name: float(np.abs(ours[name] - exact[name]).max()) for name in ours}
    return {
        "samples": len(indices),
        "inputs": "evenly spaced samples of the run's crop store, the centre clip",
        "max_abs_diff": {name: float(np.abs(theirs[name] - ours[name]).max()) for name in ours},
        "max_abs_value": {name: float(np.abs(ours[name]).max()) for name in ours},
        "float32_error": float32_error,
        "bound": {name: parity_bound(ours[name], float32_error[name]) for name in ours},
        "compared": "onnxruntime (CPU) logits vs PyTorch's on the same inputs; fused: apply_fusion.py on "
                    "onnxruntime's logits vs mmfc's FittedFusion.apply on PyTorch's. float32_error: PyTorch's "
                    "float32 vs a float64 copy of the network. bound: 1e-4, or 1e-5 of the largest value beyond "
                    "10, or twice float32_error, whichever is largest",
    }
