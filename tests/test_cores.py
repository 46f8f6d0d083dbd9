"""Threads and loader workers that fit the cores left free (mmfc/cores.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch

from mmfc import cores
from mmfc.config import TrainConfig
from mmfc.cores import apply_threads, busy_elsewhere, loader_worker_init, plan_cores


@pytest.fixture
def machine(monkeypatch):
    """A machine of `n` cores for this process, no torchrun."""
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)

    def with_cores(n: int) -> None:
        monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(n)))

    return with_cores


@pytest.mark.parametrize("count, busy, device, threads, workers", [
    (2, 0.0, "cpu", 2, 0),  # a quiet laptop: torch's own default
    (2, 1.0, "cpu", 1, 0),  # beside one busy process: one core is left
    (2, 2.6, "cpu", 1, 0),  # never fewer than one thread
    (16, 0.0, "cpu", 12, 4),  # one loader worker per 4 free cores
    (16, 3.6, "cpu", 9, 3),  # 12 free
    (16, 0.0, "cuda", 8, 8),  # the GPU computes: workers take the cores, at most 8
    (4, 0.0, "cuda", 1, 3),
])
def test_auto_plan(machine, count, busy, device, threads, workers):
    machine(count)
    plan = plan_cores(TrainConfig(), device, busy=busy)
    assert (plan.threads, plan.loader_workers, plan.cores) == (threads, workers, count)


def test_numbers_are_taken_as_given_and_torchrun_shares_the_cores(machine, monkeypatch):
    machine(16)
    given = plan_cores(TrainConfig(threads="3", loader_workers="0"), "cpu", busy=15.0)
    assert (given.threads, given.loader_workers) == (3, 0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    plan = plan_cores(TrainConfig(), "cuda")  # no sampling under torchrun: the ranks start at once
    assert (plan.cores, plan.busy_elsewhere, plan.threads, plan.loader_workers) == (2, 0.0, 1, 1)


def test_busy_elsewhere_reads_proc_stat(machine, monkeypatch, tmp_path: Path):
    machine(4)
    stat = tmp_path / "stat"
    line = "cpu  {user} 0 {system} {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4\n"
    stat.write_text(line.format(user=100, system=50, idle=1000))

    def sleep(seconds):  # what the other processes did meanwhile: 300 of 400 jiffies busy
        stat.write_text(line.format(user=350, system=100, idle=1100))

    monkeypatch.setattr(cores.time, "sleep", sleep)
    assert busy_elsewhere(stat=stat) == pytest.approx(4 * 300 / 400)
    assert busy_elsewhere(stat=tmp_path / "absent") == 0.0  # not Linux: nothing is known to be busy


def test_apply_threads_and_the_workers_single_thread():
    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        apply_threads(1)
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])

    class Threads(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return torch.tensor([torch.get_num_threads(), cv2.getNumThreads()])

    loader = torch.utils.data.DataLoader(Threads(), num_workers=1, worker_init_fn=loader_worker_init)
    assert next(iter(loader)).tolist() == [[1, 1]]
