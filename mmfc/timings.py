"""Wall time of each stage run, kept in the workdir so that `mmfc timings` shows where a run's
time went (`make demo` prints the table at its end).

Every stage command records one file, <workdir>/timings/<stage>.json (train-rgb, scores-skel,
...), written whole, so stages that run at once (make -j2) never write the same file; a rerun
replaces its stage's file, and so the table shows the latest run of each stage.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from mmfc import atomic
from mmfc.errors import DataError


@contextlib.contextmanager
def timed(folder: Path, stage: str) -> Iterator[None]:
    """Record the wall time of the block as `stage`, also when it fails (marked so)."""
    start = time.perf_counter()
    ok = False
    try:
        yield
        ok = True
    finally:
        try:
            record(folder, stage, time.perf_counter() - start, ok)
        except (OSError, DataError):
            if ok:
                raise
            # A failed stage's own error says why (often this same unwritable workdir).


def record(folder: Path, stage: str, seconds: float, ok: bool) -> None:
    """Write <folder>/<stage>.json; under torchrun only rank 0 does (every rank runs the stage)."""
    if os.environ.get("RANK", "0") != "0":
        return
    finished = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    atomic.write_text(Path(folder) / f"{stage}.json",
                      json.dumps({"stage": stage, "seconds": round(seconds, 2), "ok": ok, "finished": finished}))


def read_timings(folder: Path) -> list[dict]:
    """The recorded stages in the order they finished (none when nothing ran yet)."""
    rows = []
    for path in sorted(Path(folder).glob("*.json")):
        if path.name.startswith(atomic.TEMP_PREFIX):
            continue  # a stage writing its file this moment
        try:
            row = json.loads(path.read_text())
            rows.append({"stage": str(row["stage"]), "seconds": float(row["seconds"]), "ok": bool(row["ok"]),
                         "finished": str(row["finished"])})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(path, f"not a stage timing ({type(exc).__name__}: {exc}); delete it") from None
    return sorted(rows, key=lambda row: row["finished"])


def format_table(rows: list[dict]) -> str:
    """A plain-text table: each stage's wall time, its share, and the sum."""
    total = sum(row["seconds"] for row in rows)
    lines = [f"{'stage':14} {'wall time':>10} {'share':>6}  finished (UTC)"]
    for row in rows:
        share = row["seconds"] / total if total else 0.0
        mark = "" if row["ok"] else "  (failed)"
        lines.append(f"{row['stage']:14} {clock(row['seconds']):>10} {share:6.0%}  {row['finished']}{mark}")
    lines.append(f"{'total':14} {clock(total):>10}")
    return "\n".join(lines)


def clock(seconds: float) -> str:
    """A wall time for people: "2 min 5.0 s", "4.2 s"."""
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:4.1f} s" if minutes else f"{rest:.1f} s"
