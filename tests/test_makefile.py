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


FAKE_MMFC = """#!/bin/sh
# A stand-in for mmfc: logs each call and writes the output its stage would.
echo "$*" >> {log}
if [ "$1" = branches ]; then
  [ -f {refuse} ] && {{ echo "error: no branch" >&2; exit 2; }}
  if [ "$2" = --oof ]; then
    # The branches the out-of-fold stage runs for: where {oof} exists, as fusion.fit_on = "oof" would.
    [ -f {oof} ] && echo "joint bone" || echo ""
    exit 0
  fi
  echo "note: branch rgb left out: no video" >&2
  echo "joint bone"
  exit 0
fi
modality=""
previous=""
for arg in "$@"; do [ "$previous" = --modality ] && modality=$arg; previous=$arg; done
case "$2" in
  train) mkdir -p {run}/train/$modality && touch {run}/train/$modality/best.pt ;;
  scores) mkdir -p {run}/scores && touch {run}/scores/$modality.parquet ;;
  oof) mkdir -p {run}/oof && touch {run}/oof/$modality.parquet ;;
  fuse) mkdir -p {run}/fusion && touch {run}/fusion/weights.json ;;
  report) mkdir -p {run}/report && touch {run}/report/report.html ;;
esac
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_builds_every_branch_mmfc_lists_through_a_pipeline_anywhere(tmp_path: Path):
    """`make report` trains, scores and fuses the branches `mmfc branches` prints (here the
    pipeline declares rgb on data without videos: joint and bone are built, rgb is not), asking
    once, for a pipeline outside the repository; per-branch targets build one; an empty list
    fails."""
    workdir, log, refuse = tmp_path / "run", tmp_path / "calls.log", tmp_path / "refuse"
    pipeline = tmp_path / "elsewhere" / "p.toml"
    pipeline.parent.mkdir()
    pipeline.write_text(f'workdir = "{workdir}"\nbranches = ["rgb", "joint", "bone"]\n')
    (tmp_path / "pyproject.toml").write_text("")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    fake = venv / "bin" / "mmfc"
    fake.write_text(FAKE_MMFC.format(log=log, refuse=refuse, run=workdir, oof=tmp_path / "oof"))
    fake.chmod(0o755)
    (workdir / "crops").mkdir(parents=True)
    (venv / ".installed").touch()
    (workdir / "crops" / "index.parquet").touch()
    earlier = time.time() - 60  # older than setup and stage 1, which have nothing to do then
    for source in (pipeline, tmp_path / "pyproject.toml"):
        os.utime(source, (earlier, earlier))

    def make(*goals: str) -> subprocess.CompletedProcess:
        log.unlink(missing_ok=True)
        return subprocess.run(["make", "-f", str(MAKEFILE), f"PIPELINE={pipeline}", f"VENV={venv}", f"MMFC={fake}",
                               *goals], cwd=tmp_path, capture_output=True, text=True)

    def calls() -> list[str]:
        return [" ".join(a for a in line.split() if a != str(pipeline)) for line in log.read_text().splitlines()]

    result = make("report")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "branch rgb left out: no video" in result.stderr
    assert calls() == [
        "branches --pipeline", "branches --oof --pipeline", "stage train --modality joint --pipeline --resume",
        "stage scores --modality joint --pipeline", "stage train --modality bone --pipeline --resume",
        "stage scores --modality bone --pipeline", "stage fuse --pipeline", "stage report --pipeline",
    ]
    assert make("report").returncode == 0 and calls() == ["branches --pipeline", "branches --oof --pipeline"]
    # Fitted on out-of-fold scores (fusion.fit_on): the fusion needs each branch's, and is redone after them.
    (tmp_path / "oof").touch()
    result = make("fuse")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls() == ["branches --pipeline", "branches --oof --pipeline", "stage oof --modality joint --pipeline",
                       "stage oof --modality bone --pipeline", "stage fuse --pipeline"]
    assert make("fuse").returncode == 0 and calls() == ["branches --pipeline", "branches --oof --pipeline"]
    (tmp_path / "oof").unlink()
    result = make("train-rgb", "scores-bone")  # one branch each; bone's scores are current
    assert result.returncode == 0 and calls()[-1:] == ["stage train --modality rgb --pipeline --resume"]
    refuse.touch()
    result = make("train")
    assert result.returncode == 2 and "no branch to build" in result.stderr and "error: no branch" in result.stderr
