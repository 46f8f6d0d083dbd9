"""Running a batch stage's jobs in parallel, on whichever joblib backend the pipeline names.

    for position, result in run_jobs(crop_batch, [(batch, ...), ...], backend="loky", n_jobs=-1,
                                     title="crops", unit="samples", sizes=[len(batch), ...]):
        ...

`run_jobs` calls `function(*args)` for each argument tuple, in worker processes (loky,
multiprocessing), threads (threading) or on a cluster (ray, dask), and yields each result as it
finishes, in any order, with its job's position, while a rich progress bar counts `sizes` (units
of work, e.g. samples per batch). ray and dask are imported only when chosen:

    ray   `pip install ray`; joins the cluster named by RAY_ADDRESS, or starts a local one
    dask  `pip install distributed`; connects to DASK_SCHEDULER_ADDRESS, or starts a local cluster

A job that needs something costly to build (a data source that lists a whole dataset, a model)
takes a `PerWorker` instead of the thing itself: each process builds it once per run and reuses
it for every job it runs, rather than receiving it pickled with each job.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import joblib
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from mmfc.config import Backend

R = TypeVar("R")
T = TypeVar("T")


def run_jobs(
    function: Callable[..., R],
    jobs: Sequence[tuple],
    *,
    backend: Backend = "loky",
    n_jobs: int = -1,
    title: str,
    unit: str = "jobs",
    sizes: Sequence[int] | None = None,
    console: Console | None = None,
) -> Iterator[tuple[int, R]]:
    """Yield (position in `jobs`, function(*jobs[position])) as each job finishes.

    The jobs run while the caller iterates. n_jobs follows joblib (-1: every core; 1 runs the jobs
    in this process, one after another). `sizes` weighs each job on the progress bar (default 1
    each). An exception in a job ends the run and is raised here.
    """
    sizes = [1] * len(jobs) if sizes is None else list(sizes)
    columns = (
        TextColumn(title), BarColumn(), MofNCompleteColumn(), _RateColumn(unit), TextColumn("left"), TimeRemainingColumn(),
    )
    with Progress(*columns, console=console or Console(stderr=True), transient=False) as progress:
        task = progress.add_task(title, total=sum(sizes))
        if not jobs:
            return
        with _backend(backend):
            parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")
            calls = (joblib.delayed(_numbered)(position, function, args) for position, args in enumerate(jobs))
            for position, result in parallel(calls):
                progress.advance(task, sizes[position])
                yield position, result


def _numbered(position: int, function: Callable[..., R], args: tuple) -> tuple[int, R]:
    # Results arrive in any order; the position tells the caller which job each one is.
    return position, function(*args)


@contextlib.contextmanager
def _backend(name: str):
    client = None
    if name == "ray":
        from ray.util.joblib import register_ray

        register_ray()
    elif name == "dask":
        from distributed import Client

        client = Client(os.environ.get("DASK_SCHEDULER_ADDRESS"))
    try:
        with joblib.parallel_config(backend=name):
            yield
    finally:
        if client is not None:
            client.close()


SHOWN_FAILURES = 50


def print_failures(console: Console, failed: list[dict], title: str, table_file: str) -> None:
    """The end-of-run table of what a batch stage could not do: id, file and reason of each
    (the first SHOWN_FAILURES; all of them are in `table_file`)."""
    if not failed:
        return
    table = Table(title=title)
    for col in ("id", "file", "reason"):
        table.add_column(col, overflow="fold")
    for f in failed[:SHOWN_FAILURES]:
        table.add_row(f["id"], f["file"], f["reason"])
    console.print(table)
    if len(failed) > SHOWN_FAILURES:
        console.print(f"... and {len(failed) - SHOWN_FAILURES} more in {table_file}")


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.completed / task.elapsed if task.elapsed and task.completed else 0.0
        return Text(f"{speed:.1f} {self.unit}/s", style="progress.data.speed")


# What this process has built: build function -> (PerWorker key, value). One value per build
# function, the latest run's: a process reused across runs (loky keeps its workers) never holds
# more than one data source, and never hands out an earlier run's.
_BUILT: dict[Callable, tuple[str, Any]] = {}
_BUILDING = threading.Lock()


@dataclass(frozen=True)
class PerWorker(Generic[T]):
    """`build(*args)`, made at most once per process for one run; pickles as the recipe only."""

    build: Callable[..., T]
    args: tuple = ()
    # A new PerWorker is a new run: a value built for another run is never handed out.
    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    def get(self) -> T:
        with _BUILDING:  # threads of one process share the value
            built = _BUILT.get(self.build)
            if built is None or built[0] != self.key:
                built = _BUILT[self.build] = (self.key, self.build(*self.args))
            return built[1]
