"""The Makefile keeps a stage's outputs when make is interrupted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # make around a training stage: `make test-fast` leaves it out

MAKEFILE = Path(__file__).parents[1] / "Makefile"


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_interrupted_training_keeps_its_checkpoint(tmp_path: Path):
    """Ctrl-C while `make train-skel` runs: make must not delete train/skel/best.pt."""
    workdir = tmp_path / "run"
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(f'workdir = "{workdir}"\n')
    # An installed environment newer than its pyproject.toml, so `setup` has nothing to do, and
    # an up-to-date crop store, so make goes straight to training.
    (tmp_path / "pyproject.toml").write_text("")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (workdir / "crops").mkdir(parents=True)
    started = tmp_path / "started"
    # A stand-in for `mmfc stage train`: writes best.pt as an epoch would, then keeps training.
    fake = venv / "bin" / "mmfc"
    fake.write_text(f"#!/bin/sh\nmkdir -p {workdir}/train/skel\necho weights > {workdir}/train/skel/best.pt\n"
                    f"touch {started}\nexec sleep 60\n")
    fake.chmod(0o755)
    time.sleep(0.01)
    (venv / ".installed").touch()
    (workdir / "crops" / "index.parquet").touch()

    make = subprocess.Popen(
        ["make", "-f", str(MAKEFILE), f"PIPELINE={pipeline}", f"VENV={venv}", f"MMFC={fake}", "train-skel"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        # As in a terminal: a test run started in the background (`cmd &` in a script) inherits
        # SIGINT ignored, and make and the stage would then never see the Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 20
    while not started.exists() and make.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), make.communicate()[0]
    os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
    output = make.communicate(timeout=20)[0]
    assert "Deleting file" not in output
    assert (workdir / "train" / "skel" / "best.pt").read_text() == "weights\n"
