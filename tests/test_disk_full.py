"""A full disk (issue 10.5): every stage's writer ends in one DiskFull naming the file, the space
that was free and what it needed, and leaves nothing half-written; stage 1 says what the whole
stage needs, and a rerun once space is freed finishes it.

The writers are tried on a real, tiny tmpfs where this machine lets the suite mount one (as root
it can); the conversion itself is also tested by simulating ENOSPC, which runs everywhere."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmfc import atomic
from mmfc.errors import DiskFull
from test_crops_reliability import SETTINGS, dataset, sample_ids

pytestmark = pytest.mark.slow  # stages on a full disk: `make test-fast` leaves it out

REPO = Path(__file__).resolve().parents[1]


def assert_one_clean_message(exc: DiskFull, target: Path, needs: str) -> None:
    message = str(exc)
    assert message.startswith(f"{target}: the disk is full (") and " free there); " in message
    assert needs in message and "nothing half-written was kept" in message
    assert not [p for p in target.parent.iterdir() if p.name.startswith(atomic.TEMP_PREFIX)]
    assert not target.exists()


def test_every_writer_on_a_full_disk_raises_one_disk_full(tiny_disk):
    from mmfc.report.plots import plot_curves
    from mmfc.scores.format import ScoreTable, write_scores
    from mmfc.train.checkpoint import save_checkpoint

    target = tiny_disk / "train" / "rgb" / "last.pt"
    with pytest.raises(DiskFull) as raised:  # torch.save reports it as a RuntimeError
        save_checkpoint(target, {"model": {"w": torch.zeros(100_000)}})
    assert_one_clean_message(raised.value, target, "it needs more than the ")

    target = tiny_disk / "scores" / "rgb.parquet"
    rng = np.random.default_rng(0)
    table = ScoreTable(ids=[f"s{i}" for i in range(3000)], splits=["test"] * 3000, labels=np.zeros(3000, np.int64),
                       logits=rng.normal(size=(3000, 60)).astype(np.float32), modality="rgb", checkpoint_digest="0" * 16,
                       pipeline_digest="0" * 16, class_names=[f"c{k}" for k in range(60)])
    with pytest.raises(DiskFull) as raised:  # pyarrow reports it as an OSError of its own
        write_scores(target, table)
    assert_one_clean_message(raised.value, target, "it needs more than the ")

    target = tiny_disk / "fusion" / "weights.json"
    with pytest.raises(DiskFull) as raised:
        atomic.write_text(target, json.dumps({"w": list(range(100_000))}))
    assert_one_clean_message(raised.value, target, "it needs 688.9 kB")

    target = tiny_disk / "report" / "curves.png"
    history = [{"epoch": e, "train_loss": float(2 + np.sin(e)), "val_loss": 1.0, "val_top1": 0.5} for e in range(1, 200)]
    with pytest.raises(DiskFull) as raised:
        plot_curves({"rgb": history, "skel": history}, target)
    assert_one_clean_message(raised.value, target, "it needs more than the ")


def test_stage_1_on_a_full_disk_says_what_it_needs_and_resumes_once_space_is_freed(tiny_disk, tmp_path, synth_clips):
    ids = sample_ids(synth_clips)[:7]
    root = dataset(tmp_path / "data", synth_clips, ids)
    defaults = tmp_path / "defaults.toml"
    defaults.write_text('name = "defaults"\n')
    command = [sys.executable, "-m", "mmfc", "stage", "crops", "--pipeline", str(defaults),
               f"--set=data.root={root}", f"--set=workdir={tiny_disk / 'work'}",
               *(f"--set={s}" for s in SETTINGS), "--set=crops.size=64", "--set=crops.num_frames=8"]
    full = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    said = " ".join(full.stderr.split())
    assert full.returncode == 2, full.stderr
    assert "Traceback" not in full.stderr and said.count("error:") == 1
    assert f"error: {tiny_disk / 'work' / 'crops'}" in said and "the disk is full (" in said
    assert "stage 1 needs about " in said or "it needs " in said
    crops = tiny_disk / "work" / "crops"
    assert not list(crops.rglob(".tmp-*")) and not (crops / "index.parquet").exists()
    done = {p.stem for p in (crops / "parts").glob("*.parquet")}

    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"{len(ids) - 2 * len(done)} done, {2 * len(done)} skipped" in " ".join(again.stderr.split())


class Killed(Exception):
    pass


def test_enospc_however_a_library_wraps_it_becomes_disk_full(tmp_path):
    target = tmp_path / "out" / "last.pt"

    def torch_like(tmp: Path) -> None:  # torch.save: a RuntimeError raised while handling the OSError
        tmp.write_bytes(b"x" * 5000)
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    with pytest.raises(DiskFull) as raised:
        with atomic.atomic_path(target) as tmp:
            torch_like(tmp)
    assert_one_clean_message(raised.value, target, "it needs more than the 5.0 kB that fit")
    with pytest.raises(DiskFull, match="it needs 12 bytes"):
        with atomic.atomic_path(target, size=12):
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
    with pytest.raises(Killed):  # anything else goes through unchanged
        with atomic.atomic_path(target):
            raise Killed
    restored = DiskFull(target, 10, "it needs 1 MB")
    assert str(restored) == str(type(restored)(restored.path, restored.free, restored.needs))
