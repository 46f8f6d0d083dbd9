"""The `mmfc` command: data tools, the four pipeline stages, and model costs.

Each command is a thin shell over a plain function in the package; the work lives there.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from mmfc.atomic import writable_folder
from mmfc.branches import BRANCHES
from mmfc.config import ConfigError, JobsConfig, Pipeline, load_pipeline
from mmfc.errors import DataError, DataWarning
from mmfc.timings import format_table, read_timings, timed

app = typer.Typer(
    help=(
        "mmfc: fine-grained action recognition from RGB video and skeletons.\n\n"
        "A staged offline pipeline: `stage poses` (poses for plain videos, PYSKL pickle), "
        "`stage crops` (skeleton-guided crops into zarr shards), "
        "`stage train` (each declared branch from the shards), `stage scores` (per-class scores to "
        "Parquet), `stage oof` (each branch again on folds of the training side, where the fusion is fitted "
        "on out-of-fold scores), `stage fuse` (fusion weights fitted on validation or on out-of-fold scores) and "
        "`stage report`. "
        "Every stage reads a pipeline file (pipelines/*.toml); `mmfc info` shows what it selects. "
        "`mmfc predict` runs a trained run on new videos (trimmed, or in sliding windows; --per-person: each "
        "person's own labels); `mmfc live` on a camera or stream as it plays; "
        "`mmfc export` writes a trained run as ONNX graphs and a fusion recipe."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stage_app = typer.Typer(
    help="Run one pipeline stage. Each reads only the files of the stage before it.",
    no_args_is_help=True,
)
app.add_typer(stage_app, name="stage")

# soft_wrap: an error names a file; wrapping would break the path across lines.
err_console = Console(stderr=True, soft_wrap=True)

PipelineOpt = Annotated[
    Path,
    typer.Option("--pipeline", "-p", help="Pipeline file, e.g. pipelines/synth.toml."),
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set",
        "-s",
        help="Override one key, e.g. --set data.root=/data/ntu --set workdir=runs/x. Repeatable.",
    ),
]

RunSetOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set",
        "-s",
        help="How this machine runs the trained run (its checkpoints fix everything else): jobs.backend, "
        "jobs.n_jobs, poses.models_dir, crops_from, data.video_exts; e.g. --set poses.models_dir=/opt/blazepose.",
    ),
]


# The choices of --modality: the branches of mmfc.branches.
Modality = Enum("Modality", {name: name for name in BRANCHES}, type=str)


def _pipeline(path: Path, overrides: list[str] | None) -> Pipeline:
    return load_pipeline(path, overrides or [])


def _fail(message: str) -> None:
    # Escaped: a path or a value in the message may hold square brackets, which rich would eat.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)


_show_python_warning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our warnings as one `warning:` line naming the file; Python's format for the rest."""
    if issubclass(category, DataWarning):
        err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False)
    else:
        _show_python_warning(message, category, filename, lineno, file, line)


@app.callback()
def _root() -> None:
    warnings.showwarning = _show_warning


# ---------------------------------------------------------------------------------------------
# Data tools


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Folder to write the dataset into (NTU raw layout).")],
    per_class: Annotated[
        int,
        typer.Option(help="Recordings per class, performer and camera (0: 1, the demo's size)."),
    ] = 0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same files.")] = 0,
    timings: Annotated[
        Optional[Path], typer.Option(help="Record the generation's wall time in this timings folder, "
                                          "e.g. <workdir>/timings (`mmfc timings`).")
    ] = None,
) -> None:
    """Write the built-in synthetic fine-grained dataset in the NTU RGB+D raw layout.

    12 classes in 4 families of 3 that differ subtly (only in the held object, mostly in depth,
    or in small motion details), 16 performers (X-Sub: 10 training side, 6 test side), 3
    cameras; 576 clips at --per-class 1 (`make demo` writes 2). Read it with
    pipelines/synth.toml.
    """
    from mmfc.data.synth import generate

    try:
        with timed(timings, "synth") if timings else contextlib.nullcontext():
            summary = generate(out, per_class=per_class or None, seed=seed)
    except (ConfigError, DataError) as exc:
        _fail(str(exc))
    print(json.dumps(summary, indent=2))


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="A .skeleton file, a video, a pose pickle or a dataset root.")],
) -> None:
    """Print, as one JSON document, what mmfc reads from a file or dataset root."""
    from mmfc.data.inspect import inspect_path

    try:
        report = inspect_path(path)
    except (ConfigError, DataError) as exc:
        _fail(str(exc))
    print(json.dumps(report, indent=2, default=str))


@app.command()
def info(
    pipeline: PipelineOpt,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the resolved configuration and every count as JSON.")] = False,
) -> None:
    """Show the data a pipeline selects: counts per split and class, the validation groups, what
    was left out and why, each branch the pipeline declares with whether the data can train it
    (the RGB branch needs videos), and the joint layout (--json: with the resolved configuration
    and the layout's joints, bones, centre and left/right pairs)."""
    from mmfc.branches import branch_support
    from mmfc.crops.crop import CropJob
    from mmfc.data.sources import describe_selection, few_groups_warning, format_selection
    from mmfc.folds import resolve_fit_on
    from mmfc.oof.plan import data_rows, describe_folds, fold_plan

    try:
        cfg = _pipeline(pipeline, set_)
        layout = CropJob.of(cfg).layout  # stage 1's: crops.center_joint must be one of its joints
        selection = describe_selection(cfg.data)
    except (ConfigError, DataError) as exc:
        _fail(str(exc))
    # The declared branches, each with whether the data can train it.
    selection["branches"] = branch_support(cfg.branches, selection["video"]["with"] > 0)
    # Where stage 4 fits the fusion, and the out-of-fold stage's folds where it needs them.
    fit_on = resolve_fit_on(cfg.fusion, selection["validation_groups"], selection["group_kind"])
    selection["fusion"] = {"fit_on": fit_on.scores, "reason": fit_on.reason}
    folds: list[str] = []
    if fit_on.scores == "oof":
        try:
            rows, group_kind, told_by = data_rows(cfg)
            plan = fold_plan(rows, group_kind, cfg.fusion.oof)
        except (ConfigError, DataError) as exc:
            _fail(str(exc))
        except ValueError:
            _fail(f"{cfg.data.root}: fewer than 2 training clips, nothing to cut into folds for fusion.fit_on")
        selection["fusion"]["oof"] = {**plan.describe(), "listed_by": str(told_by)}
        head, *each = describe_folds(plan)
        folds = [f"out-of-fold: {head}", *each, f"out-of-fold: {plan.count} more trainings of each branch "
                                               f"(`mmfc stage oof`, make oof); the clips as {told_by} lists them"]
    if as_json:
        print(json.dumps({"pipeline": cfg.to_dict(), "layout": layout.to_dict(), "data": selection}, indent=2, default=str))
    else:
        print(format_selection(cfg.name, selection))
        print(f"fusion: fitted on {'out-of-fold scores' if fit_on.scores == 'oof' else 'validation'} ({fit_on.reason})")
        for line in folds:
            print(line)
        print("\n--json: the resolved configuration, the joint layout and every count, as JSON")
    few_groups = few_groups_warning(selection["validation_groups"])
    if few_groups and fit_on.scores == "val":
        warnings.warn(f"{cfg.data.root}: {few_groups}", DataWarning)


@app.command("branches")
def branches_command(
    pipeline: PipelineOpt,
    set_: SetOpt = None,
    oof: Annotated[bool, typer.Option("--oof", help="Only where the fusion is fitted on out-of-fold scores "
                                                    "(fusion.fit_on): the branches `mmfc stage oof` must run for; "
                                                    "none otherwise.")] = False,
) -> None:
    """Print the declared branches the data supports, space-separated, in the declared order:
    what `make train scores fuse report` builds. Why any other is left out goes to stderr.

    The crop store says whether the data has videos once stage 1 has run; before, the data
    source does; where the data is not there yet, every declared branch is printed."""
    from mmfc.branches import data_has_video, supported_branches
    from mmfc.oof.plan import fit_on_of_data

    try:
        cfg = _pipeline(pipeline, set_)
        has_video, told_by = data_has_video(cfg)
        if has_video is None:
            err_console.print(f"note: {escape(str(told_by))} cannot be read yet, so every declared branch is listed; "
                              "stage 1 says what the data holds", highlight=False)
            kept, left_out = cfg.branches, {}
        else:
            kept, left_out = supported_branches(cfg, has_video, told_by)
    except (ConfigError, DataError) as exc:
        _fail(str(exc))
    for name, why in left_out.items():
        err_console.print(f"note: branch {name} left out ({escape(str(told_by))}): {why}", highlight=False)
    if oof:
        try:
            fit_on, said_by = fit_on_of_data(cfg)
        except (ConfigError, DataError) as exc:
            _fail(str(exc))
        if fit_on.scores != "oof":
            kept = []
        elif cfg.fusion.fit_on == "auto":
            err_console.print(f"note: {escape(fit_on.reason)} ({escape(str(said_by))})", highlight=False)
    print(" ".join(kept))


@app.command()
def cost(
    pipeline: PipelineOpt,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Parameters and multiply-add GFLOPs per clip of every declared branch and their ensemble,
    beside the paper's table."""
    from mmfc.cost import cost_report, print_cost_report

    try:
        cfg = _pipeline(pipeline, set_)
        report = cost_report(cfg)
    except (ConfigError, DataError) as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_cost_report(report)


@app.command("timings")
def timings_table(pipeline: PipelineOpt, set_: SetOpt = None) -> None:
    """Wall time of the latest run of each stage in the pipeline's workdir (`make demo` prints it)."""
    try:
        cfg = _pipeline(pipeline, set_)
        rows = read_timings(cfg.paths.timings)
    except (ConfigError, DataError) as exc:
        _fail(str(exc))
    print(format_table(rows) if rows else f"{cfg.paths.timings}: no stage has run yet")


# ---------------------------------------------------------------------------------------------
# Exporting a trained run


class ExportFormat(str, Enum):
    onnx = "onnx"


@app.command()
def export(
    run: Annotated[
        Path,
        typer.Option("--run", help="The run's workdir, e.g. runs/synth: its branches trained, the fusion fitted."),
    ],
    format_: Annotated[
        ExportFormat,
        typer.Option("--format", help="onnx: one ONNX graph per branch, the fusion as a JSON recipe."),
    ] = ExportFormat.onnx,
    out: Annotated[
        Optional[Path],
        typer.Option(help="Folder to write (default <run>/export/onnx); replaced whole, so empty or an earlier export."),
    ] = None,
    check: Annotated[
        int,
        typer.Option(
            min=0,
            help="Samples of the run's crop store run through onnxruntime and PyTorch before anything is "
            "written; a logit or fused score apart by more than 1e-4 (1e-5 of the largest value beyond "
            "10, or twice PyTorch's own float32 error against float64 if larger) fails the export. "
            "0 skips the check.",
        ),
    ] = 8,
    set_: RunSetOpt = None,
) -> None:
    """Export a trained run for use outside mmfc, on any ONNX runtime.

    Writes one graph per branch the fusion takes, <branch>.onnx (rgb.onnx, joint.onnx, ...; each:
    one named float32 input with a dynamic batch axis, output `logits`, batch x classes),
    manifest.json (what feeds each input: axes, value range, normalisation; the class names; the
    fitted fusion over every branch as a recipe with its formula; the parity measured; the poses
    the run needs), apply_fusion.py (the recipe in numpy) and preprocess.py (a clip's keypoints,
    and its frames for an RGB graph, to every graph's input, with numpy and OpenCV, as mmfc crops
    and samples them). Needs the optional extra `export`: pip install 'mmfc\\[export]'.
    """
    from mmfc.export.bundle import export_onnx
    from mmfc.export.graphs import MissingExtra, require_extra
    from mmfc.run_folder import open_run

    try:
        require_extra()
        trained = open_run(run, overrides=set_ or [])
        target = out if out is not None else run / "export" / format_.value
        writable_folder(target.parent)  # built beside its target and renamed onto it: checked before the work
        manifest = export_onnx(trained, target, check_samples=check)
    except (ConfigError, DataError, MissingExtra) as exc:
        _fail(str(exc))
    files = [entry["file"] for entry in manifest["branches"].values()] + ["manifest.json", "apply_fusion.py",
                                                                          "preprocess.py"]
    summary = {"out": str(target), "files": files, "fusion": manifest["fusion"]["method"]}
    if "parity" in manifest:
        summary["max_abs_diff"] = manifest["parity"]["max_abs_diff"]
        summary["float32_error"] = manifest["parity"]["float32_error"]
        summary["bound"] = manifest["parity"]["bound"]
    print(json.dumps(summary, indent=2))


# ---------------------------------------------------------------------------------------------
# Stages


@stage_app.command("poses")
def stage_poses(
    pipeline: PipelineOpt,
    set_: SetOpt = None,
    strict: Annotated[bool, typer.Option(help="Exit non-zero if any video failed.")] = False,
    preview: Annotated[
        int, typer.Option(help="Also write a PNG contact sheet of this many videos, one colour per track.")
    ] = 0,
) -> None:
    """Stage 0 (data.source = "videos"): estimate and track poses into a PYSKL pose pickle."""
    from mmfc.poses.stage import run_poses

    try:
        cfg = _pipeline(pipeline, set_)
        code = run_poses(cfg, strict=strict, preview=preview)
    except (ConfigError, DataError) as exc:
        _fail(str(exc))
    raise typer.Exit(code)


@stage_app.command("crops")
def stage_crops(
    pipeline: PipelineOpt,
    set_: SetOpt = None,
    strict: Annotated[bool, typer.Option(help="Exit non-zero if any sample failed.")] = False,
    preview: Annotated[
        int, typer.Option(help="Also write a PNG contact sheet of this many samples.")
    ] = 0,
    verify: Annotated[
        bool, typer.Option(help="Check every stored shard by content (sha256), not only by size and mtime; redo damaged ones.")
    ] = False,
) -> None:
    """Stage 1: skeleton-guided crops and normalised skeletons into zarr shards."""
    from mmfc.crops.stage import run_crops

    try:
        cfg = _pipeline(pipeline, set_)
        code = run_crops(cfg, strict=strict, preview=preview, verify=verify)
    except (ConfigError, DataError) as exc:
        _fail(str(exc))
    raise typer.Exit(code)


@stage_app.command("train")
def stage_train(
    pipeline: PipelineOpt,
    modality: Annotated[Modality, typer.Option(help="Which branch to train: one the pipeline declares (`branches`).")],
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
) -> None:
    """Stage 2: train one branch from the stage-1 shards (torchrun for several GPUs)."""
    from mmfc.train.stage import run_train

    try:
        cfg = _pipeline(pipeline, set_)
        run_train(cfg, modality.value, resume=resume)
    except (ConfigError, DataError) as exc:
        _fail(str(exc))


@stage_app.command("scores")
def stage_scores(
    pipeline: PipelineOpt,
    modality: Annotated[Modality, typer.Option(help="Which branch to score: one the pipeline declares (`branches`).")],
    set_: SetOpt = None,
) -> None:
    """Stage 3: per-class scores of every sample to Parquet, from the best checkpoint."""
    from mmfc.scores.stage import run_scores

    try:
        cfg = _pipeline(pipeline, set_)
        run_scores(cfg, modality.value)
    except (ConfigError, DataError) as exc:
        _fail(str(exc))


@stage_app.command("oof")
def stage_oof(
    pipeline: PipelineOpt,
    modality: Annotated[Modality, typer.Option(help="Which branch: one the pipeline declares (`branches`).")],
    set_: SetOpt = None,
) -> None:
    """Train one branch again on k - 1 folds of whole groups of the training side, k times, each
    network scoring the fold it left out: the out-of-fold scores stage 4 fits on where
    fusion.fit_on asks (k = fusion.oof.folds). Resumes: a finished fold is kept."""
    from mmfc.oof.stage import run_oof

    try:
        cfg = _pipeline(pipeline, set_)
        run_oof(cfg, modality.value)
    except (ConfigError, DataError) as exc:
        _fail(str(exc))


@stage_app.command("fuse")
def stage_fuse(pipeline: PipelineOpt, set_: SetOpt = None) -> None:
    """Stage 4: fit the fusion of the declared branches (on validation or out-of-fold scores, as
    fusion.fit_on says) and apply it to every clip."""
    from mmfc.fusion.stage import run_fuse

    try:
        cfg = _pipeline(pipeline, set_)
        run_fuse(cfg)
    except (ConfigError, DataError) as exc:
        _fail(str(exc))


@stage_app.command("report")
def stage_report(pipeline: PipelineOpt, set_: SetOpt = None) -> None:
    """Write the report: accuracies, confusion matrix, training curves, ablation table."""
    from mmfc.report.stage import run_report

    try:
        cfg = _pipeline(pipeline, set_)
        run_report(cfg)
    except (ConfigError, DataError) as exc:
        _fail(str(exc))


# ---------------------------------------------------------------------------------------------
# Using a trained run


@app.command()
def predict(
    inputs: Annotated[list[Path], typer.Argument(
        help="Videos, folders of them, or list files (.txt, one path a line). A run without a video branch also "
             "takes skeleton files without video: NTU .skeleton, NW-UCLA .json sequences, Penn Action .mat label "
             "files, pose pickles (.pkl: each annotation, or those --entry names).")],
    run: Annotated[Path, typer.Option("--run", help="The trained run's workdir (stages 1-4 done).")],
    set_: RunSetOpt = None,
    skeleton: Annotated[
        Optional[Path],
        typer.Option(help="The videos' skeleton: a .skeleton file or pose pickle of the video, or a folder of them "
                          "named after the videos; default: the pose estimator."),
    ] = None,
    entry: Annotated[
        Optional[list[str]],
        typer.Option(help="Of a pose pickle given as an input, the annotation to predict, by name (its frame_dir); "
                          "repeatable; default: every one."),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(help="Write each input's JSON and pictures (a video: annotated MP4 and frame strip; a skeleton "
                          "file: a drawing of it), with --window the timeline, window scores and segments, here, with "
                          "a result file per input (a rerun skips those done) and predictions.parquet."),
    ] = None,
    draw: Annotated[bool, typer.Option(help="With --out: the pictures too (--no-draw: no pictures).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    window: Annotated[Optional[float], typer.Option(help="Score windows of this many seconds (untrimmed clips).")] = None,
    stride: Annotated[Optional[float], typer.Option(help="Seconds between window starts (default: the window).")] = None,
    threshold: Annotated[float, typer.Option(help="A segment's class must stay on top above this probability.")] = 0.5,
    device: Annotated[str, typer.Option(help="torch device of the networks, e.g. cpu or cuda.")] = "cpu",
    jobs: Annotated[Optional[int], typer.Option(help="Inputs at once (default: jobs.n_jobs, -1: one per core).")] = None,
    per_person: Annotated[bool, typer.Option(
        "--per-person", help="Each tracked person (each body of a skeleton file) their own labels: scored alone in "
                             "each window they are in, with their segments.")] = False,
    interaction: Annotated[Optional[list[str]], typer.Option(
        help="With --per-person: a class of two people (repeatable; NTU's mutual actions are known by name), scored "
             "on each person with the nearest other and carried by both.")] = None,
) -> None:
    """Predict the action in new clips with a trained run, by the code of stages 1 to 4.

    Prints the top-5 classes of every branch of the run and of their fitted fusion for each input
    (or each window, with --window); with --per-person, each person's segments. A run with a video
    branch (RGB) predicts videos; a run of skeleton branches alone predicts skeleton files, and
    videos from their estimated poses where it was trained on stage 0's."""
    from mmfc.predict.batch import Options, list_inputs, predict_batch
    from mmfc.predict.outputs import print_people_table, print_table
    from mmfc.predict.people import interaction_classes
    from mmfc.run_folder import open_run

    if stride is not None and window is None:
        _fail("--stride needs --window")
    for name, seconds in (("--window", window), ("--stride", stride)):
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            _fail(f"{name} {seconds}: give a positive number of seconds")
    if not 0 <= threshold < 1:  # nan too: no probability stays above it
        _fail(f"--threshold {threshold}: give a probability from 0 up to (not including) 1")
    if interaction and not per_person:
        _fail("--interaction names a two-person class of --per-person: give --per-person too")
    workers = JobsConfig(n_jobs=jobs).mismatch() if jobs is not None else None
    if workers:
        _fail(f"--jobs {jobs}: {workers.partition(': ')[2]}")
    console = Console(stderr=True)
    try:
        if out is not None:
            writable_folder(out)  # before any work, not after all of it
        recipe = (run, device, tuple(set_ or ()))
        trained = open_run(*recipe)
        if jobs is not None:
            trained.cfg.jobs.n_jobs = jobs
        items = list_inputs(inputs, trained, entry or ())
        if skeleton is not None and not any(item.video for item in items):
            _fail(f"--skeleton {skeleton}: it names the skeletons of videos, and the inputs are skeleton files, "
                  "each predicted from itself")
        interactions = tuple(interaction_classes(trained, interaction or ())) if per_person else ()
        options = Options(window=window, stride=stride, threshold=threshold, draw=draw and out is not None,
                          per_person=per_person, interactions=interactions)
        results = predict_batch(trained, items, skeleton, options, out, console, recipe)
    except (ConfigError, DataError) as exc:
        _fail(str(exc))
    failed = [r for r in results if r["status"] != "ok"]
    if as_json:
        print(json.dumps([r.get("summary", {"input": r["input"], "entry": r["entry"], "error": r["reason"]})
                          for r in results], indent=2))
    else:
        for r in results:
            if r["status"] == "ok":
                (print_people_table if per_person else print_table)(Console(), r["summary"])
    for r in failed:
        err_console.print(f"[bold red]error:[/] {escape(r['reason'])}", highlight=False)
    if out is not None:
        err_console.print(f"results: {escape(str(out))}", highlight=False)
    if failed:
        raise typer.Exit(2 if len(results) == 1 else 1)


@app.command()
def live(
    source: Annotated[str, typer.Argument(
        help="A camera index (0, 1, ...), a stream URL (rtsp://, http://, ...) or a video file.")],
    run: Annotated[Path, typer.Option("--run", help="The trained run's workdir (stages 1-4 done).")],
    set_: RunSetOpt = None,
    window: Annotated[float, typer.Option(help="Each person's sliding window, in seconds.")] = 2.0,
    stride: Annotated[float, typer.Option(help="Seconds between window starts.")] = 0.5,
    fps: Annotated[Optional[float], typer.Option(
        help="The source's frame rate, where it reports none or a wrong one (default: what it reports).")] = None,
    realtime: Annotated[bool, typer.Option(
        "--realtime", help="Play a video file at its own frame rate, as a camera would give it: windows the run "
                           "cannot keep up with are dropped (default: every frame, as fast as it goes).")] = False,
    reconnects: Annotated[int, typer.Option(help="Times a lost camera or stream is opened again.")] = 3,
    out: Annotated[Optional[Path], typer.Option(
        help="Write the annotated recording and, at the end, what `mmfc predict --per-person --out` writes, here.")] = None,
    draw: Annotated[bool, typer.Option(help="With --out: the recording and pictures too.")] = True,
    serve: Annotated[Optional[int], typer.Option(
        help="Serve the live view (the annotated stream, each person's labels) on this port.")] = None,
    host: Annotated[str, typer.Option(help="Where --serve listens (default: this machine alone).")] = "127.0.0.1",
    interaction: Annotated[Optional[list[str]], typer.Option(
        help="A class of two people (repeatable; NTU's mutual actions are known by name), scored on each person "
             "with the nearest other and carried by both.")] = None,
    threshold: Annotated[float, typer.Option(help="With --out: a segment's class stays on top above this.")] = 0.5,
    device: Annotated[str, typer.Option(help="torch device of the networks, e.g. cpu or cuda.")] = "cpu",
) -> None:
    """Recognise each person's action on a live stream as it plays: every person's sliding window
    is scored as it fills, one JSON line per person and window on stdout (time, person, label,
    score, window, latency). It never falls behind: windows it cannot keep up with are dropped
    and counted. Ctrl-C or the stream's end closes every file."""
    from mmfc.live.session import LiveOptions, LiveSession
    from mmfc.live.source import parse_source
    from mmfc.predict.people import interaction_classes
    from mmfc.predict.predictor import PoseModels
    from mmfc.run_folder import open_run

    for name, seconds in (("--window", window), ("--stride", stride), ("--fps", fps)):
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            _fail(f"{name} {seconds}: give a positive number")
    if reconnects < 0:
        _fail(f"--reconnects {reconnects}: give 0 or more")
    if not 0 <= threshold < 1:
        _fail(f"--threshold {threshold}: give a probability from 0 up to (not including) 1")
    try:
        spec = parse_source(source)
        if realtime and spec.kind != "file":
            _fail(f"--realtime plays a video file at its own rate; {spec.where} gives its frames as they come")
        if out is not None:
            writable_folder(out)
        trained = open_run(run, device, tuple(set_ or ()))
        options = LiveOptions(window=window, stride=stride, fps=fps, realtime=realtime, reconnects=reconnects,
                              threshold=threshold, interactions=tuple(interaction_classes(trained, interaction or ())))
        session = LiveSession(trained, spec, options, PoseModels(trained.cfg.poses.models_dir), out, draw,
                              (host, serve) if serve is not None else None)
        session.run()
    except (ConfigError, DataError) as exc:
        _fail(str(exc))
    if out is not None:
        err_console.print(f"results: {escape(str(out))}", highlight=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
