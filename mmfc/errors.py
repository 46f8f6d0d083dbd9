"""The error types for what a stage cannot use or cannot write: each names the file and the reason."""

from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """Input that cannot be used: a truncated file, a missing video, a sample with no body."""

    def __init__(self, path: str | Path, reason: str | None = None):
        if reason is None:  # torch's DataLoader re-raising one from a worker process
            path, reason = _message_of_worker_text(str(path))
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):
        # Rebuilt from its two fields when it crosses from a worker process to the driver.
        return type(self), (self.path, self.reason)


def _message_of_worker_text(text: str) -> tuple[str, str]:
    """(path, reason) of the DataError whose traceback text this is. A DataLoader worker's
    exception reaches the training process as `type(exc)(text)`, the text being "Caught
    DataError in DataLoader worker process 0. Original Traceback ...", whose last line is
    "mmfc.errors.DataError: <path>: <reason>": the message, without torch's traceback."""
    last = text.strip().splitlines()[-1] if text.strip() else text
    message = last.split("DataError: ", 1)[1] if "DataError: " in last else last
    path, _, reason = message.partition(": ")
    return path, reason


class DiskFull(DataError):
    """No space left on the device while writing `path`. `needs` says how much more the file or
    the stage needed, in words; nothing half-written is left, and a rerun goes on from what
    was finished."""

    def __init__(self, path: str | Path, free: int, needs: str):
        super().__init__(path, f"the disk is full ({format_bytes(free)} free there); {needs}; free some space and "
                               "rerun: nothing half-written was kept, and the stage goes on from what it finished")
        self.free = free
        self.needs = needs

    def __reduce__(self):
        return type(self), (self.path, self.free, self.needs)


class DataWarning(UserWarning):
    """Input used in spite of a doubt, which the message names (the file and the reason);
    the CLI prints it as one `warning:` line."""


def format_bytes(count: int | float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")
