"""The NW-UCLA and Penn Action sources on the real files, and their bad files as recorded failures."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.io

from mmfc.config import ConfigError, load_pipeline
from mmfc.crops.stage import run_crops
from mmfc.crops.store import open_crops
from mmfc.data import nw_ucla, penn_action
from mmfc.data.layouts import KINECT20, PENN13
from mmfc.data.sources import open_source
from mmfc.errors import DataError

NW_UCLA = ["data.source=nw_ucla", "data.layout=kinect20", "data.protocol=xview", "data.num_classes=10",
           "data.val_by=group", "data.max_bodies=1"]
PENN = ["data.source=penn_action", "data.layout=penn13", "data.num_classes=15", "data.val_by=group", "data.max_bodies=1"]
SMALL_CROPS = ["crops.skeleton_frames=16", "crops.num_frames=4", "jobs.n_jobs=1"]


def data_config(root: Path, settings: list[str], *extra: str):
    return load_pipeline(None, [f"data.root={root}", *settings, *extra]).data


# ---------------------------------------------------------------------------------------------
# NW-UCLA


def test_nw_ucla_reads_every_real_file_with_the_cross_view_split(realdata: Path):
    source = open_source(data_config(realdata / "nw_ucla", NW_UCLA))
    samples = source.samples()
    assert len(samples) == 1484 and source.class_names[0] == "pick up with one hand"
    by_split = defaultdict(list)
    for s in samples:
        by_split[s.split].append(s)
    # The published protocol: views 1 and 2 train (1,020 clips), view 3 tests (464).
    assert len(by_split["test"]) == 464 and all(s.meta["view"] == 3 for s in by_split["test"])
    assert len(by_split["train"]) + len(by_split["val"]) == 1020
    assert 0.05 < len(by_split["val"]) / 1020 < 0.15
    # Validation takes whole recordings: no recording has a training view on each side.
    val_groups = {s.group for s in by_split["val"]}
    assert val_groups and not val_groups & {s.group for s in by_split["train"]}
    assert all(s.group == s.id[:11] for s in samples)
    one_frame = []
    for s in samples:
        try:
            skel = source.load_skeleton(s)
        except DataError as exc:
            one_frame.append(Path(exc.path).stem)
            assert exc.reason == "1 frame: a sequence needs at least 2"
            continue
        assert skel.points.shape[1:] == (skel.num_frames, 20, 3) and skel.num_frames >= 2
        assert skel.layout == "kinect20" and np.isfinite(skel.points).all()
    # The release's two single-frame files.
    assert len(one_frame) == 2


def test_nw_ucla_label_comes_from_the_file_and_agrees_with_its_name(realdata: Path):
    path = realdata / "nw_ucla" / "all_sqe" / "a12_s01_e00_v01.json"
    label, joints = nw_ucla.read_sequence(path)
    assert label == 9 and nw_ucla.CLASS_NAMES[label] == "carry"
    assert joints.shape[1:] == (20, 3)
    # The head is above the hip centre (Kinect's y points up) and the body faces the camera (z > 0).
    skel = nw_ucla.sequence_skeleton(joints)
    assert (skel.points[0, :, 3, 1] > skel.points[0, :, 0, 1]).all()
    # Projected, the head is above the hips in the 640x480 image (image y points down).
    assert (skel.pixels[0, :, 3, 1] < skel.pixels[0, :, 0, 1]).all()
    assert ((skel.pixels >= 0) & (skel.pixels[..., 0:1] <= 640) & (skel.pixels[..., 1:2] <= 480)).all()


def test_nw_ucla_validation_by_subject(realdata: Path):
    samples = open_source(data_config(realdata / "nw_ucla", NW_UCLA, "data.val_by=performer",
                                      "data.val_performers=[1]")).samples()
    val = [s for s in samples if s.split == "val"]
    assert val and all(s.meta["subject"] == 1 and s.meta["view"] in (1, 2) for s in val)
    assert not any(s.meta["subject"] == 1 for s in samples if s.split == "train")


def bad_nw_ucla_folder(realdata: Path, folder: Path) -> dict[str, str]:
    """Two real files and one bad file of each kind. -> bad file stem: what its reason says"""
    folder.mkdir(parents=True)
    good = ["a01_s01_e00_v01", "a01_s01_e00_v03"]
    for name in good:
        shutil.copy(realdata / "nw_ucla" / "all_sqe" / f"{name}.json", folder)
    frames = json.loads((folder / f"{good[0]}.json").read_text())["skeletons"]

    def write(name: str, text: str) -> None:
        (folder / f"{name}.json").write_text(text)

    write("a01_s02_e00_v01", json.dumps({"file_name": "a01_s02_e00_v01", "label": 1, "skeletons": frames[:1]}))
    with_nan = json.loads(json.dumps(frames))
    with_nan[3][7][1] = float("nan")
    write("a01_s03_e00_v01", json.dumps({"label": 1, "skeletons": with_nan}))  # json writes NaN as NaN
    write("a01_s04_e00_v01", json.dumps({"label": 1, "skeletons": [f[:19] for f in frames]}))
    write("a01_s05_e00_v01", json.dumps({"label": 1, "skeletons": [frames[0], frames[1][:19]]}))
    write("a01_s06_e00_v01", '{"label": 1, "skeletons": [[[0.1, 0.2')
    (folder / "a01_s07_e00_v01.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    write("a01_s08_e00_v01", json.dumps({"label": 4, "skeletons": frames}))
    write("a01_s09_e00_v01", json.dumps({"skeletons": frames}))
    return {
        "a01_s02_e00_v01": "1 frame: a sequence needs at least 2",
        "a01_s03_e00_v01": "frame 4, joint 7: [",
        "a01_s04_e00_v01": "'skeletons' has shape [",
        "a01_s05_e00_v01": "frames of different sizes",
        "a01_s06_e00_v01": "not a JSON file",
        "a01_s07_e00_v01": "not a JSON file",
        "a01_s08_e00_v01": "label 4 (walk around), but the file name's action a01 is label 1",
        "a01_s09_e00_v01": "expected an object with 'label' and 'skeletons'",
    }


def test_nw_ucla_file_names_that_are_no_sample_are_left_out(tmp_path: Path):
    folder = tmp_path / "all_sqe"
    folder.mkdir()
    (folder / "notes.json").write_text("{}")
    (folder / "a07_s01_e00_v01.json").write_text("{}")  # a07 is not one of the 10 actions
    (folder / "a02_s01_e00_v02.json").write_text("{}")
    source = open_source(data_config(tmp_path, NW_UCLA))
    assert [s.id for s in source.samples()] == ["a02_s01_e00_v02"]
    assert sum(source.excluded.values()) == 2


# ---------------------------------------------------------------------------------------------
# Penn Action


def test_penn_action_reads_every_real_file_with_its_train_flag(realdata: Path):
    source = open_source(data_config(realdata / "penn_action", PENN))
    samples = source.samples()
    assert len(samples) == 2326 and not source.unreadable
    counts = defaultdict(int)
    for s in samples:
        counts[s.split] += 1
    assert counts["test"] == 1068 and counts["train"] + counts["val"] == 1258
    # Validation takes whole runs of training clips, each of one action, never test clips.
    groups = defaultdict(set)
    for s in samples:
        groups[s.group].add(s.split)
        assert s.group.startswith(source.class_names[s.label] + "-")
    assert all(len(sides) == 1 for sides in groups.values())
    assert sum(sides & {"train", "val"} != set() for sides in groups.values()) == 392
    first = source.load_skeleton(samples[0])
    assert samples[0].id == "0001" and samples[0].split == "test" and source.class_names[samples[0].label] == "baseball_pitch"
    assert first.points.shape == (1, 151, 13, 2) and first.frame_size == (480, 360)
    for s in samples:
        skel = source.load_skeleton(s)
        assert skel.layout == "penn13" and skel.num_frames >= 2 and np.isfinite(skel.points).all()
        assert set(np.unique(skel.score)) <= {0.0, 0.5, 1.0}
        # A joint without an estimate is missing: zero, with no score.
        assert (skel.points[skel.score == 0] == 0).all()


def test_penn_action_joint_scores(realdata: Path):
    mat = scipy.io.loadmat(realdata / "penn_action" / "labels" / "0001.mat")
    skel = penn_action.read_clip(realdata / "penn_action" / "labels" / "0001.mat")
    visible = mat["visibility"].astype(bool)
    corner = (mat["x"] < 2) & (mat["y"] < 2)
    assert (skel.score[0][visible] == 1).all()
    assert (skel.score[0][~visible & corner] == 0).all()
    assert (skel.score[0][~visible & ~corner] == 0.5).all()
    np.testing.assert_allclose(skel.points[0, ..., 0][~corner], mat["x"][~corner], rtol=1e-6)


def bad_penn_folder(realdata: Path, folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    for name in ("0001", "0002"):
        shutil.copy(realdata / "penn_action" / "labels" / f"{name}.mat", folder)
    clip = scipy.io.loadmat(folder / "0002.mat")
    fields = {k: v for k, v in clip.items() if not k.startswith("__")}

    def write(name: str, **changes) -> None:
        scipy.io.savemat(folder / f"{name}.mat", {k: v for k, v in {**fields, **changes}.items() if v is not None})

    write("0003", x=fields["x"][:1], y=fields["y"][:1], visibility=fields["visibility"][:1])
    with_nan = fields["x"].copy()
    with_nan[5, 2] = np.nan
    write("0004", x=with_nan)
    write("0005", x=fields["x"][:, :12], y=fields["y"][:, :12])
    write("0006", y=fields["y"][:-1])
    write("0007", x=None)
    write("0008", action=np.array(["curling"]))
    write("0009", train=np.array([[0]]))
    (folder / "0010.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    return {
        "0003": "1 frame: a sequence needs at least 2",
        "0004": "frame 6, joint 2: [nan, ",
        "0005": "x has shape [",
        "0006": "y has shape [",
        "0007": "not a Penn Action label file: no 'x'",
        "0008": "action ['curling'] is not one of Penn Action's 15",
        "0009": "train flag [0] is neither 1 (train) nor -1 (test)",
        "0010": "not a readable MAT-file",
    }


@pytest.mark.parametrize("make_folder, files, settings, suffix, good", [
    (bad_nw_ucla_folder, "ucla/all_sqe", NW_UCLA, ".json", ["a01_s01_e00_v01", "a01_s01_e00_v03"]),
    (bad_penn_folder, "penn/labels", PENN, ".mat", ["0001", "0002"]),
], ids=["nw_ucla", "penn_action"])
def test_bad_files_are_recorded_failures_naming_file_and_reason(realdata: Path, tmp_path: Path, make_folder, files,
                                                                 settings, suffix, good):
    folder = tmp_path / files
    expected = make_folder(realdata, folder)
    cfg = load_pipeline(None, [f"data.root={folder.parent}", f"workdir={tmp_path / 'run'}", *settings, *SMALL_CROPS])
    assert run_crops(cfg) == 0
    assert run_crops(cfg, strict=True) == 1
    assert sorted(r["id"] for r in open_crops(cfg.paths.crops).index) == good
    failures = {f["id"]: f for f in pq.read_table(cfg.paths.crops / "failures.parquet").to_pylist()}
    assert set(failures) == set(expected)
    for name, reason in expected.items():
        assert failures[name]["file"] == str(folder / f"{name}{suffix}") and failures[name]["status"] == "failed"
        assert reason in failures[name]["reason"], (name, failures[name]["reason"])


# ---------------------------------------------------------------------------------------------
# Settings that do not fit these sources, refused when the pipeline loads or the source opens


@pytest.mark.parametrize("settings, override, message", [
    (NW_UCLA, "data.layout=ntu25", "the nw_ucla source holds 'kinect20' skeletons"),
    (NW_UCLA, "data.protocol=xsub", "NW-UCLA's protocol is 'xview'"),
    (PENN, "data.val_by=performer", "Penn Action names no performers"),
    (PENN, "data.layout=coco17", "the penn_action source holds 'penn13' skeletons"),
])
def test_settings_that_do_not_fit_the_source_are_refused_at_load(settings, override, message):
    with pytest.raises(ConfigError, match=message):
        load_pipeline(None, ["data.root=x", *settings, override])


def test_more_classes_than_the_dataset_has_is_refused(realdata: Path):
    with pytest.raises(ConfigError, match="NW-UCLA has 10 actions"):
        open_source(data_config(realdata / "nw_ucla", NW_UCLA, "data.num_classes=11"))
    with pytest.raises(ConfigError, match="Penn Action has 15 actions"):
        open_source(data_config(realdata / "penn_action", PENN, "data.num_classes=16"))


@pytest.mark.parametrize("name", ["nw-ucla", "penn-action"])
def test_the_pipelines_read_the_real_layouts(realdata: Path, name: str):
    root = realdata / name.replace("-", "_")
    cfg = load_pipeline(Path(__file__).resolve().parents[1] / "pipelines" / f"{name}.toml", [f"data.root={root}"])
    source = open_source(cfg.data)
    assert len(source.samples()) == {"nw-ucla": 1484, "penn-action": 2326}[name]
    assert len(source.class_names) == cfg.data.num_classes


@pytest.mark.parametrize("layout", [KINECT20, PENN13])
def test_the_stopgap_layouts_are_trees_whose_pairs_mirror(layout):
    assert len(layout.bones) == layout.num_joints - 1
    reached = {layout.center}
    for _ in range(layout.num_joints):
        reached |= {a for a, b in layout.bones if b in reached} | {b for a, b in layout.bones if a in reached}
    assert reached == set(range(layout.num_joints))
    perm = layout.flip_permutation()
    assert sorted(perm) == list(range(layout.num_joints)) and [perm[p] for p in perm] == list(range(layout.num_joints))
    # A bone's mirror is a bone too.
    bones = {frozenset(b) for b in layout.bones}
    assert all(frozenset((perm[a], perm[b])) in bones for a, b in layout.bones)
