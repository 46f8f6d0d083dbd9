"""The frame every stage runner goes through: what each stage did alike, done once.

A runner declares its stage (a `Stage`: its name, the lock of what it writes, the settings its
outputs depend on, its outputs) and does only its own work inside `run_stage`:

    stage = Stage("scores-rgb", "mmfc stage scores --modality rgb", lock="scores-rgb",
                  settings=("data", "crops", "rgb", "scores"), outputs=(path,))
    with run_stage(cfg, stage, console) as run:
        with run.producing(path, inputs=[checkpoint]):
            write_scores(path, table)
        run.summary = "top-1 train 61.0%, val 50.0%, test 49.1%"

`run_stage`, in order:
1. times the run, failed or not (<workdir>/timings/<name>.json, mmfc/timings.py: `mmfc timings`);
2. holds the lock of what the stage writes (mmfc/lock.py) until it ends;
3. clears what a killed run left half-written of its outputs (atomic.remove_leftovers): every
   temporary file inside an output folder (those the stage's `own` filter accepts, when it has
   one), and beside each output the temporary copies of that output and of its manifest;
4. saves the resolved pipeline to <workdir>/pipeline.json (config.save_pipeline), for the stages
   whose outputs make up a trained run;
5. prints the run's summary line once the work is done.
Under torchrun every rank runs the work, and rank 0 alone (`main=True`) does any of the above.

An output's manifest, `<output>.manifest.json` beside it, says what it was made from: the
settings (Pipeline.result_settings of the stage's keys, and their digest) and the sha256 of each
file read. `StageRun.producing` removes the manifest, runs the block that writes the output, and
writes the manifest only when the block succeeds, so a manifest never describes an output it
did not see finished. `stale_reason` reads it back: the output is current when the digest of the
same settings is the pipeline's and every input it lists still has the recorded sha256.
Settings that do not shape results (threads, workers, paths of the run: config.setting) are in
no digest, so changing them leaves every output current.

Stages 0 and 1 read thousands of files; they keep the same record per item instead (a video's
result file, a shard's part rows: the settings digest and each file's size and mtime) and redo
only the items whose record differs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mmfc import atomic, lock
from mmfc.config import Pipeline, save_pipeline
from mmfc.timings import timed

MANIFEST_SUFFIX = ".manifest.json"


@dataclass(frozen=True)
class Stage:
    """What a runner declares to the frame."""

    # Its row in `mmfc timings`: "crops", "train-rgb", "fuse".
    name: str
    # How its lock names the run to another one it refuses: "mmfc stage train --modality rgb".
    command: str
    # The lock of what it writes (WorkdirLayout.lock): "crops", "train-rgb", "fusion".
    lock: str
    # The pipeline's sections and fields ("data", "data.layout") its outputs depend on; () is
    # the whole pipeline.
    settings: tuple[str, ...]
    # The files and folders it writes. A folder's files are written one at a time (each
    # atomically), a file or a folder swapped in whole by one rename.
    outputs: tuple[Path, ...]
    # Whether its outputs make up the trained run that pipeline.json describes (mmfc predict).
    saves_pipeline: bool = True
    # Which temporary files in its output folders are its own, by their target's name, where
    # other runs write beside it (the crops' part runs); None: all of them.
    own: Callable[[str], bool] | None = None


class StageRun:
    """A stage running inside the frame: where its work records manifests and its summary."""

    def __init__(self, cfg: Pipeline, stage: Stage, main: bool):
        self.cfg = cfg
        self.stage = stage
        self.main = main
        # One line printed when the work is done: the run's figures and where its outputs are.
        self.summary = ""

    @contextlib.contextmanager
    def producing(self, output: Path, inputs: Iterable[Path] = ()) -> Iterator[None]:
        """Bracket the block that writes `output` from `inputs` with its manifest (rank 0 only):
        removed before, written after the block succeeds. Inputs are hashed before the block
        reads them; one missing then is left to the block, which says so, or is not listed."""
        if not self.main:
            yield
            return
        manifest = manifest_path(output)
        manifest.unlink(missing_ok=True)
        # Relative to the manifest's folder, so that a run's folder can move with its manifests.
        digests = {os.path.relpath(path, manifest.parent): sha256_of(path) for path in inputs if path.is_file()}
        yield
        atomic.write_text(manifest, json.dumps({
            "stage": self.stage.name,
            "output": output.name,
            "digest": self.cfg.digest(*self.stage.settings),
            "settings": self.cfg.result_settings(*self.stage.settings),
            "inputs": digests,
        }, indent=2, sort_keys=True) + "\n")

    def is_current(self, output: Path) -> bool:
        """Whether `output` was made with this run's settings from the inputs it lists as they
        are now (stale_reason)."""
        return stale_reason(output, self.cfg, self.stage.settings) is None


@contextlib.contextmanager
def run_stage(cfg: Pipeline, stage: Stage, console: Console, *, main: bool = True,
              hold: contextlib.AbstractContextManager | None = None) -> Iterator[StageRun]:
    """Run a stage's work in the frame (see the module's docstring). `hold`: the lock to take
    instead of the stage's exclusive one (the crops' part runs share theirs)."""
    run = StageRun(cfg, stage, main)
    if not main:
        yield run
        return
    with timed(cfg.paths.timings, stage.name):
        with hold or lock.hold(cfg.paths.lock(stage.lock), stage.command, console=console):
            for output in stage.outputs:
                _remove_leftovers(output, stage.own)
            if stage.saves_pipeline:
                save_pipeline(cfg)
            yield run
        if run.summary:
            console.print(f"{stage.name}: {run.summary}", markup=False, highlight=False, soft_wrap=True)


def _remove_leftovers(output: Path, own: Callable[[str], bool] | None) -> None:
    beside = {output.name, manifest_path(output).name}
    atomic.remove_leftovers(output.parent, of=lambda target: target in beside)
    atomic.remove_leftovers(output, of=own)  # nothing when the output is a file


def manifest_path(output: Path) -> Path:
    return output.with_name(output.name + MANIFEST_SUFFIX)


def stale_reason(output: Path, cfg: Pipeline, settings: tuple[str, ...]) -> str | None:
    """Why `output` is not what this pipeline would make now from the inputs its manifest lists,
    in words; None when it is current."""
    if not output.exists():
        return "it does not exist"
    manifest = manifest_path(output)
    try:
        made = json.loads(manifest.read_text(encoding="utf-8"))
        digest, made_with, inputs = made["digest"], made["settings"], made["inputs"]
    except FileNotFoundError:
        return f"{manifest.name} is missing (a run killed before it was written, or an older mmfc)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{manifest.name} is unreadable ({type(exc).__name__}: {exc})"
    if digest != cfg.digest(*settings):
        changed = _differences(made_with, cfg.result_settings(*settings))
        return f"made with other settings: {', '.join(changed) or 'their digest differs'}"
    for name, sha in inputs.items():
        path = Path(os.path.normpath(manifest.parent / name))
        try:
            if sha256_of(path) != sha:
                return f"its input {path} changed since"
        except OSError:
            return f"its input {path} is gone"
    return None


def _differences(made: dict, now: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested settings dicts."""
    keys = []
    for key in sorted(set(made) | set(now)):
        a, b = made.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def sha256_of(path: str | Path) -> str:
    """The sha256 of a file, in hex."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
