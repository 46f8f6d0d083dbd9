"""Shared fixtures. `realdata` points at the real public test files kept outside the repo."""

from __future__ import annotations

from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """/work/shared/realdata (../shared/realdata from the repo root); skips the test when absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"../shared/realdata is absent: the real NTU/UCF/pose test files are not here ({REALDATA})")
    return REALDATA
