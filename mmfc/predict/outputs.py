"""What `mmfc predict` gives back: the top classes as a table or JSON, and with --out an annotated
video, a strip of sampled frames, and for windows a timeline, the window scores in the stage-3
score format and the segments.

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
from mmfc.data.decoding import probe_video
from mmfc.errors import DataError
from mmfc.predict.clips import Decoded
from mmfc.predict.predictor import Prediction
from mmfc.predict.skeletons import SkeletonInput
from mmfc.predict.windows import Segment
from mmfc.scores.format import UNLABELLED, ScoreTable, write_scores

BRANCH_LABELS = {"rgb": "RGB", "skel": "skeleton", "fused": "fused"}
TOP = 5
DRAWN = 3  # fused classes drawn on the video
STRIP_FRAMES = 6
STRIP_WIDTH = 360  # of each frame in the strip
# Colours (RGB) of the drawing.
BOX = (255, 200, 0)
PERSONS = ((0, 230, 120), (255, 80, 200), (80, 180, 255))  # one colour per tracked person
BAR = (255, 140, 0)
WARNING_BAND = (200, 0, 0)
# Drawn above every frame of a prediction that carries a warning (Prediction.warning).
WARNING_TEXT = "UNRELIABLE: poses from another source than the run was trained on"


def summary(prediction: Prediction, segments: list[Segment] | None = None) -> dict:
    """The prediction as JSON-ready data: per clip (or window) the top-5 of each branch."""
    probabilities = prediction.probabilities
    clips = []
    for w, (start, end) in enumerate(prediction.windows):
        top = {BRANCH_LABELS[name]: [{"class": c, "probability": round(p, 6)} for c, p in
                                     prediction.top(probabilities[name][w], TOP)] for name in probabilities}
        clips.append({"start": round(float(start), 3), "end": round(float(end), 3), "top5": top})
    out = {
        "video": prediction.video, "frames": prediction.frames, "fps": prediction.fps,
        "skeleton": prediction.skeleton, "fusion": prediction.fusion, "warning": prediction.warning,
        "notes": prediction.notes,
        "clips": clips, "timings": {k: round(v, 4) for k, v in prediction.timings.items()},
    }
    if segments is not None:
        out["segments"] = [s.to_dict() for s in segments]
    return out


def print_table(console: Console, result: dict) -> None:
    """A rich table of the top-5 classes of each branch and fused, from a summary(); for windows,
    the segments instead."""
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    title = f"{result['video']} (skeleton: {result['skeleton']}; fusion: {result['fusion']})"
    if result.get("warning"):  # a result file written before predictions carried one has none
        console.print(f"[bold red]WARNING:[/] {escape(result['warning'])}", highlight=False)
        title = f"UNRELIABLE, see the warning: {title}"
    if "segments" in result:
        table = Table(title=f"{title}: {len(result['clips'])} windows; segments of the fused top class")
        for column in ("class", "start s", "end s", "mean p", "windows"):
            table.add_column(column)
        for s in result["segments"]:
            table.add_row(s["label"], f"{s['start']:.2f}", f"{s['end']:.2f}", f"{s['mean_probability']:.3f}",
                          str(s["windows"]))
        console.print(table)
        return
    tops = result["clips"][0]["top5"]
    table = Table(title=title)
    table.add_column("#", justify="right")
    for name in tops:
        table.add_column(name)
        table.add_column("p", justify="right")
    for rank in range(len(next(iter(tops.values())))):
        cells = [str(rank + 1)]
        for name in tops:
            cells += [tops[name][rank]["class"], f"{tops[name][rank]['probability']:.3f}"]
        table.add_row(*cells)
    console.print(table)


def window_tables(prediction: Prediction, checkpoint_digests: dict[str, str], pipeline_digest: str) -> dict[str, ScoreTable]:
    """The per-window rows of each branch and of the fusion in the stage-3 score format."""
    stem = Path(prediction.video).stem
    ids = [f"{stem}@{start:.3f}-{end:.3f}" for start, end in prediction.windows]
    scores = {"rgb": prediction.rgb, "skel": prediction.skel, "fused": prediction.fused}
    tables = {}
    for name, logits in scores.items():
        if logits is None:
            continue
        tables[name] = ScoreTable(
            ids=ids, splits=["test"] * len(ids), labels=np.full(len(ids), UNLABELLED, dtype=np.int64),
            logits=logits, modality=name if name != "fused" else f"fusion:{prediction.fusion}",
            checkpoint_digest=checkpoint_digests.get(name, "+".join(checkpoint_digests.values())),
            pipeline_digest=pipeline_digest, class_names=prediction.class_names, windows=prediction.windows,
        )
    return tables


def write_outputs(out: Path, prediction: Prediction, decoded: Decoded, found: SkeletonInput,
                  segments: list[Segment] | None, checkpoint_digests: dict[str, str], pipeline_digest: str,
                  draw: bool = True) -> list[Path]:
    """Everything --out writes for one video, in out/<video stem>/ (the pictures only when
    `draw`). -> the files written"""
    folder = out / Path(prediction.video).stem
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "prediction.json"]
    atomic.write_text(written[0], json.dumps(summary(prediction, segments), indent=2) + "\n")
    if draw:
        frames = annotated_frames(prediction, decoded, found)
        written.append(folder / "annotated.mp4")
        write_video(written[-1], frames, prediction.fps / max(_preview_step(decoded), 1))
        written.append(folder / "strip.png")
        write_strip(written[-1], frames)
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
    probabilities = prediction.probabilities["fused"]
    skel = found.skeleton
    bones = found.layout.bones
    frames = []
    for t, image in sorted(decoded.preview.items()):
        scale = image.shape[1] / decoded.info.width
        canvas = np.ascontiguousarray(image.copy())
        seconds = t / prediction.fps
        centres = prediction.windows.mean(axis=1)
        w = int(np.abs(centres - seconds).argmin())
        x0, y0, x1, y1 = (prediction.boxes[w] * scale).round().astype(int)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), BOX, 2)
        _draw_skeleton(canvas, skel, t, decoded.frames, bones, image.shape[1] / skel.frame_size[0],
                       image.shape[0] / skel.frame_size[1])
        framed = _with_bars(canvas, prediction.top(probabilities[w], DRAWN))
        frames.append(_with_warning_band(framed) if prediction.warning else framed)
    return frames


def _draw_skeleton(canvas: np.ndarray, skel, t: int, video_frames: int, bones, sx: float, sy: float) -> None:
    """The skeleton row nearest video frame t (on the skeleton's clock), every person."""
    if skel.num_frames == 0:
        return
    at = round(t * skel.total_frames / max(video_frames, 1))
    row = int(np.abs(skel.frame_indices - at).argmin())
    if abs(int(skel.frame_indices[row]) - at) > 1:
        return  # nobody on this frame
    for m in range(skel.num_persons):
        colour = PERSONS[m % len(PERSONS)]
        points = skel.pixels[m, row] * np.array([sx, sy], dtype=np.float32)
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

    p = prediction.probabilities["fused"]
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
    ax.set_title(f"{Path(prediction.video).name}: fused class probabilities, segments shaded", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
