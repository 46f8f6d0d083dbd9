"""Poses of a whole video: the estimator's per-frame people gathered into tracks.

    tracks = estimate_poses("clip.mp4", "models/blazepose", max_persons=2, layout="coco17")
    tracks.keypoint        # [M, T, V, 2] float32, video pixels; M tracked people, T frames
    tracks.keypoint_score  # [M, T, V] in [0, 1]; 0 where the person is not seen on that frame
    tracks.keypoint_3d     # [M, T, V, 3] metres, origin between the hips (BlazePose world)

Index m is one person for the whole video (mmfc/poses/tracking.py), whose tracker slot is
`tracks.track_ids[m]`: the same person keeps it in every stretch of the video read from a
PoseStream, where the rows are only the people seen in that stretch. A joint's score is
BlazePose's visibility (present and not occluded), set to 0 for a joint that falls outside
the frame: its position there is the model's guess about a part of the body the video does not
show, and stages 1 to 4 treat a score of 0 as missing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mmfc.data.decoding import iter_frames, probe_video
from mmfc.data.sample import BLAZEPOSE
from mmfc.errors import DataError
from mmfc.poses.frame_poses import BlazePose, EstimatorSettings, PoseEstimator
from mmfc.poses.joints import NUM_BLAZEPOSE, map_points, map_scores
from mmfc.poses.landmarks import Pose


@dataclass
class PoseTracks:
    keypoint: np.ndarray  # [M, T, V, 2] float32
    keypoint_score: np.ndarray  # [M, T, V] float32
    keypoint_3d: np.ndarray  # [M, T, V, 3] float32
    layout: str
    frame_size: tuple[int, int]  # (width, height)
    # The tracker's slot of each row: one person's id over the whole stream.
    track_ids: tuple[int, ...] = ()

    @property
    def num_persons(self) -> int:
        return self.keypoint.shape[0]

    @property
    def total_frames(self) -> int:
        return self.keypoint.shape[1]

    def persons(self, rows: list[int]) -> PoseTracks:
        """The tracks of the people in `rows` alone."""
        return replace(self, keypoint=self.keypoint[rows], keypoint_score=self.keypoint_score[rows],
                       keypoint_3d=self.keypoint_3d[rows], track_ids=tuple(self.track_ids[r] for r in rows))

    def frames_with_person(self) -> int:
        return int((self.keypoint_score > 0).any(axis=(0, 2)).sum())

    def annotation(self, frame_dir: str, label: int, fps: float) -> dict:
        """The tracks as a PYSKL annotation: what stage 0 writes per video, and what
        mmfc.data.pose_pickle.annotation_skeleton turns into a Skeleton."""
        width, height = self.frame_size
        return {
            "frame_dir": frame_dir,
            "label": int(label),
            "img_shape": (height, width),
            "original_shape": (height, width),
            "total_frames": self.total_frames,
            "keypoint": self.keypoint,  # [M, T, V, 2] float32, video pixels
            "keypoint_score": self.keypoint_score,  # [M, T, V] float32
            "keypoint_3d": self.keypoint_3d,  # [M, T, V, 3] float32, metres, origin between the hips
            "layout": self.layout,
            "fps": fps,
            "pose_source": BLAZEPOSE,
        }


def estimate_poses(
    video_or_frames: str | Path | Iterable[np.ndarray],
    models_dir: str | Path,
    max_persons: int = 2,
    layout: str = "coco17",
    settings: EstimatorSettings | None = None,
    models: BlazePose | None = None,
    on_frame: Callable[[int], None] | None = None,
    fps: float = 30.0,
) -> PoseTracks:
    """Estimate and track everyone's pose in a video file (decoded with OpenCV) or in RGB
    frames (uint8 [H, W, 3] each, e.g. mmfc.data.decoding.read_frames). `models` reuses loaded
    models across videos (then models_dir is not read again); `on_frame(t)` is called after
    each frame; `settings` tunes the estimator (its max_persons is replaced by the argument);
    `fps` of RGB frames sets the time step of the region smoothing (a file's own rate is used).
    Raises DataError for an unreadable video or missing model files."""
    settings = replace(settings or EstimatorSettings(), max_persons=max_persons)
    is_file = isinstance(video_or_frames, (str, Path))
    if is_file:
        fps = probe_video(video_or_frames).fps or fps
    stream = PoseStream(models or BlazePose(models_dir, settings.threads), settings, fps, layout)
    frames = iter_frames(video_or_frames, settings.threads) if is_file else video_or_frames
    for t, frame in enumerate(frames):
        stream.step(frame, bgr=is_file)
        if on_frame is not None:
            on_frame(t)
    if not stream.frames:
        raise DataError(str(video_or_frames) if is_file else "<frames>", "no frames to estimate poses on")
    return stream.tracks()


class PoseStream:
    """estimate_poses frame by frame: the tracks of any stretch of the frames seen so far can be
    read while the video goes on (a window of an untrimmed video, as soon as it has passed).
    Tracking and smoothing look only backwards, so a stretch read early is the same stretch of
    the whole video's tracks, less the people not seen in it.

    `keep`: how many of the latest frames' people are kept (a live stream, which never ends);
    None keeps every frame."""

    def __init__(self, models: BlazePose, settings: EstimatorSettings, fps: float, layout: str,
                 keep: int | None = None):
        self.estimator = PoseEstimator(models, settings, fps)
        self.layout = layout
        self.per_frame: deque[list[tuple[int, Pose]]] = deque(maxlen=keep)
        self.frame_size = (0, 0)
        self.frames = 0  # frames stepped or skipped so far

    def step(self, frame: np.ndarray, bgr: bool = False) -> list[tuple[int, Pose]]:
        """One more frame: uint8 [H, W, 3], RGB (or BGR as OpenCV decodes it). -> [(slot, pose)]
        of the people found on it."""
        self.frame_size = (frame.shape[1], frame.shape[0])
        found = self.estimator.step(frame, bgr=bgr)
        self.per_frame.append(found)
        self.frames += 1
        return found

    def skip(self) -> None:
        """One more frame that was not seen (a live stream dropped it while the estimator was
        behind): nobody on it, and the tracker's clock moves on, so motion is carried over the gap."""
        self.estimator.frame += 1
        self.per_frame.append([])
        self.frames += 1

    def tracks(self, start: int = 0, stop: int | None = None) -> PoseTracks:
        """The tracks of frames [start, stop) (frame numbers of the whole stream), counted from
        `start`; one row per person seen there. ValueError for frames no longer kept."""
        first = self.frames - len(self.per_frame)
        if start < first:
            raise ValueError(f"frame {start} is no longer kept (the stream keeps frames from {first})")
        stop = self.frames if stop is None else min(stop, self.frames)
        rows = [self.per_frame[t - first] for t in range(start, stop)]
        return collect_tracks(rows, self.frame_size, self.layout)


def collect_tracks(per_frame: list[list[tuple[int, Pose]]], frame_size: tuple[int, int], layout: str) -> PoseTracks:
    """[(slot, pose)] per frame -> arrays in the layout, one row per slot that was ever used."""
    used = sorted({slot for people in per_frame for slot, _ in people})
    row = {slot: m for m, slot in enumerate(used)}
    persons, frames = len(used), len(per_frame)
    pixels = np.zeros((persons, frames, NUM_BLAZEPOSE, 2), dtype=np.float32)
    score = np.zeros((persons, frames, NUM_BLAZEPOSE), dtype=np.float32)
    world = np.zeros((persons, frames, NUM_BLAZEPOSE, 3), dtype=np.float32)
    for t, people in enumerate(per_frame):
        for slot, pose in people:
            m = row[slot]
            pixels[m, t] = pose.pixels[:NUM_BLAZEPOSE]
            score[m, t] = pose.visibility[:NUM_BLAZEPOSE]
            world[m, t] = pose.world
    keypoint = map_points(pixels, layout)
    keypoint_score = map_scores(score, layout)
    width, height = frame_size
    inside = (keypoint[..., 0] >= 0) & (keypoint[..., 0] < width) & (keypoint[..., 1] >= 0) & (keypoint[..., 1] < height)
    keypoint_score = np.where(inside, keypoint_score, 0).astype(np.float32)
    return PoseTracks(keypoint, keypoint_score, map_points(world, layout), layout, frame_size, tuple(used))
