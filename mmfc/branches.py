"""The method's branches, one entry each: the one table the stages consult about a modality.

A branch's name is its `--modality` value, its section of the pipeline file, its folder under
train/ and its score file scores/<name>.parquet. For each branch the table says where its
settings are, how its network and its dataset over the crop store are built, and how reports
name it. Building a branch's network for a trained model is one call, from a pipeline and the
metadata the crop store (or a checkpoint) carries:

    model = get_branch("rgb").build_model(cfg, store.num_classes, store.layout)

The builders import torch and the models when called, so the CLI and the report can read the
table without loading them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmfc.config import ConfigError, Pipeline, RGBConfig, SkelConfig
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
    # Whether it learns from video frames: a crop store of a dataset without videos (skeletons
    # only) cannot feed it.
    needs_video: bool
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
    needs_video=True,
    section=lambda cfg: cfg.rgb,
    build_model=_rgb_model,
    load_pretrained=_rgb_pretrained,
    build_dataset=_rgb_dataset,
    input_shape=_rgb_input,
    describe=_rgb_describe,
    input_spec=_rgb_input_spec,
)


# ---------------------------------------------------------------------------------------------
# Skeleton: CTR-GCN over the stored normalised skeleton sequences


def _skel_model(cfg: Pipeline, num_classes: int, layout: Layout):
    from mmfc.models import build_skel_model

    return build_skel_model(cfg.skel.model, num_classes, layout)


def _skel_dataset(cfg: Pipeline, store, indices: list[int], train: bool, clip: int = 0, num_clips: int = 1):
    from mmfc.train.datasets import SkeletonDataset

    t, given = cfg.skel.train, cfg.skel.input
    return SkeletonDataset(
        store,
        indices,
        num_frames=cfg.skel.model.num_frames,
        num_persons=cfg.skel.model.num_persons,
        train=train,
        flip=t.flip,
        rotate_axes=t.rotate_axes,
        rotate_degrees=t.rotate_degrees,
        scale=t.skel_scale,
        uniform_scale=(t.uniform_scale[0], t.uniform_scale[1]),
        normalize=given.normalize,
        sampling=given.sampling,
        seed=t.seed,
        clip=clip,
        num_clips=num_clips,
    )


def _skel_input(cfg: Pipeline, layout: Layout) -> tuple[int, ...]:
    m = cfg.skel.model
    return (m.in_channels or layout.channels, m.num_frames, layout.num_joints, m.num_persons)


def _skel_describe(cfg: Pipeline, layout: Layout) -> dict:
    m = cfg.skel.model
    return {
        "model": f"CTR-GCN {m.stream}",
        "input": f"{m.num_frames} frames x {layout.num_joints} joints x {m.num_persons} persons",
        "base_channels": m.base_channels,
    }


def _skel_input_spec(cfg: Pipeline, layout: Layout) -> dict:
    m, crops, given = cfg.skel.model, cfg.crops, cfg.skel.input
    center = crops.center_joint or layout.joints[layout.center]
    aligned = ", rotated so the spine is +z and the shoulders +x" if crops.align and layout.align_axes else ""
    stored = (f"the frames with a body as they are, zero frames after them (a longer sequence resampled evenly to "
              f"{crops.skeleton_frames})" if crops.pad_skeleton
              else f"the frames with a body resampled evenly to {crops.skeleton_frames}")
    scaled = (", then each coordinate mapped linearly onto [-1, 1] over all joints of all frames with a body "
              "(mmfc/train/datasets.py: minmax_normalize)" if given.normalize == "minmax" else "")
    frames = (f"{m.num_frames} of the frames with a body, evenly spaced from the first to the last "
              "(mmfc/train/datasets.py: evenly_spaced)" if given.sampling == "random_choice"
              else f"{m.num_frames} of the frames with a body, each the centre of one of {m.num_frames} equal segments")
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


SKEL = Branch(
    name="skel",
    label="Skeleton",
    needs_video=False,
    section=lambda cfg: cfg.skel,
    build_model=_skel_model,
    load_pretrained=lambda cfg, model: None,  # the skeleton branch always starts from scratch
    build_dataset=_skel_dataset,
    input_shape=_skel_input,
    describe=_skel_describe,
    input_spec=_skel_input_spec,
)


BRANCHES: dict[str, Branch] = {branch.name: branch for branch in (RGB, SKEL)}


def training_settings(branch: Branch) -> tuple[str, ...]:
    """The pipeline's sections that shape a branch's trained weights: the data, the crops and its
    own. Stage 2 stamps their digest (Pipeline.digest) on every checkpoint; whoever loads one
    checks it. Settings that do not shape results (the branch's threads and loader workers) are
    in no digest: a run resumed on a busier or larger machine continues (math kernels may then
    round differently in the last bits; README)."""
    return ("data", "crops", branch.name)


def branch_support(has_video: bool) -> dict[str, str]:
    """For each branch, whether data with (or without) videos can train it, in words (`mmfc info`)."""
    return {
        name: "not supported: it learns from video frames, and no sample of the data has a video"
        if branch.needs_video and not has_video else "supported"
        for name, branch in BRANCHES.items()
    }


def check_store_feeds(branch: Branch, store: CropStore) -> None:
    """DataError naming the crop store when it lacks what the branch learns from."""
    if branch.needs_video and not store.has_video:
        instead = "; ".join(f"`mmfc stage train --modality {b.name}`, then `mmfc stage scores --modality {b.name}`"
                            for b in BRANCHES.values() if not b.needs_video)
        raise DataError(store.root, f"holds skeletons only (its dataset has no videos), so the {branch.label} branch, "
                                    f"which learns from video frames, has nothing to learn from; run {instead} instead")


def get_branch(name: str) -> Branch:
    try:
        return BRANCHES[name]
    except KeyError:
        raise ConfigError(f"modality must be one of {', '.join(BRANCHES)}, got {name!r}") from None
