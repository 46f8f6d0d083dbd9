"""Typed pipeline configuration, loaded from one TOML file per dataset and protocol.

Every key of a pipeline file maps to a field of the dataclasses below; `--set a.b=value` on the
command line overrides one after loading. An unknown or mistyped key is an error that names the
key and lists the valid ones, so a typo never silently falls back to a default.

The whole pipeline is validated while it loads, so `mmfc info` refuses what a stage would fail
on an hour later: a choice (a `Literal` field) must be one of its values, a number must lie in
the bounds declared beside its field (`bounded`), and a section whose values must fit together
names the first that do not (its `mismatch` method). Every choice is declared once, below; the
code that implements it takes its names from there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mmfc.atomic import write_text


class ConfigError(ValueError):
    """A pipeline file or override that does not fit the schema."""


# ---------------------------------------------------------------------------------------------
# The values a choice may take, each declared once; the modules that implement a choice take
# their names from here (and tests/test_config.py checks that every table covers its choice).

Source = Literal["ntu", "pose_pickle", "videos"]
Protocol = Literal["xsub", "xview", "xset"]
JointLayout = Literal["ntu25", "coco17"]
ValBy = Literal["performer", "group"]
CropMode = Literal["clip", "frame", "person", "none"]
Backend = Literal["loky", "threading", "multiprocessing", "ray", "dask"]
RGBBlock = Literal["plain", "tsm", "ma", "ta", "staa"]
RGBDepth = Literal[18, 34, 50]
SkelStream = Literal["joint", "bone", "joint_motion", "bone_motion"]
CCLKind = Literal["frhead", "supcon"]
Schedule = Literal["cosine", "step"]
LRStep = Literal["iteration", "epoch"]
FusionMetric = Literal["top1", "mean_class"]
FusionMethodName = Literal[
    "auto", "rgb_alone", "skel_alone", "pyskl_1_1", "pyskl_2_1", "pyskl_1_2", "global", "adaptive", "per_class"
]


# Depths at which either branch hands features to the contrastive loss (METHOD.md section 3).
FEATURE_LEVELS = 4


def bounded(default, *, min=None, max=None, below=None):  # noqa: A002 (read as the bounds they are)
    """A field whose value must be >= min, <= max and < below (those given); checked when loaded."""
    return field(default=default, metadata={"min": min, "max": max, "below": below})


@dataclass
class DataConfig:
    # "ntu": the NTU RGB+D raw release layout (nturgb+d_skeletons/, nturgb+d_rgb/), also what
    # `mmfc synth` writes. "pose_pickle": a PYSKL annotation pickle (FineGym, NTU HRNet 2D, ...).
    # "videos": your own videos without skeletons (class folders or a CSV; mmfc/data/video_dataset.py),
    # their poses estimated by stage 0 (`mmfc stage poses`).
    source: Source = "ntu"
    # ntu: the folder holding nturgb+d_skeletons/ and nturgb+d_rgb/; pose_pickle: the .pkl file;
    # videos: the folder of class folders, or the CSV file.
    root: str = "data/synth"
    # pose_pickle: folder of videos named <frame_dir><video_ext>; "" when there are none.
    video_root: str = ""
    video_ext: str = ".mp4"
    # ntu: "xsub" or "xview" (NTU60), "xsub" or "xset" (NTU120).
    protocol: Protocol = "xsub"
    # pose_pickle: names of the training and test splits inside the pickle.
    train_split: str = "train"
    test_split: str = "test"
    num_classes: int = bounded(60, min=1)
    # A text file with one class name per line; "" uses the dataset's built-in names.
    class_names: str = ""
    # Joint layout of the skeletons (mmfc.data.layouts).
    layout: JointLayout = "ntu25"
    # Width and height of the space the 2D (colour) keypoints were recorded in. NTU colour
    # coordinates are in the 1920x1080 original; decoded videos may be smaller.
    skeleton_frame_size: list[int] = field(default_factory=lambda: [1920, 1080])
    # Samples without usable skeletons (NTU), left out: "ntu60" or "ntu120" (the official lists,
    # shipped with mmfc), the path of another list file, or "" for none.
    missing_list: str = ""
    # Body selection (NTU): at most this many bodies, ranked by motion.
    max_bodies: int = bounded(2, min=1)
    # Validation carved out of the training split, never out of test. "performer": the
    # performers listed in val_performers (NTU); "group": a fraction of source groups, e.g.
    # the source video of a FineGym clip, so no video is on both sides.
    val_by: ValBy = "performer"
    val_performers: list[int] = field(default_factory=list)
    val_fraction: float = bounded(0.1, min=0, max=1)
    val_seed: int = 0
    # videos: the file extensions that count as videos in class folders.
    video_exts: list[str] = field(default_factory=lambda: [".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg"])
    # videos without a split column: the share of groups held out for test (seeded by val_seed).
    test_fraction: float = bounded(0.2, min=0, below=1)
    # videos: a regular expression finding a clip's group (source video or person) in its file
    # name, its first parenthesised group if any; "" makes every clip its own group.
    group_pattern: str = ""
    # videos: the pose pickle stage 0 writes and stages 1-4 read; "" is <workdir>/poses/poses.pkl.
    poses: str = ""

    def mismatch(self) -> str | None:
        if self.source == "ntu" and self.val_by != "performer":
            return f"val_by = {self.val_by!r}: NTU sources carve validation by 'performer'"
        return None


@dataclass
class JobsConfig:
    """How the batch stages (0 poses, 1 crops, 3 scores on CPU) run their jobs (mmfc/jobs.py)."""

    # "loky" (worker processes on this machine), "threading", "multiprocessing", or a cluster:
    # "ray" (RAY_ADDRESS) or "dask" (DASK_SCHEDULER_ADDRESS); README, "Scale-out".
    backend: Backend = "loky"
    # Workers at once: -1 one per core (of the cluster, on ray and dask); 1 runs the jobs in this
    # process on the joblib backends.
    n_jobs: int = -1

    def mismatch(self) -> str | None:
        if self.n_jobs == 0 or self.n_jobs < -1:
            return f"n_jobs = {self.n_jobs}: give a number of workers, or -1 for one per core"
        return None


@dataclass
class PoseConfig:
    """Stage 0 (data.source = "videos"): BlazePose on CPU, mmfc/poses/."""

    # The folder with the pose model files (BlazePose's two, the face and hand models of
    # close-ups), unpacked by `make setup-pose`.
    models_dir: str = "models/blazepose"
    # People tracked per video; each keeps one index m of keypoint[m] for the whole video.
    max_persons: int = bounded(2, min=1)
    # While fewer than max_persons are tracked, the detector looks for newcomers every this many
    # frames (and on any frame where someone was lost).
    detect_every: int = bounded(10, min=1)
    # A detection below this score is ignored; a pose whose presence flag is below
    # min_pose_score is no person (MediaPipe's thresholds: 0.5 and 0.5).
    min_detection_score: float = bounded(0.5, min=0, max=1)
    min_pose_score: float = bounded(0.5, min=0, max=1)


@dataclass
class CropConfig:
    # METHOD.md section 1. "clip": one box for the whole clip; "frame": per-frame boxes smoothed
    # over time; "person": one clip box per person, side by side; "none": the whole frame.
    mode: CropMode = "clip"
    padding: float = bounded(0.25, min=0)
    # Height/width ratio of the box; 0 keeps the box shape.
    hw_ratio: float = bounded(1.0, min=0)
    min_box: float = 10.0
    allow_pad: bool = True
    # "frame" mode: exponential smoothing factor of the box centre and size over time.
    smooth: float = bounded(0.8, min=0, below=1)
    # Rotate 3D skeletons so the spine is +z and the shoulders +x (PYSKL PreNormalize3D align).
    align: bool = False
    # Side of the stored square frames; larger than the training input so stage 2 can still
    # random-crop. Both bounds keep a typo from asking a worker for tens of GiB (a sample's
    # num_frames decoded video frames are held at once); stage 1 also checks what its workers
    # will need against the machine's free memory before it starts.
    size: int = bounded(256, min=1, max=1024)
    num_frames: int = bounded(32, min=1, max=1024)
    # Skeleton sequence stored per sample: fixed length, up to max_bodies persons.
    skeleton_frames: int = bounded(100, min=1)
    jpeg_quality: int = bounded(90, min=1, max=100)
    samples_per_shard: int = bounded(256, min=1)
    # A video that decodes fewer frames than its skeleton or its container says is a failure
    # below this share of them, and stored with a warning row in failures.parquet above it.
    min_video_fraction: float = bounded(0.9, min=0, max=1)
    # "k/n": crop only part k of n (every n-th shard, starting with the k-th), for one driver per
    # machine on a shared workdir; a run without a part then assembles the index. "": all.
    part: str = ""

    def mismatch(self) -> str | None:
        if self.part and self.part_of() is None:
            return f"part = {self.part!r}: write it as k/n with 1 <= k <= n, e.g. \"1/2\", or \"\" for the whole stage"
        return None

    def part_of(self) -> tuple[int, int] | None:
        """(k, n) of `part`, or None when it is empty or malformed."""
        k, slash, n = self.part.partition("/")
        if not (slash and k.strip().isdigit() and n.strip().isdigit()):
            return None
        k, n = int(k), int(n)
        return (k, n) if 1 <= k <= n else None


@dataclass
class RGBModelConfig:
    depth: RGBDepth = 50
    base_width: int = bounded(64, min=1)
    # "plain" (TSN), "tsm", "ma", "ta" or "staa" (MA + TA).
    block: RGBBlock = "staa"
    segments: int = bounded(8, min=1)
    input_size: int = bounded(224, min=1)
    dropout: float = bounded(0.5, min=0, below=1)
    ma_reduction: int = bounded(16, min=1)
    # Bottleneck inner widths (depth 50 only), as Res2Net's baseWidth: each of the 4 fragments
    # is fragment_width * base_width/64 * 2^stage wide, rounded down. 0 keeps torchvision's
    # widths, so its ImageNet weights load; 26 gives Res2Net-50 26w x 4s, TEA's backbone and
    # the paper's cost.
    fragment_width: int = bounded(0, min=0)
    # Local ImageNet ResNet state dict in torchvision's key layout; "" starts from scratch.
    pretrained: str = ""

    def mismatch(self) -> str | None:
        if not self.fragment_width:
            return None
        if self.depth != 50:
            return f"fragment_width applies to depth 50 only (bottleneck blocks), not depth {self.depth}"
        # Each fragment is fragment_width * base_width / 64 wide at the first stage, rounded down.
        if self.fragment_width * self.base_width < 64:
            return (
                f"fragment_width {self.fragment_width}: with base_width {self.base_width} the fragments would "
                "be empty; it needs fragment_width * base_width >= 64"
            )
        return None


@dataclass
class SkelModelConfig:
    stream: SkelStream = "joint"
    base_channels: int = bounded(64, min=1)
    # Coordinates per joint; 0 takes them from the layout (ntu25: 3D, coco17: 2D).
    in_channels: int = bounded(0, min=0)
    num_frames: int = bounded(64, min=1)
    num_persons: int = bounded(2, min=1)
    dropout: float = bounded(0.0, min=0, below=1)


@dataclass
class CCLConfig:
    # "frhead": class-aware contrastive learning of FR-Head; "supcon": supervised contrastive.
    kind: CCLKind = "frhead"
    # lambda; 0 switches the loss off exactly.
    weight: float = bounded(0.1, min=0)
    level_weights: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.5, 1.0])
    dim: int = bounded(256, min=1)
    momentum: float = bounded(0.9, min=0, max=1)
    margin: float = 0.125
    tau: float = bounded(0.125, min=0)
    supcon_tau: float = bounded(0.07, min=0)

    def mismatch(self) -> str | None:
        # Both branches give features at four depths (METHOD.md section 3), weighted deepest last.
        if len(self.level_weights) < FEATURE_LEVELS:
            return f"level_weights has {len(self.level_weights)} weights for the {FEATURE_LEVELS} feature levels of a branch"
        return None


@dataclass
class TrainConfig:
    """What training either branch takes; each branch adds its own augmentation settings."""

    epochs: int = bounded(30, min=1)
    batch_size: int = bounded(16, min=1)
    lr: float = bounded(0.01, min=0)
    momentum: float = bounded(0.9, min=0)
    weight_decay: float = bounded(5e-4, min=0)
    nesterov: bool = True
    warmup_epochs: int = bounded(1, min=0)
    # "cosine" or "step" (step multiplies lr by 0.1 at each milestone epoch).
    schedule: Schedule = "cosine"
    milestones: list[int] = field(default_factory=lambda: [20, 25])
    # Update the learning rate every "iteration" (smooth) or once per "epoch".
    lr_step: LRStep = "iteration"
    seed: int = 0
    # torch's intra-op threads in the training process and its DataLoader's worker processes:
    # "auto" fits both to the cores this process may use, less those other processes keep busy
    # (mmfc/cores.py), or a number (threads at least 1; 0 workers loads in the training process).
    threads: str = "auto"
    loader_workers: str = "auto"
    # bf16 autocast on CUDA (and on CPU when set explicitly with amp_cpu).
    amp: bool = True
    amp_cpu: bool = False
    # Largest number of training samples per epoch; 0 uses all.
    max_samples: int = bounded(0, min=0)

    def mismatch(self) -> str | None:
        for key, least in (("threads", 1), ("loader_workers", 0)):
            value = getattr(self, key)
            if value != "auto" and not (value.isdigit() and int(value) >= least):
                return f"{key} = {value!r}: give \"auto\" or a whole number of at least {least}"
        return None


@dataclass
class RGBTrainConfig(TrainConfig):
    # Horizontal flip, and random resized crops covering this range of the stored frame's area.
    flip: bool = True
    scale_range: list[float] = field(default_factory=lambda: [0.5, 1.0])
    # Brightness, contrast and saturation each scaled by a factor in [1 - c, 1 + c], one draw
    # per clip (hue is left alone: colour tells held objects apart). 0 turns it off.
    color_jitter: float = bounded(0.0, min=0, max=1)


@dataclass
class SkelTrainConfig(TrainConfig):
    # Flip with the left/right joint swap, rotation about the vertical axis by up to
    # rotate_degrees, and each coordinate scaled by a factor in [1 - skel_scale, 1 + skel_scale].
    flip: bool = True
    rotate_degrees: float = bounded(15.0, min=0)
    skel_scale: float = bounded(0.1, min=0, below=1)


@dataclass
class RGBConfig:
    model: RGBModelConfig = field(default_factory=RGBModelConfig)
    train: RGBTrainConfig = field(default_factory=RGBTrainConfig)
    ccl: CCLConfig = field(default_factory=CCLConfig)


@dataclass
class SkelConfig:
    model: SkelModelConfig = field(default_factory=SkelModelConfig)
    train: SkelTrainConfig = field(default_factory=lambda: SkelTrainConfig(batch_size=32, lr=0.1))
    ccl: CCLConfig = field(default_factory=CCLConfig)


@dataclass
class ScoresConfig:
    # Clips averaged per sample at test time (1: the centre clip only).
    clips: int = bounded(1, min=1)


@dataclass
class FusionConfig:
    # Accuracy that breaks near-ties in cross-validated NLL: "top1" or "mean_class".
    metric: FusionMetric = "top1"
    # Grid over the global weight alpha in [0, 1]; at least 2 points, so it holds 0 and 1.
    grid: int = bounded(101, min=2)
    # Folds of the cross-validation inside the validation split (fewer when there are fewer
    # performers or groups), and the seed that assigns them.
    cv_folds: int = bounded(5, min=2)
    cv_seed: int = 0
    # Method whose scores become fusion/fused.parquet (every candidate is fitted and reported):
    # "auto" chooses by cross-validation, never worse in it than a single modality or a fixed
    # ratio (mmfc/fusion/selection.py); or one candidate by name.
    method: FusionMethodName = "auto"


@dataclass
class Pipeline:
    name: str = "synth"
    workdir: str = "runs/synth"
    # Read stage-1 crops from another workdir instead of this one's: ablation variants that
    # differ only in the model share one set of crops.
    crops_from: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    poses: PoseConfig = field(default_factory=PoseConfig)
    crops: CropConfig = field(default_factory=CropConfig)
    rgb: RGBConfig = field(default_factory=RGBConfig)
    skel: SkelConfig = field(default_factory=SkelConfig)
    scores: ScoresConfig = field(default_factory=ScoresConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    @property
    def paths(self) -> WorkdirLayout:
        return WorkdirLayout(Path(self.workdir), Path(self.crops_from or self.workdir))

    def mismatch(self) -> str | None:
        if self.data.source == "videos" and self.data.layout == "ntu25" and not self.skel.model.in_channels:
            return (
                "skel.model.in_channels = 0 reads ntu25 skeletons as Kinect's 3D, but stage 0 gives "
                "videos 2D keypoints: set skel.model.in_channels = 2"
            )
        return None

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
    def poses(self) -> Path:
        return self.root / "poses"

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

    @property
    def timings(self) -> Path:
        """Each stage run's wall time (mmfc/timings.py), for `mmfc timings`."""
        return self.root / "timings"

    @property
    def pipeline(self) -> Path:
        """The resolved pipeline the stages ran with (save_pipeline), which `mmfc predict` reads."""
        return self.root / "pipeline.json"

    def lock(self, output: str) -> Path:
        """The lock file a stage holds while it writes `output` (mmfc.lock): "crops", "poses",
        "train-<branch>", "scores-<branch>", "fusion", "report"; in .locks/, so that no output
        folder holds anything but its outputs, and the crops' lock beside the crops it guards."""
        return (self.crops_root if output.startswith("crops") else self.root) / ".locks" / output


# ---------------------------------------------------------------------------------------------
# Loading


def load_pipeline(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Pipeline:
    """Read a pipeline TOML (or the defaults when path is None) and apply `key=value` overrides."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such pipeline file") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: a folder, not a pipeline file (e.g. pipelines/synth.toml)") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a text pipeline file (byte {exc.start} is not UTF-8, as TOML must be)") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the pipeline file ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{path}: not a pipeline file (arrays or tables nested too deep to read)") from None
    for item in overrides:
        key, value = _parse_override(item)
        _set_nested(raw, key.split("."), value)
    where = str(path) if path is not None else "defaults"
    if overrides:
        where += " with --set overrides"
    cfg = _build(Pipeline, raw, where, prefix="")
    if cfg.data.source == "videos" and not cfg.data.poses:
        cfg.data.poses = str(cfg.paths.poses / "poses.pkl")
    return cfg


def save_pipeline(cfg: Pipeline) -> None:
    """Write the resolved pipeline (file and overrides applied) to <workdir>/pipeline.json, so a
    trained run carries the settings its crops, models and fusion were made with.

    The paths a trained run reads once it is made (`mmfc predict`, `mmfc export`: the pose
    models, another workdir's crops) are written absolute, resolved against the folder the stage
    ran in, so the run works from any folder. The data paths stay as given: they are part of the
    training digest stamped on each checkpoint, and only the stages read them."""
    saved = cfg.to_dict()
    saved["poses"]["models_dir"] = str(Path(cfg.poses.models_dir).absolute())
    if cfg.crops_from:
        saved["crops_from"] = str(Path(cfg.crops_from).absolute())
    write_text(cfg.paths.pipeline, json.dumps(saved, indent=2) + "\n")


def read_saved_pipeline(path: str | Path) -> Pipeline:
    """The pipeline save_pipeline wrote, validated as a pipeline file is."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no saved pipeline here") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable saved pipeline ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a saved pipeline (nested too deep to read)") from None
    return _build(Pipeline, raw, str(path), prefix="")


def _parse_override(item: str) -> tuple[str, object]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set data.root=/data/ntu")
    key, text = item.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word or path is a string
    except RecursionError:
        raise ConfigError(f"--set {key}: a value nested too deep to read") from None
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
        raise ConfigError(f"{where}: {prefix.rstrip('.')!r} must be a table (a [{prefix.rstrip('.')}] section), not {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        valid = ", ".join(prefix + name for name in fields)
        raise ConfigError(f"{where}: unknown key {prefix + unknown[0]!r}; valid keys here: {valid}")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, where, prefix + name)
    section = cls(**values)
    for f in fields.values():
        _check_bounds(f, getattr(section, f.name), where, prefix + f.name)
    # A section whose values must fit together says how they do not (`mismatch`), or None.
    reason = section.mismatch() if hasattr(section, "mismatch") else None
    if reason:
        raise ConfigError(f"{where}: {prefix}{reason}")
    return section


def _coerce(hint, value, where: str, key: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, prefix=key + ".")
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if not any(value == c and type(value) is type(c) for c in choices):
            raise ConfigError(f"{where}: {key} must be one of {', '.join(map(repr, choices))}; got {value!r}")
        return value
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


def _check_bounds(f: dataclasses.Field, value, where: str, key: str) -> None:
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{where}: {key} must be a finite number, got {item!r}")
    low, high, below = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("below")
    if low is not None and value < low:
        raise ConfigError(f"{where}: {key} must be at least {low}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: {key} must be at most {high}, got {value!r}")
    if below is not None and value >= below:
        raise ConfigError(f"{where}: {key} must be below {below}, got {value!r}")


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
