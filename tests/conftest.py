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


def write_clip(path: Path, frames, size: tuple[int, int], fps: float = 30.0) -> Path:
    """RGB frames -> an MJPEG .avi of `size` (width, height)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for frame in frames:
        writer.write(cv2.resize(frame[..., ::-1], size, interpolation=cv2.INTER_AREA))
    writer.release()
    return path


@pytest.fixture(scope="session")
def video_folders(realdata: Path, tmp_path_factory) -> Path:
    """A class-folder dataset of short clips cut from the real videos (the only real people we
    have): 3 classes x 2 clips of 24 frames, small frames so stage 0 runs in seconds, plus a
    corrupt file and a clip with nobody in it. -> root/<class>/<clip>.avi"""
    import numpy as np

    from mmfc.data.video import read_frames

    root = tmp_path_factory.mktemp("videos")
    videos = realdata / "videos"
    cuts = {
        "drink": ("S001C001P001R001A001_rgb.avi", (480, 270)),
        "hug": ("ntu_sample_A055_hugging.avi", (480, 270)),
        "makeup": ("ucf101_v_ApplyEyeMakeup_g01_c01.avi", (320, 240)),
    }
    for label, (name, size) in cuts.items():
        frames = read_frames(videos / name, range(0, 64))
        write_clip(root / label / f"{label}_g01_c01.avi", frames[:24], size)
        write_clip(root / label / f"{label}_g02_c01.avi", frames[40:64], size)
    (root / "makeup" / "broken_g03_c01.avi").write_bytes(np.random.default_rng(0).bytes(5000))
    write_clip(root / "drink" / "empty_g04_c01.avi", np.full((12, 90, 160, 3), 128, dtype=np.uint8), (160, 90))
    return root


@pytest.fixture(scope="session")
def synth_clips(tmp_path_factory) -> Path:
    """12 small generated clips in the NTU layout (61 to 76 frames each, 160x90), for the stage-1
    reliability, disk-full and cluster-engine tests."""
    from mmfc.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, per_class=1, actions=[1, 2, 3, 4, 5, 6], performers=[1, 3], cameras=[1], frame_size=(160, 90), n_jobs=1)
    return root
