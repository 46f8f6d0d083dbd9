"""PYSKL pose pickles: the real ones in ../shared/realdata/pose_pkl, and broken ones."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from mmfc.config import ConfigError, DataConfig
from mmfc.data.pose_pickle import (
    PosePickleSource,
    describe_pose_pickle,
    in_val_fraction,
    read_pose_pickle,
    source_group,
)
from mmfc.data.pickles import load_pickle
from mmfc.errors import DataError


def pkl(realdata: Path, name: str) -> str:
    return str(realdata / "pose_pkl" / name)


def test_ucf_split_pickle(realdata: Path):
    cfg = DataConfig(
        source="pose_pickle",
        root=pkl(realdata, "derived_ucf101_ApplyEyeMakeup_pyskl_split.pkl"),
        train_split="train1",
        test_split="test1",
        num_classes=101,
        layout="coco17",
        video_root=str(realdata / "videos"),
        video_ext=".avi",
    )
    source = PosePickleSource(cfg)
    (sample,) = source.samples()
    assert (sample.id, sample.split, sample.label) == ("v_ApplyEyeMakeup_g01_c01", "test", 0)
    # val_by "performer", but not an NTU name: the clip is its own group.
    assert sample.group == "v_ApplyEyeMakeup_g01_c01" and source.group_kind == "performer"
    # The clip on disk is named ucf101_v_..., so there is no video under this frame_dir.
    assert sample.video_path is None
    skeleton = source.load_skeleton(sample)
    assert skeleton.points.shape == (2, 163, 17, 2) and skeleton.points.dtype == np.float32
    assert skeleton.frame_size == (340, 256)  # img_shape (H, W) = (256, 340)
    assert skeleton.layout == "coco17" and skeleton.total_frames == 163
    np.testing.assert_array_equal(skeleton.frame_indices, np.arange(163))
    # Person 0 is the real one, person 1 almost empty (README of the test data).
    assert skeleton.score[0].mean() > 0.3 > 0.1 > skeleton.score[1].mean()
    np.testing.assert_array_equal(skeleton.pixels, skeleton.points[..., :2])


def test_bare_annotation_dict_is_one_test_sample(realdata: Path):
    cfg = DataConfig(source="pose_pickle", root=pkl(realdata, "paddlevideo_example_UCF101_skeleton.pkl"),
                     num_classes=101, layout="coco17")
    source = PosePickleSource(cfg)
    (sample,) = source.samples()
    assert sample.split == "test"
    assert source.load_skeleton(sample).points.shape == (2, 163, 17, 2)


def test_ntu_3d_pickle_without_scores_and_performer_val(realdata: Path):
    cfg = DataConfig(source="pose_pickle", root=pkl(realdata, "derived_ntu6_3d_pyskl.pkl"),
                     train_split="xsub_train", test_split="xsub_val", val_by="performer", val_performers=[8])
    source = PosePickleSource(cfg)
    splits = {s.id: s.split for s in source.samples()}
    assert splits == {
        "S001C001P001R001A001": "train",
        "S001C001P001R001A011": "train",
        "S001C003P008R002A058": "val",
        "S003C001P015R001A034": "train",
        "S002C001P003R001A003": "test",
        "S004C002P003R001A017": "test",
    }
    sample = next(s for s in source.samples() if s.id == "S001C003P008R002A058")
    skeleton = source.load_skeleton(sample)
    assert skeleton.points.shape == (2, 70, 25, 3)
    assert skeleton.pixels.shape == (2, 70, 25, 2)
    assert (skeleton.score == 1).all()
    assert skeleton.frame_size == (1920, 1080)  # no img_shape: the configured frame size


def test_k400_index_pickle_has_no_keypoints(realdata: Path):
    path = pkl(realdata, "mmaction2_k400_pose_index_sample.pkl")
    with pytest.raises(DataError, match="keypoints are missing: 100 of 100"):
        PosePickleSource(DataConfig(source="pose_pickle", root=path, num_classes=400, layout="coco17"))
    report = describe_pose_pickle(path)
    assert report["samples"] == 100 and report["splits"] == {"train": 100}
    assert report["with_keypoints"] == 0 and "frame_inds" in report["keys"]


def test_unknown_split_names_the_available_ones(realdata: Path):
    cfg = DataConfig(source="pose_pickle", root=pkl(realdata, "derived_ntu6_2d_pyskl.pkl"))
    with pytest.raises(ConfigError, match="no split 'train' in the pickle; its splits: xsub_train"):
        PosePickleSource(cfg)


def test_group_val_is_stable_and_video_disjoint(tmp_path: Path):
    annotations, train = [], []
    for video in range(40):
        for event in range(3):
            frame_dir = f"vid{video:03d}_E_{event:06d}_{event + 5:06d}_A_0000_0001"
            kp = np.zeros((1, 4, 17, 2), np.float32)
            annotations.append({"frame_dir": frame_dir, "label": video % 5, "keypoint": kp,
                                "img_shape": (720, 1280), "total_frames": 4})
            train.append(frame_dir)
    path = tmp_path / "gym.pkl"
    path.write_bytes(pickle.dumps({"split": {"train": train, "val": []}, "annotations": annotations}))
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / f"{annotations[0]['frame_dir']}.mp4").write_bytes(b"")
    cfg = DataConfig(source="pose_pickle", root=str(path), test_split="val", num_classes=5, layout="coco17",
                     val_by="group", val_fraction=0.25, video_root=str(videos))
    source = PosePickleSource(cfg)
    samples = source.samples()
    assert samples[0].group == "vid000" and source.group_kind == "source video"
    val_groups = {s.group for s in samples if s.split == "val"}
    train_groups = {s.group for s in samples if s.split == "train"}
    assert val_groups and not val_groups & train_groups
    assert 4 <= len(val_groups) <= 18  # ~25% of 40 videos
    again = PosePickleSource(cfg).samples()
    assert [s.split for s in again] == [s.split for s in samples]
    assert sum(s.video_path is not None for s in samples) == 1
    assert source_group("abc_E_001_A_2") == "abc" and source_group("v_x_g01_c01") == "v_x_g01_c01"
    assert in_val_fraction("g", 1.0, 0) and not in_val_fraction("g", 0.0, 0)


def test_broken_pickles(tmp_path: Path):
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(pickle.dumps({"annotations": []})[:-5])
    with pytest.raises(DataError, match="broken.pkl: not a readable pickle"):
        read_pose_pickle(broken)
    wrong = tmp_path / "wrong.pkl"
    wrong.write_bytes(pickle.dumps(42))
    with pytest.raises(DataError, match="wrong.pkl: not a pose pickle"):
        read_pose_pickle(wrong)
    with pytest.raises(DataError, match="no such pose pickle"):
        read_pose_pickle(tmp_path / "none.pkl")


def test_bad_keypoint_shape(tmp_path: Path):
    path = tmp_path / "bad.pkl"
    ann = {"frame_dir": "a", "label": 0, "keypoint": np.zeros((1, 4, 25, 2), np.float32)}
    path.write_bytes(pickle.dumps([ann]))
    source = PosePickleSource(DataConfig(source="pose_pickle", root=str(path), layout="coco17"))
    with pytest.raises(DataError, match=r"bad.pkl: a: keypoint shape \(1, 4, 25, 2\), expected \[M, T, 17"):
        source.load_skeleton(source.samples()[0])


class RunsCode:
    """Unpickling it creates `marker`: what a hostile pickle's __reduce__ can do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def hostile_pickle(path: Path, marker: Path) -> Path:
    """A pose pickle whose one annotation carries a RunsCode."""
    ann = {"frame_dir": "a", "label": 0, "keypoint": np.zeros((1, 4, 17, 2), np.float32), "extra": RunsCode(marker)}
    path.write_bytes(pickle.dumps({"split": {"test": ["a"]}, "annotations": [ann]}))
    return path


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path):
    marker = tmp_path / "ran"
    path = hostile_pickle(tmp_path / "evil.pkl", marker)
    with pytest.raises(DataError, match=r"evil.pkl: refused: the pickle asks for io.open, and loading it could run"):
        read_pose_pickle(path)
    with pytest.raises(DataError, match="refused"):
        PosePickleSource(DataConfig(source="pose_pickle", root=str(path), layout="coco17"))
    assert not marker.exists()
    # The classic: os.system by its pickled name, in protocol 0.
    (tmp_path / "system.pkl").write_bytes(b"cos\nsystem\n(S'touch ran'\ntR.")
    with pytest.raises(DataError, match="refused: the pickle asks for os.system"):
        load_pickle(tmp_path / "system.pkl")


def test_every_real_pose_pickle_loads_as_pickle_itself_loads_it(realdata: Path):
    files = sorted((realdata / "pose_pkl").glob("*.pkl"))
    assert len(files) == 5
    for path in files:
        with open(path, "rb") as f:
            trusted = pickle.load(f)
        assert_same(load_pickle(path), trusted, path.name)


def assert_same(got, expected, where: str) -> None:
    assert type(got) is type(expected), where
    if isinstance(expected, dict):
        assert got.keys() == expected.keys(), where
        for key in expected:
            assert_same(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(expected, np.ndarray):
        assert got.dtype == expected.dtype, where
        np.testing.assert_array_equal(got, expected, err_msg=where)
    else:
        assert got == expected, where
