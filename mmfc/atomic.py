"""Writing files so that nothing half-written is ever visible: the one way every stage does it.

A file or folder is built under a temporary name beside its target (same folder, so the final
os.replace is a rename, never a copy) and takes the target's name only once it is complete. A
killed writer leaves at most a hidden `.tmp-*` sibling, which `remove_leftovers` clears. A
writer that runs out of disk space removes what it wrote and raises one DiskFull naming the
target, the space that was free and how much more it needed (the same for every stage's files,
however the library writing them reports ENOSPC).

    with atomic_path(out / "scores.parquet") as tmp:
        pq.write_table(table, tmp)
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from mmfc.errors import DataError, DiskFull, format_bytes

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
def atomic_path(path: str | Path, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write (a file or a folder); it is moved onto `path`
    when the block succeeds and removed when it raises. `size`, the bytes the block will write
    when known, goes into the message should the disk fill up."""
    tmp = temp_sibling(path)
    try:
        yield tmp
        move_into_place(tmp, path)
    except BaseException as exc:
        written = bytes_in(tmp)
        discard(tmp)
        if is_disk_full(exc):
            needs = f"it needs {format_bytes(size)}" if size else f"it needs more than the {format_bytes(written)} that fit"
            raise DiskFull(path, free_bytes(path), needs) from None
        raise


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from, is ENOSPC (or a full quota). Libraries wrap
    it: torch.save raises a RuntimeError from the OSError, pyarrow an OSError of its own."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(path: str | Path) -> int:
    """Free space on the filesystem of `path` (its nearest existing folder)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def bytes_in(path: Path) -> int:
    """Size of a file, or of every file in a folder; 0 when there is none. Files that vanish
    while it counts (another run's temporary files, renamed or removed) count 0."""
    if not os.path.isdir(path):
        return _size(path)
    return sum(_size(os.path.join(folder, name)) for folder, _, files in os.walk(path) for name in files)


def _size(path: str | Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path, len(data)) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def remove_leftovers(folder: str | Path, of: Callable[[str], bool] | None = None) -> None:
    """Delete the temporary siblings a killed writer left in `folder` (not in its subfolders);
    with `of`, only those whose target name it accepts (the leftovers of one's own files, where
    other runs write beside)."""
    folder = Path(folder)
    if folder.is_dir():
        for tmp in folder.glob(f"{TEMP_PREFIX}*"):
            target = tmp.name[len(TEMP_PREFIX) + 9:]  # after ".tmp-<8 hex>-"
            if of is None or of(target):
                discard(tmp)


def writable_folder(folder: str | Path) -> Path:
    """`folder`, created if needed, once a file could be made in it: an output that cannot be
    written is one DataError naming it before any work, never a traceback after all of it."""
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    if not existing.is_dir():
        where = "" if existing == folder else f", where the folder {folder} is to be"
        raise DataError(existing, f"a file, not a folder{where}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # named where it failed: the first folder that could not be made
        raise DataError(exc.filename or folder, f"cannot create or write this folder ({exc.strerror})") from None
    probe = temp_sibling(folder / "write-check")
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise DataError(folder, f"cannot create or write this folder ({exc.strerror})") from None
    return folder
