"""One video through a trained run: skeleton, one decoding pass, stage 1's crops, each branch's
logits by stage 3's code, and the fitted fusion of stage 4.

    run = open_run(Path("runs/synth"))
    prediction = predict_video(run, Path("clip.avi"), skeleton_file=Path("clip.skeleton"))
    prediction.top(prediction.fused[0], 5)      # [(class name, probability), ...]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmfc.data.layouts import Layout
from mmfc.errors import DataError
from mmfc.fusion.files import open_fusion
from mmfc.metrics import log_softmax
from mmfc.poses.video_poses import PoseStream
from mmfc.poses.frame_poses import BlazePose, EstimatorSettings
from mmfc.predict.clips import CroppedClips, Decoded, decode_once, plan_windows, probe, window_skeleton
from mmfc.predict.skeletons import (SkeletonInput, estimator_layout, fit_to_video, from_tracks, pose_source_warning,
                                    read_skeleton_file)
from mmfc.scores.logits import branch_logits
from mmfc.run_folder import TrainedRun

# The stages of a prediction, as its timings name them.
STEPS = ("decode", "poses", "crop", "rgb", "skel", "fusion")


@dataclass
class Prediction:
    video: str
    fps: float
    frames: int
    class_names: list[str]
    # Start and end (seconds) of each scored clip: the whole video, or each window.
    windows: np.ndarray  # float64 [W, 2]
    boxes: np.ndarray  # float64 [W, 4]: x0, y0, x1, y1 of each clip's crop, in video pixels
    rgb: np.ndarray  # float32 [W, K] logits
    skel: np.ndarray | None  # float32 [W, K] logits; None when the branch could not read the skeleton
    fused: np.ndarray  # float32 [W, K] class log-probabilities of the fitted fusion
    fusion: str  # the fusion method applied
    skeleton: str  # where the skeleton came from
    notes: list[str] = field(default_factory=list)  # what the user must be told
    # Poses from another source than the run's skeleton branch was trained on: the scores may be
    # confidently wrong (mmfc.predict.skeletons.pose_source_warning); "" otherwise.
    warning: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step (STEPS)

    @property
    def probabilities(self) -> dict[str, np.ndarray]:
        """Class probabilities per branch and fused, [W, K] each."""
        out = {"rgb": np.exp(log_softmax(self.rgb))}
        if self.skel is not None:
            out["skel"] = np.exp(log_softmax(self.skel))
        out["fused"] = np.exp(log_softmax(self.fused))
        return out

    def top(self, probabilities: np.ndarray, k: int) -> list[tuple[str, float]]:
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [(self.class_names[i], float(probabilities[i])) for i in order]


class PoseModels:
    """The estimator's models, loaded on first use and kept for the next video."""

    def __init__(self, models_dir: str | Path, threads: int = 1):
        self.models_dir, self.threads = models_dir, threads
        self._models: BlazePose | None = None

    def get(self) -> BlazePose:
        if self._models is None:
            self._models = BlazePose(self.models_dir, self.threads)
        return self._models


def predict_video(run: TrainedRun, video: Path, skeleton_file: Path | None = None, window: float | None = None,
                  stride: float | None = None, poses: PoseModels | None = None, preview_width: int = 0,
                  preview_every: int = 1) -> tuple[Prediction, Decoded, CroppedClips, SkeletonInput]:
    """Predict one video (each window of it with `window` seconds). DataError naming the video
    (or the skeleton file) when it cannot be read, or nobody is in it."""
    cfg, video = run.cfg, Path(video)
    timings = dict.fromkeys(STEPS, 0.0)
    info = probe(video)
    fps = info.fps or 30.0
    windows = plan_windows(info.frames, fps, window, stride)
    clips = CroppedClips.empty(cfg, run.layout, windows)
    crop_seconds = [0.0]

    def timed_crop(number: int, decoded: Decoded, skeleton, layout: Layout) -> None:
        started = time.perf_counter()
        clips.crop(cfg, number, video, skeleton, decoded, skeleton_file, layout)
        crop_seconds[0] += time.perf_counter() - started

    started = time.perf_counter()
    if skeleton_file is not None:
        found = fit_to_video(read_skeleton_file(skeleton_file, cfg, run.layout, video), skeleton_file, info.frames,
                             cfg.crops.min_video_fraction)

        def on_window(number: int, decoded: Decoded) -> None:
            try:
                skeleton = window_skeleton(found.skeleton, windows[number], info.frames)
            except DataError as exc:
                clips.failed[number] = exc.reason
                return
            timed_crop(number, decoded, skeleton, found.layout)

        decoded = decode_once(info, windows, cfg.crops.num_frames, None, on_window, preview_width, preview_every)
    else:
        models = poses or PoseModels(cfg.poses.models_dir)
        stream = PoseStream(models.get(), EstimatorSettings.of(cfg.poses), fps, estimator_layout(run.layout))

        def on_window(number: int, decoded: Decoded) -> None:
            w = windows[number]
            # A window is read from the stream as soon as it has passed, its people alone; the
            # whole video (read after the pass) is every frame decoded.
            tracks = stream.tracks() if (w.start, w.stop) == (0, info.frames) else stream.tracks(w.start, w.stop)
            try:
                seen = from_tracks(tracks, cfg, run.layout, str(video), fps)
            except DataError as exc:
                clips.failed[number] = exc.reason
                return
            timed_crop(number, decoded, seen.skeleton, seen.layout)

        decoded = decode_once(info, windows, cfg.crops.num_frames, lambda t, frame: stream.step(frame), on_window,
                              preview_width, preview_every)
        found = from_tracks(stream.tracks(), cfg, run.layout, str(video), fps)
    timings["decode"] = decoded.seconds
    timings["crop"] = crop_seconds[0]
    timings["poses"] = time.perf_counter() - started - decoded.seconds - crop_seconds[0]
    if not clips.positions:
        raise DataError(video, f"nothing to score: {next(iter(clips.failed.values()))}")
    scored = sorted(clips.positions)
    positions = [clips.positions[n] for n in scored]

    logits = {}
    for name in ("rgb", "skel") if found.usable else ("rgb",):
        started = time.perf_counter()
        logits[name] = branch_logits(cfg, name, run.models[name], clips.store, positions, run.device)
        timings[name] = time.perf_counter() - started

    started = time.perf_counter()
    notes = [found.note] if found.note else []
    if found.usable:
        method, fused = run.fusion_method, run.fusion.log_probabilities(logits)
    else:
        method, rgb_alone = open_fusion(cfg.paths.fusion).fitted("rgb_alone")
        fused = rgb_alone.log_probabilities(logits)
    timings["fusion"] = time.perf_counter() - started
    for number, reason in sorted(clips.failed.items()):
        start, stop = windows[number].seconds(fps)
        notes.append(f"window {start:.1f}-{stop:.1f} s not scored: {reason}")

    prediction = Prediction(
        video=str(video), fps=fps, frames=decoded.frames, class_names=run.class_names,
        windows=np.array([windows[n].seconds(fps) for n in scored], dtype=np.float64).reshape(-1, 2),
        boxes=np.array([clips.boxes[n] for n in scored], dtype=np.float64).reshape(-1, 4),
        rgb=logits["rgb"], skel=logits.get("skel"), fused=fused, fusion=method, skeleton=found.origin,
        notes=notes, warning=pose_source_warning(run.pose_source, found), timings=timings,
    )
    return prediction, decoded, clips, found
