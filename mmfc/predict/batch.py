"""Many videos: a folder or a list file of them, predicted in parallel and resumable.

Each video is one job (mmfc.jobs.run_jobs on the pipeline's [jobs] backend): decoding, pose
estimation, crops and both branches run in the worker, which opens the trained run and loads
the pose models once (jobs.PerWorker). Each finished video leaves its result file
<out>/results/<name>.json (written atomically, failures too, with the reason); a rerun skips
every video whose result file matches the video (size and modification time) and the options,
so a killed batch goes on where it stopped. At the end one Parquet file, <out>/predictions.parquet,
holds every video's rows: one per clip or window.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

from mmfc import atomic
from mmfc.data.decoding import probe_video
from mmfc.errors import DataError, DiskFull
from mmfc.jobs import PerWorker, run_jobs
from mmfc.metrics import log_softmax
from mmfc.predict.outputs import summary, write_outputs
from mmfc.predict.predictor import PoseModels, Prediction, predict_video
from mmfc.predict.windows import find_segments
from mmfc.run_folder import TrainedRun, open_run

RESULTS = "results"
COMBINED = "predictions.parquet"
SKELETON_EXTS = (".skeleton", ".pkl")
# A list file names one video per line (blank lines and lines starting with # are skipped).
LIST_EXTS = (".txt", ".lst", ".list")


@dataclass(frozen=True)
class Options:
    """How every video of a batch is predicted: picklable, part of each result's signature."""

    window: float | None = None
    stride: float | None = None
    threshold: float = 0.5
    draw: bool = False  # write the annotated video and pictures
    preview_width: int = 640


def list_videos(inputs: list[Path], video_exts: list[str]) -> list[Path]:
    """Video files, the videos in folders (recursively, sorted), and those a list file names
    (relative to its folder). DataError naming an input that is none of these."""
    found: list[Path] = []
    exts = {e.lower() for e in video_exts}
    for item in inputs:
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        elif item.suffix.lower() in LIST_EXTS and item.is_file():
            for line in item.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    path = Path(line)
                    found.append(path if path.is_absolute() else item.parent / path)
        elif item.suffix.lower() in exts or item.exists():
            found.append(item)
        else:
            raise DataError(item, "no such video, folder or list file")
    if not found:
        raise DataError(", ".join(map(str, inputs)), "no videos found")
    return found


def skeleton_for(video: Path, skeletons: Path | None) -> Path | None:
    """A skeleton file given for one video, or the one named after the video in a folder
    (<stem>.skeleton or <stem>.pkl, an NTU "_rgb" suffix dropped); None: estimate the poses."""
    if skeletons is None or skeletons.is_file():
        return skeletons
    for stem in dict.fromkeys((video.stem, video.stem.removesuffix("_rgb"))):
        for ext in SKELETON_EXTS:
            if (skeletons / f"{stem}{ext}").is_file():
                return skeletons / f"{stem}{ext}"
    raise DataError(video, f"no skeleton file for it in {skeletons} (looked for <name>.skeleton or .pkl)")


def result_name(video: Path) -> str:
    """One result file per video: its name and a hash of its full path (two folders may hold
    videos of the same name)."""
    digest = hashlib.sha256(str(video.resolve()).encode()).hexdigest()[:8]
    return f"{video.stem}-{digest}.json"


def signature(video: Path, skeleton: Path | None, options: Options, run_digest: str) -> dict:
    def stat(path: Path | None) -> list[int]:
        try:
            st = os.stat(path) if path is not None else None
        except OSError:
            st = None
        return [st.st_size, st.st_mtime_ns] if st else [-1, -1]

    return {"video": str(video), "video_stat": stat(video), "skeleton": str(skeleton or ""),
            "skeleton_stat": stat(skeleton), "options": asdict(options), "run": run_digest}


def run_digest(run: TrainedRun) -> str:
    """What the results depend on in the run: its checkpoints, fusion and pipeline."""
    parts = {**run.checkpoint_digests, "fusion": run.fusion_method, "pipeline": run.cfg.digest()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def predict_one(video: Path, skeleton: Path | None, options: Options, out: Path | None, run: PerWorker[TrainedRun],
                poses: PerWorker[PoseModels], sign: dict) -> dict:
    """One job: predict a video, write its outputs and its result file (with `out`). -> the result"""
    trained = run.get()
    result = {"signature": sign, "video": str(video)}
    try:
        prediction, decoded, _, found = predict_video(
            trained, video, skeleton, options.window, options.stride, poses.get() if skeleton is None else None,
            options.preview_width if options.draw else 0, preview_every(video, options),
        )
        segments = None
        if options.window is not None:
            segments = find_segments(prediction.windows, prediction.probabilities["fused"], prediction.class_names,
                                     options.threshold)
        if out is not None:
            write_outputs(out, prediction, decoded, found, segments, trained.checkpoint_digests, trained.cfg.digest(),
                          options.draw)
        result.update(status="ok", reason="", summary=summary(prediction, segments), arrays=_arrays(prediction))
    except DiskFull:
        raise  # not this video's failure, and no result file: a rerun once space is freed redoes it
    except DataError as exc:
        result.update(status="failed", reason=f"{exc.path}: {exc.reason}")
    if out is not None:
        atomic.write_text(out / RESULTS / result_name(video), json.dumps(result) + "\n")
    return result


def preview_every(video: Path, options: Options, most: int = 900) -> int:
    """Keep at most `most` frames for the annotated video (a long video is drawn at a lower rate)."""
    if not options.draw:
        return 1
    try:
        frames = probe_video(video).frames
    except DataError:
        return 1  # predict_video reports it
    return max(1, -(-frames // most))


def _arrays(prediction: Prediction) -> dict:
    return {
        "windows": prediction.windows.tolist(),
        "rgb": prediction.rgb.tolist(),
        "skel": None if prediction.skel is None else prediction.skel.tolist(),
        "fused": prediction.fused.tolist(),
    }


def read_result(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def predict_batch(run: TrainedRun, videos: list[Path], skeletons: Path | None, options: Options, out: Path | None,
                  console: Console, recipe: tuple) -> list[dict]:
    """Predict every video not already done (with `out`: its result file says so), then write
    the combined table there. `recipe`: the arguments of mmfc.run_folder.open_run, so each worker
    opens the run once (this process reuses `run`). -> every result, in the order of `videos`"""
    digest = run_digest(run)
    jobs, results = [], {}
    for video in videos:
        try:
            skeleton = skeleton_for(video, skeletons)
        except DataError as exc:  # recorded like any video that cannot be predicted
            results[str(video)] = {"video": str(video), "status": "failed", "reason": f"{exc.path}: {exc.reason}"}
            continue
        sign = signature(video, skeleton, options, digest)
        done = read_result(out / RESULTS / result_name(video)) if out is not None else None
        if done is not None and done.get("signature") == sign:
            results[str(video)] = done
            continue
        jobs.append((video, skeleton, sign))
    skipped = sum("signature" in r for r in results.values())
    if skipped:
        console.print(f"{skipped} videos already predicted with these options; skipped")
    # One video, or one worker: this process, with the run it has open.
    here = len(jobs) <= 1 or run.cfg.jobs.n_jobs == 1
    opener = PerWorker(_given, (run,)) if here else PerWorker(open_run, recipe)
    poses = PerWorker(PoseModels, (run.cfg.poses.models_dir, 1))
    for position, result in run_jobs(
        predict_one, [(video, skeleton, options, out, opener, poses, sign) for video, skeleton, sign in jobs],
        backend="loky" if here else run.cfg.jobs.backend, n_jobs=1 if here else run.cfg.jobs.n_jobs,
        title="predict", unit="videos", console=console,
    ):
        results[str(jobs[position][0])] = result
    ordered = [results[str(v)] for v in videos]
    if out is not None:
        write_combined(out / COMBINED, ordered, run.class_names)
    return ordered


def _given(value):
    """PerWorker's build for a value already at hand (jobs in this process)."""
    return value


def write_combined(path: Path, results: list[dict], class_names: list[str]) -> None:
    """One row per clip or window of every video (a failed video: one row with its reason)."""
    rows = []
    for r in results:
        base = {"video": r["video"], "status": r["status"], "reason": r["reason"]}
        if r["status"] != "ok":
            rows.append({**base, "window_start": None, "window_end": None, "skeleton": None, "fusion": None,
                         "warning": None, "notes": None, "top1": None, "top1_probability": None, "rgb": None,
                         "skel": None, "fused": None})
            continue
        s, a = r["summary"], r["arrays"]
        probabilities = np.exp(log_softmax(np.asarray(a["fused"], dtype=np.float64)))
        for w, (start, end) in enumerate(a["windows"]):
            top = int(probabilities[w].argmax())
            rows.append({**base, "window_start": start, "window_end": end, "skeleton": s["skeleton"],
                         "fusion": s["fusion"], "warning": s.get("warning", ""), "notes": "; ".join(s["notes"]),
                         "top1": class_names[top], "top1_probability": float(probabilities[w, top]), "rgb": a["rgb"][w],
                         "skel": None if a["skel"] is None else a["skel"][w], "fused": a["fused"][w]})
    logits = pa.list_(pa.float32())
    schema = pa.schema([
        ("video", pa.string()), ("status", pa.string()), ("reason", pa.string()), ("window_start", pa.float64()),
        ("window_end", pa.float64()), ("skeleton", pa.string()), ("fusion", pa.string()), ("warning", pa.string()),
        ("notes", pa.string()), ("top1", pa.string()), ("top1_probability", pa.float64()), ("rgb", logits),
        ("skel", logits), ("fused", logits),
    ], metadata={b"mmfc.class_names": json.dumps(class_names).encode()})
    with atomic.atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
