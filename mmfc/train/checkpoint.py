"""Checkpoints, the file stage 2 hands to stage 3, `mmfc predict` and `mmfc export`: atomic
writes, validated reads, the header that lets a checkpoint rebuild its network alone, and the
random state needed to resume exactly."""

from __future__ import annotations

import hashlib
import io
import pickle
import random
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from mmfc import atomic
from mmfc.config import Pipeline, run_sections
from mmfc.errors import DataError, DataWarning
from mmfc.stage_frame import sha256_of


DIGEST_SUFFIX = ".sha256"
# The header of this version's checkpoints (checkpoint_header); one without it was written by
# an mmfc whose checkpoints did not carry their settings.
FORMAT = "mmfc-checkpoint/2"
HEADER = ("format", "modality", "settings", "num_classes", "class_names", "layout", "pose_source", "config_digest")


def checkpoint_header(cfg: Pipeline, branch: str, store, digest: str) -> dict:
    """What a branch's checkpoint says about itself beside its weights: enough to rebuild its
    network, and that network's input from a new clip, with no pipeline file (the nanoGPT way:
    the model's arguments saved, the model rebuilt from them; mmfc/run_folder.py).

    `store`: the crop store it was trained on (mmfc.crops.store); `digest`: the training digest
    that stage 2's resume compares (the pipeline digest of mmfc.branches.training_settings)."""
    return {
        "format": FORMAT,
        "modality": branch,
        "settings": trained_settings(cfg, branch, store),
        "num_classes": store.num_classes,
        "class_names": list(store.class_names),
        # The joint layout of the skeletons the network was trained on, whole (Layout.to_dict),
        # and the sensor or estimator they came from (mmfc predict warns on poses of another).
        "layout": store.layout.to_dict(),
        "pose_source": store.pose_source,
        "config_digest": digest,
    }


def trained_settings(cfg: Pipeline, branch: str, store) -> dict:
    """The settings a branch's network and its input were made with, as sections of a pipeline
    (mmfc.config.pipeline_from_dict reads them back): the branch's own section (network,
    training, contrastive loss; its batch size and autocast score clips too), stage 1's crops and
    skeleton normalisation as the crop store `store` records them (`crops`), how a skeleton file
    is read (`data`: the bodies kept, the frame size 2D keypoints were recorded in; the joint
    layout is the header's own entry), stage 0's estimator (`poses`, which `mmfc predict` runs
    on a video without a skeleton; its model folder absolute, config.run_sections) and the clips
    averaged per sample at test time (`scores`)."""
    sections = run_sections(cfg)
    return {
        "name": cfg.name,
        "data": {key: sections["data"][key] for key in ("max_bodies", "skeleton_frame_size")},
        "poses": sections["poses"],
        "crops": dict(store.config),
        branch: sections[branch],
        "scores": sections["scores"],
    }


def digest_path(path: str | Path) -> Path:
    """The digest file beside a checkpoint: `best.pt.sha256`, in `sha256sum` format."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def save_checkpoint(path: str | Path, state: dict) -> None:
    """torch.save, never half-written (mmfc.atomic), with its sha256 in `<name>.sha256` beside it.

    The two files cannot be renamed at once, so the digest file lists the new digest and the
    one of the checkpoint still in place before the checkpoint is renamed, and only the new one
    after: a kill at any point leaves a checkpoint whose digest is listed.
    """
    path = Path(path)
    # Through a file object: given a path, torch names the archive inside after the (random)
    # temporary file, and the same state would give different bytes every time.
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
        digest = sha256_of(tmp)
        _write_digests(path, [digest] + [d for d in _digest_in_place(path) if d != digest])
    _write_digests(path, [digest])


def _digest_in_place(path: Path) -> list[str]:
    """The digest of the checkpoint now at `path`: as listed, or computed for one without a
    digest file; [] when there is none, or its digest file is unreadable (it is replaced)."""
    try:
        listed = _listed_digests(path)
    except DataError:
        return []
    if listed:
        return listed[:1]
    return [sha256_of(path)] if path.is_file() else []


def _write_digests(path: Path, digests: list[str]) -> None:
    atomic.write_text(digest_path(path), "".join(f"{d}  {path.name}\n" for d in digests))


def _listed_digests(path: Path) -> list[str]:
    """The digests the file beside `path` lists; [] when there is none."""
    advice = "retrain, or delete it to load the checkpoint unverified"
    try:
        text = digest_path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError):
        raise DataError(digest_path(path), f"unreadable digest file; {advice}") from None
    digests = [line.split()[0] for line in text.splitlines() if line.strip()]
    if not digests or not all(len(d) == 64 and all(c in "0123456789abcdef" for c in d) for d in digests):
        raise DataError(digest_path(path), f"not a sha256 digest file; {advice}")
    return digests


def load_checkpoint(path: str | Path, required: tuple[str, ...] = ("model",)) -> dict:
    """A checkpoint whose bytes match its digest file; DataError naming it otherwise.

    A checkpoint without a digest file (written before mmfc kept them) is loaded with a warning,
    and refused if any of its floating-point tensors holds a NaN or an infinity: damage in a
    tensor's bytes shows there, and scores from it would be meaningless.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such checkpoint")
    listed = _listed_digests(path)
    data = path.read_bytes()  # read once: the bytes checked are the bytes loaded
    if listed and hashlib.sha256(data).hexdigest() not in listed:
        raise DataError(
            path, f"damaged: its sha256 differs from the one saved with it in {digest_path(path).name}; "
                  "retrain (or restore the file) rather than use it"
        )
    try:
        # Only tensors and plain Python containers are stored, so the safe loader suffices.
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise DataError(path, f"not a readable checkpoint ({_load_failure(exc)})") from None
    if not isinstance(state, dict):
        raise DataError(path, "not an mmfc checkpoint (expected a dict)")
    missing = [key for key in required if key not in state]
    if missing:
        raise DataError(path, f"not an mmfc checkpoint: missing {', '.join(missing)}")
    if not listed:
        warnings.warn(f"{path}: no {digest_path(path).name} beside it (written by an older mmfc); "
                      "loaded unverified", UnverifiedCheckpoint, stacklevel=2)
        bad = _non_finite_tensors(state)
        if bad:
            raise DataError(path, f"damaged: non-finite values in {', '.join(bad[:3])}"
                                  f"{f' and {len(bad) - 3} more tensors' if len(bad) > 3 else ''}; retrain")
    return state


def load_weights(module: torch.nn.Module, weights: dict, path: str | Path, what: str = "model") -> None:
    """module.load_state_dict, with a mismatch as a DataError naming the checkpoint."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, TypeError, KeyError) as exc:
        # torch lists every key; the first few say enough.
        problems = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()] or [str(exc)]
        raise DataError(path, f"its {what} does not fit the configured one, which was built with other settings than "
                              f"it was trained with ({'; '.join(problems[:2])[:400]}); retrain, or set them back") from None


class UnverifiedCheckpoint(DataWarning):
    """A checkpoint loaded without a digest to check it against."""


def _load_failure(exc: Exception) -> str:
    """Why torch could not load a file, in our words: torch's own text suggests loading it with
    weights_only=False, which would run whatever code the file holds."""
    if isinstance(exc, pickle.UnpicklingError):
        return "its pickle is damaged or asks for objects other than tensors and plain containers, which mmfc refuses"
    if "zip archive" in str(exc) or isinstance(exc, (EOFError, zipfile.BadZipFile)):
        return "not a complete torch archive: truncated or damaged"
    return type(exc).__name__


def _non_finite_tensors(value, where: str = "") -> list[str]:
    if isinstance(value, torch.Tensor):
        return [where or "the tensor"] if value.is_floating_point() and not bool(torch.isfinite(value).all()) else []
    if isinstance(value, dict):
        return [bad for key, item in value.items() for bad in _non_finite_tensors(item, f"{where}.{key}".lstrip("."))]
    if isinstance(value, (list, tuple)):
        return [bad for i, item in enumerate(value) for bad in _non_finite_tensors(item, f"{where}[{i}]")]
    return []


def file_digest(path: str | Path) -> str:
    """First 16 hex digits of the file's sha256."""
    return sha256_of(path)[:16]


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
