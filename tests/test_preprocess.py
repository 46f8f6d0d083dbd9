"""The export's preprocess.py (numpy, and OpenCV for frames) gives every graph's input that mmfc
gives, bit for bit, from a real clip's frames and keypoints: stage 1's crop (every crop mode,
keypoints on another clock and in another frame size) and normalised skeleton (2D and 3D, turned
upright or not), sampled as stage 3 samples it for each branch (skeleton streams with settings of
their own among them); from keypoints alone, without OpenCV, for skeleton branches alone."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from mmfc.branches import BRANCHES
from mmfc.config import load_pipeline
from mmfc.crops.crop import CropJob, crop_skeleton
from mmfc.crops.store import MemoryCrops
from mmfc.data.decoding import probe_video
from mmfc.data.layouts import Layout, get_layout
from mmfc.data.ntu import load_skeleton
from mmfc.data.pose_pickle import annotation_skeleton, read_pose_pickle
from mmfc.data.sample import Sample, Skeleton
from mmfc.export import preprocess
from mmfc.export.bundle import preprocess_settings


def real_clip(realdata: Path, name: str) -> tuple[Path, Skeleton]:
    """A real video and its own keypoints: the NTU clip with its Kinect skeleton (3D joints,
    colour pixels at 1920x1080), or the UCF101 clip with PYSKL's HRNet COCO-17 keypoints (in a
    340x256 frame of 163 frames; the video is 320x240 with 164)."""
    if name == "ntu":
        skeleton, _ = load_skeleton(realdata / "ntu_skeleton" / "S001C001P001R001A001.skeleton", 2)
        return realdata / "videos" / "S001C001P001R001A001_rgb.avi", skeleton
    pickle = realdata / "pose_pkl" / "paddlevideo_example_UCF101_skeleton.pkl"
    annotation = read_pose_pickle(pickle).annotations[0]
    return realdata / "videos" / "ucf101_v_ApplyEyeMakeup_g01_c01.avi", annotation_skeleton(
        annotation, pickle, get_layout("coco17"), [1920, 1080])


def mmfc_inputs(cfg, layout: Layout, video: Path | None, skeleton: Skeleton) -> dict[str, np.ndarray]:
    """Each declared branch's input of every test clip, by branch, as `mmfc predict` makes them:
    stage 1's crop into the store's JPEG round trip (without a video: the skeleton alone, as
    stage 1 stores a dataset without videos), read by the branch's evaluation dataset."""
    job = CropJob.of(cfg, video=video is not None)
    stored, _ = crop_skeleton(skeleton, Sample("clip", -1, "test", None, video, "clip"), job)
    store = MemoryCrops(asdict(cfg.crops), layout, cfg.crops.jpeg_quality)
    store.add("clip", stored)
    clips = cfg.scores.clips
    return {
        name: np.stack([BRANCHES[name].build_dataset(cfg, store, [0], False, clip, clips)[0][0].numpy()
                        for clip in range(clips)])
        for name in cfg.branches
    }


SETTINGS = ["crops.size=64", "crops.num_frames=8", "crops.skeleton_frames=40", "crops.jpeg_quality=85",
            "rgb.model.segments=4", "rgb.model.input_size=48", "skel.model.num_frames=16"]


@pytest.mark.parametrize("clip_name, overrides", [
    ("ucf", ["crops.mode=clip", "crops.hw_ratio=0"]),
    ("ucf", ["crops.mode=frame", "crops.smooth=0.5", "scores.clips=2"]),
    ("ucf", ["crops.mode=person", "crops.allow_pad=false", "crops.padding=0.4"]),
    ("ucf", ["crops.mode=none", "rgb.model.input_size=80"]),  # the crop is smaller than the input: resized
    ("ntu", ["crops.mode=frame", "crops.align=true", "scores.clips=2"]),
    ("ntu", ["crops.mode=clip", "data.max_bodies=1", "skel.model.num_persons=2"]),
    # The skeleton recipes of the layouts' settings: kept frames zero-padded, min-max normalised,
    # CTR-GCN's evenly spaced test frames, another centre joint.
    ("ntu", ["crops.pad_skeleton=true", "crops.skeleton_frames=120", "skel.input.normalize=minmax",
             "skel.input.sampling=random_choice", "scores.clips=2", "crops.center_joint=spine_mid"]),
    ("ucf", ["crops.center_joint=left_hip", "skel.input.normalize=minmax"]),
    # RGB and three streams, two of them sampled by settings of their own.
    ("ntu", ['branches=["rgb", "joint", "bone", "bone_motion"]', "bone.model.num_frames=12",
             "bone_motion.input.normalize=minmax", "bone_motion.input.sampling=random_choice", "scores.clips=2"]),
])
def test_preprocess_gives_mmfcs_inputs_from_a_real_clip(realdata, clip_name, overrides):
    video, skeleton = real_clip(realdata, clip_name)
    cfg = load_pipeline(None, [*SETTINGS, f"data.layout={skeleton.layout}", *overrides])
    layout = get_layout(skeleton.layout)
    ours = mmfc_inputs(cfg, layout, video, skeleton)

    # The consumer's side: the settings of the manifest, as JSON gives them back, and the clip.
    settings = json.loads(json.dumps(preprocess_settings(cfg, layout, cfg.branches)))
    video_frames = probe_video(video).frames
    frames = preprocess.read_frames(str(video), preprocess.frames_to_read(settings, video_frames))
    for clip in range(cfg.scores.clips):
        theirs = preprocess.graph_inputs(
            settings, skeleton.points, skeleton.score, frames, video_frames, pixels=skeleton.pixels,
            frame_indices=skeleton.frame_indices, total_frames=skeleton.total_frames,
            keypoint_size=skeleton.frame_size, clip=clip)
        assert list(theirs) == cfg.branches
        for name, value in theirs.items():
            assert value.dtype == np.float32 and value.shape == (1, *ours[name].shape[1:])
            np.testing.assert_array_equal(value[0], ours[name][clip], err_msg=name)
    with pytest.raises(ValueError, match="the rgb graph takes the clip's frames"):
        preprocess.graph_inputs(settings, skeleton.points, skeleton.score)


def test_skeleton_branches_alone_need_no_frames_and_no_opencv(realdata, monkeypatch):
    """Two streams of a skeleton-only run (a real NW-UCLA sequence, CTR-GCN's recipe for one of
    them): preprocess.py gives their inputs from the joints alone, imported where OpenCV is not."""
    from mmfc.data.nw_ucla import read_sequence, sequence_skeleton

    skeleton = sequence_skeleton(read_sequence(realdata / "nw_ucla" / "all_sqe" / "a01_s01_e00_v03.json")[1])
    cfg = load_pipeline(None, [*SETTINGS, "data.source=nw_ucla", "data.protocol=xview", "data.layout=kinect20", 'branches=["joint", "bone"]',
                               "bone.input.normalize=minmax", "bone.input.sampling=random_choice", "scores.clips=2"])
    layout = get_layout("kinect20")
    ours = mmfc_inputs(cfg, layout, None, skeleton)
    settings = json.loads(json.dumps(preprocess_settings(cfg, layout, cfg.branches)))
    assert "crop" not in settings and settings["script"].endswith("graph_inputs(manifest['preprocess'], keypoints, scores)")
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` now fails, as where OpenCV is not installed
    spec = importlib.util.spec_from_file_location("consumer_preprocess", preprocess.__file__)
    consumer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(consumer)
    for clip in range(2):
        theirs = consumer.graph_inputs(settings, skeleton.points, skeleton.score, clip=clip)
        assert list(theirs) == ["joint", "bone"]
        for name, value in theirs.items():
            np.testing.assert_array_equal(value[0], ours[name][clip], err_msg=name)


def test_preprocess_needs_nothing_but_numpy_and_opencv():
    tree = ast.parse(open(preprocess.__file__).read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__", "cv2", "numpy"}
