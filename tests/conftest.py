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


POSE_MODELS = Path(__file__).resolve().parents[1] / "models" / "blazepose"


@pytest.fixture(scope="session")
def pose_models() -> Path:
    """models/blazepose with the BlazePose files and the LiteRT runtime (`make setup-pose`, which
    `make test` runs); skips the test when they are absent."""
    from mmfc.errors import DataError
    from mmfc.poses.model_files import model_paths

    try:
        model_paths(POSE_MODELS)
        import ai_edge_litert  # noqa: F401
    except (DataError, ImportError) as exc:
        pytest.skip(f"the pose models or their runtime are absent, run `make setup-pose`: {exc}")
    return POSE_MODELS
