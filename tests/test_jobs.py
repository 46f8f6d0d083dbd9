"""mmfc.jobs: batch jobs on a joblib backend, and values each worker builds once per run."""

from __future__ import annotations

import os

import pytest

from mmfc.jobs import PerWorker, run_jobs


def square_plus(x: int, y: int) -> int:
    return x * x + y


def pid_and_source(source: PerWorker) -> tuple[int, int]:
    return os.getpid(), id(source.get())


builds: list[int] = []


def counted_build(value: int) -> list[int]:
    builds.append(value)
    return [value]


@pytest.mark.parametrize("backend, n_jobs", [("loky", 1), ("threading", 2), ("loky", 2)])
def test_every_job_runs_once_and_reports_its_position(backend, n_jobs):
    jobs = [(x, 1) for x in range(7)]
    results = dict(run_jobs(square_plus, jobs, backend=backend, n_jobs=n_jobs, title="test", sizes=[2] * 7))
    assert results == {position: x * x + 1 for position, (x, _) in enumerate(jobs)}
    assert list(run_jobs(square_plus, [], title="nothing")) == []


def test_per_worker_values_are_built_once_per_process_and_run():
    builds.clear()
    first = PerWorker(counted_build, (1,))
    assert first.get() is first.get() and builds == [1]
    second = PerWorker(counted_build, (2,))  # a new run never sees the first run's value
    assert second.get() == [2] and builds == [1, 2]
    # Workers build their own: one value per process, shared by its jobs.
    seen = dict(run_jobs(pid_and_source, [(second,)] * 6, n_jobs=2, title="workers"))
    per_process: dict[int, set[int]] = {}
    for pid, value in seen.values():
        per_process.setdefault(pid, set()).add(value)
    assert all(len(values) == 1 for values in per_process.values())
