"""The cluster engines for real (issue 13.1): stage 1 on a Dask LocalCluster of two worker
processes and on a local Ray with two CPUs gives the index rows, frames and skeletons of a loky
run; jobs raise their own exceptions through either engine. Each engine is started once for the
module. ray and distributed are in the test extra (`make test` installs them); a platform with
no wheel for one skips its tests, saying so."""

from __future__ import annotations

import os

import pytest

from mmfc.crops.stage import run_crops
from mmfc.errors import DataError
import time

from mmfc.jobs import DASK_LOCAL_CONFIG, DASK_WORKER_ENV, PerWorker, init_local_ray, local_dask_cluster, run_jobs
from mmfc.crops.store import open_crops
from test_crops_reliability import assert_same, comparable, dataset, pipeline, read_by_id, sample_ids

pytestmark = pytest.mark.slow  # stage 1 on Ray and Dask clusters: `make test-fast` leaves it out


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed", reason="distributed has no wheel for this platform")
    cluster = local_dask_cluster(n_workers=2)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="ray has no wheel for this platform")
    # The workers import the jobs of this test module from tests/ (mmfc itself is installed).
    tests = os.path.dirname(__file__)
    init_local_ray(num_cpus=2, log_to_driver=False,
                   runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def loky_run(synth_clips, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loky")
    root = dataset(tmp / "data", synth_clips, sample_ids(synth_clips)[:7])
    cfg = pipeline(root, tmp / "work", "jobs.backend=loky", "jobs.n_jobs=2")
    assert run_crops(cfg) == 0
    return root, cfg.paths.crops


def same_as_loky(loky_run, tmp_path, backend: str) -> None:
    root, loky_crops = loky_run
    cfg = pipeline(root, tmp_path / "work", f"jobs.backend={backend}", "jobs.n_jobs=2")
    assert run_crops(cfg) == 0
    got = open_crops(cfg.paths.crops)
    assert comparable(got.index) == comparable(open_crops(loky_crops).index)
    assert_same(read_by_id(cfg.paths.crops), read_by_id(loky_crops))


def process_and_value(value: PerWorker) -> tuple[int, int]:
    return os.getpid(), id(value.get())


def worker_settings() -> tuple[dict, int]:
    # What glibc saw when the process started, not what Python's os.environ says now.
    with open("/proc/self/environ", "rb") as f:
        started_with = dict(v.decode().split("=", 1) for v in f.read().split(b"\0") if b"=" in v)
    return started_with, os.nice(0)


def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise DataError(f"file-{x}", "cannot be read")
    return x


def engine_runs_jobs(backend: str) -> None:
    value = PerWorker(list, ((1, 2),))
    seen = dict(run_jobs(process_and_value, [(value,)] * 8, backend=backend, n_jobs=2, title=backend))
    assert sorted(seen) == list(range(8))
    per_process: dict[int, set[int]] = {}
    for pid, built in seen.values():
        per_process.setdefault(pid, set()).add(built)
    assert all(len(built) == 1 for built in per_process.values())  # built once per worker process
    assert os.getpid() not in per_process and len(per_process) <= 2
    with pytest.raises(DataError, match="file-3: cannot be read"):  # the job's own exception
        list(run_jobs(fail_on, [(x, 3) for x in range(6)], backend=backend, n_jobs=2, title=backend))


def interval(seconds: float) -> tuple[float, float]:
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def most_at_once(intervals) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def engine_keeps_the_cap(backend: str) -> None:
    # Both workers started first (Ray starts them as tasks arrive, slower than a short job).
    list(run_jobs(interval, [(0.5,)] * 4, backend=backend, n_jobs=2, title=backend))
    for n_jobs, expected in ((1, 1), (2, 2)):
        intervals = [r for _, r in run_jobs(interval, [(0.3,)] * 4, backend=backend, n_jobs=n_jobs, title=backend)]
        assert most_at_once(intervals) == expected


def test_dask_runs_no_more_jobs_at_once_than_n_jobs_or_its_cores(dask_cluster):
    engine_keeps_the_cap("dask")


def test_ray_runs_no_more_jobs_at_once_than_n_jobs_or_its_cores(ray_cluster):
    engine_keeps_the_cap("ray")


def test_dask_runs_the_jobs_in_its_worker_processes(dask_cluster):
    engine_runs_jobs("dask")


def test_dask_workers_start_with_the_malloc_threshold(dask_cluster):
    (started_with, _), = (r for _, r in run_jobs(worker_settings, [()], backend="dask", title="dask"))
    assert started_with.items() >= DASK_WORKER_ENV.items()
    assert "MALLOC_MMAP_THRESHOLD_" not in os.environ  # the driver's own environment is left as it was


def dask_settings() -> dict:
    import dask

    return {key: dask.config.get(key) for key in DASK_LOCAL_CONFIG}


def test_dask_local_cluster_runs_its_clocks_at_mmfcs_settings(dask_cluster):
    # The workers' own settings (the memory check, the profiler) and the scheduler's (in this
    # process, read when the cluster started) are mmfc's; the driver's config is left as it was.
    (settings,) = (r for _, r in run_jobs(dask_settings, [()], backend="dask", title="dask"))
    assert settings == DASK_LOCAL_CONFIG
    callbacks = dask_cluster.cluster.scheduler.periodic_callbacks
    assert (callbacks["tick"].callback_time, callbacks["monitor"].callback_time) == (1000, 2000)
    assert dask_settings() != DASK_LOCAL_CONFIG


def test_ray_workers_run_at_the_drivers_priority(ray_cluster):
    (_, niceness), = (r for _, r in run_jobs(worker_settings, [()], backend="ray", title="ray"))
    assert niceness == os.nice(0)


def test_stage_1_on_dask_equals_loky(dask_cluster, loky_run, tmp_path):
    same_as_loky(loky_run, tmp_path, "dask")


def test_ray_runs_the_jobs_in_its_worker_processes(ray_cluster):
    engine_runs_jobs("ray")


def test_stage_1_on_ray_equals_loky(ray_cluster, loky_run, tmp_path):
    same_as_loky(loky_run, tmp_path, "ray")
