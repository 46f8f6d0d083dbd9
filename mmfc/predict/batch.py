"""Many clips: videos, skeleton files, folders or list files of them, predicted in parallel and
resumable.

Each input is one job (mmfc.jobs.run_jobs on the pipeline's [jobs] backend): a video (decoding,
pose estimation or its skeleton file, crops, every branch), or a skeleton file without video
for a run without a video branch (each annotation of a pose pickle its own). The worker opens the
trained run and loads the pose models once (jobs.PerWorker). Each finished input leaves its
result file <out>/results/<name>.json (written atomically, failures too, with the reason); a
rerun skips every input whose result file matches it (size and modification time, the skeleton
file's too) and the options, so a killed batch goes on where it stopped. At the end one Parquet
file, <out>/predictions.parquet, holds every input's rows: one per clip or window, with the
logits of each of the run's branches.
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
from mmfc.predict.outputs import (people_frames, people_skeleton_frames, people_summary, summary,
                                  write_outputs, write_people_outputs)
from mmfc.predict.people import PeoplePrediction, predict_people_skeleton, predict_people_video
from mmfc.predict.predictor import (PoseModels, Prediction, predict_skeleton, predict_video, skeleton_refusal,
                                    video_refusal)
from mmfc.predict.skeletons import POSE_PICKLES, is_skeleton_file, pickle_annotation, pickle_entries
from mmfc.predict.windows import find_segments
from mmfc.run_folder import TrainedRun, open_run

RESULTS = "results"
COMBINED = "predictions.parquet"
# A result file of another layout (an older mmfc's) is redone, never read as this one.
RESULTS_FORMAT = 2
# The skeleton files --skeleton finds in a folder, named after a video.
VIDEO_SKELETON_EXTS = (".skeleton", ".pkl")
# A list file names one input per line (blank lines and lines starting with # are skipped).
LIST_EXTS = (".txt", ".lst", ".list")


@dataclass(frozen=True)
class Options:
    """How every input of a batch is predicted: picklable, part of each result's signature."""

    window: float | None = None
    stride: float | None = None
    threshold: float = 0.5
    draw: bool = False  # write the pictures
    preview_width: int = 640
    per_person: bool = False  # each person their own timeline (mmfc.predict.people)
    interactions: tuple[str, ...] = ()  # the run's two-person classes, with per_person


@dataclass(frozen=True)
class Item:
    """One input: a video (its skeleton from --skeleton, or estimated), or a skeleton file
    without video (`entry`: the pose pickle's annotation)."""

    path: Path
    video: bool
    entry: str | None = None


def list_inputs(inputs: list[Path], run: TrainedRun, entries: list[str] | tuple[str, ...] = ()) -> list[Item]:
    """The inputs to predict: video and skeleton files, what folders hold (recursively, sorted)
    and what list files name (relative to their folder); a pose pickle gives its annotations
    `entries` (by name), else every one. A folder gives its videos to a run with a video branch,
    else its skeleton files (its videos where it holds none). DataError naming an input that is
    none of these, or one the run cannot predict: a skeleton file without its video for a run
    with a video branch (predictor.skeleton_refusal)."""
    exts = {e.lower() for e in run.cfg.data.video_exts}
    files: list[Path] = []
    for given in inputs:
        if given.is_dir():
            found = sorted(p for p in given.rglob("*") if p.is_file())
            videos = [p for p in found if p.suffix.lower() in exts]
            skeletons = [p for p in found if is_skeleton_file(p)]
            files += videos if run.video_branches or not skeletons else skeletons
        elif given.suffix.lower() in LIST_EXTS and given.is_file():
            for line in given.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    path = Path(line)
                    files.append(path if path.is_absolute() else given.parent / path)
        elif given.suffix.lower() in exts or given.exists():
            files.append(given)
        else:
            raise DataError(given, "no such video, skeleton file, folder or list file")
    if not files:
        raise DataError(", ".join(map(str, inputs)), "no videos or skeleton files found")
    items: list[Item] = []
    for path in files:
        if not is_skeleton_file(path):
            items.append(Item(path, video=True))
            continue
        refused = skeleton_refusal(run)
        if refused:
            raise DataError(path, refused)
        if path.suffix.lower() not in POSE_PICKLES:
            items.append(Item(path, video=False))
            continue
        for entry in entries or pickle_entries(path):
            pickle_annotation(path, entry)  # an unknown name is refused before any work
            items.append(Item(path, video=False, entry=entry))
    if entries and not any(p.suffix.lower() in POSE_PICKLES for p in files):
        raise DataError(", ".join(map(str, inputs)), "--entry names annotations of a pose pickle given as an input, "
                                                     "and none is")
    return items


def skeleton_for(video: Path, skeletons: Path | None) -> Path | None:
    """A skeleton file given for one video, or the one named after the video in a folder
    (<stem>.skeleton or <stem>.pkl, an NTU "_rgb" suffix dropped); None: estimate the poses."""
    if skeletons is None or skeletons.is_file():
        return skeletons
    for stem in dict.fromkeys((video.stem, video.stem.removesuffix("_rgb"))):
        for ext in VIDEO_SKELETON_EXTS:
            if (skeletons / f"{stem}{ext}").is_file():
                return skeletons / f"{stem}{ext}"
    raise DataError(video, f"no skeleton file for it in {skeletons} (looked for <name>.skeleton or .pkl)")


def result_name(item: Item) -> str:
    """One result file per input: its name and a hash of its full path (two folders may hold
    files of the same name) and annotation."""
    name = Path(item.entry).name if item.entry is not None else item.path.stem
    key = str(item.path.resolve()) + ("" if item.entry is None else f"#{item.entry}")
    return f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.json"


def signature(item: Item, skeleton: Path | None, options: Options, run_digest: str) -> dict:
    def stat(path: Path | None) -> list[int]:
        try:
            st = os.stat(path) if path is not None else None
        except OSError:
            st = None
        return [st.st_size, st.st_mtime_ns] if st else [-1, -1]

    return {"format": RESULTS_FORMAT, "input": str(item.path), "entry": item.entry, "input_stat": stat(item.path),
            "skeleton": str(skeleton or ""), "skeleton_stat": stat(skeleton), "options": {**asdict(options), "interactions": list(options.interactions)},  # as JSON reads it back
            "run": run_digest}


def run_digest(run: TrainedRun) -> str:
    """What the results depend on in the run: its checkpoints, fusion and pipeline."""
    parts = {**run.checkpoint_digests, "fusion": run.fusion_method, "pipeline": run.cfg.digest()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def predict_one(item: Item, skeleton: Path | None, options: Options, out: Path | None, run: PerWorker[TrainedRun],
                poses: PerWorker[PoseModels], sign: dict) -> dict:
    """One job: predict an input, write its outputs and its result file (with `out`). -> the result"""
    trained = run.get()
    result = {"signature": sign, "input": str(item.path), "entry": item.entry}
    try:
        if options.per_person:
            result.update(_predict_people(item, skeleton, options, out, trained, poses))
        else:
            result.update(_predict_whole(item, skeleton, options, out, trained, poses))
    except DiskFull:
        raise  # not this input's failure, and no result file: a rerun once space is freed redoes it
    except DataError as exc:
        result.update(status="failed", reason=f"{exc.path}: {exc.reason}")
    if out is not None:
        atomic.write_text(out / RESULTS / result_name(item), json.dumps(result) + "\n")
    return result


def _predict_whole(item: Item, skeleton: Path | None, options: Options, out: Path | None, trained: TrainedRun,
                   poses: PerWorker[PoseModels]) -> dict:
    """An input predicted as one clip (or one per window) of everyone in it. -> the result's fields"""
    if item.video:
        prediction, decoded, _, found = predict_video(
            trained, item.path, skeleton, options.window, options.stride,
            poses.get() if skeleton is None else None, options.preview_width if options.draw else 0,
            preview_every(item.path, options),
        )
    else:
        prediction, _, found = predict_skeleton(trained, item.path, item.entry, options.window, options.stride)
        decoded = None
    segments = None
    if options.window is not None:
        segments = find_segments(prediction.windows, prediction.probabilities["fused"], prediction.class_names,
                                 options.threshold)
    if out is not None:
        write_outputs(out, prediction, decoded, found, segments, trained.checkpoint_digests, trained.cfg.digest(),
                      options.draw)
    return {"status": "ok", "reason": "", "summary": summary(prediction, segments), "arrays": _arrays(prediction)}


def _predict_people(item: Item, skeleton: Path | None, options: Options, out: Path | None, trained: TrainedRun,
                    poses: PerWorker[PoseModels]) -> dict:
    """An input predicted per person (mmfc.predict.people). -> the result's fields"""
    interactions = list(options.interactions)
    frames, frames_fps = None, None
    if item.video:
        every = preview_every(item.path, options)
        prediction, decoded, found, persons = predict_people_video(
            trained, item.path, skeleton, options.window, options.stride, poses.get() if skeleton is None else None,
            interactions, options.preview_width if options.draw else 0, every)
        if options.draw:
            frames, frames_fps = people_frames(prediction, decoded, found, persons), prediction.fps / every
    else:
        prediction, found, persons = predict_people_skeleton(trained, item.path, item.entry, options.window,
                                                             options.stride, interactions)
        if options.draw:
            frames = people_skeleton_frames(prediction, found, persons)
    # Over a whole clip each person's one label is their segment, whatever its probability.
    prediction.with_segments(options.threshold if options.window is not None else 0.0)
    if out is not None:
        write_people_outputs(out, prediction, frames, trained.checkpoint_digests, trained.cfg.digest(), options.draw,
                             frames_fps)
    return {"status": "ok", "reason": "", "summary": people_summary(prediction), "arrays": people_arrays(prediction)}


def people_arrays(prediction: PeoplePrediction) -> dict:
    """Each person's windows and the logits of their clip alone, and what each window shows."""
    return {"persons": {str(track): {"windows": t.alone.windows.tolist(),
                                     "logits": {name: logits.tolist() for name, logits in t.alone.logits.items()},
                                     "fused": t.alone.fused.tolist(), "shown": t.shown.tolist(),
                                     "with": t.partner.tolist()}
                        for track, t in prediction.persons.items()}}


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
        "logits": {name: logits.tolist() for name, logits in prediction.logits.items()},
        "fused": prediction.fused.tolist(),
    }


def read_result(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def predict_batch(run: TrainedRun, items: list[Item], skeletons: Path | None, options: Options, out: Path | None,
                  console: Console, recipe: tuple) -> list[dict]:
    """Predict every input not already done (with `out`: its result file says so), then write
    the combined table there. `skeletons`: --skeleton, the videos' skeleton file or folder of
    them. `recipe`: the arguments of mmfc.run_folder.open_run, so each worker opens the run once
    (this process reuses `run`). DataError before any work when the run cannot predict the
    videos without skeleton files (predictor.video_refusal). -> every result, in the order of
    `items`"""
    refused = video_refusal(run) if skeletons is None else ""
    for item in items:
        if item.video and refused:
            raise DataError(item.path, refused)
    digest = run_digest(run)
    jobs, results = [], {}
    for item in items:
        try:
            skeleton = skeleton_for(item.path, skeletons) if item.video else None
        except DataError as exc:  # recorded like any input that cannot be predicted
            results[item] = {"input": str(item.path), "entry": item.entry, "status": "failed",
                             "reason": f"{exc.path}: {exc.reason}"}
            continue
        sign = signature(item, skeleton, options, digest)
        done = read_result(out / RESULTS / result_name(item)) if out is not None else None
        if done is not None and done.get("signature") == sign:
            results[item] = done
            continue
        jobs.append((item, skeleton, sign))
    skipped = sum("signature" in r for r in results.values())
    if skipped:
        console.print(f"{skipped} inputs already predicted with these options; skipped")
    # One input, or one worker: this process, with the run it has open.
    here = len(jobs) <= 1 or run.cfg.jobs.n_jobs == 1
    opener = PerWorker(_given, (run,)) if here else PerWorker(open_run, recipe)
    poses = PerWorker(PoseModels, (run.cfg.poses.models_dir, 1))
    for position, result in run_jobs(
        predict_one, [(item, skeleton, options, out, opener, poses, sign) for item, skeleton, sign in jobs],
        backend="loky" if here else run.cfg.jobs.backend, n_jobs=1 if here else run.cfg.jobs.n_jobs,
        title="predict", unit="inputs", console=console,
    ):
        results[jobs[position][0]] = result
    ordered = [results[item] for item in items]
    if out is not None:
        write_combined(out / COMBINED, ordered, run.class_names, run.branches)
    return ordered


def _given(value):
    """PerWorker's build for a value already at hand (jobs in this process)."""
    return value


def write_combined(path: Path, results: list[dict], class_names: list[str], branches: list[str]) -> None:
    """One row per clip or window of every input (per person: per person and window, the person
    in `person`; a failed input: one row with its reason), with the logits of each of the run's
    `branches` (null where it did not score the clip) and fused."""
    rows = []
    for r in results:
        base = {"input": r["input"], "entry": r["entry"], "status": r["status"], "reason": r["reason"]}
        if r["status"] != "ok":
            rows.append(base)
            continue
        s, a = r["summary"], r["arrays"]
        clips = ([(int(track), arrays) for track, arrays in a["persons"].items()] if "persons" in a else [(None, a)])
        for person, arrays in clips:
            fused = np.asarray(arrays["fused"], dtype=np.float64)
            # What a window shows: its own fused scores, or per person those of a shared two-person class.
            shown = np.asarray(arrays["shown"]) if "shown" in arrays else np.exp(log_softmax(fused))
            for w, (start, end) in enumerate(arrays["windows"]):
                top = int(shown[w].argmax())
                rows.append({**base, "person": person, "window_start": start, "window_end": end,
                             "skeleton": s["skeleton"], "fusion": s["fusion"], "warning": s["warning"],
                             "notes": "; ".join(s["notes"]), "top1": class_names[top],
                             "top1_probability": float(shown[w, top]),
                             "with": (arrays["with"][w] or None) if "with" in arrays else None,
                             **{name: arrays["logits"][name][w] for name in arrays["logits"]},
                             "fused": arrays["fused"][w]})
    logits = pa.list_(pa.float32())
    schema = pa.schema([
        ("input", pa.string()), ("entry", pa.string()), ("status", pa.string()), ("reason", pa.string()),
        ("person", pa.int64()), ("window_start", pa.float64()), ("window_end", pa.float64()),
        ("skeleton", pa.string()), ("fusion", pa.string()), ("warning", pa.string()), ("notes", pa.string()),
        ("top1", pa.string()), ("top1_probability", pa.float64()), ("with", pa.int64()),
        *((name, logits) for name in branches), ("fused", logits),
    ], metadata={b"mmfc.class_names": json.dumps(class_names).encode(),
                 b"mmfc.branches": json.dumps(branches).encode()})
    with atomic.atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
