"""One run at a time per output folder: the lock every stage that writes a workdir takes.

    with hold(cfg.paths.lock("crops"), "mmfc stage crops"):
        ...  # this run alone writes crops/

A lock is a small file beside what it guards, locked with flock(2) while its run lives and
holding that run's pid, host, command and start time. The kernel drops the flock when the
process ends, however it ends, so a lock file whose flock is free but which still names a holder
on this host is stale: its run was killed. It is taken over with a message. A second run while
the holder lives is refused with a message naming it. The file is emptied, never removed, on
release: removing it could let two runs lock two different files under one name.

A holder on another host (a shared workdir) cannot be checked from here, and not every network
filesystem passes flocks between machines, so its lock is never taken over: the message says to
delete the file once that run is known to have ended.

`shared=True` takes the lock in shared mode: several such runs (parts of one stage, each writing
its own files) hold it together, and an exclusive run waits for none of them but is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from mmfc import atomic
from mmfc.errors import DataError

@contextlib.contextmanager
def hold(path: str | Path, what: str, *, shared: bool = False, console: Console | None = None) -> Iterator[None]:
    """Hold the lock file `path` for a run described by `what` (e.g. "mmfc stage crops"); raises
    DataError naming the holder when another live run has it."""
    path = Path(path)
    console = console or Console(stderr=True)
    atomic.writable_folder(path.parent)  # an unwritable workdir: one message before any work
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, shared, console)
        if not shared:
            _write(fd, json.dumps(_me(what)))
        try:
            yield
        finally:
            if not shared:
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, shared: bool, console: Console) -> None:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        locks_work = True
    except BlockingIOError:
        raise DataError(path, f"{_describe(_read(fd)) or 'another run'} is writing here; "
                              "wait for it to end or stop it") from None
    except OSError as exc:  # a filesystem without flock: the pid alone tells whether it lives
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            raise
        locks_work = False
    holder = _read(fd)
    if shared or holder is None:
        return
    if holder.get("host") != socket.gethostname():
        raise DataError(path, f"{_describe(holder)} holds this lock, and whether it still runs cannot be "
                              "checked from this host; delete the file once that run has ended")
    if not locks_work and _alive(holder.get("pid")):
        raise DataError(path, f"{_describe(holder)} is writing here; wait for it to end or stop it")
    console.print(f"[yellow]note:[/] {escape(str(path))}: taking over the lock of {escape(_describe(holder))}, "
                  "which is no longer running", highlight=False)


def holder(path: str | Path) -> str | None:
    """Who holds the lock file `path` in exclusive mode, in words; None when nobody does."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe(_read(fd)) or "another run"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _me(what: str) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": what,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": " ".join(sys.argv)}


def _describe(holder: dict | None) -> str:
    if not holder:
        return ""
    return f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command')}, since {holder.get('started')})"


def _read(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 1 << 16):
        data += chunk
    try:
        holder = json.loads(data) if data.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError):  # a holder killed while writing it
        return {"pid": None, "host": socket.gethostname(), "command": "a run", "started": "?"}
    return holder if isinstance(holder, dict) else None


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode())


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
