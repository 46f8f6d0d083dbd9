"""What `mmfc predict` gives back: the top classes of each branch and fused as a table or JSON, and
with --out the pictures (for a video an annotated video and a strip of sampled frames; for a
skeleton without video a drawing of it), and for windows a timeline, the window scores in the
stage-3 score format and the segments.

The annotated video is drawn from the downscaled frames the one decoding pass kept
(mmfc.predict.clips.decode_once), so drawing decodes nothing again.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mmfc import atomic
from mmfc.branches import BRANCHES
from mmfc.data.decoding import probe_video
from mmfc.errors import DataError, DiskFull, format_bytes
from mmfc.metrics import log_softmax
from mmfc.predict.clips import Decoded
from mmfc.predict.people import PeoplePrediction, PersonTimeline
from mmfc.predict.predictor import Prediction
from mmfc.predict.skeletons import SkeletonInput
from mmfc.predict.windows import Segment
from mmfc.scores.format import UNLABELLED, ScoreTable, write_scores

FUSED = "fused"
TOP = 5
DRAWN = 3  # fused classes drawn on the video
STRIP_FRAMES = 6
STRIP_WIDTH = 360  # of each frame in the strip
SKELETON_PANEL = 480  # pixels square of each frame of a skeleton's drawing, before the strip shrinks it
# Colours (RGB) of the drawing.
BOX = (255, 200, 0)
PERSONS = ((0, 230, 120), (255, 80, 200), (80, 180, 255))  # one colour per tracked person
BAR = (255, 140, 0)
BACKGROUND = 32  # grey level behind a skeleton drawn without its video
WARNING_BAND = (200, 0, 0)
# Drawn above every frame of a prediction that carries a warning (Prediction.warning).
WARNING_TEXT = "UNRELIABLE: poses from another source than the run was trained on"


def summary(prediction: Prediction, segments: list[Segment] | None = None) -> dict:
    """The prediction as JSON-ready data: per clip (or window) the top-5 of each branch that scored
    it (by its name) and fused ("fused")."""
    probabilities = prediction.probabilities
    clips = [{"start": round(float(start), 3), "end": round(float(end), 3),
              "top5": top_classes(prediction.class_names, probabilities, w)}
             for w, (start, end) in enumerate(prediction.windows)]
    out = {
        "input": prediction.input, "entry": prediction.entry, "frames": prediction.frames, "fps": prediction.fps,
        "skeleton": prediction.skeleton, "branches": list(prediction.logits), "fusion": prediction.fusion,
        "warning": prediction.warning, "notes": prediction.notes,
        "clips": clips, "timings": {k: round(v, 4) for k, v in prediction.timings.items()},
    }
    if segments is not None:
        out["segments"] = [s.to_dict() for s in segments]
    return out


def top_classes(class_names: list[str], probabilities: dict[str, np.ndarray], w: int) -> dict[str, list[dict]]:
    """Window w's top-5 classes of each branch (by name) and fused, as JSON-ready data."""
    out = {}
    for name, p in probabilities.items():
        order = np.argsort(-p[w], kind="stable")[:TOP]
        out[name] = [{"class": class_names[i], "probability": round(float(p[w, i]), 6)} for i in order]
    return out


def _notes_and_title(console: Console, result: dict) -> str:
    """Print a summary's notes and warning; -> the title of its table (marked unreliable under a warning)."""
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    given = result["input"] + (f" ({result['entry']})" if result["entry"] is not None else "")
    title = f"{given} (skeleton: {result['skeleton']}; fusion: {result['fusion']})"
    if result["warning"]:
        console.print(f"[bold red]WARNING:[/] {escape(result['warning'])}", highlight=False)
        title = f"UNRELIABLE, see the warning: {title}"
    return title


def print_table(console: Console, result: dict) -> None:
    """A rich table of the top-5 classes of each branch and fused, from a summary(); for windows,
    the segments instead."""
    title = _notes_and_title(console, result)
    if "segments" in result:
        table = Table(title=escape(f"{title}: {len(result['clips'])} windows; segments of the fused top class"))
        for column in ("class", "start s", "end s", "mean p", "windows"):
            table.add_column(column)
        for s in result["segments"]:
            table.add_row(escape(s["label"]), f"{s['start']:.2f}", f"{s['end']:.2f}", f"{s['mean_probability']:.3f}",
                          str(s["windows"]))
        console.print(table)
        return
    tops = result["clips"][0]["top5"]
    table = Table(title=escape(title))
    table.add_column("#", justify="right")
    for name in tops:
        # A branch's column: its top classes with their probabilities.
        table.add_column(BRANCHES[name].label if name in BRANCHES else name)
    for rank in range(len(tops[FUSED])):
        table.add_row(str(rank + 1), *(escape(f"{tops[name][rank]['class']} {tops[name][rank]['probability']:.3f}")
                                       for name in tops))
    console.print(table)


def window_tables(prediction: Prediction, checkpoint_digests: dict[str, str], pipeline_digest: str) -> dict[str, ScoreTable]:
    """The per-window rows of each branch and of the fusion in the stage-3 score format."""
    return score_tables(prediction.name, {"": (prediction.windows, {**prediction.logits, FUSED: prediction.fused})},
                        prediction.class_names, prediction.fusion, checkpoint_digests, pipeline_digest)


def score_tables(name: str, clips: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]], class_names: list[str],
                 fusion: str, checkpoint_digests: dict[str, str], pipeline_digest: str) -> dict[str, ScoreTable]:
    """Rows of each branch and of the fusion (FUSED) in the stage-3 score format, for the windows
    of each group of clips: group -> (windows [W, 2], {branch or FUSED: [W, K]}). A row is named
    `<name>#<group>@<start>-<end>` ("" groups: `<name>@...`, with no group column)."""
    tables = {}
    for branch in next(iter(clips.values()))[1]:
        ids, groups, windows, logits = [], [], [], []
        for group, (spans, by_branch) in clips.items():
            ids += [f"{name}{'#' + group if group else ''}@{start:.3f}-{end:.3f}" for start, end in spans]
            groups += [group] * len(spans)
            windows.append(spans)
            logits.append(by_branch[branch])
        tables[branch] = ScoreTable(
            ids=ids, splits=["test"] * len(ids), labels=np.full(len(ids), UNLABELLED, dtype=np.int64),
            logits=np.concatenate(logits).astype(np.float32), modality=branch if branch != FUSED else f"fusion:{fusion}",
            checkpoint_digest=checkpoint_digests.get(branch, "+".join(checkpoint_digests.values())),
            pipeline_digest=pipeline_digest, class_names=class_names, windows=np.concatenate(windows),
            groups=groups if any(groups) else None, group_kind="person" if any(groups) else "",
        )
    return tables


def write_outputs(out: Path, prediction: Prediction, decoded: Decoded | None, found: SkeletonInput,
                  segments: list[Segment] | None, checkpoint_digests: dict[str, str], pipeline_digest: str,
                  draw: bool = True) -> list[Path]:
    """Everything --out writes for one clip, in out/<its name>/ (the pictures only when `draw`:
    for a video (`decoded`) the annotated video and its strip; for a skeleton without one, the
    skeleton's drawing). -> the files written"""
    folder = out / prediction.name
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "prediction.json"]
    atomic.write_text(written[0], json.dumps(summary(prediction, segments), indent=2) + "\n")
    if draw and decoded is not None:
        frames = annotated_frames(prediction, decoded, found)
        written.append(folder / "annotated.mp4")
        write_video(written[-1], frames, prediction.fps / max(_preview_step(decoded), 1))
        written.append(folder / "strip.png")
        write_strip(written[-1], frames)
    elif draw:
        written.append(folder / "skeleton.png")
        write_strip(written[-1], skeleton_frames(prediction, found))
    if segments is not None:
        for name, table in window_tables(prediction, checkpoint_digests, pipeline_digest).items():
            written.append(folder / f"windows_{name}.parquet")
            write_scores(written[-1], table)
        written.append(folder / "segments.json")
        atomic.write_text(written[-1], json.dumps([s.to_dict() for s in segments], indent=2) + "\n")
        if draw:
            written.append(folder / "timeline.png")
            plot_timeline(written[-1], prediction, segments)
    return written


def _preview_step(decoded: Decoded) -> int:
    kept = sorted(decoded.preview)
    return kept[1] - kept[0] if len(kept) > 1 else 1


def annotated_frames(prediction: Prediction, decoded: Decoded, found: SkeletonInput) -> list[np.ndarray]:
    """Each kept preview frame with its clip's crop box and the skeleton, above the top-3 fused
    classes of its clip (the window centred nearest the frame)."""
    probabilities = prediction.probabilities[FUSED]
    skel = found.skeleton
    bones = found.layout.bones
    frames = []
    for t, image in sorted(decoded.preview.items()):
        scale = image.shape[1] / decoded.info.width
        canvas = np.ascontiguousarray(image.copy())
        w = _window_at(prediction, t / prediction.fps)
        x0, y0, x1, y1 = (prediction.boxes[w] * scale).round().astype(int)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), BOX, 2)
        _draw_skeleton(canvas, skel, t, decoded.frames, bones, image.shape[1] / skel.frame_size[0],
                       image.shape[0] / skel.frame_size[1])
        framed = _with_bars(canvas, prediction.top(probabilities[w], DRAWN))
        frames.append(_with_warning_band(framed) if prediction.warning else framed)
    return frames


def skeleton_frames(prediction: Prediction, found: SkeletonInput) -> list[np.ndarray]:
    """STRIP_FRAMES frames spread over a skeleton without its video: every person drawn on a
    dark square around all of them (the box of every joint of the clip, the same in each frame),
    above the top-3 fused classes of the frame's clip (the window centred nearest it)."""
    skel = found.skeleton
    probabilities = prediction.probabilities[FUSED]
    seen = skel.score > 0
    points = skel.pixels[seen]
    low, high = points.min(axis=0), points.max(axis=0)
    side = float((high - low).max()) * 1.15 or 1.0  # a margin around the people
    origin = (low + high) / 2 - side / 2
    scale = SKELETON_PANEL / side
    frames = []
    for t in np.linspace(0, skel.total_frames - 1, min(STRIP_FRAMES, skel.total_frames)).round().astype(int):
        canvas = np.full((SKELETON_PANEL, SKELETON_PANEL, 3), BACKGROUND, dtype=np.uint8)
        _draw_skeleton(canvas, skel, int(t), skel.total_frames, found.layout.bones, scale, scale, origin)
        cv2.putText(canvas, f"{t / prediction.fps:.1f} s", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (200, 200, 200),
                    1, cv2.LINE_AA)
        framed = _with_bars(canvas, prediction.top(probabilities[_window_at(prediction, t / prediction.fps)], DRAWN))
        frames.append(_with_warning_band(framed) if prediction.warning else framed)
    return frames


def _window_at(prediction: Prediction, seconds: float) -> int:
    """The scored clip whose centre is nearest `seconds`."""
    return int(np.abs(prediction.windows.mean(axis=1) - seconds).argmin())


def _skeleton_row(skel, t: int, video_frames: int) -> int | None:
    """The skeleton's row of video frame t (on the skeleton's clock); None when nobody is on it."""
    if skel.num_frames == 0:
        return None
    at = round(t * skel.total_frames / max(video_frames, 1))
    row = int(np.abs(skel.frame_indices - at).argmin())
    return row if abs(int(skel.frame_indices[row]) - at) <= 1 else None


def _draw_skeleton(canvas: np.ndarray, skel, t: int, video_frames: int, bones, sx: float, sy: float,
                   origin: np.ndarray | None = None) -> None:
    """The skeleton row nearest video frame t (on the skeleton's clock), every person; a point
    (x, y) of its pixels drawn at ((x, y) - origin) * (sx, sy)."""
    row = _skeleton_row(skel, t, video_frames)
    if row is None:
        return
    for m in range(skel.num_persons):
        points = (skel.pixels[m, row] - (0 if origin is None else origin)) * np.array([sx, sy], dtype=np.float32)
        draw_person(canvas, points, skel.score[m, row] > 0, bones, PERSONS[m % len(PERSONS)])


def person_colour(track: int) -> tuple[int, int, int]:
    """The colour (RGB) a person is drawn in, by their number (1 for the first)."""
    return PERSONS[(track - 1) % len(PERSONS)]


def draw_person(canvas: np.ndarray, points: np.ndarray, seen: np.ndarray, bones, colour: tuple[int, int, int],
                label: str = "") -> None:
    """One person's joints `points` [V, 2] (canvas pixels; those `seen` alone) and bones, with
    `label` beside their head: above the highest joint, on a dark band for legibility."""
    for a, b in bones:
        if seen[a] and seen[b]:
            cv2.line(canvas, tuple(points[a].round().astype(int)), tuple(points[b].round().astype(int)), colour, 2,
                     cv2.LINE_AA)
    for v in np.flatnonzero(seen):
        cv2.circle(canvas, tuple(points[v].round().astype(int)), 3, colour, -1, cv2.LINE_AA)
    if not label or not seen.any():
        return
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.45, canvas.shape[1] / 1400)
    (width, height), _ = cv2.getTextSize(label, font, scale, 1)
    x0, y0 = points[seen].min(axis=0)
    x = int(np.clip(x0, 0, max(canvas.shape[1] - width - 4, 0)))
    y = int(np.clip(y0 - 10, height + 4, canvas.shape[0] - 4))
    cv2.rectangle(canvas, (x - 2, y - height - 4), (x + width + 2, y + 4), (20, 20, 20), -1)
    cv2.putText(canvas, label, (x, y), font, scale, colour, 1, cv2.LINE_AA)


def person_label(track: int, label: str, probability: float, partner: int) -> str:
    """What is written beside a person: their number, label and probability, and the person they
    share a two-person class with."""
    return f"{track}: {label} {probability:.2f}" + (f" (with {partner})" if partner else "")


def _with_bars(canvas: np.ndarray, top: list[tuple[str, float]]) -> np.ndarray:
    """The frame above a dark panel of the top classes with probability bars."""
    width = canvas.shape[1]
    line = max(18, width // 28)
    panel = np.full((line * len(top) + 8, width, 3), 24, dtype=np.uint8)
    font = line / 34
    bar_left, bar_width = width * 2 // 5, width * 3 // 5 - 60
    for rank, (label, p) in enumerate(top):
        y = 4 + rank * line
        cv2.rectangle(panel, (bar_left, y + 3), (bar_left + max(1, int(bar_width * p)), y + line - 3), BAR, -1)
        cv2.putText(panel, label[:28], (6, y + line - 6), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.putText(panel, f"{p:.2f}", (bar_left + bar_width + 6, y + line - 6), cv2.FONT_HERSHEY_SIMPLEX, font,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([canvas, panel], axis=0)


def _with_warning_band(canvas: np.ndarray) -> np.ndarray:
    """The frame below a red band saying that its scores are not to be trusted."""
    width = canvas.shape[1]
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_width, text_height), _ = cv2.getTextSize(WARNING_TEXT, font, 1.0, 1)
    scale = min(1.0, (width - 12) / text_width)
    band = np.empty((int(text_height * scale) + 14, width, 3), dtype=np.uint8)
    band[:] = WARNING_BAND
    cv2.putText(band, WARNING_TEXT, (6, band.shape[0] - 7), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([band, canvas], axis=0)


# Free space below which a video OpenCV could not finish is taken for a full disk: its writer
# reports nothing, and it needs a few frames' worth of room at any moment.
FULL_DISK_BYTES = 1 << 20


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """RGB frames -> an MPEG-4 (mp4v) video, atomically (VideoRecorder)."""
    recorder = VideoRecorder(path, fps)
    try:
        for frame in frames:
            recorder.write(frame)
    except BaseException:
        recorder.discard()
        raise
    recorder.close()


class VideoRecorder:
    """RGB frames, all of one size, written one by one to an MPEG-4 (mp4v) video under a
    temporary name, which takes its name only once closed and read back whole.

    OpenCV's writer neither raises nor returns an error when a frame cannot be written (a full
    disk leaves a file without its index, which no player opens), and it logs a warning per frame
    instead: the file is therefore read back, and one that does not hold every frame is a
    DiskFull (little space left) or a DataError, never a broken video in place."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = Path(path), fps
        self.tmp = atomic.temp_sibling(self.path)
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._level = cv2.utils.logging.getLogLevel()

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            height, width = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        """Finish the video and give it its name; DiskFull or DataError (and nothing in place)
        when it does not read back whole."""
        self._release()
        try:
            complete = self.frames > 0 and probe_video(self.tmp).frames == self.frames
        except DataError:
            complete = False
        if not complete:
            full, written = atomic.free_bytes(self.tmp) < FULL_DISK_BYTES, atomic.bytes_in(self.tmp)
            atomic.discard(self.tmp)
            if full:
                raise DiskFull(self.path, atomic.free_bytes(self.path),
                               f"it needs more than the {format_bytes(written)} that fit")
            raise DataError(self.path, f"OpenCV's video writer could not write the {self.frames} frames of this video")
        atomic.move_into_place(self.tmp, self.path)

    def discard(self) -> None:
        self._release()
        atomic.discard(self.tmp)

    def _release(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            cv2.utils.logging.setLogLevel(self._level)


def write_strip(path: Path, frames: list[np.ndarray]) -> None:
    """STRIP_FRAMES frames spread over the video, side by side, as PNG."""
    picked = [frames[i] for i in np.linspace(0, len(frames) - 1, min(STRIP_FRAMES, len(frames))).round().astype(int)]
    height = round(picked[0].shape[0] * STRIP_WIDTH / picked[0].shape[1])
    strip = np.concatenate([cv2.resize(f, (STRIP_WIDTH, height), interpolation=cv2.INTER_AREA) for f in picked], axis=1)
    ok, data = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    atomic.write_bytes(path, data.tobytes())


def plot_timeline(path: Path, prediction: Prediction, segments: list[Segment]) -> None:
    """The fused probability of each class that is ever on top, over time (window centres), with
    the segments shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = prediction.probabilities[FUSED]
    centres = prediction.windows.mean(axis=1)
    shown = sorted(set(p.argmax(axis=1).tolist()))
    fig, ax = plt.subplots(figsize=(10, 3.6))
    colours = plt.get_cmap("tab10")
    colour_of = {c: colours(i % 10) for i, c in enumerate(shown)}
    for c in shown:
        ax.plot(centres, p[:, c], marker="o", markersize=3, color=colour_of[c], label=prediction.class_names[c])
    for s in segments:
        c = prediction.class_names.index(s.label)
        ax.axvspan(s.start, s.end, color=colour_of.get(c, "grey"), alpha=0.12)
    ax.set_xlabel("seconds (window centre)")
    ax.set_ylabel("fused probability")
    ax.set_ylim(0, 1)
    ax.set_xlim(0, max(float(prediction.windows[:, 1].max()), 1e-3))
    ax.set_title(f"{prediction.name}: fused class probabilities, segments shaded", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Each person their own action (mmfc.predict.people)


def people_summary(prediction: PeoplePrediction) -> dict:
    """A per-person prediction as JSON-ready data: per person their number (`track`), the frames
    they are in, their segments (each with the person it is shared with, for a two-person class)
    and each window: what it shows of them, and the top-5 of each branch and fused of their clip
    alone."""
    persons = []
    names = prediction.class_names
    for track, timeline in prediction.persons.items():
        alone = {**{name: np.exp(log_softmax(logits)) for name, logits in timeline.alone.logits.items()},
                 FUSED: timeline.alone.probabilities}
        windows = []
        for w, (start, end) in enumerate(timeline.alone.windows):
            label, probability, partner = timeline.label(w, names)
            windows.append({"start": round(float(start), 3), "end": round(float(end), 3), "label": label,
                            "probability": round(probability, 6), "with": partner or None,
                            "top5": top_classes(names, alone, w)})
        persons.append({
            "track": track, "frames": [list(span) for span in prediction.spans.get(track, [])],
            "seen": prediction.seen.get(track, 0),
            "segments": [{**s.to_dict(), "with": _partners(timeline, s, names)} for s in timeline.segments],
            "windows": windows,
        })
    return {
        "input": prediction.input, "entry": prediction.entry, "frames": prediction.frames, "fps": prediction.fps,
        "skeleton": prediction.skeleton, "branches": prediction.branches, "fusion": prediction.fusion,
        "warning": prediction.warning, "notes": prediction.notes, "interactions": prediction.interactions,
        "persons": persons, "timings": {k: round(v, 4) for k, v in prediction.timings.items()},
    }


def _partners(timeline: PersonTimeline, segment: Segment, class_names: list[str]) -> list[int]:
    """The persons a segment's class is shared with (a two-person class), over its windows."""
    inside = (timeline.alone.windows[:, 0] >= segment.start) & (timeline.alone.windows[:, 1] <= segment.end)
    top = timeline.shown.argmax(axis=1)
    return sorted({int(p) for p in timeline.partner[inside & (top == class_names.index(segment.label))] if p})


def print_people_table(console: Console, result: dict) -> None:
    """A rich table of each person's segments, from a people_summary()."""
    table = Table(title=escape(f"{_notes_and_title(console, result)}: each person's segments"))
    for column in ("person", "in frames", "class", "start s", "end s", "mean p", "with"):
        table.add_column(column)
    for person in result["persons"]:
        frames = ", ".join(f"{a}-{b - 1}" for a, b in person["frames"])
        rows = person["segments"] or [None]
        for number, s in enumerate(rows):
            cells = ("(no class above the threshold)", "", "", "", "") if s is None else (
                s["label"], f"{s['start']:.2f}", f"{s['end']:.2f}", f"{s['mean_probability']:.3f}",
                ", ".join(map(str, s["with"])))
            table.add_row(str(person["track"]) if number == 0 else "", frames if number == 0 else "",
                          *(escape(c) for c in cells))
    console.print(table)


def people_frames(prediction: PeoplePrediction, decoded: Decoded, found: SkeletonInput,
                  persons: list[int]) -> list[np.ndarray]:
    """Each kept preview frame with every person's skeleton in their colour and their label
    beside them (people_drawn)."""
    skel = found.skeleton
    frames = []
    for t, image in sorted(decoded.preview.items()):
        canvas = np.ascontiguousarray(image.copy())
        scale = np.array([image.shape[1] / skel.frame_size[0], image.shape[0] / skel.frame_size[1]], dtype=np.float32)
        frames.append(people_drawn(canvas, prediction, found, persons, t, decoded.frames, scale))
    height = max(f.shape[0] for f in frames)  # a video's frames are all of one size
    return [np.pad(f, ((0, height - f.shape[0]), (0, 0), (0, 0))) for f in frames]


def people_skeleton_frames(prediction: PeoplePrediction, found: SkeletonInput, persons: list[int]) -> list[np.ndarray]:
    """STRIP_FRAMES frames spread over a skeleton without its video: every person drawn on a dark
    square around all of them (as skeleton_frames), labelled (people_drawn)."""
    skel = found.skeleton
    points = skel.pixels[skel.score > 0]
    low, high = points.min(axis=0), points.max(axis=0)
    side = float((high - low).max()) * 1.15 or 1.0  # a margin around the people
    origin = (low + high) / 2 - side / 2
    frames = []
    for t in np.linspace(0, skel.total_frames - 1, min(STRIP_FRAMES, skel.total_frames)).round().astype(int):
        canvas = np.full((SKELETON_PANEL, SKELETON_PANEL, 3), BACKGROUND, dtype=np.uint8)
        cv2.putText(canvas, f"{t / prediction.fps:.1f} s", (8, SKELETON_PANEL - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (200, 200, 200), 1, cv2.LINE_AA)
        frames.append(people_drawn(canvas, prediction, found, persons, int(t), skel.total_frames,
                                   np.float32(SKELETON_PANEL / side), origin))
    height = max(f.shape[0] for f in frames)
    return [np.pad(f, ((0, height - f.shape[0]), (0, 0), (0, 0))) for f in frames]


def people_drawn(canvas: np.ndarray, prediction: PeoplePrediction, found: SkeletonInput, persons: list[int], t: int,
                 video_frames: int, scale: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray:
    """Every person on video frame t (the skeleton's rows `persons`), a point p of its pixels
    drawn at (p - origin) * scale in their colour, their label beside them (the window of theirs
    centred nearest the frame), above a panel of each person's label with its probability."""
    skel = found.skeleton
    row = _skeleton_row(skel, t, video_frames)
    shown = []
    for m, track in enumerate(persons):
        if row is None or not (skel.score[m, row] > 0).any():
            continue
        text = ""
        timeline = prediction.persons.get(track)
        if timeline is not None:
            label, probability, partner = timeline.label(_nearest(timeline.alone.windows, t / prediction.fps),
                                                         prediction.class_names)
            text = person_label(track, label, probability, partner)
            shown.append((f"{track}: {label}" + (f" (with {partner})" if partner else ""), probability))
        points = (skel.pixels[m, row] - (0 if origin is None else origin)) * scale
        draw_person(canvas, points, skel.score[m, row] > 0, found.layout.bones, person_colour(track), text)
    framed = _with_bars(canvas, shown) if shown else canvas
    return _with_warning_band(framed) if prediction.warning else framed


def _nearest(windows: np.ndarray, seconds: float) -> int:
    """The window whose centre is nearest `seconds`."""
    return int(np.abs(windows.mean(axis=1) - seconds).argmin())


def plot_people_timeline(path: Path, prediction: PeoplePrediction) -> None:
    """One row per person: where they are in the scene (grey), and their segments, coloured by
    class and named, a shared two-person class marked with the other person."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tracks = list(prediction.persons)
    labels = sorted({s.label for t in prediction.persons.values() for s in t.segments})
    colours = plt.get_cmap("tab10")
    colour_of = {label: colours(i % 10) for i, label in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.7 * len(tracks)))
    for y, track in enumerate(tracks):
        timeline = prediction.persons[track]
        for a, b in prediction.spans.get(track, []):
            ax.barh(y + 0.34, (b - a) / prediction.fps, left=a / prediction.fps, height=0.1, color="0.6")
        for s in timeline.segments:
            ax.barh(y, s.end - s.start, left=s.start, height=0.5, color=colour_of[s.label], alpha=0.3 + 0.7 * s.mean_probability)
            partners = _partners(timeline, s, prediction.class_names)
            text = s.label + (f" (with {', '.join(map(str, partners))})" if partners else "")
            ax.text(s.start + 0.02, y, text, va="center", fontsize=7)
    ax.set_yticks(range(len(tracks)), [f"person {t}" for t in tracks])
    ax.set_ylim(len(tracks) - 0.5, -0.5)
    ax.set_xlim(0, max(prediction.frames / prediction.fps, 1e-3))
    ax.set_xlabel("seconds")
    ax.set_title(f"{prediction.name}: each person's segments (grey: in the scene; darker: more probable)", fontsize=10)
    if labels:
        handles = [plt.Rectangle((0, 0), 1, 1, color=colour_of[label]) for label in labels]
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def people_tables(prediction: PeoplePrediction, checkpoint_digests: dict[str, str],
                  pipeline_digest: str) -> dict[str, ScoreTable]:
    """The window rows of every clip scored, each person's alone (group "<person>") and each
    pair's (group "<person>+<person>"), per branch and fused, in the stage-3 score format."""
    clips = {str(track): (t.alone.windows, {**t.alone.logits, FUSED: t.alone.fused})
             for track, t in prediction.persons.items()}
    clips.update({f"{a}+{b}": (scores.windows, {**scores.logits, FUSED: scores.fused})
                  for (a, b), scores in sorted(prediction.pairs.items())})
    return score_tables(prediction.name, clips, prediction.class_names, prediction.fusion, checkpoint_digests,
                        pipeline_digest)


def write_people_outputs(out: Path, prediction: PeoplePrediction, frames: list[np.ndarray] | None,
                         checkpoint_digests: dict[str, str], pipeline_digest: str, draw: bool = True,
                         frames_fps: float | None = None, recorded: Path | None = None) -> list[Path]:
    """Everything --out writes for one input predicted per person, in out/<its name>/: its JSON,
    segments and window scores, and with `draw` the timeline, the annotated video of `frames`
    (people_frames, at `frames_fps`; a live stream's `recorded` one instead, already in place)
    and its strip (for a skeleton without video, its drawing: people_skeleton_frames).
    -> the files written"""
    folder = out / prediction.name
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "prediction.json", folder / "segments.json"]
    atomic.write_text(written[0], json.dumps(people_summary(prediction), indent=2) + "\n")
    segments = [{"track": track, **s.to_dict(), "with": _partners(t, s, prediction.class_names)}
                for track, t in prediction.persons.items() for s in t.segments]
    atomic.write_text(written[1], json.dumps(segments, indent=2) + "\n")
    for name, table in people_tables(prediction, checkpoint_digests, pipeline_digest).items():
        written.append(folder / f"windows_{name}.parquet")
        write_scores(written[-1], table)
    if draw:
        written.append(folder / "timeline.png")
        plot_people_timeline(written[-1], prediction)
        if recorded is not None:
            written.append(recorded)
        elif frames and frames_fps:
            written.append(folder / "annotated.mp4")
            write_video(written[-1], frames, frames_fps)
        if frames:
            written.append(folder / ("strip.png" if frames_fps or recorded else "skeleton.png"))
            write_strip(written[-1], frames)
    return written
