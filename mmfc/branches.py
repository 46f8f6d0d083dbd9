"""The method's branches, one entry each: the one table the stages consult about a modality.

A branch's name is its `--modality` value, its section of the pipeline file, its folder under
train/ and its score file scores/<name>.parquet. For each branch the table says where its
settings are, how its network and its dataset over the crop store are built, and how reports
name it. The table holds every branch a pipeline may declare (config.BranchName): `rgb`, `skel`
(the skeleton branch of two-branch pipelines, its stream skel.model.stream) and each skeleton
stream (`joint`, `bone`, `joint_motion`, `bone_motion`), whose section is [skel] merged with
its own. A pipeline trains the ones its `branches` declare (`declared_branch`). Building a
branch's network for a trained model is one call, from a pipeline and the metadata the crop
store (or a checkpoint) carries:

    model = get_branch("rgb").build_model(cfg, store.num_classes, store.layout)

The builders import torch and the models when called, so the CLI and the report can read the
table without loading them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmfc.config import SKELETON_STREAMS, VIDEO_BRANCHES, ConfigError, Pipeline, RGBConfig, SkelConfig
from mmfc.data.layouts import Layout
from mmfc.errors import DataError

if TYPE_CHECKING:
    import torch

    from mmfc.crops.store import CropStore


@dataclass(frozen=True)
class Branch:
    name: str
    # How reports and tables name it.
    label: str
    # Its section of the pipeline: model, train and ccl settings.
    section: Callable[[Pipeline], RGBConfig | SkelConfig]
    # (pipeline, number of classes, joint layout) -> the network, freshly initialised.
    build_model: Callable[[Pipeline, int, Layout], torch.nn.Module]
    # (pipeline, network) -> loads the starting weights the pipeline names into it and returns a
    # line for the log, or None when it names none.
    load_pretrained: Callable[[Pipeline, torch.nn.Module], str | None]
    # (pipeline, store, store indices, train?, clip, clips) -> torch Dataset of
    # (input, label, store index); `train` switches on random sampling and augmentation, `clip`
    # of `clips` picks one of several evenly spaced evaluation clips.
    build_dataset: Callable[[Pipeline, CropStore, list[int], bool, int, int], torch.utils.data.Dataset]
    # (pipeline, joint layout) -> the shape of one input clip, without the batch axis.
    input_shape: Callable[[Pipeline, Layout], tuple[int, ...]]
    # (pipeline, joint layout) -> the configured network and its input, in words.
    describe: Callable[[Pipeline, Layout], dict]
    # (pipeline, joint layout) -> the network's input for someone feeding it outside mmfc
    # (an exported graph): its name, axes, and how the values are made from a sample.
    input_spec: Callable[[Pipeline, Layout], dict]

    @property
    def needs_video(self) -> bool:
        """Whether it learns from video frames: a crop store of a dataset without videos
        (skeletons only) cannot feed it."""
        return self.name in VIDEO_BRANCHES


# ---------------------------------------------------------------------------------------------
# RGB: the STAA ResNet over TSN-sampled clips of the stored crops


def _rgb_model(cfg: Pipeline, num_classes: int, layout: Layout):
    from mmfc.models import build_rgb_model

    return build_rgb_model(cfg.rgb.model, num_classes)


def _rgb_pretrained(cfg: Pipeline, model) -> str | None:
    from mmfc.models import load_pretrained

    path = cfg.rgb.model.pretrained
    if not path:
        return None
    missing, unexpected = load_pretrained(model, path)
    return f"pretrained {path}: {len(missing)} tensors left at their initialisation, {len(unexpected)} unused"


def _rgb_dataset(cfg: Pipeline, store, indices: list[int], train: bool, clip: int = 0, num_clips: int = 1):
    from mmfc.train.datasets import RGBClipDataset

    t = cfg.rgb.train
    return RGBClipDataset(
        store,
        indices,
        segments=cfg.rgb.model.segments,
        input_size=cfg.rgb.model.input_size,
        train=train,
        scale_range=tuple(t.scale_range),
        flip=t.flip,
        color_jitter=t.color_jitter,
        seed=t.seed,
        clip=clip,
        num_clips=num_clips,
    )


def _rgb_input(cfg: Pipeline, layout: Layout) -> tuple[int, ...]:
    m = cfg.rgb.model
    return (m.segments, 3, m.input_size, m.input_size)


def _rgb_describe(cfg: Pipeline, layout: Layout) -> dict:
    m = cfg.rgb.model
    widths = f" ({m.fragment_width}w x 4s)" if m.fragment_width else ""
    return {
        "model": f"{m.block}-R{m.depth}{widths}",
        "input": f"{m.segments}x{m.input_size}x{m.input_size}",
        "base_width": m.base_width,
    }


def _rgb_input_spec(cfg: Pipeline, layout: Layout) -> dict:
    from mmfc.train.datasets import IMAGENET_MEAN, IMAGENET_STD

    m = cfg.rgb.model
    return {
        "name": "clips",
        "axes": ["batch", "segment", "channel", "height", "width"],
        "channels": "R, G, B",
        "values": "(pixel / 255 - mean[channel]) / std[channel], pixels 0..255",
        # The float32 constants by their shortest decimals (0.485, not 0.48500001430511475).
        "mean": [float(str(value)) for value in IMAGENET_MEAN],
        "std": [float(str(value)) for value in IMAGENET_STD],
        "frames": f"{m.segments} frames of the sample's stored crop frames, each the centre of one of {m.segments} "
                  "equal segments (mmfc/train/datasets.py: segment_indices, eval_offsets)",
        "image": f"the stage-1 skeleton-guided square crop ({cfg.crops.size} px), its centre "
                 f"{m.input_size} x {m.input_size} (resized to it when the crop is smaller)",
    }


RGB = Branch(
    name="rgb",
    label="RGB",
    section=lambda cfg: cfg.rgb,
    build_model=_rgb_model,
    load_pretrained=_rgb_pretrained,
    build_dataset=_rgb_dataset,
    input_shape=_rgb_input,
    describe=_rgb_describe,
    input_spec=_rgb_input_spec,
)


# ---------------------------------------------------------------------------------------------
# Skeleton: CTR-GCN over the stored normalised skeleton sequences, one branch per section: `skel`,
# and each stream's own. Every one reads the same stored joints; the network derives its stream.


def _skeleton_branch(name: str, label: str) -> Branch:
    def section(cfg: Pipeline) -> SkelConfig:
        return getattr(cfg, name)

    def build_model(cfg: Pipeline, num_classes: int, layout: Layout):
        from mmfc.models import build_skel_model

        return build_skel_model(section(cfg).model, num_classes, layout)

    def build_dataset(cfg: Pipeline, store, indices: list[int], train: bool, clip: int = 0, num_clips: int = 1):
        from mmfc.train.datasets import SkeletonDataset

        return SkeletonDataset(store, indices, train=train, clip=clip, num_clips=num_clips,
                               **skeleton_input(section(cfg)))

    def input_shape(cfg: Pipeline, layout: Layout) -> tuple[int, ...]:
        m = section(cfg).model
        return (m.in_channels or layout.channels, m.num_frames, layout.num_joints, m.num_persons)

    def describe(cfg: Pipeline, layout: Layout) -> dict:
        m = section(cfg).model
        return {
            "model": f"CTR-GCN {m.stream}",
            "input": f"{m.num_frames} frames x {layout.num_joints} joints x {m.num_persons} persons",
            "base_channels": m.base_channels,
        }

    def input_spec(cfg: Pipeline, layout: Layout) -> dict:
        own = section(cfg)
        m, crops, given = own.model, cfg.crops, own.input
        center = crops.center_joint or layout.joints[layout.center]
        aligned = ", rotated so the spine is +z and the shoulders +x" if crops.align and layout.align_axes else ""
        stored = (f"the frames with a body as they are, zero frames after them (a longer sequence resampled evenly "
                  f"to {crops.skeleton_frames})" if crops.pad_skeleton
                  else f"the frames with a body resampled evenly to {crops.skeleton_frames}")
        scaled = (", then each coordinate mapped linearly onto [-1, 1] over all joints of all frames with a body "
                  "(mmfc/train/datasets.py: minmax_normalize)" if given.normalize == "minmax" else "")
        frames = (f"{m.num_frames} of the frames with a body, evenly spaced from the first to the last "
                  "(mmfc/train/datasets.py: evenly_spaced)" if given.sampling == "random_choice"
                  else f"{m.num_frames} of the frames with a body, each the centre of one of {m.num_frames} equal "
                       "segments")
        return {
            "name": "joints",
            "axes": ["batch", "coordinate", "frame", "joint", "person"],
            "joint_layout": layout.to_dict(),
            "coordinates": f"{m.in_channels or layout.channels} per joint, in the source's units (Kinect: metres in "
                           "camera space; 2D keypoints: image pixels)",
            "values": f"the stage-1 normalised sequence (mmfc/crops/skeleton.py): missing joints 0, every joint moved "
                      f"so joint {center!r} of the first frame with a body is the origin{aligned}, {stored}{scaled}",
            "frames": frames,
            "persons": f"the first {m.num_persons} bodies, zeros where there are fewer",
            "stream": f"raw joints: the network derives its {m.stream!r} stream itself",
        }

    return Branch(
        name=name,
        label=label,
        section=section,
        build_model=build_model,
        load_pretrained=lambda cfg, model: None,  # the skeleton branches always start from scratch
        build_dataset=build_dataset,
        input_shape=input_shape,
        describe=describe,
        input_spec=input_spec,
    )


def skeleton_input(section: SkelConfig) -> dict:
    """The settings of a skeleton branch's SkeletonDataset (mmfc/train/datasets.py) but the
    samples and the clip: two branches whose inputs are the same (stage 3 scores them in one pass
    over the store) are those whose settings here are equal."""
    t, given = section.train, section.input
    return {
        "num_frames": section.model.num_frames,
        "num_persons": section.model.num_persons,
        "flip": t.flip,
        "rotate_axes": t.rotate_axes,
        "rotate_degrees": t.rotate_degrees,
        "scale": t.skel_scale,
        "uniform_scale": (t.uniform_scale[0], t.uniform_scale[1]),
        "normalize": given.normalize,
        "sampling": given.sampling,
        "seed": t.seed,
    }


SKEL = _skeleton_branch("skel", "Skeleton")
STREAM_LABELS = {"joint": "Joint", "bone": "Bone", "joint_motion": "Joint motion", "bone_motion": "Bone motion"}


BRANCHES: dict[str, Branch] = {
    branch.name: branch for branch in (RGB, SKEL, *(_skeleton_branch(s, STREAM_LABELS[s]) for s in SKELETON_STREAMS))
}


def training_settings(branch: Branch) -> tuple[str, ...]:
    """The pipeline's sections that shape a branch's trained weights: the data, the crops and its
    own. Stage 2 stamps their digest (Pipeline.digest) on every checkpoint; whoever loads one
    checks it. Settings that do not shape results (the branch's threads and loader workers) are
    in no digest: a run resumed on a busier or larger machine continues (math kernels may then
    round differently in the last bits; docs/operations.md, "Threads and loader workers")."""
    return ("data", "crops", branch.name)


NO_VIDEO = "not supported: it learns from video frames, and no sample of the data has a video"


def branch_support(branches: list[str], has_video: bool) -> dict[str, str]:
    """For each of `branches`, whether data with (or without) videos can train it, in words
    (`mmfc info`, `mmfc branches`)."""
    return {name: NO_VIDEO if BRANCHES[name].needs_video and not has_video else "supported" for name in branches}


def supported_branches(cfg: Pipeline, has_video: bool, told_by: str | Path) -> tuple[list[str], dict[str, str]]:
    """The declared branches data with (or without) videos can train, in the declared order, and
    why each other one is left out; DataError naming `told_by` (what said whether the data has
    videos: the crop store, the data) when none is left."""
    support = branch_support(cfg.branches, has_video)
    kept = [name for name, said in support.items() if said == "supported"]
    left_out = {name: said for name, said in support.items() if said != "supported"}
    if not kept:
        reasons = "; ".join(f"{name}: {why}" for name, why in left_out.items())
        raise DataError(told_by, f"the data supports none of the declared branches {cfg.branches} ({reasons}); "
                                 "declare a skeleton branch")
    return kept, left_out


def data_has_video(cfg: Pipeline) -> tuple[bool | None, str | Path]:
    """Whether any sample of the pipeline's data has a video, and what says so: the crop store
    once stage 1 has run, else the pipeline (a source that never has videos), else the data
    source's samples; None where the data cannot be read yet (stage 1 will say why)."""
    from mmfc.crops.store import INDEX, open_crops
    from mmfc.data.sources import describe_selection

    if (cfg.paths.crops / INDEX).is_file():
        return open_crops(cfg.paths.crops).has_video, cfg.paths.crops
    if cfg.data.never_has_video():
        return False, cfg.data.root
    try:
        return describe_selection(cfg.data)["video"]["with"] > 0, cfg.data.root
    except DataError:
        return None, cfg.data.root


def check_store_feeds(branch: Branch, store: CropStore, declared: list[str]) -> None:
    """DataError naming the crop store when it lacks what the branch learns from; it names the
    `declared` branches that the store does feed."""
    if branch.needs_video and not store.has_video:
        instead = "; ".join(f"`mmfc stage train --modality {name}`, then `mmfc stage scores --modality {name}`"
                            for name in declared if not BRANCHES[name].needs_video)
        advice = f"run {instead} instead" if instead else "declare a skeleton branch (`branches`) instead"
        raise DataError(store.root, f"holds skeletons only (its dataset has no videos), so the {branch.label} branch, "
                                    f"which learns from video frames, has nothing to learn from; {advice}")


def get_branch(name: str) -> Branch:
    try:
        return BRANCHES[name]
    except KeyError:
        raise ConfigError(f"modality must be one of {', '.join(BRANCHES)}, got {name!r}") from None


def declared_branch(cfg: Pipeline, name: str) -> Branch:
    """The branch `name` where the pipeline declares it; ConfigError naming those it declares."""
    branch = get_branch(name)
    if name not in cfg.branches:
        why = cfg.data.never_has_video() if branch.needs_video else None
        raise ConfigError(f"--modality {name}: the pipeline declares the branches {cfg.branches}, not {name!r}"
                          + (f" ({why}, and {name!r} learns from video frames)" if why
                             else f"; add {name!r} to `branches` to train it"))
    return branch
