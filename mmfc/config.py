"""Typed pipeline configuration, loaded from one TOML file per dataset and protocol.

Every key of a pipeline file maps to a field of the dataclasses below; `--set a.b=value` on the
command line overrides one after loading. An unknown or mistyped key is an error that names the
key and lists the valid ones, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A pipeline file or override that does not fit the schema."""


@dataclass
class DataConfig:
    # "ntu": the NTU RGB+D raw release layout (nturgb+d_skeletons/, nturgb+d_rgb/), also what
    # `mmfc synth` writes. "pose_pickle": a PYSKL annotation pickle (FineGym, NTU HRNet 2D, ...).
    source: str = "ntu"
    # ntu: the folder holding nturgb+d_skeletons/ and nturgb+d_rgb/; pose_pickle: the .pkl file.
    root: str = "data/synth"
    # pose_pickle: folder of videos named <frame_dir><video_ext>; "" when there are none.
    video_root: str = ""
    video_ext: str = ".mp4"
    # ntu: "xsub" or "xview" (NTU60), "xsub" or "xset" (NTU120).
    protocol: str = "xsub"
    # pose_pickle: names of the training and test splits inside the pickle.
    train_split: str = "train"
    test_split: str = "test"
    num_classes: int = 60
    # A text file with one class name per line; "" uses the dataset's built-in names.
    class_names: str = ""
    # Joint layout of the skeletons: "ntu25" or "coco17".
    layout: str = "ntu25"
    # Width and height of the space the 2D (colour) keypoints were recorded in. NTU colour
    # coordinates are in the 1920x1080 original; decoded videos may be smaller.
    skeleton_frame_size: list[int] = field(default_factory=lambda: [1920, 1080])
    # Official list of samples without skeletons (NTU); "" when there is none.
    missing_list: str = ""
    # Body selection (NTU): at most this many bodies, ranked by motion.
    max_bodies: int = 2
    # Validation carved out of the training split, never out of test. "performer": the
    # performers listed in val_performers (NTU); "group": a fraction of source groups, e.g.
    # the source video of a FineGym clip, so no video is on both sides.
    val_by: str = "performer"
    val_performers: list[int] = field(default_factory=list)
    val_fraction: float = 0.1
    val_seed: int = 0


@dataclass
class CropConfig:
    # METHOD.md section 1. "clip": one box for the whole clip; "frame": per-frame boxes smoothed
    # over time; "person": one clip box per person, side by side.
    mode: str = "clip"
    padding: float = 0.25
    # Height/width ratio of the box; 0 keeps the box shape.
    hw_ratio: float = 1.0
    min_box: float = 10.0
    allow_pad: bool = True
    # "frame" mode: exponential smoothing factor of the box centre and size over time.
    smooth: float = 0.8
    # Rotate 3D skeletons so the spine is +z and the shoulders +x (PYSKL PreNormalize3D align).
    align: bool = False
    # Side of the stored square frames; larger than the training input so stage 2 can still
    # random-crop.
    size: int = 256
    num_frames: int = 32
    # Skeleton sequence stored per sample: fixed length, up to max_bodies persons.
    skeleton_frames: int = 100
    jpeg_quality: int = 90
    samples_per_shard: int = 256
    n_jobs: int = -1
    # joblib backend: "loky" locally, "ray" or "dask" on a cluster (see README).
    backend: str = "loky"


@dataclass
class RGBModelConfig:
    depth: int = 50
    base_width: int = 64
    # "plain" (TSN), "tsm", "ma", "ta" or "staa" (MA + TA).
    block: str = "staa"
    segments: int = 8
    input_size: int = 224
    dropout: float = 0.5
    ma_reduction: int = 16
    # Bottleneck inner widths (depth 50 only), as Res2Net's baseWidth: each of the 4 fragments
    # is fragment_width * base_width/64 * 2^stage wide, rounded down. 0 keeps torchvision's
    # widths, so its ImageNet weights load; 26 gives Res2Net-50 26w x 4s, TEA's backbone and
    # the paper's cost.
    fragment_width: int = 0
    # Local ImageNet ResNet state dict in torchvision's key layout; "" starts from scratch.
    pretrained: str = ""


@dataclass
class SkelModelConfig:
    # "joint", "bone", "joint_motion" or "bone_motion".
    stream: str = "joint"
    base_channels: int = 64
    # Coordinates per joint; 0 takes them from the layout (ntu25: 3D, coco17: 2D).
    in_channels: int = 0
    num_frames: int = 64
    num_persons: int = 2
    dropout: float = 0.0


@dataclass
class CCLConfig:
    # "frhead": class-aware contrastive learning of FR-Head; "supcon": supervised contrastive.
    kind: str = "frhead"
    # lambda; 0 switches the loss off exactly.
    weight: float = 0.1
    level_weights: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.5, 1.0])
    dim: int = 256
    momentum: float = 0.9
    margin: float = 0.125
    tau: float = 0.125
    supcon_tau: float = 0.07


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 16
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    warmup_epochs: int = 1
    # "cosine" or "step" (step multiplies lr by 0.1 at each milestone epoch).
    schedule: str = "cosine"
    milestones: list[int] = field(default_factory=lambda: [20, 25])
    # Update the learning rate every "iteration" (smooth) or once per "epoch".
    lr_step: str = "iteration"
    seed: int = 0
    num_workers: int = 0
    # bf16 autocast on CUDA (and on CPU when set explicitly with amp_cpu).
    amp: bool = True
    amp_cpu: bool = False
    # Augmentation.
    flip: bool = True
    scale_range: list[float] = field(default_factory=lambda: [0.5, 1.0])
    # RGB: brightness, contrast and saturation each scaled by a factor in [1 - c, 1 + c], one
    # draw per clip (hue is left alone: colour tells held objects apart). 0 turns it off.
    color_jitter: float = 0.0
    rotate_degrees: float = 15.0
    skel_scale: float = 0.1
    # Largest number of training samples per epoch; 0 uses all.
    max_samples: int = 0


@dataclass
class RGBConfig:
    model: RGBModelConfig = field(default_factory=RGBModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ccl: CCLConfig = field(default_factory=CCLConfig)


@dataclass
class SkelConfig:
    model: SkelModelConfig = field(default_factory=SkelModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=32, lr=0.1))
    ccl: CCLConfig = field(default_factory=CCLConfig)


@dataclass
class ScoresConfig:
    # Clips averaged per sample at test time (1: the centre clip only).
    clips: int = 1


@dataclass
class FusionConfig:
    # Accuracy that breaks near-ties in cross-validated NLL: "top1" or "mean_class".
    metric: str = "top1"
    # Grid over the global weight alpha in [0, 1].
    grid: int = 101
    # Folds of the cross-validation inside the validation split (fewer when there are fewer
    # performers or groups), and the seed that assigns them.
    cv_folds: int = 5
    cv_seed: int = 0
    # Method whose scores become fusion/fused.parquet (every candidate is fitted and reported):
    # "auto" (chosen by cross-validation, never worse in it than a single modality or a fixed
    # ratio), "global", "adaptive", "per_class", "pyskl_1_1", "pyskl_2_1", "pyskl_1_2",
    # "rgb_alone" or "skel_alone".
    method: str = "auto"


@dataclass
class Pipeline:
    name: str = "synth"
    workdir: str = "runs/synth"
    # Read stage-1 crops from another workdir instead of this one's: ablation variants that
    # differ only in the model share one set of crops.
    crops_from: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    crops: CropConfig = field(default_factory=CropConfig)
    rgb: RGBConfig = field(default_factory=RGBConfig)
    skel: SkelConfig = field(default_factory=SkelConfig)
    scores: ScoresConfig = field(default_factory=ScoresConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    @property
    def paths(self) -> WorkdirLayout:
        return WorkdirLayout(Path(self.workdir), Path(self.crops_from or self.workdir))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self, section: str | None = None) -> str:
        """A short stable hash of the whole configuration or of one top-level section."""
        data = self.to_dict() if section is None else self.to_dict()[section]
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WorkdirLayout:
    """Where each stage writes; each stage reads only the previous stage's files."""

    root: Path
    crops_root: Path

    @property
    def crops(self) -> Path:
        return self.crops_root / "crops"

    def train(self, modality: str) -> Path:
        return self.root / "train" / modality

    @property
    def scores(self) -> Path:
        return self.root / "scores"

    @property
    def fusion(self) -> Path:
        return self.root / "fusion"

    @property
    def report(self) -> Path:
        return self.root / "report"


# ---------------------------------------------------------------------------------------------
# Loading


def load_pipeline(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Pipeline:
    """Read a pipeline TOML (or the defaults when path is None) and apply `key=value` overrides."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such pipeline file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for item in overrides:
        key, value = _parse_override(item)
        _set_nested(raw, key.split("."), value)
    where = str(path) if path is not None else "defaults"
    if overrides:
        where += " with --set overrides"
    return _build(Pipeline, raw, where, prefix="")


def _parse_override(item: str) -> tuple[str, object]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set data.root=/data/ntu")
    key, text = item.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word or path is a string
    return key, value


def _set_nested(raw: dict, parts: list[str], value: object) -> None:
    for part in parts[:-1]:
        node = raw.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(parts)}: {part} is a value, not a section")
        raw = node
    raw[parts[-1]] = value


def _build(cls: type, raw: dict, where: str, prefix: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [{prefix.rstrip('.')}] must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        valid = ", ".join(prefix + name for name in fields)
        raise ConfigError(f"{where}: unknown key {prefix + unknown[0]!r}; valid keys here: {valid}")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, where, prefix + name)
    return cls(**values)


def _coerce(hint, value, where: str, key: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, prefix=key + ".")
    origin = typing.get_origin(hint)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        return [_coerce(item_hint, item, where, key) for item in value]
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: {key}: union types are not supported in configs")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
    if hint is str and isinstance(value, (int, float)):
        value = str(value)  # e.g. --set data.root=2024 reads as a number
    if hint in (float, str) and not isinstance(value, hint):
        raise ConfigError(f"{where}: {key} must be a {hint.__name__}, got {value!r}")
    return value


def valid_keys(cls: type = Pipeline, prefix: str = "") -> list[str]:
    """Every dotted key a pipeline file may set."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys += valid_keys(hint, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys
