"""The prepared GPU check's CPU path: bench/gpu_check.sh --device cpu at tiny sizes, the same
code as on a GPU (batch search, bf16 autocast with channels_last, DDP in a process group of
one, a demo epoch through the stage runner, the loader against the step)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the GPU check script end to end: `make test-fast` leaves it out

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_cpu_and_prints_its_table():
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["sh", "bench/gpu_check.sh", "--device", "cpu"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout.split("\ngpu_check: ", 1)[1].splitlines()[1:]
    cells = [[cell.strip() for cell in row.split(" | ")] for row in table]
    assert cells[0] == ["check", "batch", "figure", "note"]
    rows = {row[0]: row[1:] for row in cells[2:]}
    checks = ["RGB STAA-R18", "RGB plain (TSN)-R18", "RGB TSM-R18", "CTR-GCN", "DDP (gloo, 1 process)",
              "one demo epoch, rgb", "one demo epoch, skel", "loader rgb", "loader skel"]
    assert [next(name for name in rows if name.startswith(c)) for c in checks]
    for name, (batch, figure, *_) in rows.items():
        value = float(re.fullmatch(r"([0-9.]+) (clips/s|s)", figure).group(1))
        assert value > 0, name
    # The tiny sizes cap the batch search at 4: every RGB row ran at it.
    assert {rows[name][0] for name in rows if name.startswith("RGB")} == {"4"}
