"""A trained run opened for use on new clips: the best network of every branch the fitted fusion
takes, each rebuilt from its own checkpoint alone, and that fusion, read through each stage's
file reader.

    run = open_run(Path("runs/synth"))
    run = open_run(Path("runs/synth"), overrides=["poses.models_dir=/opt/blazepose"])
    run.branches                                       # ["rgb", "joint", "bone"]: weights.json's
    run.models["rgb"](clips)                           # logits; eval mode, on run.device
    run.fusion.log_probabilities({"rgb": rgb_logits, "joint": joint_logits, "bone": bone_logits})

The branches are those stage 4 fused (`fusion/weights.json` lists them; a declared branch the
data could not feed, RGB on skeletons alone, is not among them). Each checkpoint carries the
settings its network and that network's input were made with
(mmfc.train.checkpoint.checkpoint_header), so the run's pipeline is rebuilt from the
checkpoints: no pipeline file is read, and a run folder copied without its pipeline.json
predicts and exports as it did where it was trained. The settings every checkpoint carries
(crops, how skeletons are read, the estimator, the test clips) must agree, or they were not
trained as one run. What the checkpoints do not fix is how this machine runs the run (workers,
where the pose models are, where the crop store is); `--set` changes those, and only those.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from mmfc.branches import BRANCHES
from mmfc.config import ConfigError, Pipeline, apply_overrides, pipeline_from_dict, single_fusion
from mmfc.data.layouts import LAYOUTS, Layout, stored_layout
from mmfc.errors import DataError
from mmfc.fusion.files import WEIGHTS, FusionSet, open_fusion
from mmfc.fusion.methods import FittedFusion
from mmfc.train.checkpoint import FORMAT, HEADER, file_digest, load_checkpoint, load_weights

CHECKPOINT = "best.pt"
# The settings `--set` may change in an opened run: how this machine runs it, never what the
# networks were trained on or how their inputs are made (those are the checkpoints').
MACHINE_KEYS = ("jobs.backend", "jobs.n_jobs", "poses.models_dir", "crops_from", "data.video_exts")


@dataclass
class TrainedRun:
    workdir: Path
    # The pipeline rebuilt from the checkpoints' settings, with the machine's (MACHINE_KEYS).
    cfg: Pipeline
    class_names: list[str]
    # The joint layout the skeleton branches were trained on (and the RGB crops planned on).
    layout: Layout
    # The sensor or estimator its poses came from (mmfc.data.sample: "kinect", "blazepose", ...).
    pose_source: str
    # Branch name -> its best network, in eval mode on `device`, in the order the fusion lists them.
    models: dict[str, torch.nn.Module]
    # Branch name -> the sha256 prefix of the checkpoint loaded.
    checkpoint_digests: dict[str, str]
    fusion_method: str
    fusion: FittedFusion
    device: torch.device
    # Stage 4's whole set: every candidate it fitted (a branch alone, for a clip only some read).
    fusions: FusionSet

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def branches(self) -> list[str]:
        return list(self.models)

    @property
    def video_branches(self) -> list[str]:
        """The branches that read video frames: a run without any predicts from skeletons alone."""
        return [name for name in self.models if BRANCHES[name].needs_video]

    @property
    def skeleton_branches(self) -> list[str]:
        return [name for name in self.models if not BRANCHES[name].needs_video]

    @property
    def skeleton_channels(self) -> int:
        """Coordinates per joint the skeleton branches read (their model.in_channels, else the
        layout's); the layout's where the run has none."""
        sections = [BRANCHES[name].section(self.cfg) for name in self.skeleton_branches]
        return (sections[0].model.in_channels if sections else 0) or self.layout.channels

    def fitted_alone(self, branch: str) -> tuple[str, FittedFusion]:
        """Stage 4's candidate of `branch` alone (its temperature-scaled scores)."""
        return self.fusions.fitted(single_fusion(branch))


def open_run(workdir: Path, device: str = "cpu", overrides: list[str] | tuple[str, ...] = ()) -> TrainedRun:
    """Open a trained run; DataError naming the missing, damaged or mismatching file (no fusion:
    `mmfc stage fuse`; a fused branch not trained: the make target that trains it), ConfigError
    for an override of a setting the checkpoints fix."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise DataError(workdir, "no such run folder")
    if not (workdir / "train").is_dir():
        raise DataError(workdir, "not a run: no train/ folder here; give the workdir of a trained run (the "
                                 "pipeline's `workdir`, e.g. runs/synth)")
    fusions = open_fusion(workdir / "fusion")
    branches = fused_branches(fusions)
    headers = {name: read_header(workdir / "train" / name / CHECKPOINT, name) for name in branches}
    cfg = trained_pipeline(workdir, headers, overrides)
    first = branches[0]
    target = torch.device(device)
    models, digests = {}, {}
    for name, state in headers.items():
        path = cfg.paths.train(name) / CHECKPOINT
        if state["class_names"] != headers[first]["class_names"] or state["layout"] != headers[first]["layout"]:
            raise DataError(path, f"its classes or joint layout differ from the {first} branch's checkpoint")
        model = BRANCHES[name].build_model(cfg, len(state["class_names"]), state["layout"])
        load_weights(model, state["model"], path)
        models[name] = model.to(target).eval()
        digests[name] = file_digest(path)
        fitted_on = fusions.weights["inputs"][name]["checkpoint_digest"]
        if digests[name] != fitted_on:
            raise DataError(path, f"is not the checkpoint the fusion was fitted on (sha256 {digests[name]}, the fusion's "
                                  f"{fitted_on}): it was retrained since; rerun `mmfc stage scores --modality {name}` "
                                  "and `mmfc stage fuse`")
    method, fusion = fusions.fitted()
    return TrainedRun(
        workdir=workdir, cfg=cfg, class_names=list(headers[first]["class_names"]), layout=headers[first]["layout"],
        pose_source=headers[first]["pose_source"], models=models, checkpoint_digests=digests, fusion_method=method,
        fusion=fusion, device=target, fusions=fusions,
    )


def fused_branches(fusions: FusionSet) -> list[str]:
    """The branches stage 4 fused, as its weights.json lists them; DataError naming it when they
    are not a list of known branches."""
    branches = fusions.weights.get("branches")
    if (not isinstance(branches, list) or not branches
            or not all(isinstance(name, str) and name in BRANCHES for name in branches)):
        raise DataError(fusions.folder / WEIGHTS, f"names no branches it fused that mmfc knows ({branches!r}; known: "
                                                  f"{', '.join(BRANCHES)}); rerun `mmfc stage fuse` (stage 4)")
    return branches


def read_header(path: Path, branch: str) -> dict:
    """A branch's checkpoint with its whole header (mmfc.train.checkpoint.HEADER); DataError
    naming it when it is missing, damaged, foreign, another branch's, or an older mmfc's."""
    if not path.is_file():
        raise DataError(path, f"missing: the {BRANCHES[branch].label} branch is not trained; "
                              f"run `make train-{branch}` (`mmfc stage train --modality {branch}`)")
    state = load_checkpoint(path)
    if state.get("format") != FORMAT:
        if "modality" in state:
            raise DataError(path, "written by an older mmfc, whose checkpoints do not carry the settings their network "
                                  f"was built with; retrain it (`make train-{branch}`)")
        raise DataError(path, "not an mmfc checkpoint: its header names no mmfc checkpoint format")
    missing = [key for key in HEADER if key not in state]
    if missing:
        raise DataError(path, f"not a whole mmfc checkpoint: its header lacks {', '.join(missing)}")
    if state["modality"] != branch:
        raise DataError(path, f"holds a {state['modality']!r} model, not {branch!r}")
    try:
        state["layout"] = stored_layout(state["layout"], "its joint layout")
    except ConfigError as exc:
        raise DataError(path, str(exc)) from None
    return state


def trained_pipeline(workdir: Path, headers: dict[str, dict], overrides: list[str] | tuple[str, ...] = ()) -> Pipeline:
    """The pipeline the checkpoints `headers` (branch -> checkpoint) were trained with, as their
    settings give it, its workdir the run's folder and `overrides` (MACHINE_KEYS only) applied."""
    raw: dict = {}
    owner: dict[str, str] = {}  # section -> the branch whose checkpoint gave it
    for name, state in headers.items():
        for section, value in state["settings"].items():
            if section in raw and raw[section] != value:
                raise DataError(workdir / "train" / name / CHECKPOINT,
                                f"its {section!r} settings differ from those of the {owner[section]} branch's "
                                f"checkpoint ({_first_difference(raw[section], value)}): the two were not trained "
                                "as one run; retrain one of them")
            raw[section], owner[section] = copy.deepcopy(value), name
    layout = next(iter(headers.values()))["layout"]
    raw.setdefault("data", {})["layout"] = layout.name
    if LAYOUTS.get(layout.name) != layout:  # a layout the pipeline declared: the checkpoint carries it whole
        raw["data"]["declared_layout"] = layout.to_dict()
    for key in apply_overrides(raw, overrides):
        if key not in MACHINE_KEYS:
            raise ConfigError(f"--set {key}: a trained run's networks and their inputs are set by its checkpoints; "
                              f"--set changes only how this machine runs it: {', '.join(MACHINE_KEYS)}")
    raw["workdir"], raw["branches"] = str(workdir), list(headers)
    where = f"the settings of the checkpoints in {workdir / 'train'}" + (" with --set overrides" if overrides else "")
    return pipeline_from_dict(raw, where)


def _first_difference(a, b, where: str = "") -> str:
    """The first key whose values differ in two sections, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}".lstrip("."))
    return f"{where or 'the section'}: {a!r} vs {b!r}"
