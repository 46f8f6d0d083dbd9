"""Running a batch stage's jobs in parallel, on the backend the pipeline's [jobs] section names.

    for position, result in run_jobs(crop_batch, [(batch, ...), ...], backend="loky", n_jobs=-1,
                                     title="crops", unit="samples", sizes=[len(batch), ...]):
        ...

Every batch stage (0 poses, 1 crops, 3 scores) hands its jobs to `run_jobs`, which calls
`function(*args)` for each argument tuple and yields each result as it finishes, in any order,
with its job's position, while a rich progress bar counts `sizes` (units of work, e.g. samples
per batch). The backends:

    loky, multiprocessing, threading   joblib on this machine (n_jobs 1: in this process)
    ray    Ray tasks (`pip install ray`): the cluster RAY_ADDRESS names, or one this process
           already joined (ray.init), else a local one for the run
    dask   Dask futures (`pip install distributed`): the scheduler DASK_SCHEDULER_ADDRESS names,
           or a Client this process already made, else a local cluster for the run

On ray and dask, n_jobs caps how many jobs run at once (-1: as many as the cluster has cores);
both engines are imported only when chosen, and a job's exception is raised here as itself.

A job that needs something costly to build (a data source that lists a whole dataset, a model)
takes a `PerWorker` instead of the thing itself: each process builds it once per run and reuses
it for every job it runs, rather than receiving it pickled with each job.

Workers never outlive their run. n_jobs above the cores this process may use (on ray and dask:
the cluster's) is capped with a note. SIGTERM or Ctrl-C (SIGINT) of the driver stops the workers
at once: the engine is shut down (joblib terminates its worker processes, Ray's tasks are
cancelled by force, mmfc's own local Dask cluster is closed) before the driver exits. A driver
killed outright (SIGKILL) cannot do that, so each worker process the driver started itself
(joblib's, a local Dask cluster's) watches it and exits as soon as it is gone; Ray ends the
tasks of a driver that died itself. On a Dask cluster of its own (DASK_SCHEDULER_ADDRESS), a
job already running finishes: Dask cannot interrupt one, and starts no other of a run whose
client is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
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
from mmfc.cores import usable_cores

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

    The jobs run while the caller iterates. n_jobs follows joblib on its backends (-1: every core;
    1 runs the jobs in this process, one after another) and caps the jobs running at once on ray
    and dask (-1: as many as the cluster takes). `sizes` weighs each job on the progress bar (default 1
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

        def note(text: str) -> None:
            progress.console.print(f"[yellow]note:[/] {text}", highlight=False)

        engine = _ENGINES.get(backend, _joblib)(function, jobs, backend, n_jobs, note)
        with _stopped_by_signals(engine):
            for position, result in engine:
                progress.advance(task, sizes[position])
                yield position, result


@contextlib.contextmanager
def _stopped_by_signals(engine: Iterator) -> Iterator[None]:
    """While a run lasts, SIGTERM and SIGINT shut its engine down before they end the driver.

    Python's default would raise KeyboardInterrupt (or end the process, for SIGTERM) wherever
    the driver is: while it handles a result, the engine's cleanup would wait for the garbage
    collector, and a joblib pool left to the interpreter's exit lets its workers finish their
    jobs first. Only the main thread can take signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    driver = os.getpid()

    def stop(signum, frame):
        if os.getpid() != driver:  # a worker forked with this handler: end as the signal would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if not engine.gi_running:  # the driver is handling a result: close the engine from here
            engine.close()
        # Inside the engine the exception itself shuts it down (joblib aborts on any exception).
        raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def capped_workers(n_jobs: int, cores: int, of: str, note: Callable[[str], None]) -> int:
    """n_jobs, or `cores` (with a note) when it asks for more workers than there are cores."""
    if cores > 0 and n_jobs > cores:
        note(f"jobs.n_jobs = {n_jobs} is more than the {cores} cores {of}: {cores} workers at once")
        return cores
    return n_jobs


# How often a worker process checks that its driver still lives (_exit_with_driver).
DRIVER_CHECK_SECONDS = 0.5
_WATCHING: set[int] = set()


def _numbered(position: int, function: Callable[..., R], args: tuple, driver: int) -> tuple[int, R]:
    # Results arrive in any order; the position tells the caller which job each one is.
    _watch_driver(driver)
    return position, function(*args)


def _watch_driver(driver: int) -> None:
    """In a worker process that the driver (pid `driver`) started itself, start a thread that
    ends the process as soon as the driver is gone: a driver killed outright leaves no worker
    running. Jobs in the driver itself, and workers of a cluster (whose parent is the cluster's
    own process), are left alone."""
    if driver in _WATCHING or os.getppid() != driver:
        return
    _WATCHING.add(driver)
    threading.Thread(target=_exit_with_driver, args=(driver,), name="mmfc-driver-watch", daemon=True).start()


def _exit_with_driver(driver: int) -> None:
    while os.getppid() == driver:
        time.sleep(DRIVER_CHECK_SECONDS)
    # Nobody is left to receive a result; whatever the job was writing is a temporary file that
    # the stage's next run clears (mmfc.atomic), as after any killed worker.
    os._exit(1)


def _joblib(function: Callable, jobs: Sequence[tuple], backend: str, n_jobs: int,
            note: Callable[[str], None]) -> Iterator[tuple[int, Any]]:
    n_jobs = capped_workers(n_jobs, usable_cores(), "this process may use", note)
    # joblib's multiprocessing backend returns nothing before every job is done (it refuses to
    # be a generator); the others yield each result as it comes.
    returns = "list" if backend == "multiprocessing" else "generator_unordered"
    parallel = joblib.Parallel(n_jobs=n_jobs, backend=backend, return_as=returns)
    driver = os.getpid()
    yield from parallel(joblib.delayed(_numbered)(position, function, args, driver)
                        for position, args in enumerate(jobs))


def _ray(function: Callable, jobs: Sequence[tuple], backend: str, n_jobs: int,
         note: Callable[[str], None]) -> Iterator[tuple[int, Any]]:
    import ray

    joined = not ray.is_initialized()
    if joined:
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, include_dashboard=False)
        else:
            init_local_ray()
    remote = ray.remote(num_cpus=1)(_numbered)
    n_jobs = capped_workers(n_jobs, int(ray.cluster_resources().get("CPU", 0)), "of the Ray cluster", note)
    driver = os.getpid()
    pending: list = []
    try:
        yield from _bounded(jobs, n_jobs, lambda position, args: remote.remote(position, function, args, driver),
                            lambda: _ray_next(ray, pending), pending)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)  # a job in native code (a video decoder) would not see an interrupt
        if joined:
            ray.shutdown()


def _ray_next(ray, pending: list):
    done, rest = ray.wait(pending, num_returns=1)
    pending[:] = rest
    try:
        return ray.get(done[0])
    except ray.exceptions.RayTaskError as exc:  # the job's own exception, not Ray's wrapper
        raise (exc.cause if isinstance(exc.cause, BaseException) else exc) from None


# Dask starts its workers with MALLOC_TRIM_THRESHOLD_ at 64 kB, which also fixes glibc's mmap
# threshold at 128 kB: every decoded frame then came as fresh pages from the kernel, and a batch's
# memory went back to the kernel after each frame, so stage 1 spent two to three times the system
# time of a loky worker (bench/bench_backends.py). Both thresholds above a batch's frames keep
# them in the heap. glibc reads them when a process starts, so they go into Dask's pre-spawn
# environment (a LocalCluster's `env=` is set only once the worker process runs, too late: its
# page faults stayed ten times loky's). docs/operations.md, "Scale-out", says how to start a cluster's workers with them.
DASK_WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}
# Ray runs its workers at nice 15, below the driver and its own daemons; on a small machine the
# driver (the progress bar, the index) and anything else running then take the workers' cores.
RAY_LOCAL_ENV = {"RAY_worker_niceness": "0"}
# A LocalCluster's own clocks, at Dask's defaults, keep a tenth of a core busy with nothing submitted
# (the event-loop tick every 20 ms in the scheduler, each nanny and worker; a stack profiler every
# 10 ms and a memory check every 100 ms in each worker; a system monitor every 500 ms), taken from
# the jobs on a small machine; these settings cut it several times (bench/bench_backends.py). A
# batch job runs for seconds, so a memory limit checked once a second still stops a runaway
# worker, and there is no dashboard to read the profiles and system figures.
DASK_LOCAL_CONFIG = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.worker.profile.enabled": False,
}


def local_dask_cluster(n_workers: int | None = None, settings: dict | None = None):
    """The Dask LocalCluster mmfc starts for a run: one-thread worker processes started with
    DASK_WORKER_ENV, under the Dask `settings` (None: DASK_LOCAL_CONFIG; {}: Dask's own).
    n_workers None is Dask's choice, one per core here."""
    import dask
    from distributed import LocalCluster

    pre_spawn = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **DASK_WORKER_ENV}
    settings = DASK_LOCAL_CONFIG if settings is None else settings
    with dask.config.set({**settings, "distributed.nanny.pre-spawn-environ": pre_spawn}), _environ_restored():
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)


def init_local_ray(num_cpus: int | None = None, **kwargs) -> None:
    """Start the local Ray mmfc runs on when no RAY_ADDRESS is given, its workers at the driver's
    priority (RAY_LOCAL_ENV)."""
    import ray

    with _environ_restored():
        os.environ.update(RAY_LOCAL_ENV)
        ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)


@contextlib.contextmanager
def _environ_restored():
    # Dask's pre-spawn variables are set in this process's environment to reach the workers it
    # spawns; they, and Ray's, stay out of everything this process starts afterwards.
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _dask(function: Callable, jobs: Sequence[tuple], backend: str, n_jobs: int,
          note: Callable[[str], None]) -> Iterator[tuple[int, Any]]:
    from distributed import Client, as_completed, get_client

    cluster = None
    try:
        client, own = get_client(), False
    except ValueError:  # no client in this process yet: the scheduler named, or a local cluster
        address = os.environ.get("DASK_SCHEDULER_ADDRESS")
        if not address:
            cluster = local_dask_cluster()
        client, own = Client(address or cluster), True
    cores = sum(client.nthreads().values())
    n_jobs = capped_workers(n_jobs, cores, "of the Dask cluster's workers", note)
    driver = os.getpid()
    finished = as_completed()
    pending: list = []

    def submit(position: int, args: tuple):
        future = client.submit(_numbered, position, function, args, driver, pure=False)
        finished.add(future)
        return future

    def next_result():
        future = next(finished)
        pending.remove(future)
        return future.result()

    try:
        yield from _bounded(jobs, n_jobs, submit, next_result, pending)
    finally:
        client.cancel(pending)
        if own:
            client.close()
        if cluster is not None:
            cluster.close()


def _bounded(jobs: Sequence[tuple], n_jobs: int, submit: Callable, next_result: Callable, pending: list):
    """Keep at most n_jobs (all when negative) jobs submitted; yield each result as it comes."""
    limit = n_jobs if n_jobs > 0 else len(jobs)
    queue = iter(enumerate(jobs))
    for position, args in queue:
        pending.append(submit(position, args))
        if len(pending) >= limit:
            break
    while pending:
        yield next_result()
        for position, args in queue:
            pending.append(submit(position, args))
            break


_ENGINES = {"ray": _ray, "dask": _dask}


SHOWN_FAILURES = 50


def print_failures(console: Console, failed: list[dict], title: str, table_file: str) -> None:
    """The end-of-run table of what a batch stage could not do: id, file and reason of each
    (the first SHOWN_FAILURES; all of them are in `table_file`)."""
    if not failed:
        return
    # Cells as plain Text: ids, paths and reasons are not rich markup ("[x]" in a path would vanish).
    table = Table(title=Text(title))
    for col in ("id", "file", "reason"):
        table.add_column(col, overflow="fold")
    for f in failed[:SHOWN_FAILURES]:
        table.add_row(Text(f["id"]), Text(f["file"]), Text(f["reason"]))
    console.print(table)
    if len(failed) > SHOWN_FAILURES:
        console.print(f"... and {len(failed) - SHOWN_FAILURES} more in {table_file}", markup=False)


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
