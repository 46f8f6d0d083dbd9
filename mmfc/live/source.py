"""Where a live stream's frames come from, read on their own thread.

    spec = parse_source("rtsp://10.0.0.5/stream")       # or "0" (a camera), or "clip.mp4"
    reader = FrameReader(spec, open_capture(spec), fps=25.0, paced=True)
    reader.start()
    item = reader.get(timeout=0.5)                       # Frame, Gap, End, or None (nothing yet)

A paced source (a camera, a URL, a file played at its own frame rate) never waits for the one
who reads the frames: the queue holds QUEUE_FRAMES frames, and a frame that arrives when it is
full pushes out the oldest, which is counted (`dropped`) and never estimated. The reader of the
queue sees the gap in the frame numbers. A file read as fast as it is consumed (not paced)
waits instead, so every frame is seen.

A camera or URL that stops giving frames is opened again, up to `reconnects` times, RECONNECT_DELAY
seconds after the loss and twice as long each time after (at most MAX_RECONNECT_DELAY); when it
comes back the reader gets a Gap (the frames in between are lost), when it does not an End
naming the source and what was tried. A file's end is an End without an error.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mmfc.errors import DataError

QUEUE_FRAMES = 2  # frames a paced source holds for the estimator: more only adds latency
RECONNECT_DELAY = 0.5  # seconds
MAX_RECONNECT_DELAY = 8.0
# FFmpeg's waits for a stream to open and for its next packet (the defaults are 30 s or none:
# a stalled stream would hang the reader instead of being opened again).
OPEN_TIMEOUT_MS = 10_000
READ_TIMEOUT_MS = 5_000
# A frame rate a source reports outside this range is no frame rate (FFmpeg's guess for an
# MJPEG stream is 25; some cameras report 0 or 1000).
SANE_FPS = (1.0, 240.0)
URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
CREDENTIALS = re.compile(r"//[^/@]*@")  # a URL's user and password, never shown nor written


@dataclass(frozen=True)
class SourceSpec:
    given: str
    kind: str  # "camera", "url" or "file"

    @property
    def camera(self) -> int:
        return int(self.given)

    @property
    def name(self) -> str:
        """What its outputs are named after: the file's stem, camera<N>, or the URL's host and path."""
        if self.kind == "file":
            return Path(self.given).stem
        if self.kind == "camera":
            return f"camera{self.given}"
        return re.sub(r"[^A-Za-z0-9._-]+", "-", URL.sub("", CREDENTIALS.sub("//", self.given))).strip("-.") or "stream"

    @property
    def where(self) -> str:
        """The source as messages name it (a URL without its password)."""
        return f"camera {self.given}" if self.kind == "camera" else CREDENTIALS.sub("//***@", self.given)


def parse_source(given: str) -> SourceSpec:
    """A camera index (0, 1, ...), a stream URL (rtsp://, http://, ...), or a video file;
    DataError naming it when it is none of these."""
    if given.isdigit():
        return SourceSpec(given, "camera")
    if URL.match(given):
        return SourceSpec(given, "url")
    if Path(given).is_file():
        return SourceSpec(given, "file")
    raise DataError(given, "no such video file, and not a camera index (0, 1, ...) or a stream URL (rtsp://, http://, ...)")


def open_capture(spec: SourceSpec) -> cv2.VideoCapture:
    """The source opened; DataError naming it, with why, when it cannot be."""
    if spec.kind == "camera":
        capture = cv2.VideoCapture(spec.camera)
        reason = "cannot be opened: no such camera here, or another program holds it"
    elif spec.kind == "url":
        capture = cv2.VideoCapture(spec.given, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
                                                                cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS])
        reason = ("cannot open the stream: the address is wrong, the server is down or unreachable, or it serves no "
                  "video OpenCV's FFmpeg reads")
    else:
        capture = cv2.VideoCapture(spec.given)
        reason = "cannot open video (unknown container or codec)"
    if not capture.isOpened():
        capture.release()
        raise DataError(spec.where, reason)
    return capture


def stream_fps(capture: cv2.VideoCapture, given: float | None) -> tuple[float, str]:
    """The frame rate windows are counted in: `given` (--fps), else the one the source reports
    when it is one, else 30. -> (fps, what the user must be told, "" when nothing)"""
    if given:
        return given, ""
    reported = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    if SANE_FPS[0] <= reported <= SANE_FPS[1]:
        return reported, ""
    return 30.0, f"the source reports no frame rate ({reported:g}); windows are counted at 30 fps (set --fps)"


@dataclass
class Frame:
    number: int  # of the stream, from 0, counting the frames dropped
    read_at: float  # time.perf_counter() when it was read
    image: np.ndarray  # uint8 BGR [H, W, 3], as OpenCV decodes it


@dataclass
class Gap:
    """The stream was lost and came back: the frames in between are missing."""

    reason: str


@dataclass
class End:
    """The stream is over: a file's end (error ""), or a source lost for good."""

    error: str = ""


class FrameReader(threading.Thread):
    """Reads a source's frames into a queue on its own thread (the module docstring)."""

    def __init__(self, spec: SourceSpec, capture: cv2.VideoCapture, fps: float, paced: bool, realtime: bool = False,
                 reconnects: int = 3, queue_frames: int = QUEUE_FRAMES):
        super().__init__(name="mmfc-live-reader", daemon=True)
        self.spec, self.capture, self.fps = spec, capture, fps
        self.paced, self.realtime, self.reconnects = paced, realtime, reconnects
        self.queue_frames = queue_frames
        self.dropped = 0  # frames pushed out of a full queue
        self.reconnected = 0
        self._items: deque[Frame | Gap | End] = deque()
        self._frames_queued = 0
        self._changed = threading.Condition()
        self._halt = threading.Event()

    def stop(self) -> None:
        """Stop reading (the thread ends after the frame it is reading) and release the source."""
        self._halt.set()
        with self._changed:
            self._changed.notify_all()
        self.join(timeout=OPEN_TIMEOUT_MS / 1000 + 1)

    def get(self, timeout: float) -> Frame | Gap | End | None:
        """The next item, or None when none came within `timeout` seconds."""
        with self._changed:
            if not self._items:
                self._changed.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            if isinstance(item, Frame):
                self._frames_queued -= 1
            self._changed.notify_all()
            return item

    def run(self) -> None:
        try:
            self._read()
        finally:
            self.capture.release()

    def _read(self) -> None:
        number, started = 0, time.perf_counter()
        while not self._halt.is_set():
            if self.realtime:
                self._halt.wait(max(0.0, started + number / self.fps - time.perf_counter()))
            ok, image = self.capture.read()
            if self._halt.is_set():
                return
            if not ok:
                if self.spec.kind == "file":
                    self._put(End())
                    return
                lost = self._reopen()
                if lost:
                    self._put(End(lost))
                    return
                self._put(Gap(f"{self.spec.where} was lost and opened again"))
                continue
            self._put(Frame(number, time.perf_counter(), image))
            number += 1

    def _reopen(self) -> str:
        """Open the source again; "" once it is, else why it could not be."""
        self.capture.release()
        for attempt in range(self.reconnects):
            if self._halt.wait(min(RECONNECT_DELAY * 2 ** attempt, MAX_RECONNECT_DELAY)):
                return "stopped"
            try:
                self.capture = open_capture(self.spec)
            except DataError:
                continue
            self.reconnected += 1
            return ""
        return (f"{self.spec.where}: the stream stopped and could not be opened again "
                f"({self.reconnects} attempt{'s' if self.reconnects != 1 else ''})")

    def _put(self, item: Frame | Gap | End) -> None:
        with self._changed:
            if isinstance(item, Frame):
                if self.paced and self._frames_queued >= self.queue_frames:
                    oldest = next(i for i, queued in enumerate(self._items) if isinstance(queued, Frame))
                    del self._items[oldest]
                    self._frames_queued -= 1
                    self.dropped += 1
                while not self.paced and self._frames_queued >= self.queue_frames and not self._halt.is_set():
                    self._changed.wait(0.5)
                self._frames_queued += 1
            self._items.append(item)
            self._changed.notify_all()
