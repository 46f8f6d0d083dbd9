"""Writing files so that nothing half-written is ever visible: the one way every stage does it.

A file or folder is built under a temporary name beside its target (same folder, so the final
os.replace is a rename, never a copy) and takes the target's name only once it is complete. A
killed writer leaves at most a hidden `.tmp-*` sibling, which `remove_leftovers` clears.

    with atomic_path(out / "scores.parquet") as tmp:
        pq.write_table(table, tmp)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def temp_sibling(path: str | Path) -> Path:
    """A fresh hidden name in the target's folder (created if needed). It ends with the target's
    name, so tools that pick a format by extension (OpenCV's video writer) see the real one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")


def move_into_place(tmp: Path, path: str | Path) -> None:
    """Give a finished file or folder its final name, replacing what is there.

    os.replace cannot overwrite a non-empty folder, so an old one is first renamed aside and
    removed after; a kill between the two renames leaves no folder under the final name, never a
    mixed one.
    """
    path = Path(path)
    if tmp.is_dir() and path.is_dir():
        old = temp_sibling(path)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old)
    else:
        os.replace(tmp, path)


def discard(tmp: Path) -> None:
    """Remove an unfinished temporary file or folder, if it exists."""
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write (a file or a folder); it is moved onto `path`
    when the block succeeds and removed when it raises."""
    tmp = temp_sibling(path)
    try:
        yield tmp
        move_into_place(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_leftovers(folder: str | Path) -> None:
    """Delete the temporary siblings a killed writer left in `folder` (not in its subfolders)."""
    folder = Path(folder)
    if folder.is_dir():
        for tmp in folder.glob(f"{TEMP_PREFIX}*"):
            discard(tmp)
