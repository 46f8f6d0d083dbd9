"""Joint layouts as data: every built-in graph, a layout declared in a pipeline and each of its
refusals, the layout carried whole, and the built-in layouts on the real recordings they name."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmfc.cli import app
from mmfc.config import ConfigError, load_pipeline
from mmfc.data.layouts import (
    COCO17,
    KINECT20,
    LAYOUTS,
    NTU25,
    OPENPOSE25,
    PENN13,
    Layout,
    layout_of,
    stored_layout,
)
from mmfc.models.graph import adjacency
from mmfc.poses.joints import BLAZEPOSE, map_points


def reached_from_centre(layout: Layout) -> set[int]:
    """Joints the graph's links (both directions) lead to from the centre."""
    links = adjacency(layout)[1:].sum(axis=0) + adjacency(layout)[1:].sum(axis=0).T
    seen, frontier = {layout.center}, [layout.center]
    while frontier:
        joint = frontier.pop()
        for other in np.flatnonzero(links[joint]):
            if int(other) not in seen:
                seen.add(int(other))
                frontier.append(int(other))
    return seen


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=lambda layout: layout.name)
def test_built_in_graph_is_a_tree_with_mirrored_pairs(layout: Layout):
    v = layout.num_joints
    assert 0 <= layout.center < v and len(set(layout.joints)) == v
    assert reached_from_centre(layout) == set(range(v))  # connected
    assert len(layout.bones) == v - 1  # a tree: one parent per joint but the centre
    parents = layout.parents()
    for joint in range(v):  # following parents always ends at the centre
        for _ in range(v):
            joint = parents[joint]
        assert joint == layout.center
    perm = layout.flip_permutation()
    assert [perm[perm[j]] for j in range(v)] == list(range(v))  # an involution
    assert perm[layout.center] == layout.center
    bones = {frozenset(bone) for bone in layout.bones}
    assert {frozenset((perm[a], perm[b])) for a, b in layout.bones} == bones  # bones onto bones
    for left, right in layout.flip_pairs:  # each pair's names differ only by the side
        names = layout.joints[left], layout.joints[right]
        assert "left" in names[0] and names[1] == names[0].replace("left", "right")
    assert Layout.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout
    assert stored_layout(layout.name, "test") == layout


def test_built_in_layouts_are_the_published_ones():
    # docs/method.md, section 4, 1-based.
    assert NTU25.bones == tuple((a - 1, b - 1) for a, b in (
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
        (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23), (23, 8), (24, 25),
        (25, 12),
    )) and NTU25.center == 20
    assert COCO17.flip_pairs == tuple((left, left + 1) for left in range(1, 17, 2))
    # Kinect v1 as NW-UCLA stores it, linked as CTR-GCN's graph/ucla.py links it (1-based).
    assert {frozenset(bone) for bone in KINECT20.bones} == {frozenset((a - 1, b - 1)) for a, b in (
        (1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10), (12, 11), (13, 1),
        (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
    )}
    assert KINECT20.joints[:4] == ("hip_center", "spine", "shoulder_center", "head") and KINECT20.channels == 3
    assert PENN13.joints[:3] == ("head", "left_shoulder", "right_shoulder") and PENN13.channels == 2
    assert OPENPOSE25.joints[8] == "mid_hip" and OPENPOSE25.joints[24] == "right_heel"


def test_stage_0_keeps_all_33_blazepose_landmarks():
    assert LAYOUTS["mediapipe33"].joints == BLAZEPOSE
    points = np.random.default_rng(0).normal(size=(2, 4, 33, 2))
    np.testing.assert_array_equal(map_points(points, "mediapipe33"), points.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# A layout declared in a pipeline

STICK = """
[data]
source = "pose_pickle"
root = "{root}"
num_classes = 2
layout = "stick7"
val_by = "group"

[data.declared_layout]
name = "stick7"
joints = ["neck", "head", "elbow_l", "elbow_r", "hand_l", "hand_r", "hip"]
bones = [["head", "neck"], ["neck", "elbow_l"], ["elbow_r", "neck"], ["hand_l", "elbow_l"], ["hand_r", "elbow_r"], ["hip", "neck"]]
center = "neck"
pairs = [["elbow_l", "elbow_r"], ["hand_l", "hand_r"]]
channels = 2
"""


def write_pipeline(tmp_path: Path, text: str = STICK) -> Path:
    path = tmp_path / "stick.toml"
    path.write_text(text.replace("{root}", str(tmp_path / "poses.pkl")))
    return path


def test_declared_layout_is_checked_and_used(tmp_path):
    cfg = load_pipeline(write_pipeline(tmp_path))
    layout = layout_of(cfg.data)
    assert layout.name == "stick7" and layout.num_joints == 7 and layout.channels == 2
    # Each bone points from the joint farther from the centre to the nearer one, however given.
    assert layout.bones == ((1, 0), (2, 0), (3, 0), (4, 2), (5, 3), (6, 0))
    assert layout.flip_permutation() == [0, 1, 3, 2, 5, 4, 6]
    assert reached_from_centre(layout) == set(range(7))
    assert adjacency(layout).shape == (3, 7, 7)


BONES = '[["head", "neck"], ["neck", "elbow_l"], ["elbow_r", "neck"], ["hand_l", "elbow_l"], ["hand_r", "elbow_r"]'


@pytest.mark.parametrize("change, message", [
    (f'bones = {BONES}, ["hip", "nek"]]', "data.declared_layout.bones: ['hip', 'nek'] names an unknown joint 'nek'"),
    ('pairs = [["elbow_l", "elbow_r"], ["hand_l", "elbow_r"]]', "data.declared_layout.pairs: 'elbow_r' is in two pairs"),
    ('joints = ["neck", "head", "elbow_l", "elbow_r", "hand_l", "hand_r", "hand_l"]',
     "data.declared_layout.joints: 'hand_l' is named twice"),
    ('center = "chest"', "data.declared_layout.center = 'chest' is not one of the joints"),
    ('bones = [["head", "neck"], ["neck", "elbow_l"], ["elbow_r", "neck"], ["hand_l", "elbow_l"], ["hand_r", "hip"]]',
     "data.declared_layout.bones: the graph is not connected: no bones lead from 'hand_r', 'hip' to the centre 'neck'"),
    (f'bones = {BONES}, ["hip", "neck"], ["hip", "hand_l"]]', "7 bones for 7 joints close a loop"),
    (f'bones = {BONES}, ["neck", "head"]]', "data.declared_layout.bones: ['neck', 'head'] is given twice"),
    (f'bones = {BONES}, ["hip", "hip"]]', "data.declared_layout.bones: ['hip', 'hip'] joins 'hip' to itself"),
    (f'bones = {BONES}, ["hip", "neck", "head"]]', "data.declared_layout.bones: ['hip', 'neck', 'head'] is not a pair of joints"),
    ('pairs = [["elbow_l", "elbow_r"], ["hand_l", "hand_r"], ["neck", "hip"]]',
     "data.declared_layout.pairs: the centre 'neck' is in a pair, but a flip must leave it in place"),
    ('pairs = [["elbow_l", "elbow_r"]]',
     "data.declared_layout.pairs: the flip takes bone ['hand_l', 'elbow_l'] to ['hand_l', 'elbow_r'], which is not a bone"),
    ('pairs = [["elbow_l", "elbow_r"], ["hand_l", "hip"]]', "the flip takes bone ['hand_l', 'elbow_l'] to ['hip', 'elbow_r']"),
    ('align = ["neck", "head", "elbow_r", "elbow_l"]', "data.declared_layout.align turns 3D bodies (channels = 3)"),
    ('align = ["neck", "head"]', "data.declared_layout.align: give [spine base, spine, right shoulder, left shoulder]"),
    ("channels = 4", "data.declared_layout.channels must be at most 3"),
    ('name = "coco17"', "data.declared_layout.name = 'coco17' is a built-in layout's"),
    ('name = ""', "data.declared_layout.name: joints, bones, center, pairs given, but no name"),
])
def test_declared_layout_refusals_name_the_key_and_the_reason(tmp_path, change, message):
    head, declared = STICK.split("[data.declared_layout]")
    key = change.split(" = ")[0]
    declared = re.sub(rf"^{key} = .*$", change, declared, flags=re.M) if key in declared else declared + change + "\n"
    path = write_pipeline(tmp_path, head + "[data.declared_layout]" + declared)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_pipeline(path)
    assert str(path) in str(info.value)


def test_data_layout_names_a_built_in_or_the_declared_one(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("data.layout must be one of 'ntu25', 'coco17', 'kinect20', "
                                                    "'mediapipe33', 'penn13', 'openpose25' or the declared layout "
                                                    "'stick7'; got 'stick5'")):
        load_pipeline(write_pipeline(tmp_path), ["data.layout=stick5"])
    assert layout_of(load_pipeline(write_pipeline(tmp_path), ["data.layout=penn13"]).data) == PENN13
    with pytest.raises(ConfigError, match="stage 0 gives videos 'coco17', 'ntu25', 'mediapipe33' joints"):
        load_pipeline(None, ["data.source=videos", "data.layout=kinect20"])
    assert load_pipeline(None, ["data.source=videos", "data.layout=mediapipe33"]).data.layout == "mediapipe33"


def test_a_layout_read_back_is_checked_as_a_declared_one():
    broken = {**COCO17.to_dict(), "pairs": [["left_eye", "right_eye"]]}
    with pytest.raises(ConfigError, match=r"^checkpoint: pairs: the flip takes bone \['left_ear', 'left_eye'\]"):
        Layout.from_dict(broken, "checkpoint")
    with pytest.raises(ConfigError, match="store: unknown joint layout 'mpii16'"):
        stored_layout("mpii16", "store")
    with pytest.raises(ConfigError, match="store: a joint layout is a table"):
        stored_layout(["nose"], "store")


def stick_pickle(path: Path) -> None:
    """Two clips of the stick7 layout, 2D, in a PYSKL pose pickle."""
    rng = np.random.default_rng(0)
    annotations = [{"frame_dir": f"clip{k}", "label": k, "img_shape": (90, 160), "total_frames": 8,
                    "keypoint": (rng.random((1, 8, 7, 2)) * 80 + 5).astype(np.float32)} for k in range(2)]
    path.write_bytes(pickle.dumps({"split": {"train": ["clip0"], "test": ["clip1"]}, "annotations": annotations}))


def test_mmfc_info_prints_the_layout(tmp_path):
    stick_pickle(tmp_path / "poses.pkl")
    path = write_pipeline(tmp_path)
    result = CliRunner().invoke(app, ["info", "--pipeline", str(path), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["layout"]
    assert shown["joints"] == ["neck", "head", "elbow_l", "elbow_r", "hand_l", "hand_r", "hip"]
    assert shown["bones"][1] == ["elbow_l", "neck"] and shown["center"] == "neck"
    assert shown["pairs"] == [["elbow_l", "elbow_r"], ["hand_l", "hand_r"]]
    refused = CliRunner().invoke(app, ["info", "--pipeline", str(path), "--set", "crops.center_joint=chest"])
    assert refused.exit_code == 2
    assert "crops.center_joint = 'chest' is not a joint of layout 'stick7'; its joints: neck, head" in refused.output


# ---------------------------------------------------------------------------------------------
# The built-in layouts on the real recordings they describe


def median_bone_lengths(layout: Layout, sequences: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Median over sequences of each bone's median length over the frames where both its joints
    are seen. sequences: (points [T, V, C], seen [T, V])."""
    child, parent = np.array(layout.bones).T
    per_sequence = []
    for points, seen in sequences:
        lengths = np.linalg.norm(points[:, child] - points[:, parent], axis=-1)
        both = seen[:, child] & seen[:, parent]
        per_sequence.append([np.median(lengths[both[:, b], b]) if both[:, b].any() else np.nan
                             for b in range(len(child))])
    return np.nanmedian(np.array(per_sequence), axis=0)


def mirror_ratios(layout: Layout, lengths: np.ndarray) -> np.ndarray:
    """Each bone's length over its mirror image's."""
    perm = layout.flip_permutation()
    index = {frozenset(bone): b for b, bone in enumerate(layout.bones)}
    return np.array([lengths[b] / lengths[index[frozenset((perm[c], perm[p]))]] for b, (c, p) in enumerate(layout.bones)])


def test_kinect20_joints_are_nw_uclas(realdata):
    """Each bone keeps its length over a clip, and mirrored bones are as long as each other."""
    sequences = []
    for path in sorted((realdata / "nw_ucla" / "all_sqe").glob("*.json"))[:150]:
        points = np.array(json.loads(path.read_text())["skeletons"], dtype=np.float64)  # [T, 20, 3]
        if len(points) > 1:
            sequences.append((points, np.ones(points.shape[:2], bool)))
    lengths = median_bone_lengths(KINECT20, sequences)
    assert np.allclose(mirror_ratios(KINECT20, lengths), 1, atol=0.1)
    thigh = lengths[[b for b, (c, p) in enumerate(KINECT20.bones) if KINECT20.joints[c] == "knee_left"][0]]
    assert 0.35 < thigh < 0.55  # metres


def test_penn13_joints_are_penn_actions(realdata):
    scipy_io = pytest.importorskip("scipy.io")
    sequences = []
    for path in sorted((realdata / "penn_action" / "labels").glob("*.mat"))[:300]:
        mat = scipy_io.loadmat(path)
        sequences.append((np.stack([mat["x"], mat["y"]], axis=-1).astype(np.float64), mat["visibility"] > 0))
    assert np.allclose(mirror_ratios(PENN13, median_bone_lengths(PENN13, sequences)), 1, atol=0.1)


@pytest.mark.parametrize("layout", [OPENPOSE25, NTU25], ids=lambda layout: layout.name)
def test_bones_join_neighbouring_joints_on_real_skeletons(realdata, layout):
    """FSD-10's BODY_25 example and the NTU Kinect v2 files: every bone is shorter than the median
    distance between two joints of the body."""
    if layout is OPENPOSE25:
        raw = np.load(realdata / "skeleton_npy" / "paddlevideo_fsd10_example_skeleton.npy")  # [3, T, 25, 1]: x, y, score
        points = raw[:2, :117, :, 0].transpose(1, 2, 0)
        sequences = [(points, raw[2, :117, :, 0] > 0)]
    else:
        from mmfc.data.ntu import load_skeleton

        sequences = []
        for path in sorted((realdata / "ntu_skeleton").glob("*.skeleton")):
            skeleton, _ = load_skeleton(path, 1, (1920, 1080))
            sequences.append((skeleton.points[0].astype(np.float64), skeleton.score[0] > 0))
    lengths = median_bone_lengths(layout, sequences)
    points, seen = sequences[0]
    pairwise = np.linalg.norm(points[:, :, None] - points[:, None], axis=-1)[seen.all(axis=1)]
    upper, lower = np.triu_indices(layout.num_joints, 1)
    typical = np.median(pairwise[:, upper, lower])
    assert (lengths < typical).all(), [layout.joints[c] for (c, _), n in zip(layout.bones, lengths) if n >= typical]
