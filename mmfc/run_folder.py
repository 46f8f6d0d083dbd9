"""A trained run opened for use on new clips: its pipeline, both branches' best networks and the
fitted fusion, read through each stage's file reader.

    run = open_run(Path("runs/synth"))                 # <workdir>/pipeline.json, saved by the stages
    run = open_run(Path("runs/synth"), Path("pipelines/synth.toml"))  # a run made before that
    run.models["rgb"](clips)                           # eval mode, on run.device
    run.fusion.log_probabilities(rgb_logits, skel_logits)

Every checkpoint is checked against the pipeline: its configuration digest (the data, crops and
branch sections stage 2 trained with) must be the pipeline's, so a pipeline file that is not the
one the run was made with is refused rather than silently cropping or sampling otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mmfc.branches import BRANCHES, training_digest
from mmfc.config import ConfigError, Pipeline, load_pipeline, read_saved_pipeline
from mmfc.errors import DataError
from mmfc.fusion.files import open_fusion
from mmfc.fusion.methods import FittedFusion
from mmfc.train.checkpoint import file_digest, load_checkpoint, load_weights

CHECKPOINT = "best.pt"
HEADER = ("model", "modality", "num_classes", "class_names", "layout", "config_digest")


@dataclass
class TrainedRun:
    workdir: Path
    cfg: Pipeline
    class_names: list[str]
    # The joint layout the skeleton branch was trained on ("ntu25", "coco17").
    layout: str
    # The sensor or estimator its poses came from (mmfc.data.sample: "kinect", "blazepose", ...);
    # "" for checkpoints written before stage 2 recorded it.
    pose_source: str
    # Branch name -> its best network, in eval mode on `device`.
    models: dict[str, torch.nn.Module]
    # Branch name -> the sha256 prefix of the checkpoint loaded.
    checkpoint_digests: dict[str, str]
    fusion_method: str
    fusion: FittedFusion
    device: torch.device

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def run_pipeline(workdir: Path, pipeline: Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Pipeline:
    """The pipeline a run was made with: `pipeline` (a TOML file, with `overrides`) when given,
    else the run's saved <workdir>/pipeline.json; its workdir is the run's folder either way."""
    if not workdir.is_dir():
        raise DataError(workdir, "no such run folder")
    if pipeline is not None:
        cfg = load_pipeline(pipeline, list(overrides))
    else:
        layout = Pipeline(workdir=str(workdir)).paths
        saved = layout.pipeline
        if not saved.is_file() and not any(layout.train(name).is_dir() for name in BRANCHES):
            raise DataError(workdir, "not a run: no pipeline.json and no train/ folder here; give the workdir of a "
                                     "trained run (the pipeline's `workdir`, e.g. runs/synth)")
        if not saved.is_file():
            raise DataError(saved, "missing: this run was made before the stages saved their pipeline; "
                                   "pass --pipeline with the pipeline file (and --set overrides) it was run with")
        if overrides:
            raise ConfigError("--set applies to a --pipeline file; a saved pipeline.json is used as it was run")
        cfg = read_saved_pipeline(saved)
    cfg.workdir = str(workdir)
    return cfg


def open_run(workdir: Path, pipeline: Path | None = None, device: str = "cpu",
             overrides: list[str] | tuple[str, ...] = ()) -> TrainedRun:
    """Open a trained run; DataError naming the missing or mismatching file (a branch not trained:
    the make target that trains it; no fusion: `mmfc stage fuse`)."""
    workdir = Path(workdir)
    cfg = run_pipeline(workdir, pipeline, overrides)
    target = torch.device(device)
    models, digests, headers = {}, {}, {}
    for name, branch in BRANCHES.items():
        path = cfg.paths.train(name) / CHECKPOINT
        if not path.is_file():
            raise DataError(path, f"missing: the {branch.label} branch is not trained; "
                                  f"run `make train-{name}` (`mmfc stage train --modality {name}`)")
        state = load_checkpoint(path, required=HEADER)
        if state["modality"] != name:
            raise DataError(path, f"holds a {state['modality']!r} model, not {name!r}")
        expected = training_digest(cfg, branch)
        if state["config_digest"] != expected:
            raise DataError(path, f"was trained with another configuration than {pipeline or cfg.paths.pipeline} "
                                  f"(digest {state['config_digest']} vs {expected}): give the pipeline file and "
                                  "--set overrides the run was made with")
        model = branch.build_model(cfg, state["num_classes"], state["layout"])
        load_weights(model, state["model"], path)
        models[name] = model.to(target).eval()
        digests[name] = file_digest(path)
        headers[name] = state
    first = headers[next(iter(headers))]
    for name, state in headers.items():
        if state["class_names"] != first["class_names"] or state["layout"] != first["layout"]:
            raise DataError(cfg.paths.train(name) / CHECKPOINT,
                            "its classes or joint layout differ from the other branch's checkpoint")
    method, fusion = open_fusion(cfg.paths.fusion).fitted()
    return TrainedRun(
        workdir=workdir, cfg=cfg, class_names=list(first["class_names"]), layout=first["layout"],
        pose_source=str(first.get("pose_source", "")), models=models,
        checkpoint_digests=digests, fusion_method=method, fusion=fusion, device=target,
    )
