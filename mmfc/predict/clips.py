"""A video (or a skeleton without one) turned into the samples the branches score, decoding the
video once.

One pass over the video's frames feeds the pose estimator (when no skeleton file is given) and
keeps the frames the crops need: stage 1 stores `crops.num_frames` frames spread over a clip
(mmfc.crops.crop.stored_frame_indices), so the frames to keep are known from the video's frame
count before it is decoded; each window is cropped as soon as the pass is past its end, and its
frames are then let go. Every clip (the whole video, or each window of an untrimmed one) is
then cropped by stage 1's own code (mmfc.crops.crop.crop_skeleton) from those frames, as a video
of its own, into a MemoryCrops that the branches' datasets read as they read the crop store.

When the container's frame count is wrong (the video decodes fewer frames than it says), the
frames to keep are only known after the pass, and those crops read the file again, as stage 1
does for such a video.

A skeleton given without a video (a run without a video branch) is cropped as stage 1 stores a
dataset of skeletons alone: each clip's normalised sequence, no frames (CroppedClips.crop_alone).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from mmfc.config import Pipeline
from mmfc.crops.crop import CropJob, crop_skeleton, stored_frame_indices
from mmfc.crops.store import MemoryCrops, StoredSample
from mmfc.data.layouts import Layout
from mmfc.data.sample import Sample, Skeleton
from mmfc.data.decoding import VideoInfo, iter_frames, probe_video, read_frames_counted
from mmfc.errors import DataError


@dataclass(frozen=True)
class Window:
    """Frames [start, stop) of a video."""

    start: int
    stop: int

    def seconds(self, fps: float) -> tuple[float, float]:
        return self.start / fps, self.stop / fps


def plan_windows(frames: int, fps: float, window: float | None, stride: float | None) -> list[Window]:
    """The whole video, or windows of `window` seconds every `stride` seconds, the last one
    ending at the video's end (so no frame is left unscored); one window when the video is shorter."""
    if window is None:
        return [Window(0, frames)]
    length = max(1, round(window * fps))
    step = max(1, round((stride or window) * fps))
    if frames <= length:
        return [Window(0, frames)]
    starts = list(range(0, frames - length + 1, step))
    if starts[-1] + length < frames:
        starts.append(frames - length)
    return [Window(s, s + length) for s in starts]


@dataclass
class Decoded:
    """What the one pass over a video leaves: the frames still kept and how many frames there are."""

    info: VideoInfo
    kept: dict[int, np.ndarray]  # video frame -> uint8 RGB [H, W, 3]
    frames: int  # frames decoded
    # Every `preview_every`-th frame, resized for the annotated video; empty unless asked.
    preview: dict[int, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0  # decoding alone, without what consumed the frames


def decode_once(info: VideoInfo, windows: list[Window], num_frames: int,
                on_frame: Callable[[int, np.ndarray], None] | None = None,
                on_window: Callable[[int, Decoded], None] | None = None,
                preview_width: int = 0, preview_every: int = 1) -> Decoded:
    """Decode the video once. Each RGB frame goes to `on_frame(t, frame)` (the pose estimator);
    the frames stage 1 would store of each window are kept, and `on_window(number, decoded)` is
    called once per window as soon as the pass is past its end (a window covering the whole
    video: after the pass, when the frame count is known), then the frames no later window needs
    are let go, so a long video holds only the frames of the windows open at a time."""
    decoded = Decoded(info, {}, 0)
    wanted = [set((w.start + stored_frame_indices(w.stop - w.start, num_frames)).tolist()) for w in windows]
    keep = set().union(*wanted)
    pending = [n for n in range(len(windows)) if not _whole(windows[n], info)]
    started = time.perf_counter()
    for t, bgr in enumerate(iter_frames(info.path)):
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if t in keep:
            decoded.kept[t] = rgb
        if preview_width and t % preview_every == 0:
            decoded.preview[t] = _resize(rgb, preview_width)
        decoded.frames = t + 1
        decoded.seconds += time.perf_counter() - started
        if on_frame is not None:
            on_frame(t, rgb)
        for number in [n for n in pending if windows[n].stop == t + 1]:
            pending.remove(number)
            if on_window is not None:
                on_window(number, decoded)
            needed = set().union(*(wanted[n] for n in range(len(windows)) if n in pending or _whole(windows[n], info)))
            for frame in [f for f in decoded.kept if f not in needed]:
                del decoded.kept[frame]
        started = time.perf_counter()
    decoded.seconds += time.perf_counter() - started
    if decoded.frames == 0:
        raise DataError(info.path, "no frame could be decoded")
    if on_window is not None:
        for number in [n for n in range(len(windows)) if n in pending or _whole(windows[n], info)]:
            on_window(number, decoded)
    return decoded


def _whole(window: Window, info: VideoInfo) -> bool:
    return window.start == 0 and window.stop == info.frames


def _resize(frame: np.ndarray, width: int) -> np.ndarray:
    """To `width` pixels wide: a large frame shrinks to it, a small one grows so drawing on it
    stays legible."""
    if frame.shape[1] == width:
        return frame
    height = round(frame.shape[0] * width / frame.shape[1])
    shrink = frame.shape[1] > width
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def window_skeleton(skel: Skeleton, window: Window, video_frames: int) -> Skeleton:
    """The part of a skeleton inside a window, as the skeleton of a video of its own (its frames
    counted from the window's start, on the skeleton's clock, which may differ a little from the
    video's; persons absent from the window left out)."""
    return window_persons(skel, window, video_frames)[0]


def window_persons(skel: Skeleton, window: Window, video_frames: int) -> tuple[Skeleton, list[int]]:
    """window_skeleton, and which persons (rows of `skel`) its rows are. DataError when nobody is
    in the window."""
    if window.start == 0 and window.stop >= video_frames:
        return skel, list(range(skel.num_persons))
    scale = skel.total_frames / max(video_frames, 1)
    start, stop = round(window.start * scale), round(window.stop * scale)
    rows = (skel.frame_indices >= start) & (skel.frame_indices < stop)
    seen = (skel.score[:, rows] > 0).any(axis=(1, 2))
    if not seen.any():
        raise DataError(f"frames {window.start}-{window.stop}", "nobody in this window")
    return replace(
        skel,
        points=skel.points[seen][:, rows], pixels=skel.pixels[seen][:, rows], score=skel.score[seen][:, rows],
        frame_indices=skel.frame_indices[rows] - start, total_frames=stop - start,
    ), np.flatnonzero(seen).tolist()


def kept_frames_reader(decoded: Decoded, window: Window, whole: bool):
    """A FrameReader (mmfc.crops.crop) over the kept frames of one window: frame i of the window is
    video frame window.start + i; it reads the file only for a frame it did not keep. The whole
    video counts every frame it decodes, as stage 1 does; a window ends at its end."""
    available = decoded.frames if whole else min(decoded.frames, window.stop) - window.start

    def read(path: Path, indices: np.ndarray, through: int) -> tuple[np.ndarray, int]:
        indices = np.asarray(indices, dtype=np.int64)
        count = min(available, max(int(indices.max()) + 1, through))
        # An index past the end reads the last frame, as read_frames_counted does.
        wanted = window.start + np.minimum(indices, available - 1)
        if all(int(t) in decoded.kept for t in wanted):
            return np.stack([decoded.kept[int(t)] for t in wanted]), count
        frames, _ = read_frames_counted(path, wanted)
        return frames, count

    return read


@dataclass
class CroppedClips:
    """The samples of one video: one per window, in a MemoryCrops the branches' datasets read."""

    store: MemoryCrops
    windows: list[Window]
    boxes: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)  # x0, y0, x1, y1 in video pixels
    failed: dict[int, str] = field(default_factory=dict)  # window number -> why it could not be cropped
    positions: dict[int, int] = field(default_factory=dict)  # window number -> position in the store

    @classmethod
    def empty(cls, cfg: Pipeline, layout: Layout, windows: list[Window]) -> CroppedClips:
        return cls(MemoryCrops(asdict(cfg.crops), layout, cfg.crops.jpeg_quality), windows)

    def crop(self, cfg: Pipeline, number: int, video: Path, skeleton: Skeleton, decoded: Decoded,
             skeleton_path: Path | None = None, layout: Layout | None = None) -> None:
        """Stage 1's crop of window `number` (its own skeleton: see window_skeleton): crop plan,
        frames and normalised skeleton; a window that cannot be cropped is recorded as failed.
        `layout`: the skeleton's, when it may be another than the run's."""
        window = self.windows[number]
        whole = _whole(window, decoded.info)
        # The whole video is the video stage 1 probed; a window is a video of its own.
        info = decoded.info if whole else replace(decoded.info, frames=window.stop - window.start)
        sample = Sample(video.stem, -1, "test", skeleton_path, video, group=video.stem)
        try:
            stored, fields = crop_skeleton(skeleton, sample, CropJob.of(cfg, layout),
                                           read=kept_frames_reader(decoded, window, whole), video=info)
        except DataError as exc:
            self.failed[number] = exc.reason
            return
        self._stored(f"{video.stem}@{number}", number, stored, fields)

    def crop_alone(self, cfg: Pipeline, number: int, name: str, skeleton: Skeleton, skeleton_path: Path) -> None:
        """Stage 1's sample of window `number` of a skeleton without video, as it stores a dataset
        of skeletons alone: its normalised sequence, the box planned in the frame its pixels
        were recorded in; a window that cannot be cropped is recorded as failed."""
        sample = Sample(name, -1, "test", skeleton_path, None, group=name)
        try:
            stored, fields = crop_skeleton(skeleton, sample, CropJob.of(cfg, video=False))
        except DataError as exc:
            self.failed[number] = exc.reason
            return
        self._stored(f"{name}@{number}", number, stored, fields)

    def _stored(self, sample_id: str, number: int, stored: StoredSample, fields: dict) -> None:
        self.positions[number] = self.store.add(sample_id, stored)
        self.boxes[number] = tuple(fields["box"])


def probe(video: Path) -> VideoInfo:
    """The video's probe; DataError naming it when it cannot be opened or has no frames."""
    info = probe_video(video)
    if info.frames <= 0:
        raise DataError(video, "the video reports no frames")
    return info
