"""Each stage's wall time in the workdir, and the table `mmfc timings` prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmfc.errors import DataError
from mmfc.timings import format_table, read_timings, record, timed


def test_timed_records_success_and_failure(tmp_path: Path, monkeypatch):
    with timed(tmp_path, "crops"):
        pass
    with pytest.raises(ValueError), timed(tmp_path, "train-rgb"):
        raise ValueError("stopped")
    monkeypatch.setenv("RANK", "1")  # a torchrun rank beside rank 0 records nothing
    with timed(tmp_path, "train-skel"):
        pass
    rows = read_timings(tmp_path)
    assert [(row["stage"], row["ok"]) for row in rows] == [("crops", True), ("train-rgb", False)]
    assert all(row["seconds"] >= 0 for row in rows)


def test_table_in_finishing_order_with_shares_and_total(tmp_path: Path):
    (tmp_path / "b.json").write_text(json.dumps(
        {"stage": "train-rgb", "seconds": 90.0, "ok": True, "finished": "2026-12-02T01:02:00+00:00"}))
    (tmp_path / "a.json").write_text(json.dumps(
        {"stage": "crops", "seconds": 30.0, "ok": True, "finished": "2026-12-02T01:00:30+00:00"}))
    (tmp_path / ".tmp-1234abcd-c.json").write_text("{")  # being written: not read
    lines = format_table(read_timings(tmp_path)).splitlines()
    assert lines[1].split()[:4] == ["crops", "30.0", "s", "25%"]
    assert lines[2].split()[:5] == ["train-rgb", "1", "min", "30.0", "s"]
    assert lines[3].split() == ["total", "2", "min", "0.0", "s"]


def test_a_foreign_file_is_named(tmp_path: Path):
    record(tmp_path, "fuse", 1.0, True)
    (tmp_path / "notes.json").write_text("[]")
    with pytest.raises(DataError, match="notes.json.*not a stage timing"):
        read_timings(tmp_path)


def test_synth_records_its_time_where_asked(tmp_path: Path, monkeypatch):
    """`make demo` passes --timings <workdir>/timings, so the generation shows in its table."""
    from typer.testing import CliRunner

    import mmfc.data.synth as synth
    from mmfc.cli import app

    monkeypatch.setattr(synth, "generate", lambda out, per_class=None, seed=0: {"out": str(out)})
    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "data"), "--timings", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert [row["stage"] for row in read_timings(tmp_path / "t")] == ["synth"]
