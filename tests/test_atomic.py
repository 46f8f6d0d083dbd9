"""mmfc.atomic: nothing half-written is ever visible under its final name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmfc import atomic


def test_atomic_path_moves_only_a_finished_file(tmp_path: Path):
    target = tmp_path / "out" / "table.txt"
    atomic.write_text(target, "one")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            assert tmp.parent == target.parent and tmp.name.endswith("table.txt")
            raise RuntimeError("killed")
    assert target.read_text() == "one" and os.listdir(target.parent) == ["table.txt"]


def test_a_folder_is_switched_into_place_whole(tmp_path: Path):
    target = tmp_path / "shard.zarr"
    for content in ("old", "new"):
        with atomic.atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "data").write_text(content)
    assert (target / "data").read_text() == "new" and os.listdir(tmp_path) == ["shard.zarr"]


def test_leftovers_of_a_killed_writer_are_removed(tmp_path: Path):
    (tmp_path / f"{atomic.TEMP_PREFIX}0123abcd-a.txt").write_text("half")
    (tmp_path / f"{atomic.TEMP_PREFIX}4567cdef-b.zarr").mkdir()
    (tmp_path / "kept.txt").write_text("whole")
    atomic.remove_leftovers(tmp_path)
    assert os.listdir(tmp_path) == ["kept.txt"]
