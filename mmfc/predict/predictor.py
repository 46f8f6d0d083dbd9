"""One clip through a trained run: its skeleton, stage 1's crops, the logits of each of the run's
branches by stage 3's code, and the fitted fusion of stage 4.

    run = open_run(Path("runs/synth"))
    prediction, *_ = predict_video(run, Path("clip.avi"), skeleton_file=Path("clip.skeleton"))
    prediction, *_ = predict_skeleton(run, Path("a01_s01_e00_v03.json"))  # a run without a video branch
    prediction.top(prediction.probabilities["fused"][0], 5)      # [(class name, probability), ...]

A video is decoded once (mmfc.predict.clips); a skeleton file without a video is cropped as
stage 1 stores a dataset of skeletons alone. Either way the cropped clips (the whole clip, or
each window) go through `score_clips`, a function of the run and the clips alone: every branch
of the run that can read them, fused by the fitted fusion.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmfc.branches import BRANCHES
from mmfc.crops.store import MemoryCrops
from mmfc.data.layouts import Layout
from mmfc.data.decoding import VideoInfo
from mmfc.data.sample import BLAZEPOSE, Skeleton, describe_pose_source
from mmfc.errors import DataError
from mmfc.metrics import log_softmax
from mmfc.poses.video_poses import PoseStream
from mmfc.poses.frame_poses import BlazePose, EstimatorSettings
from mmfc.predict.clips import CroppedClips, Decoded, Window, decode_once, plan_windows, probe, window_persons
from mmfc.predict.skeletons import (SKELETON_FPS, SkeletonInput, estimator_layout, fit_to_video, from_tracks,
                                    pose_source_warning, read_skeleton_file)
from mmfc.scores.logits import branch_logits
from mmfc.run_folder import TrainedRun

# The steps of a prediction before its branches, as its timings name them; then each branch that
# scored it (by its name), then "fusion".
STEPS = ("decode", "poses", "crop")
FUSION_STEP = "fusion"


@dataclass
class Prediction:
    # What was predicted: a video, or a skeleton file (with `entry`, a pose pickle's annotation).
    input: str
    entry: str | None
    fps: float
    frames: int
    class_names: list[str]
    # Start and end (seconds) of each scored clip: the whole clip, or each window.
    windows: np.ndarray  # float64 [W, 2]
    # x0, y0, x1, y1 of each clip's crop, in video pixels (without a video: in the pixels the
    # skeleton was recorded in).
    boxes: np.ndarray  # float64 [W, 4]
    # Branch -> float32 [W, K] logits: every branch of the run that scored the clips, in the run's
    # order (its video branches alone when the skeleton branches could not read the skeleton).
    logits: dict[str, np.ndarray]
    fused: np.ndarray  # [W, K] class log-probabilities of the fitted fusion
    fusion: str  # the fusion method applied
    skeleton: str  # where the skeleton came from
    notes: list[str] = field(default_factory=list)  # what the user must be told
    # Poses from another source than the run's skeleton branches were trained on: the scores may
    # be confidently wrong (mmfc.predict.skeletons.pose_source_warning); "" otherwise.
    warning: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step (STEPS, branches, fusion)

    @property
    def name(self) -> str:
        """What its outputs are named after: the pickle annotation's name, else the input's stem."""
        return Path(self.entry).name if self.entry is not None else Path(self.input).stem

    @property
    def probabilities(self) -> dict[str, np.ndarray]:
        """Class probabilities per branch and fused ("fused"), [W, K] each."""
        out = {name: np.exp(log_softmax(logits)) for name, logits in self.logits.items()}
        out["fused"] = np.exp(log_softmax(self.fused))
        return out

    def top(self, probabilities: np.ndarray, k: int) -> list[tuple[str, float]]:
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [(self.class_names[i], float(probabilities[i])) for i in order]


@dataclass
class Scored:
    logits: dict[str, np.ndarray]  # branch -> float32 [N, K]
    fusion: str  # the fusion method applied
    fused: np.ndarray  # [N, K] class log-probabilities
    seconds: dict[str, float]  # per branch, and FUSION_STEP


def score_clips(run: TrainedRun, store: MemoryCrops, positions: list[int], skeleton: SkeletonInput) -> Scored:
    """The clips at `positions` of `store` (stage 1's crops of a clip or window each), scored by
    stage 3's code and fused by stage 4's fitted fusion: by every branch of the run where its
    skeleton branches read `skeleton`, else by its video branch alone through that branch's
    fitted candidate (`rgb_alone`). The callers refuse a skeleton no branch can use
    (readable_branches)."""
    branches = run.branches if skeleton.usable else run.video_branches
    logits, seconds = {}, {}
    for name in branches:
        started = time.perf_counter()
        logits[name] = branch_logits(run.cfg, name, run.models[name], store, positions, run.device)
        seconds[name] = time.perf_counter() - started
    started = time.perf_counter()
    # The video branches are one, RGB (config.VIDEO_BRANCHES), whose candidate alone stage 4 fits.
    method, fusion = (run.fusion_method, run.fusion) if branches == run.branches else run.fitted_alone(branches[0])
    fused = fusion.log_probabilities(logits)
    seconds[FUSION_STEP] = time.perf_counter() - started
    return Scored(logits, method, fused, seconds)


def readable_branches(run: TrainedRun, found: SkeletonInput, path: Path | str) -> str:
    """What the user must be told about the branches that score `found` ("" when all of them do);
    DataError naming `path` when none can: the skeleton branches cannot read it and the run has
    no video branch."""
    if found.usable:
        return ""
    if not run.video_branches:
        raise DataError(path, f"{found.unreadable}: give a skeleton in the run's layout ({run.layout.name}, "
                              f"{run.skeleton_channels} coordinates per joint)")
    labels = " and ".join(BRANCHES[name].label for name in run.video_branches)
    return f"{labels} branch alone: {found.unreadable}"


def video_refusal(run: TrainedRun) -> str:
    """Why a video without a skeleton file cannot be predicted by `run` ("" when it can): a run
    without a video branch reads only poses, and the poses estimated from a video are what it
    learnt only if it was trained on stage 0's."""
    if run.video_branches or run.pose_source == BLAZEPOSE:
        return ""
    return (f"the run has no video branch, and its skeleton branches were trained on "
            f"{describe_pose_source(run.pose_source)}, which no estimator gives from a video: give the clip's skeleton "
            "file instead (`mmfc predict FILE --run RUN`), or this video with it (`--skeleton FILE`) to see it drawn; "
            "a run trained on stage 0's poses (data.source = \"videos\") predicts from a video alone")


def skeleton_refusal(run: TrainedRun) -> str:
    """Why a skeleton file without its video cannot be predicted by `run` ("" when it can): a
    video branch of the run needs the frames."""
    if not run.video_branches:
        return ""
    labels = " and ".join(BRANCHES[name].label for name in run.video_branches)
    return (f"a skeleton without its video: the run's {labels} branch reads video frames; give the clip's video "
            "with this file as its skeleton (`mmfc predict VIDEO --run RUN --skeleton FILE`)")


class PoseModels:
    """The estimator's models, loaded on first use and kept for the next video."""

    def __init__(self, models_dir: str | Path, threads: int = 1):
        self.models_dir, self.threads = models_dir, threads
        self._models: BlazePose | None = None

    def get(self) -> BlazePose:
        if self._models is None:
            self._models = BlazePose(self.models_dir, self.threads)
        return self._models


@dataclass
class WindowPoses:
    """The people of one window, as the skeleton of a video of its own."""

    skeleton: Skeleton  # its rows: the people seen in the window
    layout: Layout
    persons: list[int]  # each row's person: the tracker's slot + 1, or the skeleton file's body + 1


@dataclass
class VideoPass:
    """What the one pass over a video leaves: its frames, its whole skeleton and its persons."""

    fps: float
    windows: list[Window]
    decoded: Decoded
    found: SkeletonInput  # the whole video's skeleton
    persons: list[int]  # each row's person, as WindowPoses.persons
    told: str  # what the user must be told about the branches that read it (readable_branches)
    timings: dict[str, float]  # STEPS


def plan_video(run: TrainedRun, video: Path, skeleton_file: Path | None, window: float | None,
               stride: float | None) -> tuple[VideoInfo, list[Window]]:
    """The video's probe and its windows (the whole video without `window`). DataError naming
    the video when it cannot be read or the run cannot predict it (video_refusal)."""
    refused = video_refusal(run) if skeleton_file is None else ""
    if refused:
        raise DataError(video, refused)
    info = probe(Path(video))
    return info, plan_windows(info.frames, info.fps or 30.0, window, stride)


def pass_video(run: TrainedRun, info: VideoInfo, windows: list[Window], skeleton_file: Path | None,
               poses: PoseModels | None, on_window: Callable[[int, Decoded, WindowPoses], None],
               on_failed: Callable[[int, str], None], preview_width: int = 0, preview_every: int = 1) -> VideoPass:
    """Decode a video (planned by plan_video) once, its people from `skeleton_file` or estimated
    as the frames go by; each window is handed to `on_window` as soon as the pass is past it,
    with the frames kept for its crops, or to `on_failed` with the reason nobody is in it.
    DataError naming the video (or the skeleton file) when it cannot be read or nobody is in it."""
    cfg, video = run.cfg, info.path
    timings = dict.fromkeys(STEPS, 0.0)
    fps = info.fps or 30.0
    crop_seconds = [0.0]

    def handed(number: int, decoded: Decoded, people: Callable[[], WindowPoses]) -> None:
        try:
            found_here = people()
        except DataError as exc:
            on_failed(number, exc.reason)
            return
        started = time.perf_counter()
        on_window(number, decoded, found_here)
        crop_seconds[0] += time.perf_counter() - started

    started = time.perf_counter()
    if skeleton_file is not None:
        found = fit_to_video(read_skeleton_file(run, skeleton_file, video_name=video.stem), skeleton_file, info.frames,
                             cfg.crops.min_video_fraction)
        told = readable_branches(run, found, skeleton_file)
        persons = list(range(1, found.skeleton.num_persons + 1))

        def of_file(number: int) -> WindowPoses:
            skeleton, rows = window_persons(found.skeleton, windows[number], info.frames)
            return WindowPoses(skeleton, found.layout, [persons[r] for r in rows])

        decoded = decode_once(info, windows, cfg.crops.num_frames, None,
                              lambda number, decoded: handed(number, decoded, lambda: of_file(number)),
                              preview_width, preview_every)
    else:
        models = poses or PoseModels(cfg.poses.models_dir)
        stream = PoseStream(models.get(), EstimatorSettings.of(cfg.poses), fps, estimator_layout(run.layout))

        def of_stream(number: int) -> WindowPoses:
            w = windows[number]
            # A window is read from the stream as soon as it has passed, its people alone; the
            # whole video (read after the pass) is every frame decoded.
            tracks = stream.tracks() if (w.start, w.stop) == (0, info.frames) else stream.tracks(w.start, w.stop)
            seen = from_tracks(run, tracks, str(video), fps)
            return WindowPoses(seen.skeleton, seen.layout, [slot + 1 for slot in tracks.track_ids])

        decoded = decode_once(info, windows, cfg.crops.num_frames, lambda t, frame: stream.step(frame),
                              lambda number, decoded: handed(number, decoded, lambda: of_stream(number)),
                              preview_width, preview_every)
        tracks = stream.tracks()
        found = from_tracks(run, tracks, str(video), fps)
        told = readable_branches(run, found, video)
        persons = [slot + 1 for slot in tracks.track_ids]
    timings["decode"] = decoded.seconds
    timings["crop"] = crop_seconds[0]
    timings["poses"] = time.perf_counter() - started - decoded.seconds - crop_seconds[0]
    return VideoPass(fps, windows, decoded, found, persons, told, timings)


def predict_video(run: TrainedRun, video: Path, skeleton_file: Path | None = None, window: float | None = None,
                  stride: float | None = None, poses: PoseModels | None = None, preview_width: int = 0,
                  preview_every: int = 1) -> tuple[Prediction, Decoded, CroppedClips, SkeletonInput]:
    """Predict one video (each window of it with `window` seconds), every person in it in one
    clip. DataError as pass_video says."""
    info, windows = plan_video(run, video, skeleton_file, window, stride)
    clips = CroppedClips.empty(run.cfg, run.layout, windows)

    def on_window(number: int, decoded: Decoded, people: WindowPoses) -> None:
        clips.crop(run.cfg, number, info.path, people.skeleton, decoded, skeleton_file, people.layout)

    def on_failed(number: int, reason: str) -> None:
        clips.failed[number] = reason

    done = pass_video(run, info, windows, skeleton_file, poses, on_window, on_failed, preview_width, preview_every)
    prediction = _scored(run, str(video), None, done.fps, done.decoded.frames, done.windows, clips, done.found,
                         done.told, done.timings)
    return prediction, done.decoded, clips, done.found


@dataclass
class SkeletonPass:
    """A skeleton file without video, read and planned in windows."""

    fps: float
    windows: list[Window]
    found: SkeletonInput
    persons: list[int]  # each row's person: its body + 1
    name: str  # what the clips are named after: the pickle annotation's name, else the file's stem
    where: str  # the file, and the annotation, as messages name them
    timings: dict[str, float]  # STEPS

    def people(self) -> Iterator[tuple[int, WindowPoses | str]]:
        """Each window's people, or why nobody is in it."""
        frames = self.found.skeleton.total_frames
        for number, span in enumerate(self.windows):
            try:
                skeleton, rows = window_persons(self.found.skeleton, span, frames)
            except DataError as exc:
                yield number, exc.reason
                continue
            yield number, WindowPoses(skeleton, self.found.layout, [self.persons[r] for r in rows])


def plan_skeleton(run: TrainedRun, path: Path, entry: str | None, window: float | None,
                  stride: float | None) -> SkeletonPass:
    """Read a skeleton file without a video (a pose pickle's annotation `entry`, else its only
    one) and plan its windows (the whole sequence without `window` seconds, on the clock its file
    states, else SKELETON_FPS). DataError naming the file when it cannot be read, the run's
    skeleton branches cannot read it, or the run has a video branch, which needs the video
    (skeleton_refusal)."""
    path = Path(path)
    refused = skeleton_refusal(run)
    if refused:
        raise DataError(path, refused)
    timings = dict.fromkeys(STEPS, 0.0)
    started = time.perf_counter()
    found = read_skeleton_file(run, path, entry=entry)
    readable_branches(run, found, path)
    timings["poses"] = time.perf_counter() - started
    fps = found.fps or SKELETON_FPS
    windows = plan_windows(found.skeleton.total_frames, fps, window, stride)
    name = Path(entry).name if entry is not None else path.stem
    where = f"{path} ({entry})" if entry is not None else str(path)
    return SkeletonPass(fps, windows, found, list(range(1, found.skeleton.num_persons + 1)), name, where, timings)


def predict_skeleton(run: TrainedRun, path: Path, entry: str | None = None, window: float | None = None,
                     stride: float | None = None) -> tuple[Prediction, CroppedClips, SkeletonInput]:
    """Predict a skeleton file without a video (each window of it with `window` seconds), every
    person in it in one clip, cropped as stage 1 stores a dataset of skeletons alone. DataError as
    plan_skeleton says."""
    done = plan_skeleton(run, path, entry, window, stride)
    started = time.perf_counter()
    clips = CroppedClips.empty(run.cfg, run.layout, done.windows)
    for number, people in done.people():
        if isinstance(people, str):
            clips.failed[number] = people
        else:
            clips.crop_alone(run.cfg, number, done.name, people.skeleton, Path(path))
    done.timings["crop"] = time.perf_counter() - started
    prediction = _scored(run, str(path), entry, done.fps, done.found.skeleton.total_frames, done.windows, clips,
                         done.found, "", done.timings, done.where)
    return prediction, clips, done.found


def _scored(run: TrainedRun, given: str, entry: str | None, fps: float, frames: int, windows, clips: CroppedClips,
            found: SkeletonInput, told: str, timings: dict[str, float], where: str | None = None) -> Prediction:
    """The cropped clips scored and fused (score_clips), with what the user must be told."""
    if not clips.positions:
        raise DataError(where or given, f"nothing to score: {next(iter(clips.failed.values()))}")
    scored_windows = sorted(clips.positions)
    scored = score_clips(run, clips.store, [clips.positions[n] for n in scored_windows], found)
    notes = [note for note in (told, found.note) if note]
    for number, reason in sorted(clips.failed.items()):
        start, stop = windows[number].seconds(fps)
        notes.append(f"window {start:.1f}-{stop:.1f} s not scored: {reason}")
    return Prediction(
        input=given, entry=entry, fps=fps, frames=frames, class_names=run.class_names,
        windows=np.array([windows[n].seconds(fps) for n in scored_windows], dtype=np.float64).reshape(-1, 2),
        boxes=np.array([clips.boxes[n] for n in scored_windows], dtype=np.float64).reshape(-1, 4),
        logits=scored.logits, fused=scored.fused, fusion=scored.fusion, skeleton=found.origin, notes=notes,
        warning=pose_source_warning(run.pose_source, found), timings={**timings, **scored.seconds},
    )
