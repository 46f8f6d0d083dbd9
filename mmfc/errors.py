"""The one error type for bad input: it names the file and the reason."""

from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """Input that cannot be used: a truncated file, a missing video, a sample with no body."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
