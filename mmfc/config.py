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

import copy
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

Source = Literal["ntu", "pose_pickle", "videos", "nw_ucla", "penn_action"]
Protocol = Literal["xsub", "xview", "xset"]
# The built-in joint layouts (mmfc/data/layouts.py); a pipeline may declare its own as well.
JointLayout = Literal["ntu25", "coco17", "kinect20", "mediapipe33", "penn13", "openpose25"]
# The layouts stage 0 writes (mmfc/poses/joints.py maps BlazePose's 33 landmarks onto each).
PoseLayout = Literal["coco17", "ntu25", "mediapipe33"]
ValBy = Literal["performer", "group"]
CropMode = Literal["clip", "frame", "person", "none"]
Backend = Literal["loky", "threading", "multiprocessing", "ray", "dask"]
RGBBlock = Literal["plain", "tsm", "ma", "ta", "staa"]
RGBDepth = Literal[18, 34, 50]
SkelStream = Literal["joint", "bone", "joint_motion", "bone_motion"]
# The branches a pipeline may declare (`branches`; mmfc/branches.py: BRANCHES): the RGB branch;
# `skel`, the one skeleton branch of a two-branch pipeline, its stream skel.model.stream; and each
# skeleton stream as a branch of its own, whose section is [skel] with the stream's overrides.
BranchName = Literal["rgb", "skel", "joint", "bone", "joint_motion", "bone_motion"]
SkelRotation = Literal["vertical", "xy"]
SkelNormalization = Literal["none", "minmax"]
SkelSampling = Literal["segments", "random_choice"]
CCLKind = Literal["frhead", "supcon"]
Schedule = Literal["cosine", "step"]
LRStep = Literal["iteration", "epoch"]
FusionMetric = Literal["top1", "mean_class"]
# Which scores stage 4 fits the fusion on (mmfc/folds.py: resolve_fit_on).
FitOn = Literal["val", "oof", "auto"]


# Depths at which either branch hands features to the contrastive loss (docs/method.md, section 3).
FEATURE_LEVELS = 4

SKELETON_STREAMS: tuple[str, ...] = typing.get_args(SkelStream)
# What a pipeline trains when it names no branches: RGB and skeleton, or the skeleton branch alone
# where the data source never has videos (DataConfig.never_has_video).
DEFAULT_BRANCHES = ("rgb", "skel")
# The branches that learn from video frames (mmfc/branches.py: Branch.needs_video).
VIDEO_BRANCHES = ("rgb",)


# ---------------------------------------------------------------------------------------------
# Stage 4's candidates for the branches it fuses, named here so that `fusion.method` is checked
# against the declared branches when a pipeline loads; mmfc/fusion/selection.py fits them.

FITTED_FUSIONS = ("global", "adaptive", "per_class")
# CTR-GCN's ensemble.py (github.com/Uason-Chen/CTR-GCN): the four streams' scores, the networks'
# raw outputs, summed with these weights; the same on every dataset it knows (NTU60, NTU120,
# NW-UCLA: its --dataset picks only the labels). A candidate where all four are branches.
CTRGCN_WEIGHTS = {"joint": 0.6, "bone": 0.6, "joint_motion": 0.4, "bone_motion": 0.4}
CTRGCN_FUSION = "ctrgcn"


def single_fusion(branch: str) -> str:
    """The candidate that is one branch alone."""
    return f"{branch}_alone"


def pyskl_ratios(branches: typing.Sequence[str]) -> dict[str, dict[str, int]]:
    """PYSKL's fixed ratios of the branches' raw probabilities, by candidate name: equal
    (pyskl_1_1, pyskl_1_1_1, ...), and 2:1 and 1:2 where there are exactly two branches (the
    first's weight first); none for one branch."""
    if len(branches) < 2:
        return {}
    ratios = [(1,) * len(branches), *([(2, 1), (1, 2)] if len(branches) == 2 else [])]
    return {"pyskl_" + "_".join(map(str, ratio)): dict(zip(branches, ratio)) for ratio in ratios}


def fusion_baselines(branches: typing.Sequence[str]) -> tuple[str, ...]:
    """The candidates `auto`'s guarantee compares with: each branch alone and the anchors' fixed
    recipes (PYSKL's ratios; CTR-GCN's sum of logits where its four streams are all branches)."""
    ctrgcn = (CTRGCN_FUSION,) if set(CTRGCN_WEIGHTS) <= set(branches) else ()
    return (*(single_fusion(b) for b in branches), *pyskl_ratios(branches), *ctrgcn)


def fusion_candidates(branches: typing.Sequence[str]) -> tuple[str, ...]:
    """Every candidate for these branches, in the order stage 4 writes them: the baselines, then
    the fitted methods (none for one branch)."""
    return (*fusion_baselines(branches), *(FITTED_FUSIONS if len(branches) > 1 else ()))


# Every field of a section is declared through `bounded` or `setting`, which say whether its value
# shapes what the stages produce. Those that do not (threads, workers, the jobs backend, paths of
# the run) only decide how or where a run goes: Pipeline.digest leaves them out, so changing one
# leaves every output current. tests/test_config.py checks that every field goes through one.
AFFECTS_RESULTS = "affects_results"


def bounded(default, *, min=None, max=None, below=None, affects_results=True):  # noqa: A002 (read as the bounds they are)
    """A field whose value must be >= min, <= max and < below (those given); checked when loaded."""
    return field(default=default, metadata={"min": min, "max": max, "below": below, AFFECTS_RESULTS: affects_results})


def setting(default, *, affects_results=True):
    """A field without bounds (a list default is copied for every instance)."""
    metadata = {AFFECTS_RESULTS: affects_results}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DeclaredLayout:
    """A joint layout of the pipeline's own (`[data.declared_layout]`), checked by the rules every
    built-in one (mmfc/data/layouts.py) is also checked by: joints by name, bones between them."""

    # What data.layout calls it; "" declares none.
    name: str = setting("")
    # The joint names, in the order the skeletons store their joints.
    joints: list[str] = setting([])
    # The graph's edges, [joint, joint] each: a tree over all joints, so that every joint but the
    # centre has one parent, its neighbour nearer the centre (a bone vector is joint - parent).
    bones: list[list[str]] = setting([])
    # The joint the graph hangs from, and by default where stage 1 centres each sequence.
    center: str = setting("")
    # [left, right] joints that swap in a horizontal flip; a joint on the midline is in none.
    pairs: list[list[str]] = setting([])
    # Coordinates per joint: 2 (image pixels) or 3 (camera space, e.g. Kinect's metres).
    channels: int = bounded(2, min=2, max=3)
    # 3D only, optional: [spine base, spine, right shoulder, left shoulder], which crops.align turns
    # onto +z (base -> spine) and +x (left -> right shoulder); [] for none.
    align: list[str] = setting([])

    def parents(self) -> dict[str, str]:
        """Each joint the bones lead to from the centre -> its neighbour nearer the centre (the
        centre -> itself); a joint the bones do not reach is left out."""
        neighbours: dict[str, list[str]] = {joint: [] for joint in self.joints}
        for a, b in self.bones:
            neighbours[a].append(b)
            neighbours[b].append(a)
        parent = {self.center: self.center}
        frontier = [self.center]
        while frontier:
            joint = frontier.pop()
            for other in neighbours[joint]:
                if other not in parent:
                    parent[other] = joint
                    frontier.append(other)
        return parent

    def mismatch(self) -> str | None:
        if not self.name:
            given = [key for key in ("joints", "bones", "center", "pairs", "align") if getattr(self, key)]
            return f"name: {', '.join(given)} given, but no name for data.layout to use it by" if given else None
        return self._joints_problem() or self._bones_problem() or self._pairs_problem() or self._align_problem()

    def _joints_problem(self) -> str | None:
        if len(self.joints) < 2:
            return f"joints: a layout needs at least 2 joints, got {self.joints}"
        named: set[str] = set()
        for joint in self.joints:
            if not joint.strip():
                return "joints: a joint name is empty"
            if joint in named:
                return f"joints: {joint!r} is named twice"
            named.add(joint)
        if self.center not in named:
            return f"center = {self.center!r} is not one of the joints"
        return None

    def _joint_pair_problem(self, key: str, pair: list[str]) -> str | None:
        if len(pair) != 2:
            return f"{key}: {pair} is not a pair of joints"
        unknown = [joint for joint in pair if joint not in self.joints]
        if unknown:
            return f"{key}: {pair} names an unknown joint {unknown[0]!r}"
        if pair[0] == pair[1]:
            return f"{key}: {pair} joins {pair[0]!r} to itself"
        return None

    def _bones_problem(self) -> str | None:
        seen: set[frozenset[str]] = set()
        for bone in self.bones:
            if problem := self._joint_pair_problem("bones", bone):
                return problem
            if frozenset(bone) in seen:
                return f"bones: {bone} is given twice"
            seen.add(frozenset(bone))
        reached = self.parents()
        apart = [joint for joint in self.joints if joint not in reached]
        if apart:
            return (f"bones: the graph is not connected: no bones lead from {', '.join(map(repr, apart))} "
                    f"to the centre {self.center!r}")
        if len(self.bones) != len(self.joints) - 1:
            return (f"bones: {len(self.bones)} bones for {len(self.joints)} joints close a loop; the bones form a "
                    f"tree ({len(self.joints) - 1} of them), so that each joint has one parent")
        return None

    def _pairs_problem(self) -> str | None:
        twin: dict[str, str] = {}
        for pair in self.pairs:
            if problem := self._joint_pair_problem("pairs", pair):
                return problem
            for joint in pair:
                if joint in twin:
                    return f"pairs: {joint!r} is in two pairs"
            twin[pair[0]], twin[pair[1]] = pair[1], pair[0]
        if self.center in twin:
            return f"pairs: the centre {self.center!r} is in a pair, but a flip must leave it in place"
        bones = {frozenset(bone) for bone in self.bones}
        for a, b in self.bones:
            mirrored = [twin.get(a, a), twin.get(b, b)]
            if frozenset(mirrored) not in bones:
                return (f"pairs: the flip takes bone {[a, b]} to {mirrored}, which is not a bone; pair each "
                        "joint of one side with its twin on the other")
        return None

    def _align_problem(self) -> str | None:
        if not self.align:
            return None
        if len(self.align) != 4:
            return f"align: give [spine base, spine, right shoulder, left shoulder], or [] for none; got {self.align}"
        unknown = [joint for joint in self.align if joint not in self.joints]
        if unknown:
            return f"align: {unknown[0]!r} is not one of the joints"
        if self.channels != 3:
            return "align turns 3D bodies (channels = 3); a 2D layout has none"
        return None


@dataclass
class DataConfig:
    # "ntu": the NTU RGB+D raw release layout (nturgb+d_skeletons/, nturgb+d_rgb/), also what
    # `mmfc synth` writes. "pose_pickle": a PYSKL annotation pickle (FineGym, NTU HRNet 2D, ...).
    # "videos": your own videos without skeletons (class folders or a CSV; mmfc/data/video_dataset.py),
    # their poses estimated by stage 0 (`mmfc stage poses`). "nw_ucla": NW-UCLA's JSON sequences
    # (Kinect v1, layout "kinect20", cross-view); "penn_action": Penn Action's .mat label files
    # (layout "penn13", its train/test flag). Both are skeletons without videos.
    source: Source = setting("ntu")
    # ntu: the folder holding nturgb+d_skeletons/ and nturgb+d_rgb/; pose_pickle: the .pkl file;
    # videos: the folder of class folders, or the CSV file; nw_ucla: the folder holding all_sqe/
    # (or all_sqe/ itself); penn_action: the folder holding labels/ (or labels/ itself).
    root: str = setting("data/synth")
    # pose_pickle: folder of videos named <frame_dir><video_ext>; "" when there are none.
    video_root: str = setting("")
    video_ext: str = setting(".mp4")
    # ntu: "xsub" or "xview" (NTU60), "xsub" or "xset" (NTU120); nw_ucla: "xview" (views 1 and 2
    # train, view 3 tests).
    protocol: Protocol = setting("xsub")
    # pose_pickle: names of the training and test splits inside the pickle.
    train_split: str = setting("train")
    test_split: str = setting("test")
    num_classes: int = bounded(60, min=1)
    # A text file with one class name per line; "" uses the dataset's built-in names.
    class_names: str = setting("")
    # Joint layout of the skeletons: a built-in one (mmfc.data.layouts) or the declared one.
    layout: str = setting("ntu25")
    # A layout of the pipeline's own, which data.layout then names (mmfc.data.layouts: layout_of).
    declared_layout: DeclaredLayout = field(default_factory=DeclaredLayout)
    # Width and height of the space the 2D (colour) keypoints were recorded in. NTU colour
    # coordinates are in the 1920x1080 original; decoded videos may be smaller. (NW-UCLA and
    # Penn Action give their own: Kinect v1's 640x480, each clip's dimensions.)
    skeleton_frame_size: list[int] = setting([1920, 1080])
    # Samples without usable skeletons (NTU), left out: "ntu60" or "ntu120" (the official lists,
    # shipped with mmfc), the path of another list file, or "" for none.
    missing_list: str = setting("")
    # Body selection (NTU): at most this many bodies, ranked by motion.
    max_bodies: int = bounded(2, min=1)
    # Validation carved out of the training split, never out of test. "performer": the
    # performers listed in val_performers (NTU, NW-UCLA's subjects); "group": a fraction of
    # source groups, e.g. the source video of a FineGym clip, so no video is on both sides
    # (NW-UCLA: a recording, filmed from several views; Penn Action: a run of clips, below).
    val_by: ValBy = setting("performer")
    val_performers: list[int] = setting([])
    val_fraction: float = bounded(0.1, min=0, max=1)
    val_seed: int = setting(0)
    # videos: the file extensions that count as videos in class folders.
    video_exts: list[str] = setting([".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg"])
    # videos without a split column: the share of groups held out for test (seeded by val_seed).
    test_fraction: float = bounded(0.2, min=0, below=1)
    # videos: a regular expression finding a clip's group (source video or person) in its file
    # name, its first parenthesised group if any; "" makes every clip its own group.
    group_pattern: str = setting("")
    # videos: the pose pickle stage 0 writes and stages 1-4 read; "" is <workdir>/poses/poses.pkl.
    poses: str = setting("", affects_results=False)

    def mismatch(self) -> str | None:
        built_in = typing.get_args(JointLayout)
        if self.declared_layout.name in built_in:
            return f"declared_layout.name = {self.declared_layout.name!r} is a built-in layout's; give yours a name of its own"
        if self.layout not in built_in and not (self.declared_layout.name and self.layout == self.declared_layout.name):
            declared = (f"the declared layout {self.declared_layout.name!r}" if self.declared_layout.name
                        else "one declared in [data.declared_layout]")
            return f"layout must be one of {', '.join(map(repr, built_in))} or {declared}; got {self.layout!r}"
        if self.source == "ntu" and self.val_by != "performer":
            return f"val_by = {self.val_by!r}: NTU sources carve validation by 'performer'"
        if self.source == "penn_action" and self.val_by != "group":
            return f"val_by = {self.val_by!r}: Penn Action names no performers; it carves validation by 'group'"
        if self.source == "nw_ucla" and self.protocol != "xview":
            return f"protocol = {self.protocol!r}: NW-UCLA's protocol is 'xview' (views 1 and 2 train, view 3 tests)"
        layout = SOURCE_LAYOUTS.get(self.source)
        if layout is not None and self.layout != layout:
            return f"layout = {self.layout!r}: the {self.source} source holds {layout!r} skeletons; set layout = {layout!r}"
        return None

    def never_has_video(self) -> str | None:
        """Why no sample of this source can have a video, or None where some may (an NTU download
        may lack nturgb+d_rgb/: stage 1 finds that out)."""
        if self.source in SOURCES_WITHOUT_VIDEO:
            return f"the {self.source} source holds skeletons only"
        if self.source == "pose_pickle" and not self.video_root:
            return "a pose pickle without data.video_root has no videos"
        return None


# The joint layout of the sources whose recordings come in one layout only.
SOURCE_LAYOUTS = {"nw_ucla": "kinect20", "penn_action": "penn13"}
# The sources that read skeletons without videos.
SOURCES_WITHOUT_VIDEO = ("nw_ucla", "penn_action")


@dataclass
class JobsConfig:
    """How the batch stages (0 poses, 1 crops, 3 scores on CPU) run their jobs (mmfc/jobs.py)."""

    # "loky" (worker processes on this machine), "threading", "multiprocessing", or a cluster:
    # "ray" (RAY_ADDRESS) or "dask" (DASK_SCHEDULER_ADDRESS); docs/operations.md, "Scale-out".
    backend: Backend = setting("loky", affects_results=False)
    # Workers at once: -1 one per core (of the cluster, on ray and dask); 1 runs the jobs in this
    # process on the joblib backends.
    n_jobs: int = setting(-1, affects_results=False)

    def mismatch(self) -> str | None:
        if self.n_jobs == 0 or self.n_jobs < -1:
            return f"n_jobs = {self.n_jobs}: give a number of workers, or -1 for one per core"
        return None


@dataclass
class PoseConfig:
    """Stage 0 (data.source = "videos"): BlazePose on CPU, mmfc/poses/."""

    # The folder with the pose model files (BlazePose's two, the face and hand models of
    # close-ups), unpacked by `make setup-pose`.
    models_dir: str = setting("models/blazepose", affects_results=False)
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
    # docs/method.md, section 1. "clip": one box for the whole clip; "frame": per-frame boxes smoothed
    # over time; "person": one clip box per person, side by side; "none": the whole frame.
    mode: CropMode = setting("clip")
    padding: float = bounded(0.25, min=0)
    # Height/width ratio of the box; 0 keeps the box shape.
    hw_ratio: float = bounded(1.0, min=0)
    min_box: float = setting(10.0)
    allow_pad: bool = setting(True)
    # "frame" mode: exponential smoothing factor of the box centre and size over time.
    smooth: float = bounded(0.8, min=0, below=1)
    # Rotate 3D skeletons so the spine is +z and the shoulders +x (PYSKL PreNormalize3D align).
    align: bool = setting(False)
    # Side of the stored square frames; larger than the training input so stage 2 can still
    # random-crop. Both bounds keep a typo from asking a worker for tens of GiB (a sample's
    # num_frames decoded video frames are held at once); stage 1 also checks what its workers
    # will need against the machine's free memory before it starts.
    size: int = bounded(256, min=1, max=1024)
    num_frames: int = bounded(32, min=1, max=1024)
    # Skeleton sequence stored per sample: fixed length, up to max_bodies persons.
    skeleton_frames: int = bounded(100, min=1)
    # false: the frames with a body resampled evenly to skeleton_frames; true: kept as they are and
    # zero-padded to skeleton_frames (a longer sequence is still resampled down to it), so that
    # the skeleton branch draws from the real frames (skel.input.sampling = "random_choice").
    pad_skeleton: bool = setting(False)
    # The joint, by its name in the layout, whose position in the first frame with a body is the
    # stored sequence's origin; "" is the layout's centre.
    center_joint: str = setting("")
    jpeg_quality: int = bounded(90, min=1, max=100)
    samples_per_shard: int = bounded(256, min=1, affects_results=False)
    # A video that decodes fewer frames than its skeleton or its container says is a failure
    # below this share of them, and stored with a warning row in failures.parquet above it.
    min_video_fraction: float = bounded(0.9, min=0, max=1)
    # "k/n": crop only part k of n (every n-th shard, starting with the k-th), for one driver per
    # machine on a shared workdir; a run without a part then assembles the index. "": all.
    part: str = setting("", affects_results=False)

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
    depth: RGBDepth = setting(50)
    base_width: int = bounded(64, min=1)
    # "plain" (TSN), "tsm", "ma", "ta" or "staa" (MA + TA).
    block: RGBBlock = setting("staa")
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
    pretrained: str = setting("")

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
    stream: SkelStream = setting("joint")
    base_channels: int = bounded(64, min=1)
    # Coordinates per joint; 0 takes them from the layout (ntu25: 3D, coco17: 2D).
    in_channels: int = bounded(0, min=0)
    num_frames: int = bounded(64, min=1)
    num_persons: int = bounded(2, min=1)
    dropout: float = bounded(0.0, min=0, below=1)


@dataclass
class SkelInputConfig:
    """How a stored skeleton sequence becomes the skeleton branch's input, at training and test
    alike (mmfc/train/datasets.py: SkeletonDataset)."""

    # "none", or "minmax": per clip, each coordinate mapped linearly onto [-1, 1] over every joint
    # of every frame with a body (after the augmentation), as CTR-GCN's NW-UCLA feeder does.
    normalize: SkelNormalization = setting("none")
    # How the skel.model.num_frames frames are picked from the stored sequence's frames with a
    # body. "segments": one per equal segment, anywhere in it at training and its centre at test
    # (TSN). "random_choice": drawn at random at training (repeats allowed, kept in time order)
    # and evenly spaced from the first to the last at test (CTR-GCN's NW-UCLA feeder).
    sampling: SkelSampling = setting("segments")


@dataclass
class CCLConfig:
    # "frhead": class-aware contrastive learning of FR-Head; "supcon": supervised contrastive.
    kind: CCLKind = setting("frhead")
    # lambda; 0 switches the loss off exactly.
    weight: float = bounded(0.1, min=0)
    level_weights: list[float] = setting([0.1, 0.2, 0.5, 1.0])
    dim: int = bounded(256, min=1)
    momentum: float = bounded(0.9, min=0, max=1)
    margin: float = setting(0.125)
    tau: float = bounded(0.125, min=0)
    supcon_tau: float = bounded(0.07, min=0)

    def mismatch(self) -> str | None:
        # Both branches give features at four depths (docs/method.md, section 3), weighted deepest last.
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
    nesterov: bool = setting(True)
    warmup_epochs: int = bounded(1, min=0)
    # "cosine" or "step" (step multiplies lr by 0.1 at each milestone epoch).
    schedule: Schedule = setting("cosine")
    milestones: list[int] = setting([20, 25])
    # Update the learning rate every "iteration" (smooth) or once per "epoch".
    lr_step: LRStep = setting("iteration")
    seed: int = setting(0)
    # torch's intra-op threads in the training process and its DataLoader's worker processes:
    # "auto" fits both to the cores this process may use, less those other processes keep busy
    # (mmfc/cores.py), or a number (threads at least 1; 0 workers loads in the training process).
    threads: str = setting("auto", affects_results=False)
    loader_workers: str = setting("auto", affects_results=False)
    # bf16 autocast on CUDA (and on CPU when set explicitly with amp_cpu).
    amp: bool = setting(True)
    amp_cpu: bool = setting(False)
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
    flip: bool = setting(True)
    scale_range: list[float] = setting([0.5, 1.0])
    # Brightness, contrast and saturation each scaled by a factor in [1 - c, 1 + c], one draw
    # per clip (hue is left alone: colour tells held objects apart). 0 turns it off.
    color_jitter: float = bounded(0.0, min=0, max=1)


@dataclass
class SkelTrainConfig(TrainConfig):
    # Flip with the left/right joint swap, rotation by up to rotate_degrees, each coordinate
    # scaled by a factor in [1 - skel_scale, 1 + skel_scale], then all by one factor drawn from
    # uniform_scale. Rotation "vertical": about the vertical axis (2D: in the image plane); "xy":
    # about y, then about x, each angle drawn on its own (CTR-GCN's NW-UCLA feeder; 2D points are
    # turned as if at depth 0 and seen from the front again).
    flip: bool = setting(True)
    rotate_axes: SkelRotation = setting("vertical")
    rotate_degrees: float = bounded(15.0, min=0)
    skel_scale: float = bounded(0.1, min=0, below=1)
    uniform_scale: list[float] = setting([1.0, 1.0])

    def mismatch(self) -> str | None:
        low_high = self.uniform_scale
        if len(low_high) != 2 or not 0 < low_high[0] <= low_high[1]:
            return f"uniform_scale = {low_high}: give [low, high] with 0 < low <= high, e.g. [0.5, 1.5]"
        return super().mismatch()


@dataclass
class RGBConfig:
    model: RGBModelConfig = field(default_factory=RGBModelConfig)
    train: RGBTrainConfig = field(default_factory=RGBTrainConfig)
    ccl: CCLConfig = field(default_factory=CCLConfig)


@dataclass
class SkelConfig:
    model: SkelModelConfig = field(default_factory=SkelModelConfig)
    input: SkelInputConfig = field(default_factory=SkelInputConfig)
    train: SkelTrainConfig = field(default_factory=lambda: SkelTrainConfig(batch_size=32, lr=0.1))
    ccl: CCLConfig = field(default_factory=CCLConfig)


@dataclass
class ScoresConfig:
    # Clips averaged per sample at test time (1: the centre clip only).
    clips: int = bounded(1, min=1)


@dataclass
class OOFConfig:
    """The out-of-fold stage (`mmfc stage oof`, mmfc/oof/): every fused branch trained again on
    k - 1 folds of whole groups of the training side, each network scoring the fold it left out."""

    # k: folds of the training side's groups (fewer when it holds fewer groups); each branch is
    # trained k more times beside stage 2's network.
    folds: int = bounded(5, min=2)
    # Assigns the groups to folds (mmfc/folds.py: make_folds).
    seed: int = setting(0)


@dataclass
class FusionConfig:
    # Which scores the fusion is fitted on: "val", the validation split's, from stage 2's
    # networks; "oof", the out-of-fold scores of every training clip (train and val together,
    # `mmfc stage oof`: k more trainings of every branch); "auto", "oof" where validation holds
    # too few groups or clips (mmfc/folds.py: resolve_fit_on), else "val".
    fit_on: FitOn = setting("val")
    oof: OOFConfig = field(default_factory=OOFConfig)
    # Accuracy that breaks near-ties in cross-validated NLL: "top1" or "mean_class".
    metric: FusionMetric = setting("top1")
    # Grid over the global weight alpha in [0, 1]; at least 2 points, so it holds 0 and 1.
    grid: int = bounded(101, min=2)
    # Folds of the cross-validation inside the rows the fusion is fitted on (fewer when there are
    # fewer performers or groups), and the seed that assigns them.
    cv_folds: int = bounded(5, min=2)
    cv_seed: int = setting(0)
    # Method whose scores become fusion/fused.parquet (every candidate is fitted and reported):
    # "auto" chooses by cross-validation, never worse in it than a single branch or a fixed
    # recipe (mmfc/fusion/selection.py); or one candidate of the declared branches by name
    # (fusion_candidates: "skel_alone", "pyskl_1_1", "ctrgcn", "global", ...).
    method: str = setting("auto")


def _stream_config(stream: str) -> SkelConfig:
    config = SkelConfig()
    config.model.stream = stream
    return config


@dataclass
class Pipeline:
    name: str = setting("synth", affects_results=False)
    workdir: str = setting("runs/synth", affects_results=False)
    # Read stage-1 crops from another workdir instead of this one's: ablation variants that
    # differ only in the model share one set of crops.
    crops_from: str = setting("", affects_results=False)
    # The branches stage 2 trains, stage 3 scores and stage 4 fuses (BranchName), e.g. ["rgb",
    # "joint", "bone", "joint_motion", "bone_motion"]; `make train scores fuse` builds each one the
    # data supports. Not given: ["rgb", "skel"], or ["skel"] where the source never has videos.
    branches: list[BranchName] = setting(list(DEFAULT_BRANCHES))
    data: DataConfig = field(default_factory=DataConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    poses: PoseConfig = field(default_factory=PoseConfig)
    crops: CropConfig = field(default_factory=CropConfig)
    rgb: RGBConfig = field(default_factory=RGBConfig)
    # The skeleton branch `skel`, and the settings every skeleton stream shares.
    skel: SkelConfig = field(default_factory=SkelConfig)
    # Each skeleton stream's own settings: [skel]'s, with what the stream's section sets on top
    # (e.g. [bone.train] epochs = 40), merged when the pipeline loads; only a declared stream
    # may have a section, and its model.stream is its name.
    joint: SkelConfig = field(default_factory=lambda: _stream_config("joint"))
    bone: SkelConfig = field(default_factory=lambda: _stream_config("bone"))
    joint_motion: SkelConfig = field(default_factory=lambda: _stream_config("joint_motion"))
    bone_motion: SkelConfig = field(default_factory=lambda: _stream_config("bone_motion"))
    scores: ScoresConfig = field(default_factory=ScoresConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    @property
    def paths(self) -> WorkdirLayout:
        return WorkdirLayout(Path(self.workdir), Path(self.crops_from or self.workdir))

    def mismatch(self) -> str | None:
        problem = self._branches_problem()
        if problem:
            return problem
        estimated = typing.get_args(PoseLayout)
        if self.data.source == "videos" and self.data.layout not in estimated:
            return (f"data.layout = {self.data.layout!r}: stage 0 gives videos {', '.join(map(repr, estimated))} "
                    "joints; name one of those")
        for name in self.branches:
            section = getattr(self, name)
            if (name not in VIDEO_BRANCHES and self.data.source == "videos" and self.data.layout == "ntu25"
                    and not section.model.in_channels):
                return (
                    f"{name}.model.in_channels = 0 reads ntu25 skeletons as Kinect's 3D, but stage 0 gives "
                    f"videos 2D keypoints: set {name}.model.in_channels = 2"
                )
        if self.fusion.method != "auto" and self.fusion.method not in fusion_candidates(self.branches):
            return (f"fusion.method = {self.fusion.method!r} is no candidate for the branches {self.branches}: "
                    f"give \"auto\" or one of {', '.join(fusion_candidates(self.branches))}")
        return None

    def _branches_problem(self) -> str | None:
        if not self.branches:
            return "branches: declare at least one branch, e.g. [\"skel\"]"
        named: set[str] = set()
        for name in self.branches:
            if name in named:
                return f"branches: {name!r} is declared twice"
            named.add(name)
        streams = [name for name in self.branches if name in SKELETON_STREAMS]
        if "skel" in named and streams:
            return (f"branches: 'skel' is the one skeleton branch of skel.model.stream; beside it {streams} would "
                    "train skeleton streams twice over: name every stream instead (e.g. 'joint' for 'skel')")
        without_video = self.data.never_has_video()
        video = [name for name in self.branches if name in VIDEO_BRANCHES]
        if video and without_video:
            kept = [name for name in self.branches if name not in VIDEO_BRANCHES]
            return (f"branches: {video[0]!r} learns from video frames, but {without_video}; declare the skeleton "
                    f"branches alone, e.g. branches = {kept or ['skel']}")
        return None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def result_settings(self, *keys: str) -> dict:
        """The settings that shape results (see `setting`), nested as in the pipeline file: of the
        sections and fields named by dotted keys ("crops", "data.layout"), or of the whole pipeline."""
        if not keys:
            return _result_values(self)
        chosen: dict = {}
        for key in keys:
            node, value = chosen, self
            *sections, last = key.split(".")
            for name in sections:
                node, value = node.setdefault(name, {}), getattr(value, name)
            value = getattr(value, last)
            node[last] = _result_values(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
        return chosen

    def digest(self, *keys: str) -> str:
        """A short stable hash of `result_settings(*keys)`: the one digest that tells whether an
        output made with other settings is still current (mmfc/stage_frame.py)."""
        text = json.dumps(self.result_settings(*keys), sort_keys=True)
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
    def oof(self) -> Path:
        """The out-of-fold stage's networks and scores: <branch>/fold-<k>/, <branch>/fold-<k>.parquet
        and <branch>.parquet (mmfc/oof/stage.py)."""
        return self.root / "oof"

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
        "train-<branch>", "scores-<branch>", "oof-<branch>", "fusion", "report"; in .locks/, so
        that no output folder holds anything but its outputs, and the crops' lock beside the
        crops it guards."""
        return (self.crops_root if output.startswith("crops") else self.root) / ".locks" / output


def _result_values(section) -> dict:
    """A section's fields that shape results, sections within it as nested dicts."""
    values = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            values[f.name] = _result_values(value)
        elif f.metadata[AFFECTS_RESULTS]:
            values[f.name] = copy.deepcopy(value)
    return values


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
    apply_overrides(raw, overrides)
    where = str(path) if path is not None else "defaults"
    if overrides:
        where += " with --set overrides"
    cfg = pipeline_from_dict(raw, where)
    if cfg.data.source == "videos" and not cfg.data.poses:
        cfg.data.poses = str(cfg.paths.poses / "poses.pkl")
    return cfg


def save_pipeline(cfg: Pipeline) -> None:
    """Write the resolved pipeline (file and overrides applied) to <workdir>/pipeline.json, for
    people to read what a run was made with (run_sections: the paths it reads later absolute)."""
    write_text(cfg.paths.pipeline, json.dumps(run_sections(cfg), indent=2) + "\n")


def run_sections(cfg: Pipeline) -> dict:
    """The pipeline as plain data, as a trained run keeps it (pipeline.json, each checkpoint's
    settings): the paths the run reads once it is made (`mmfc predict`, `mmfc export`: the pose
    models, another workdir's crops) absolute, resolved against the folder the stage ran in, so
    the run works from any folder. The data paths stay as given: only the stages read them."""
    sections = cfg.to_dict()
    sections["poses"]["models_dir"] = str(Path(cfg.poses.models_dir).absolute())
    if cfg.crops_from:
        sections["crops_from"] = str(Path(cfg.crops_from).absolute())
    return sections


def pipeline_from_dict(raw: dict, where: str) -> Pipeline:
    """A pipeline from its sections as plain data (a parsed file, or the settings a checkpoint
    carries), validated as a pipeline file is; ConfigError naming `where` otherwise."""
    return _build(Pipeline, _with_streams(raw, where), where, prefix="")


def _with_streams(raw: dict, where: str) -> dict:
    """The raw sections with `branches` given (its default where absent: DEFAULT_BRANCHES, or the
    skeleton branch alone where the data never has videos) and every skeleton stream's section
    whole: [skel]'s values, the stream's own on top, its model.stream its name. ConfigError for
    a section of a stream the pipeline does not declare, or one that names another stream."""
    if not isinstance(raw, dict):
        return raw
    raw = dict(raw)
    if "branches" not in raw:
        data = _build(DataConfig, raw.get("data", {}), where, prefix="data.")
        raw["branches"] = ["skel"] if data.never_has_video() else list(DEFAULT_BRANCHES)
    declared = raw["branches"] if isinstance(raw["branches"], list) else []
    shared = raw["skel"] if isinstance(raw.get("skel"), dict) else {}
    for stream in SKELETON_STREAMS:
        own = raw.pop(stream, {})
        if own and stream not in declared:
            raise ConfigError(f"{where}: [{stream}] sets the {stream} stream's own settings, but branches = "
                              f"{declared} does not declare it; add {stream!r} to branches or remove the section")
        if isinstance(own, dict):
            model = own.get("model", {})
            if isinstance(model, dict) and model.get("stream", stream) != stream:
                raise ConfigError(f"{where}: {stream}.model.stream = {model['stream']!r}: the {stream} branch is the "
                                  f"{stream} stream; leave {stream}.model.stream out (the branch's name sets it)")
            own = _merged(shared, own)
            if isinstance(own.get("model", {}), dict):
                own["model"] = {**own.get("model", {}), "stream": stream}
        raw[stream] = own  # after [skel]: a bad key of [skel] is named there first
    return raw


def _merged(base: dict, top: dict) -> dict:
    """`base` with `top`'s values over it, tables merged key by key."""
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> list[str]:
    """Set each `key=value` of `overrides` in the raw sections `raw`. -> the keys set"""
    keys = []
    for item in overrides:
        key, value = _parse_override(item)
        _set_nested(raw, key.split("."), value)
        keys.append(key)
    return keys


def load_layout(raw: dict, where: str) -> DeclaredLayout:
    """A joint layout given as data (a built-in one, a crop store's or a checkpoint's copy),
    checked by the rules of [data.declared_layout]; ConfigError naming `where` otherwise."""
    layout = _build(DeclaredLayout, raw, where, prefix="")
    if not layout.name:
        raise ConfigError(f"{where}: the layout has no name")
    return layout


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


def _build(cls: type, raw: dict, where: str, prefix: str, base=None):
    """A `cls` from the raw table: its keys over `base`'s values (the parent field's default, e.g.
    the skeleton branch's training defaults of batch 32 and lr 0.1), else over cls's defaults."""
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
        factory = fields[name].default_factory
        default = factory() if dataclasses.is_dataclass(hints[name]) and factory is not dataclasses.MISSING else None
        values[name] = _coerce(hints[name], value, where, prefix + name, default)
    section = dataclasses.replace(base, **values) if base is not None else cls(**values)
    for f in fields.values():
        _check_bounds(f, getattr(section, f.name), where, prefix + f.name)
    # A section whose values must fit together says how they do not (`mismatch`), or None.
    reason = section.mismatch() if hasattr(section, "mismatch") else None
    if reason:
        raise ConfigError(f"{where}: {prefix}{reason}")
    return section


def _coerce(hint, value, where: str, key: str, default=None):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, prefix=key + ".", base=default)
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
