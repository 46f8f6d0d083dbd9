"""Checkpoints, the file stage 2 hands to stage 3: atomic writes, validated reads, and the
random state needed to resume exactly."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import torch

from mmfc.atomic import atomic_path
from mmfc.errors import DataError


def save_checkpoint(path: str | Path, state: dict) -> None:
    """torch.save, never half-written (mmfc.atomic)."""
    # Through a file object: given a path, torch names the archive inside after the (random)
    # temporary file, and the same state would give different bytes every time.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)


def load_checkpoint(path: str | Path, required: tuple[str, ...] = ("model",)) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such checkpoint")
    try:
        # Only tensors and plain Python containers are stored, so the safe loader suffices.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise DataError(path, f"not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise DataError(path, "not an mmfc checkpoint (expected a dict)")
    missing = [key for key in required if key not in state]
    if missing:
        raise DataError(path, f"not an mmfc checkpoint: missing {', '.join(missing)}")
    return state


def file_digest(path: str | Path) -> str:
    """First 16 hex digits of the file's sha256."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def capture_rng() -> dict:
    """The global random states of python, numpy and torch (CPU and CUDA), as safe-loadable data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
