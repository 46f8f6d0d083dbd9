"""A live stream through a trained run: each person's sliding window scored as it fills.

Three threads. The reader (mmfc.live.source) reads frames. This one tracks everyone's pose
frame by frame (mmfc.poses.video_poses.PoseStream, keeping only the frames the open windows
need) and hands each window, as soon as its last frame is estimated, to the scorer, which crops
and scores each person of it alone (and in pairs, for two-person classes) with
mmfc.predict.people.score_window: `mmfc predict --per-person`'s code, window by window. Every
person's label goes out as one JSON line on stdout; with `out`, into an annotated recording
and, when the stream ends, the files `mmfc predict --per-person --out` writes.

It never falls behind a paced source (a camera, a URL, a file played at its own rate):
- when the estimator is slower than the stream, the reader pushes out the oldest waiting frame
  (counted), the estimator moves on without it (PoseStream.skip: nobody on that frame, which the
  skeleton branch leaves out of its resampled sequence as it does any frame without a body), and
  a window of which fewer than MIN_POSED of the frames were estimated is dropped whole;
- when scoring is slower than the windows fill, a window waiting for the scorer is replaced by
  the next one, and dropped whole.
Both are counted and reported (LiveStats). A file read as fast as it is consumed drops nothing:
its windows are those of `mmfc predict --per-person --window W --stride S` on the same frames
(less the last one predict adds to reach the end), with the same labels.

After a lost source comes back (mmfc.live.source.Gap), the windows it cut are lost (counted), and
the people are tracked anew, under new numbers (nobody is claimed to be the same person across
the gap). Ctrl-C (or SIGTERM) and the stream's end close every file: the recording takes its name
once complete, the other files are written whole (mmfc/atomic.py).
"""

from __future__ import annotations

import json
import signal
import statistics
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import torch

from mmfc import atomic
from mmfc.crops.crop import stored_frame_indices
from mmfc.data.decoding import VideoInfo
from mmfc.data.layouts import get_layout
from mmfc.errors import DataError
from mmfc.live.server import LiveView
from mmfc.live.source import End, Frame, FrameReader, Gap, SourceSpec, open_capture, stream_fps
from mmfc.poses.frame_poses import EstimatorSettings
from mmfc.poses.video_poses import PoseStream, PoseTracks
from mmfc.predict.batch import people_arrays, write_combined
from mmfc.predict.clips import Decoded, Window
from mmfc.predict.outputs import (STRIP_FRAMES, VideoRecorder, draw_person, people_summary, person_colour,
                                  person_label, write_people_outputs)
from mmfc.predict.people import BRIDGED_GAP, PeoplePrediction, score_window
from mmfc.predict.predictor import PoseModels, WindowPoses, video_refusal
from mmfc.predict.skeletons import estimator_layout, from_tracks, pose_source_warning
from mmfc.run_folder import TrainedRun

# A window is scored when the poses of at least this share of its frames were estimated.
MIN_POSED = 0.5
HISTORY = 10  # labels per person the live view shows
LATENCIES = 10_000  # the latest windows' latencies kept for the figures (a stream may run for days)
RECORDING = "annotated.mp4"
SESSION = "live.json"


@dataclass(frozen=True)
class LiveOptions:
    window: float = 2.0  # seconds
    stride: float = 0.5  # seconds between window starts
    fps: float | None = None  # the source's frame rate, where it reports none or a wrong one
    realtime: bool = False  # a file played at its own frame rate, dropping what cannot be kept up with
    reconnects: int = 3
    threshold: float = 0.5  # a segment's class stays on top above it (the files --out writes)
    interactions: tuple[str, ...] = ()  # the run's two-person classes (mmfc.predict.people)
    draw_width: int = 640  # of the recording and the live view


@dataclass
class LiveStats:
    """What a session did, for the report at its end and live.json."""

    frames: int = 0  # read from the source, those dropped included
    posed: int = 0  # whose poses were estimated
    frames_dropped: int = 0  # pushed out by the reader while the estimator was behind
    windows: int = 0  # filled
    scored: int = 0
    nobody: int = 0  # nobody in them long enough to be scored
    dropped_poses: int = 0  # fewer than MIN_POSED of their frames estimated
    dropped_scoring: int = 0  # replaced while the scorer was busy
    lost: int = 0  # cut by a lost source
    reconnected: int = 0
    seconds: float = 0.0  # from the first frame read to the end
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES))  # seconds per window

    @property
    def dropped(self) -> int:
        return self.dropped_poses + self.dropped_scoring

    def latency_ms(self) -> dict:
        if not self.latencies:
            return {"median": None, "p95": None, "max": None}
        ordered = sorted(self.latencies)
        return {"median": round(1000 * statistics.median(ordered), 1),
                "p95": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
                "max": round(1000 * ordered[-1], 1)}

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "latencies"}
        return {**out, "dropped": self.dropped, "latency_ms": self.latency_ms(),
                "fps": round(self.frames / self.seconds, 2) if self.seconds else 0.0}

    def describe(self) -> str:
        latency = self.latency_ms()
        said = (f"{self.frames} frames in {self.seconds:.1f} s, poses of {self.posed} ({self.frames_dropped} dropped while "
                f"the estimator was behind); {self.windows} windows: {self.scored} scored, {self.nobody} with nobody, "
                f"{self.dropped_poses} dropped (poses behind), {self.dropped_scoring} dropped (scoring behind)")
        if self.lost or self.reconnected:
            said += f", {self.lost} lost to {self.reconnected} reconnection(s)"
        if latency["median"] is not None:
            said += f"; latency median {latency['median']:.0f} ms, 95th percentile {latency['p95']:.0f} ms"
        return said


@dataclass
class WindowJob:
    """A window ready for the scorer."""

    window: Window  # frames of the stream
    seen: WindowPoses
    found: object  # mmfc.predict.skeletons.SkeletonInput of its people
    frames: dict[int, np.ndarray]  # stream frame -> uint8 RGB, those its crops need
    read_at: float  # when its last frame was read (time.perf_counter)


class Scorer(threading.Thread):
    """Scores the windows it is offered, one at a time; paced, a waiting window is replaced by a
    newer one (counted), else the offer waits."""

    def __init__(self, session: LiveSession, paced: bool):
        super().__init__(name="mmfc-live-scorer", daemon=True)
        self.session, self.paced = session, paced
        self._waiting: deque[WindowJob] = deque()
        self._changed = threading.Condition()
        self._closing = False
        self.error: BaseException | None = None

    def offer(self, job: WindowJob) -> None:
        with self._changed:
            if self.paced and self._waiting:
                self._waiting.popleft()
                self.session.stats.dropped_scoring += 1
            while not self.paced and self._waiting and self.error is None:
                self._changed.wait(0.5)
            self._waiting.append(job)
            self._changed.notify_all()

    def close(self) -> None:
        """Score what waits, then end."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self.join()

    def run(self) -> None:
        torch.set_num_threads(1)  # the estimator has the other core; see mmfc/cores.py
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting or self._closing)
                if not self._waiting:
                    return
                job = self._waiting.popleft()
                self._changed.notify_all()
            try:
                self.session.score(job)
            except BaseException as exc:  # the session raises it in its own thread
                self.error = exc
                return


class LiveSession:
    """One source through a trained run (the module docstring); run() until the stream ends, is
    lost, or Ctrl-C."""

    def __init__(self, run: TrainedRun, spec: SourceSpec, options: LiveOptions, poses: PoseModels,
                 out: Path | None = None, draw: bool = True, serve: tuple[str, int] | None = None,
                 emit=None, tell=None):
        refused = video_refusal(run)
        if refused:
            raise DataError(spec.where, refused)
        self.run_, self.spec, self.options, self.poses = run, spec, options, poses
        self.out, self.serve = out, serve
        self.emit = emit or (lambda line: print(line, flush=True))
        self.tell = tell or (lambda text: print(text, file=sys.stderr, flush=True))
        self.stats = LiveStats()
        self.draw = draw and out is not None
        self.lock = threading.Lock()  # the labels and the result, shared with the scorer
        self.current: dict[int, dict] = {}  # person -> their latest label line
        self.history: dict[int, deque[dict]] = {}
        self.result: PeoplePrediction | None = None
        self.spans: dict[int, list[list[int]]] = {}  # person -> [start, stop) frames they are in
        self.seen: dict[int, int] = {}
        self.warning = ""
        self.view: LiveView | None = None

    # -- the estimator's thread ----------------------------------------------------------------

    def run(self) -> LiveStats:
        capture = open_capture(self.spec)
        fps, note = stream_fps(capture, self.options.fps)
        if note:
            self.tell(f"note: {note}")
        self.fps = fps
        self.length = max(1, round(self.options.window * fps))
        self.step = max(1, round(self.options.stride * fps))
        self.size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.offsets = set(stored_frame_indices(self.length, self.run_.cfg.crops.num_frames).tolist())
        paced = self.spec.kind != "file" or self.options.realtime
        self.reader = reader = FrameReader(self.spec, capture, fps, paced, self.options.realtime,
                                           self.options.reconnects)
        self.scorer = Scorer(self, paced)
        self._new_stream(first_person=1)
        folder = self._output_folder()
        self.recorder = VideoRecorder(folder / RECORDING, fps) if self.draw else None
        self.strip: list[np.ndarray] = []
        self.strip_every = 1
        if self.serve is not None:
            self.view = LiveView(*self.serve, self.spec.where, self.state)
            self.tell(f"live view: {self.view.url}")
        error, stopped = "", False
        previous = signal.signal(signal.SIGTERM, _interrupt) if _main_thread() else None
        started = time.perf_counter()
        reader.start()
        self.scorer.start()
        try:
            while True:
                if self.scorer.error is not None:
                    raise self.scorer.error
                item = reader.get(timeout=0.5)
                if item is None:
                    continue
                if isinstance(item, End):
                    error = item.error
                    break
                if isinstance(item, Gap):
                    self._lost(item)
                    continue
                self._frame(item)
        except KeyboardInterrupt:
            stopped = True
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            reader.stop()
            self.scorer.close()
            self.stats.seconds = time.perf_counter() - started
            self.stats.frames_dropped, self.stats.reconnected = reader.dropped, reader.reconnected
            self._close(folder)
        if self.scorer.error is not None:
            raise self.scorer.error
        self.tell(f"live{' (stopped)' if stopped else ''}: {self.stats.describe()}")
        if error:
            raise DataError(self.spec.where, error.split(": ", 1)[-1])
        return self.stats

    def _new_stream(self, first_person: int) -> None:
        """Poses tracked anew from the next frame on: a new tracker, its people numbered from `first_person`."""
        cfg = self.run_.cfg
        self.stream = PoseStream(self.poses.get(), EstimatorSettings.of(cfg.poses), self.fps,
                                 estimator_layout(self.run_.layout), keep=self.length + self.step)
        self.bones = get_layout(self.stream.layout).bones
        self.first_person = first_person
        self.base: int | None = None  # the stream frame the tracker's first frame is
        self.posed: deque[bool] = deque(maxlen=self.length)  # of the latest frames
        self.kept: dict[int, np.ndarray] = {}  # stream frame -> RGB, for the RGB crops
        self.last_canvas: np.ndarray | None = None

    def _frame(self, frame: Frame) -> None:
        if self.base is None:
            self.base = frame.number
        while self.base + self.stream.frames < frame.number:  # frames the reader dropped
            self.stream.skip()
            self.posed.append(False)
            self._record(self.last_canvas)
            self._windows_ending(self.base + self.stream.frames, frame.read_at)
        found = self.stream.step(frame.image, bgr=True)
        self.posed.append(True)
        self.stats.frames, self.stats.posed = frame.number + 1, self.stats.posed + 1
        self.stats.frames_dropped = self.reader.dropped
        for slot, _ in found:
            self._in_view(slot + self.first_person, frame.number)
        if self.run_.video_branches and self._needed(frame.number):
            self.kept[frame.number] = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)
        if self.draw or self.view is not None:
            self._record(self._drawn(frame))
        self._windows_ending(frame.number + 1, frame.read_at)

    def _in_view(self, person: int, number: int) -> None:
        spans = self.spans.setdefault(person, [])
        if spans and number - spans[-1][1] <= BRIDGED_GAP:
            spans[-1][1] = number + 1
        else:
            spans.append([number, number + 1])
        self.seen[person] = self.seen.get(person, 0) + 1

    def _starts(self, number: int) -> list[int]:
        """The windows (by their first frame) that hold stream frame `number`."""
        first = max(self.base, number - self.length + 1)
        first += (self.base - first) % self.step
        return list(range(first, number + 1, self.step))

    def _needed(self, number: int) -> bool:
        """Whether a window's RGB crop needs stream frame `number` (stage 1's stored frames)."""
        return any(number - start in self.offsets for start in self._starts(number))

    def _windows_ending(self, stop: int, read_at: float) -> None:
        """The window ending before stream frame `stop`, if one does: dropped, or to the scorer;
        then the frames no open window needs are let go."""
        start = stop - self.length
        try:
            if start >= self.base and (start - self.base) % self.step == 0:
                self._window(start, stop, read_at)
        finally:
            for old in [t for t in self.kept if t <= start]:
                del self.kept[old]

    def _window(self, start: int, stop: int, read_at: float) -> None:
        self.stats.windows += 1
        if sum(self.posed) < MIN_POSED * self.length:
            self.stats.dropped_poses += 1
            return
        tracks = self.stream.tracks(start - self.base, stop - self.base)
        try:
            found = from_tracks(self.run_, tracks, self.spec.name, self.fps)
        except DataError:  # nobody in it
            self.stats.nobody += 1
            return
        self.warning = self.warning or pose_source_warning(self.run_.pose_source, found)
        seen = WindowPoses(found.skeleton, found.layout, [slot + self.first_person for slot in tracks.track_ids])
        self.scorer.offer(WindowJob(Window(start, stop), seen, found, self._frames_of(start), read_at))

    def _frames_of(self, start: int) -> dict[int, np.ndarray]:
        """The RGB frames the crops of the window from `start` need; a frame the reader dropped
        stands in for by the nearest kept one."""
        if not self.run_.video_branches or not self.kept:
            return {}
        kept = np.array(sorted(t for t in self.kept if t >= start))
        if not len(kept):
            return {}
        return {start + o: self.kept[int(kept[np.abs(kept - (start + o)).argmin()])] for o in self.offsets}

    def _lost(self, gap: Gap) -> None:
        """The source came back after a loss: the windows it cut are lost, the people tracked anew."""
        if self.base is not None:
            next_frame = self.base + self.stream.frames
            self.stats.lost += len([s for s in self._starts(next_frame - 1) if s + self.length > next_frame])
        self.tell(f"note: {gap.reason}; the people are tracked anew")
        self._new_stream(self.first_person + self.run_.cfg.poses.max_persons)

    # -- drawing and the recording ---------------------------------------------------------------

    def _drawn(self, frame: Frame) -> np.ndarray:
        """The frame at draw_width, each person's skeleton in their colour with their latest label."""
        height, width = frame.image.shape[:2]
        scale = self.options.draw_width / width
        small = cv2.resize(frame.image, (self.options.draw_width, round(height * scale)), interpolation=cv2.INTER_AREA)
        canvas = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        now: PoseTracks = self.stream.tracks(self.stream.frames - 1, self.stream.frames)
        with self.lock:
            current = dict(self.current)
        for row, slot in enumerate(now.track_ids):
            person = slot + self.first_person
            line = current.get(person)
            label = person_label(person, line["label"], line["score"], line["with"] or 0) if line else str(person)
            draw_person(canvas, now.keypoint[row, 0] * scale, now.keypoint_score[row, 0] > 0, self.bones,
                        person_colour(person), label)
        status = (f"{frame.number / self.fps:7.1f} s   dropped: {self.stats.frames_dropped} frames, "
                  f"{self.stats.dropped} windows")
        cv2.putText(canvas, status, (8, canvas.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1,
                    cv2.LINE_AA)
        return canvas

    def _record(self, canvas: np.ndarray | None) -> None:
        """A frame of the recording (the last one again for a frame the reader dropped, so the
        recording keeps the stream's clock), of the live view, and now and then of the strip."""
        if canvas is None:
            return
        self.last_canvas = canvas
        if self.recorder is not None:
            self.recorder.write(canvas)
            if self.recorder.frames % self.strip_every == 0:
                self.strip.append(canvas)
                if len(self.strip) >= 2 * STRIP_FRAMES:  # keep a few, spread over the whole stream
                    self.strip, self.strip_every = self.strip[::2], 2 * self.strip_every
        if self.view is not None:
            self.view.publish(canvas)

    # -- the scorer's thread ----------------------------------------------------------------------

    def score(self, job: WindowJob) -> None:
        """Score one window's people and send each person's label out."""
        decoded = Decoded(VideoInfo(Path(self.spec.name), 0, self.fps, *self.size), job.frames, job.window.stop)
        scored = score_window(self.run_, job.window, job.seen, job.found, decoded, self.spec.name,
                              list(self.options.interactions), self.fps)
        if scored is None:
            self.stats.nobody += 1
            return
        latency = time.perf_counter() - job.read_at
        stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
        start, stop = job.window.seconds(self.fps)
        lines = []
        for person, timeline in scored.persons.items():
            label, score, partner = timeline.label(0, scored.class_names)
            lines.append({"time": stamp, "person": person, "label": label, "score": round(score, 4),
                          "with": partner or None, "window": [round(start, 3), round(stop, 3)],
                          "frames": [job.window.start, job.window.stop], "latency_ms": round(1000 * latency, 1)})
        with self.lock:
            self.stats.scored += 1
            self.stats.latencies.append(latency)
            for line in lines:
                self.current[line["person"]] = line
                self.history.setdefault(line["person"], deque(maxlen=HISTORY)).appendleft(line)
            if self.out is not None:
                self.result = scored if self.result is None else self.result.then(scored)
        for line in lines:
            self.emit(json.dumps(line))

    def state(self) -> dict:
        """What the live view shows: each person's latest label and recent ones, and the counts."""
        with self.lock:
            # Seen lately: the estimator skips the frames it was behind on, so not the last frame alone.
            in_view = {p for p, spans in self.spans.items() if spans[-1][1] >= self.stats.frames - BRIDGED_GAP}
            persons = [{"person": p, "colour": list(person_colour(p)), "label": line["label"], "score": line["score"],
                        "with": line["with"], "window": line["window"], "in_view": p in in_view,
                        "history": list(self.history[p])} for p, line in sorted(self.current.items())]
            return {"source": self.spec.where, "seconds": self.stats.frames / self.fps if self.stats.frames else 0.0,
                    "fps": getattr(self, "fps", 0.0), "persons": persons, "scored": self.stats.scored,
                    "dropped": self.stats.dropped, "frames_dropped": self.stats.frames_dropped,
                    "latency_ms": self.stats.latency_ms()}

    # -- the files ----------------------------------------------------------------------------------

    def _output_folder(self) -> Path | None:
        if self.out is None:
            return None
        folder = self.out / self.spec.name
        folder.mkdir(parents=True, exist_ok=True)
        atomic.remove_leftovers(folder)  # a recording a killed session left unfinished
        return folder

    def _close(self, folder: Path | None) -> None:
        """The recording closed, the files written (with --out), the live view stopped."""
        try:
            if folder is None:
                return
            recorded = None
            if self.recorder is not None:
                if self.recorder.frames:
                    self.recorder.close()
                    recorded = self.recorder.path
                else:
                    self.recorder.discard()
            atomic.write_text(folder / SESSION, json.dumps(self.stats.to_dict(), indent=2) + "\n")
            if self.result is None:
                self.tell("note: nobody was scored; no prediction files written")
                return
            result = replace(self.result, input=self.spec.where, frames=self.stats.frames,
                             spans={p: [tuple(s) for s in spans] for p, spans in self.spans.items()},
                             seen=dict(self.seen), warning=self.warning).with_segments(self.options.threshold)
            write_people_outputs(self.out, result, self.strip, self.run_.checkpoint_digests, self.run_.cfg.digest(),
                                 self.draw, recorded=recorded)
            line = {"input": result.input, "entry": None, "status": "ok", "reason": "",
                    "summary": people_summary(result), "arrays": people_arrays(result)}
            write_combined(self.out / "predictions.parquet", [line], result.class_names, self.run_.branches)
        finally:
            if self.recorder is not None:
                self.recorder.discard()  # nothing, once closed; a half recording otherwise
            if self.view is not None:
                self.view.stop()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _interrupt(signum, frame) -> None:
    """SIGTERM ends a session as Ctrl-C does: every file closed."""
    raise KeyboardInterrupt
