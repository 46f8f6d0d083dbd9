"""Shared fixtures. `realdata` points at the real public test files kept outside the repo."""

from __future__ import annotations

from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """../shared/realdata: the folder shared/realdata beside the checkout; skips the test when absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"../shared/realdata is absent: the real NTU/UCF/pose test files are not here ({REALDATA})")
    return REALDATA


@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 kB tmpfs, unmounted afterwards; the test skips where mounting is not allowed."""
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.strip() or 'not permitted'}); "
                    "the simulated ENOSPC tests still run")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write, root included: a read-only tmpfs, or where mounting is not
    allowed a folder without write permission (the test skips if this user may write it still)."""
    import os
    import subprocess

    folder = tmp_path / "read-only"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):
            pytest.skip("cannot make a read-only folder here (no mount, and permissions do not apply)")
    try:
        yield folder
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)


POSE_MODELS = Path(__file__).resolve().parents[1] / "models" / "blazepose"
SYNTH_PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "synth.toml"


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

    from mmfc.data.decoding import read_frames

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


# Tiny networks for runs trained inside tests (seconds per epoch on one core).
TINY_MODELS = [
    "rgb.model.depth=18", "rgb.model.base_width=4", "rgb.model.input_size=32", "rgb.model.segments=4",
    "rgb.train.batch_size=4", "rgb.train.epochs=1", "rgb.ccl.dim=16",
    "skel.model.base_channels=8", "skel.model.num_frames=8", "skel.train.batch_size=4",
    "skel.train.epochs=1", "skel.ccl.dim=16",
    *(f"{m}.train.{key}={n}" for m in ("rgb", "skel") for key, n in (("threads", 1), ("loader_workers", 0))),
]


def tiny_run_overrides(data: Path, workdir: Path) -> list[str]:
    """--set overrides of pipelines/synth.toml for a tiny run on generated data at `data`."""
    import json

    return [
        f"workdir={json.dumps(str(workdir))}", f"data.root={json.dumps(str(data))}",
        "data.num_classes=3", "data.class_names=''", "data.val_performers=[8]",
        "crops.size=40", "crops.num_frames=8", "crops.skeleton_frames=16", "jobs.n_jobs=1",
        *TINY_MODELS,
    ]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run of every stage up to fusion on 18 generated clips (3 classes; performer 1 trains, 8
    validates, 3 tests), with tiny networks. -> its workdir, holding the generated data in
    data/ beside it (<workdir>/../data)."""
    import torch

    from mmfc.config import load_pipeline
    from mmfc.crops.stage import run_crops
    from mmfc.data.synth import generate
    from mmfc.fusion.stage import run_fuse
    from mmfc.scores.stage import run_scores
    from mmfc.train.stage import run_train

    root = tmp_path_factory.mktemp("tiny_run")
    generate(root / "data", per_class=2, actions=[1, 2, 3], performers=[1, 3, 8], cameras=[1],
             frame_size=(160, 90), n_jobs=1)
    cfg = load_pipeline(SYNTH_PIPELINE, tiny_run_overrides(root / "data", root / "run"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_crops(cfg) == 0
        for modality in ("rgb", "skel"):
            run_train(cfg, modality)
            run_scores(cfg, modality)
        run_fuse(cfg)
    finally:
        torch.set_num_threads(threads)
    return root / "run"


SMALL_CROPS = ["crops.skeleton_frames=16", "crops.num_frames=4", "jobs.n_jobs=1"]
PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


def skeleton_only_ntu(realdata: Path, root: Path) -> Path:
    """An NTU download of the six real .skeleton files, without nturgb+d_rgb/."""
    import os

    (root / "nturgb+d_skeletons").mkdir(parents=True)
    for path in sorted((realdata / "ntu_skeleton").glob("*.skeleton")):
        os.symlink(path, root / "nturgb+d_skeletons" / path.name)
    return root


def nw_ucla_subset(realdata: Path, folder: Path) -> list[str]:
    """Subjects 1 and 2, first repetition, all 3 views, of each of the 10 actions: 60 real files."""
    import shutil

    folder.mkdir(parents=True)
    names = sorted(p.name for p in (realdata / "nw_ucla" / "all_sqe").glob("a*_s0[12]_e00_v0*.json"))
    for name in names:
        shutil.copy(realdata / "nw_ucla" / "all_sqe" / name, folder)
    return names


def train_to_fusion(cfg, branches) -> None:
    """Stages 1 to 4 of `cfg` for `branches`, on one thread."""
    import torch

    from mmfc.crops.stage import run_crops
    from mmfc.fusion.stage import run_fuse
    from mmfc.scores.stage import run_scores
    from mmfc.train.stage import run_train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_crops(cfg) == 0
        for branch in branches:
            run_train(cfg, branch)
            run_scores(cfg, branch)
        run_fuse(cfg)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_streams_run(tmp_path_factory) -> Path:
    """tiny_run's data and networks with three branches: RGB and the joint and bone streams (the
    bone stream narrower than [skel]'s, by a setting of its own). -> its workdir, the generated
    data in data/ beside it"""
    from mmfc.config import load_pipeline
    from mmfc.data.synth import generate

    root = tmp_path_factory.mktemp("tiny_streams_run")
    generate(root / "data", per_class=2, actions=[1, 2, 3], performers=[1, 3, 8], cameras=[1],
             frame_size=(160, 90), n_jobs=1)
    cfg = load_pipeline(SYNTH_PIPELINE, [*tiny_run_overrides(root / "data", root / "run"),
                                         'branches=["rgb", "joint", "bone"]', "bone.model.base_channels=4"])
    train_to_fusion(cfg, cfg.branches)
    return root / "run"


@pytest.fixture(scope="session")
def ucla_run(realdata: Path, tmp_path_factory) -> Path:
    """A skeleton-only run on 60 real NW-UCLA sequences (nw_ucla_subset; subject 2 validates, view
    3 tests), the joint and bone streams, tiny networks. -> its workdir, the data in ucla/ beside it"""
    from mmfc.config import load_pipeline

    root = tmp_path_factory.mktemp("ucla_run")
    nw_ucla_subset(realdata, root / "ucla" / "all_sqe")
    cfg = load_pipeline(PIPELINES / "nw-ucla.toml", [
        f"data.root={root / 'ucla'}", f"workdir={root / 'run'}", "data.val_by=performer", "data.val_performers=[2]",
        'branches=["joint", "bone"]', *SMALL_CROPS, *TINY_MODELS])
    train_to_fusion(cfg, cfg.branches)
    return root / "run"


@pytest.fixture(scope="session")
def ntu_skeleton_run(realdata: Path, tmp_path_factory) -> Path:
    """A skeleton-only run on the six real NTU .skeleton files without videos (skeleton_only_ntu):
    the skeleton branch alone (the declared RGB branch left out: no videos), P001 validating,
    P003 testing (X-Sub). -> its workdir"""
    from mmfc.config import load_pipeline

    root = tmp_path_factory.mktemp("ntu_skeleton_run")
    data = skeleton_only_ntu(realdata, root / "ntu")
    cfg = load_pipeline(None, [f"data.root={data}", f"workdir={root / 'run'}", "data.num_classes=60",
                               "data.val_performers=[1]", *SMALL_CROPS, *TINY_MODELS, "skel.train.batch_size=2"])
    train_to_fusion(cfg, ["skel"])
    return root / "run"


# Classes of real people for per-person and live tests: a class per real video, short clips every
# 8 frames of its first 72, at the sizes stage 0 runs in seconds (the hugging clip's two people
# are one class of two bodies).
PEOPLE_CLIPS = {
    "drink": ("S001C001P001R001A001_rgb.avi", (480, 270)),
    "hug": ("ntu_sample_A055_hugging.avi", (480, 270)),
    "makeup": ("ucf101_v_ApplyEyeMakeup_g01_c01.avi", (320, 240)),
}


@pytest.fixture(scope="session")
def people_runs(realdata: Path, pose_models: Path, tmp_path_factory) -> dict[str, Path]:
    """Two runs on stage 0's poses of 24 real clips (8 of 16 frames per class of PEOPLE_CLIPS),
    tiny networks trained for 15 epochs, which learn "hug" from its two bodies: "skel" (the
    skeleton branch alone) and "rgb+skel". -> {name: workdir}"""
    import json

    import torch

    from mmfc.config import load_pipeline
    from mmfc.data.decoding import read_frames
    from mmfc.fusion.stage import run_fuse
    from mmfc.poses.stage import run_poses
    from mmfc.scores.stage import run_scores
    from mmfc.train.stage import run_train

    root = tmp_path_factory.mktemp("people_runs")
    for label, (name, size) in PEOPLE_CLIPS.items():
        frames = read_frames(realdata / "videos" / name, range(0, 72))
        for number, start in enumerate(range(0, 57, 8)):
            write_clip(root / "videos" / label / f"{label}_c{number:02d}.avi", frames[start : start + 16], size)
    runs = {"rgb+skel": root / "both", "skel": root / "skel"}
    common = [f"data.root={json.dumps(str(root / 'videos'))}", f"poses.models_dir={json.dumps(str(pose_models))}",
              "data.group_pattern=''", "data.test_fraction=0.2", "data.val_fraction=0.25", "data.val_seed=0",
              "crops.size=40", "crops.num_frames=8", "crops.skeleton_frames=16", "jobs.n_jobs=1", *TINY_MODELS,
              "skel.train.batch_size=4", "skel.train.epochs=25", "rgb.train.batch_size=4", "rgb.train.epochs=3"]
    both = load_pipeline(PIPELINES / "videos-example.toml", [f"workdir={json.dumps(str(runs['rgb+skel']))}", *common,
                                                             'branches=["rgb", "skel"]'])
    run_poses(both)
    train_to_fusion(both, both.branches)
    # The skeleton branch alone, on the same crops.
    alone = load_pipeline(PIPELINES / "videos-example.toml", [f"workdir={json.dumps(str(runs['skel']))}", *common,
                                                              'branches=["skel"]', f"crops_from={json.dumps(str(runs['rgb+skel']))}"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_train(alone, "skel")
        run_scores(alone, "skel")
        run_fuse(alone)
    finally:
        torch.set_num_threads(threads)
    return runs
