"""Video probing and frame reading with OpenCV.

Frames are decoded sequentially: grab() every frame up to the last wanted one and retrieve()
(the costly colour conversion) only the wanted ones. Seeking per frame is slow and, for many
AVI/H.264 files, inexact, so it is never used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mmfc.errors import DataError

# FFmpeg's own complaints about a broken file ("moov atom not found") would go to stderr beside
# the one message mmfc gives for it (and the failures table that records it); quiet unless the
# user asks for them (OPENCV_FFMPEG_LOGLEVEL=24 shows FFmpeg's warnings). OpenCV reads the
# variable when it first opens a video, so setting it here is early enough.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


@dataclass
class VideoInfo:
    path: Path
    frames: int  # as the container reports it; may be off by a few frames
    fps: float
    width: int
    height: int


def _open(path: Path, threads: int = 0) -> cv2.VideoCapture:
    """threads: decoder threads, 0 for OpenCV's choice (one per core)."""
    if not path.is_file():
        raise DataError(path, "no such video file")
    params = [cv2.CAP_PROP_N_THREADS, threads] if threads > 0 else []
    capture = cv2.VideoCapture(str(path), cv2.CAP_ANY, params)
    if not capture.isOpened():
        capture.release()
        raise DataError(path, "cannot open video (unknown container or codec)")
    return capture


def probe_video(path: str | Path) -> VideoInfo:
    path = Path(path)
    capture = _open(path)
    try:
        info = VideoInfo(
            path=path,
            frames=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            fps=float(capture.get(cv2.CAP_PROP_FPS)),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        capture.release()
    if info.width <= 0 or info.height <= 0:
        raise DataError(path, "video reports no frame size")
    return info


def read_frames(path: str | Path, indices) -> np.ndarray:
    """Frames at `indices` (any order, repeats allowed) as uint8 RGB [N, H, W, 3].

    An index past the last decodable frame (containers often over-report their frame count)
    gets the last decoded frame instead; only a video that decodes no frame at all is an error.
    """
    return read_frames_counted(path, indices)[0]


def read_frames_counted(path: str | Path, indices, through: int = 0) -> tuple[np.ndarray, int]:
    """read_frames, and how many frames the video decodes: it goes on decoding past the last
    wanted frame to frame `through` - 1, so a count below `through` is the video's true length.
    -> (uint8 RGB [N, H, W, 3], frames decoded)"""
    path = Path(path)
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size == 0:
        raise DataError(path, "no frame indices requested")
    if indices.min() < 0:
        raise DataError(path, f"negative frame index {int(indices.min())}")
    wanted = np.unique(indices)  # sorted
    decoded: dict[int, np.ndarray] = {}
    count = 0
    capture = _open(path)
    try:
        next_wanted = 0
        while count < max(int(wanted[-1]) + 1, through) and capture.grab():
            if next_wanted < len(wanted) and count == wanted[next_wanted]:
                ok, image = capture.retrieve()
                if not ok:
                    break
                decoded[count] = image
                next_wanted += 1
            count += 1
    finally:
        capture.release()
    if not decoded:
        raise DataError(path, "no frame could be decoded")
    available = np.array(sorted(decoded))
    # Wanted frames beyond the end map to the last frame that decoded.
    nearest = available[np.clip(np.searchsorted(available, indices, side="right") - 1, 0, None)]
    first = decoded[int(available[0])]
    out = np.empty((len(indices), *first.shape), dtype=np.uint8)  # [N, H, W, 3]
    for row, frame in enumerate(nearest):
        cv2.cvtColor(decoded[int(frame)], cv2.COLOR_BGR2RGB, dst=out[row])
    return out, count


def iter_frames(path: str | Path, threads: int = 0):
    """Every frame of a video in order, as OpenCV decodes it (uint8 BGR [H, W, 3]).

    Stops at the first frame that does not decode; a video that decodes no frame at all is an
    error, raised when the iteration starts. `threads` caps the decoder's threads (0: one per
    core), for workers that already run one per core.
    """
    path = Path(path)
    capture = _open(path, threads)
    try:
        ok, image = capture.read()
        if not ok:
            raise DataError(path, "no frame could be decoded")
        while ok:
            yield image
            ok, image = capture.read()
    finally:
        capture.release()


def scale_pixels(pixels: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Rescale [..., 2] (x, y) pixel coordinates from a (width, height) frame to another."""
    scale = np.array(
        [to_size[0] / from_size[0], to_size[1] / from_size[1]], dtype=np.float32
    )
    return np.asarray(pixels, dtype=np.float32) * scale
