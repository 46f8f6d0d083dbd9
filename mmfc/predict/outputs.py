"""What `mmfc predict` gives back: the top classes of each branch and fused as a table or JSON, and
with --out the pictures (for a video an annotated video and a strip of sampled frames; for a
skeleton without video a drawing of it), and for windows a timeline, the window scores in the
stage-3 score format and the segments.

The annotated video is drawn from the downscaled frames the one decoding pass kept
(mmfc.predict.clips.decode_once), so drawing decodes nothing again.
"""

from __future__ import annotations

import errno
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
from mmfc.errors import DataError
from mmfc.predict.clips import Decoded
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
    clips = []
    for w, (start, end) in enumerate(prediction.windows):
        top = {name: [{"class": c, "probability": round(p, 6)} for c, p in prediction.top(probabilities[name][w], TOP)]
               for name in probabilities}
        clips.append({"start": round(float(start), 3), "end": round(float(end), 3), "top5": top})
    out = {
        "input": prediction.input, "entry": prediction.entry, "frames": prediction.frames, "fps": prediction.fps,
        "skeleton": prediction.skeleton, "branches": list(prediction.logits), "fusion": prediction.fusion,
        "warning": prediction.warning, "notes": prediction.notes,
        "clips": clips, "timings": {k: round(v, 4) for k, v in prediction.timings.items()},
    }
    if segments is not None:
        out["segments"] = [s.to_dict() for s in segments]
    return out


def print_table(console: Console, result: dict) -> None:
    """A rich table of the top-5 classes of each branch and fused, from a summary(); for windows,
    the segments instead."""
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    given = result["input"] + (f" ({result['entry']})" if result["entry"] is not None else "")
    title = f"{given} (skeleton: {result['skeleton']}; fusion: {result['fusion']})"
    if result["warning"]:
        console.print(f"[bold red]WARNING:[/] {escape(result['warning'])}", highlight=False)
        title = f"UNRELIABLE, see the warning: {title}"
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
    ids = [f"{prediction.name}@{start:.3f}-{end:.3f}" for start, end in prediction.windows]
    tables = {}
    for name, logits in {**prediction.logits, FUSED: prediction.fused}.items():
        tables[name] = ScoreTable(
            ids=ids, splits=["test"] * len(ids), labels=np.full(len(ids), UNLABELLED, dtype=np.int64),
            logits=logits, modality=name if name != FUSED else f"fusion:{prediction.fusion}",
            checkpoint_digest=checkpoint_digests.get(name, "+".join(checkpoint_digests.values())),
            pipeline_digest=pipeline_digest, class_names=prediction.class_names, windows=prediction.windows,
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


def _draw_skeleton(canvas: np.ndarray, skel, t: int, video_frames: int, bones, sx: float, sy: float,
                   origin: np.ndarray | None = None) -> None:
    """The skeleton row nearest video frame t (on the skeleton's clock), every person; a point
    (x, y) of its pixels drawn at ((x, y) - origin) * (sx, sy)."""
    if skel.num_frames == 0:
        return
    at = round(t * skel.total_frames / max(video_frames, 1))
    row = int(np.abs(skel.frame_indices - at).argmin())
    if abs(int(skel.frame_indices[row]) - at) > 1:
        return  # nobody on this frame
    for m in range(skel.num_persons):
        colour = PERSONS[m % len(PERSONS)]
        points = (skel.pixels[m, row] - (0 if origin is None else origin)) * np.array([sx, sy], dtype=np.float32)
        seen = skel.score[m, row] > 0
        for a, b in bones:
            if seen[a] and seen[b]:
                cv2.line(canvas, tuple(points[a].round().astype(int)), tuple(points[b].round().astype(int)), colour, 2,
                         cv2.LINE_AA)
        for v in np.flatnonzero(seen):
            cv2.circle(canvas, tuple(points[v].round().astype(int)), 3, colour, -1, cv2.LINE_AA)


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
    """RGB frames -> an MPEG-4 (mp4v) video, atomically, read back before it takes its name.

    OpenCV's writer neither raises nor returns an error when a frame cannot be written (a full
    disk leaves a file without its index, which no player opens), and it logs a warning per frame
    instead: the file is therefore read back, and one that does not hold every frame is a
    DiskFull (little space left) or a DataError, never a broken video in place."""
    height, width = frames[0].shape[:2]
    level = cv2.utils.logging.getLogLevel()
    with atomic.atomic_path(path) as tmp:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            for frame in frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            writer.release()
        finally:
            cv2.utils.logging.setLogLevel(level)
        try:
            complete = probe_video(tmp).frames == len(frames)
        except DataError:
            complete = False
        if not complete and atomic.free_bytes(tmp) < FULL_DISK_BYTES:
            raise OSError(errno.ENOSPC, "OpenCV could not write every frame", str(tmp))
        if not complete:
            raise DataError(path, f"OpenCV's video writer could not write the {len(frames)} frames of this video")


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
