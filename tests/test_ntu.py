"""NTU .skeleton parser, body selection, names, protocols and the NTU source."""

from __future__ import annotations

import pickle
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mmfc.config import ConfigError, DataConfig, load_pipeline
from mmfc.data.ntu import (
    MISSING_LISTS,
    XSUB_TRAIN_PERFORMERS,
    NTUSource,
    load_missing_list,
    load_skeleton,
    parse_name,
    parse_skeleton,
    parse_skeleton_bytes,
    protocol_side,
    select_bodies,
)
from mmfc.data.ntu_names import NTU60_CLASS_NAMES, NTU120_CLASS_NAMES
from mmfc.errors import DataError

REAL_FILES = {
    "S001C001P001R001A001": (103, 1),
    "S001C001P001R001A011": (82, 1),
    "S001C003P008R002A058": (70, 2),
    "S002C001P003R001A003": (100, 1),
    "S003C001P015R001A034": (71, 1),
    "S004C002P003R001A017": (124, 1),
}


def skeleton_text(frames: list[list[tuple[int, np.ndarray]]], newline: str = "\r\n") -> str:
    """A .skeleton file from, per frame, a list of (body_id, joints [25, 12]) pairs."""
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body_id, joints in bodies:
            lines.append(f"{body_id} 0 1 1 1 1 0 0.01 0.02 2")
            lines.append(str(len(joints)))
            lines += [" ".join(f"{v:.7g}" for v in row) for row in joints]
    return newline.join(lines) + newline


def standing_body(offset: float = 0.0, wobble: float = 0.0, seed: int = 0) -> np.ndarray:
    """A plausible upright body: narrow in x, tall in y; trackingState 2 everywhere."""
    rng = np.random.default_rng(seed)
    joints = np.zeros((25, 12))
    joints[:, 0] = offset + rng.uniform(-0.2, 0.2, 25) + wobble
    joints[:, 1] = np.linspace(-0.8, 0.8, 25)
    joints[:, 2] = 3.0
    joints[:, 5] = 960 + 300 * joints[:, 0]
    joints[:, 6] = 540 - 300 * joints[:, 1]
    joints[:, 11] = 2
    return joints


def lying_body(seed: int = 0) -> np.ndarray:
    """Wide in x, flat in y: what the spread rule treats as noise (e.g. a sofa)."""
    joints = standing_body(seed=seed)
    joints[:, 0], joints[:, 1] = joints[:, 1] * 2, joints[:, 0] * 0.1
    return joints


# ---------------------------------------------------------------------------------------------
# Parser on the real files


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_files_parse(realdata: Path, name: str):
    frames, num_bodies = REAL_FILES[name]
    raw = parse_skeleton(realdata / "ntu_skeleton" / f"{name}.skeleton")
    assert raw.num_frames == frames
    assert len(raw.bodies) == num_bodies
    for body in raw.bodies.values():
        assert body.joints.shape == (body.num_frames, 25, 12)
        assert body.info.shape == (body.num_frames, 10)
        assert body.joints.dtype == np.float32
        assert 72057594037927936 < body.body_id < 72057594037927936 + 10**6  # Kinect's 2**56 base


def test_values_match_the_raw_text(realdata: Path):
    path = realdata / "ntu_skeleton" / "S001C001P001R001A001.skeleton"
    lines = path.read_text().splitlines()
    raw = parse_skeleton(path)
    (body,) = raw.bodies.values()
    assert body.body_id == int(lines[2].split()[0]) == 72057594037931101
    # Line 0 is the frame count; frame 1 is lines 1..28 (1 body, info, 25, 25 joints).
    first_joint = [float(v) for v in lines[4].split()]
    last_joint_frame1 = [float(v) for v in lines[28].split()]
    np.testing.assert_allclose(body.joints[0, 0], first_joint, rtol=1e-6)
    np.testing.assert_allclose(body.joints[0, 24], last_joint_frame1, rtol=1e-6)
    np.testing.assert_allclose(body.info[0, 1:], [float(v) for v in lines[2].split()[1:]], rtol=1e-6)
    frame2_joint3 = [float(v) for v in lines[29 + 3 + 2].split()]
    np.testing.assert_allclose(body.joints[1, 2], frame2_joint3, rtol=1e-6)
    assert body.joints[0, 0, 5] == pytest.approx(1036.233)


def test_lf_and_crlf_parse_alike(realdata: Path):
    data = (realdata / "ntu_skeleton" / "S003C001P015R001A034.skeleton").read_bytes()
    assert b"\r\n" in data
    crlf = parse_skeleton_bytes(data)
    lf = parse_skeleton_bytes(data.replace(b"\r\n", b"\n"))
    (a,), (b,) = crlf.bodies.values(), lf.bodies.values()
    np.testing.assert_array_equal(a.joints, b.joints)
    np.testing.assert_array_equal(a.frames, b.frames)


@pytest.mark.parametrize(
    "channels, pickle_name", [(3, "derived_ntu6_3d_pyskl.pkl"), (2, "derived_ntu6_2d_pyskl.pkl")]
)
def test_matches_the_pyskl_pickles(realdata: Path, channels: int, pickle_name: str):
    with open(realdata / "pose_pkl" / pickle_name, "rb") as f:
        annotations = {a["frame_dir"]: a for a in pickle.load(f)["annotations"]}
    fields = slice(0, 3) if channels == 3 else slice(5, 7)
    for name in REAL_FILES:
        raw = parse_skeleton(realdata / "ntu_skeleton" / f"{name}.skeleton")
        ann = annotations[name]
        assert ann["total_frames"] == raw.num_frames
        # The pickles hold one person per body ID, in order of first appearance.
        for person, body in enumerate(raw.bodies.values()):
            expected = ann["keypoint"][person, body.frames]
            np.testing.assert_allclose(body.joints[..., fields], expected, rtol=1e-6, atol=1e-6)
        if channels == 2:
            skeleton, _ = load_skeleton(realdata / "ntu_skeleton" / f"{name}.skeleton")
            assert set(np.unique(skeleton.score)) <= {0.0, 0.5, 1.0}
            # The skeleton's persons are ranked by motion, so compare as a set of persons.
            for person in range(skeleton.num_persons):
                matches = [
                    np.allclose(skeleton.score[person], ann["keypoint_score"][p, skeleton.frame_indices])
                    and np.allclose(skeleton.pixels[person], ann["keypoint"][p, skeleton.frame_indices])
                    for p in range(ann["keypoint"].shape[0])
                ]
                assert any(matches)


def test_two_body_file_ranks_persons_by_motion(realdata: Path):
    skeleton, selection = load_skeleton(realdata / "ntu_skeleton" / "S001C003P008R002A058.skeleton")
    assert skeleton.points.shape == (2, 70, 25, 3)
    assert skeleton.pixels.shape == (2, 70, 25, 2)
    assert skeleton.frame_size == (1920, 1080) and skeleton.layout == "ntu25"
    assert sorted(d.body_id for d in selection.decisions) == [72057594037944734, 72057594037944738]
    motions = {d.body_id: d.motion for d in selection.decisions}
    first, second = selection.persons
    assert motions[first[0]] > motions[second[0]]
    assert all(d.kept for d in selection.decisions)


# ---------------------------------------------------------------------------------------------
# Broken files


def test_truncated_file_names_frame_and_joint(tmp_path: Path, realdata: Path):
    lines = (realdata / "ntu_skeleton" / "S001C001P001R001A001.skeleton").read_bytes().split(b"\n")
    # A one-body frame is 28 lines (body count, info, 25, 25 joints); cut frame 37 after 12 joints.
    frame37 = 1 + 36 * 28
    cut = tmp_path / "S001C001P001R001A001.skeleton"
    cut.write_bytes(b"\n".join(lines[: frame37 + 3 + 12]))
    with pytest.raises(DataError, match="truncated: frame 37 of 103 ends after 12 of 25 joints") as info:
        parse_skeleton(cut)
    assert "S001C001P001R001A001.skeleton" in str(info.value)


def test_non_numeric_value_names_the_line(tmp_path: Path):
    text = skeleton_text([[(7, standing_body())]] * 3, newline="\n").splitlines()
    values = text[5 + 29].split()
    text[5 + 29] = " ".join([*values[:2], "abc", *values[3:]])
    bad = tmp_path / "bad.skeleton"
    bad.write_text("\n".join(text))
    with pytest.raises(DataError, match=r"bad\.skeleton: line 35: non-numeric value 'abc'"):
        parse_skeleton(bad)


@pytest.mark.parametrize("spelling", ["nan", "NaN", "inf", "-inf", "1e400", "1e39", "1.#QNAN", "-1.#IND"])
def test_a_joint_value_that_is_no_finite_number_fails_the_sample_however_spelled(tmp_path: Path, spelling: str):
    # One rule: what float() accepts (nan, inf, 1e400) is refused like what it does not (1.#QNAN,
    # the spelling of Windows C runtimes), never read as a missing joint.
    text = skeleton_text([[(7, standing_body())]] * 3, newline="\n").splitlines()
    values = text[5 + 29].split()
    text[5 + 29] = " ".join([*values[:2], spelling, *values[3:]])
    bad = tmp_path / "bad.skeleton"
    bad.write_text("\n".join(text))
    with pytest.raises(DataError, match=rf"bad\.skeleton: line 35: (non-numeric )?value '{re.escape(spelling)}'"):
        parse_skeleton(bad)


def test_body_id_that_is_no_integer(tmp_path: Path):
    text = skeleton_text([[(7, standing_body())]], newline="\n").replace("\n7 0 1", "\n7.5 0 1", 1)
    bad = tmp_path / "bad.skeleton"
    bad.write_text(text)
    with pytest.raises(DataError, match=r"bad\.skeleton: body ID '7\.5' is not an integer"):
        parse_skeleton(bad)


def test_wrong_joint_count(tmp_path: Path):
    text = skeleton_text([[(7, standing_body()[:24])]])
    bad = tmp_path / "bad.skeleton"
    bad.write_text(text)
    with pytest.raises(DataError, match="frame 1 of 1, body 1: 24 joints, expected 25"):
        parse_skeleton(bad)


def test_trailing_values_are_an_error(tmp_path: Path):
    bad = tmp_path / "bad.skeleton"
    bad.write_text(skeleton_text([[(7, standing_body())]]) + "1 2 3\n")
    with pytest.raises(DataError, match="3 unexpected values after the last frame"):
        parse_skeleton(bad)


def test_zero_body_file(tmp_path: Path):
    empty = tmp_path / "S001C001P001R001A001.skeleton"
    empty.write_text(skeleton_text([[], [], []]))
    raw = parse_skeleton(empty)
    assert raw.num_frames == 3 and not raw.bodies
    with pytest.raises(DataError, match="S001C001P001R001A001.skeleton: no body in any frame"):
        load_skeleton(empty)


def test_empty_and_missing_files(tmp_path: Path):
    (tmp_path / "e.skeleton").write_text("")
    with pytest.raises(DataError, match="empty file"):
        parse_skeleton(tmp_path / "e.skeleton")
    with pytest.raises(DataError, match="nope.skeleton: cannot read"):
        parse_skeleton(tmp_path / "nope.skeleton")


# ---------------------------------------------------------------------------------------------
# Body selection


def test_frames_without_body_are_dropped_but_indexed(tmp_path: Path):
    frames = [[(1, standing_body(wobble=0.01 * t))] if t % 5 else [] for t in range(30)]
    path = tmp_path / "gaps.skeleton"
    path.write_text(skeleton_text(frames))
    skeleton, _ = load_skeleton(path)
    assert skeleton.total_frames == 30
    np.testing.assert_array_equal(skeleton.frame_indices, [t for t in range(30) if t % 5])
    assert skeleton.points.shape == (1, 24, 25, 3)


def test_short_and_noisy_bodies_are_dropped(tmp_path: Path):
    frames = []
    for t in range(40):
        bodies = [(1, standing_body(wobble=0.02 * t)), (2, lying_body(seed=t))]
        if t < 11:
            bodies.append((3, standing_body(offset=1.0, wobble=0.5 * t)))
        frames.append(bodies)
    path = tmp_path / "noise.skeleton"
    path.write_text(skeleton_text(frames))
    skeleton, selection = load_skeleton(path)
    decisions = {d.body_id: d for d in selection.decisions}
    assert decisions[1].kept and decisions[1].person == 0
    assert not decisions[2].kept and "x-span" in decisions[2].reason
    assert not decisions[3].kept and "11 frames" in decisions[3].reason
    assert skeleton.num_persons == 1


def test_reassigned_body_id_continues_the_person(tmp_path: Path):
    # Body 1 in frames 0..19, body 2 (the same actor, new ID) in 20..39, body 3 throughout.
    frames = [
        [(1 if t < 20 else 2, standing_body(wobble=0.05 * t)), (3, standing_body(offset=1.5, wobble=0.001 * t))]
        for t in range(40)
    ]
    path = tmp_path / "relabel.skeleton"
    path.write_text(skeleton_text(frames))
    skeleton, selection = load_skeleton(path, max_bodies=2)
    # Bodies 1 and 2 move most; 2 shares no frame with 1, so it continues person 0.
    assert sorted(selection.persons[0]) == [1, 2] and selection.persons[1] == [3]
    assert skeleton.points.shape == (2, 40, 25, 3)
    skeleton1, selection1 = load_skeleton(path, max_bodies=1)
    assert skeleton1.num_persons == 1
    assert [d.body_id for d in selection1.decisions if not d.kept] == [3]


def test_tracking_state_becomes_score(tmp_path: Path):
    joints = standing_body()
    joints[:3, 11] = [0, 1, 2]
    path = tmp_path / "states.skeleton"
    path.write_text(skeleton_text([[(1, joints)]] * 12))
    skeleton, _ = load_skeleton(path)
    np.testing.assert_array_equal(skeleton.score[0, 0, :4], [0.0, 0.5, 1.0, 1.0])


def test_all_bodies_short_keeps_the_longest(tmp_path: Path):
    frames = [[(1, standing_body())]] * 5 + [[(2, standing_body(offset=0.3))]] * 8
    path = tmp_path / "short.skeleton"
    path.write_text(skeleton_text(frames))
    raw = parse_skeleton(path)
    selection = select_bodies(raw)
    assert selection.persons == [[2]]
    reasons = {d.body_id: d.reason for d in selection.decisions}
    assert "the longest is kept" in reasons[2] and reasons[1].startswith("dropped: seen in 5 frames")


# ---------------------------------------------------------------------------------------------
# Names, protocols, missing list


def test_parse_name():
    name = parse_name("S017C003P020R002A060")
    assert (name.setup, name.camera, name.performer, name.replication, name.action) == (17, 3, 20, 2, 60)
    assert name.label == 59
    assert parse_name("S001C001P001R001A001_rgb.avi").action == 1
    with pytest.raises(DataError, match="not an NTU sample name"):
        parse_name("v_ApplyEyeMakeup_g01_c01")


def test_official_split_counts(realdata: Path):
    names = (realdata / "ntu_meta/ctrgcn_statistics/ntu/skes_available_name.txt").read_text().split()
    assert len(names) == 56578
    parsed = [parse_name(n) for n in names]
    assert Counter(protocol_side(n, "xsub") for n in parsed) == {"train": 40091, "test": 16487}
    assert Counter(protocol_side(n, "xview") for n in parsed) == {"train": 37646, "test": 18932}
    labels = (realdata / "ntu_meta/ctrgcn_statistics/ntu/label.txt").read_text().split()
    assert [n.action for n in parsed[:1000]] == [int(v) for v in labels[:1000]]


def test_official_ntu120_split_counts(realdata: Path):
    names = (realdata / "ntu_meta/ctrgcn_statistics/ntu120/skes_available_name.txt").read_text().split()
    parsed = [parse_name(n) for n in names]
    # The counts CTR-GCN and PYSKL train and test on.
    assert Counter(protocol_side(n, "xsub") for n in parsed) == {"train": 63026, "test": 50919}
    assert Counter(protocol_side(n, "xset") for n in parsed) == {"train": 54468, "test": 59477}


def test_xsub_table_holds_the_ntu60_list():
    ntu60 = {1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38}
    assert {p for p in XSUB_TRAIN_PERFORMERS if p <= 40} == ntu60
    assert len(XSUB_TRAIN_PERFORMERS) == 53


def test_unknown_protocol():
    with pytest.raises(ConfigError, match="xsub, xview, xset"):
        protocol_side("S001C001P001R001A001", "xsetup")


def test_missing_lists_official_and_headerless(realdata: Path):
    official = load_missing_list(realdata / "ntu_meta/NTU_RGBD_samples_with_missing_skeletons.txt")
    ctrgcn = realdata / "ntu_meta/ctrgcn_statistics/ntu"
    headerless = load_missing_list(ctrgcn / "samples_with_missing_skeletons.txt")
    assert len(official) == 302 and official == headerless
    available = set((realdata / "ntu_meta/ctrgcn_statistics/ntu/skes_available_name.txt").read_text().split())
    assert not official & available
    ntu120 = load_missing_list(realdata / "ntu_meta/NTU_RGBD120_samples_with_missing_skeletons.txt")
    assert len(ntu120) == 535 and official <= ntu120


def test_shipped_missing_lists():
    """The official lists ship with the package: the NTU download does not contain them."""
    ntu60, ntu120 = load_missing_list("ntu60"), load_missing_list("ntu120")
    assert len(ntu60) == 302 and len(ntu120) == 535 and ntu60 <= ntu120
    assert "S001C002P005R002A008" in ntu60 and all(name[:4] > "S017" for name in ntu120 - ntu60)


def test_shipped_missing_lists_are_the_official_files(realdata: Path):
    for name, official in (("ntu60", "NTU_RGBD"), ("ntu120", "NTU_RGBD120")):
        source = realdata / f"ntu_meta/{official}_samples_with_missing_skeletons.txt"
        assert MISSING_LISTS[name].read_bytes() == source.read_bytes()


@pytest.mark.parametrize("pipeline", ["ntu60-xsub", "ntu60-xview", "ntu120-xsub", "ntu120-xset"])
def test_pipelines_run_on_a_download_without_the_list(tmp_path: Path, realdata: Path, pipeline: str):
    """The docs' `--set data.root=/my/ntu` on a plain download: the list comes from the package."""
    cfg = load_pipeline(Path(__file__).parents[1] / f"pipelines/{pipeline}.toml",
                        [f"data.root={make_root(tmp_path, realdata)}"])
    assert cfg.data.missing_list in MISSING_LISTS
    assert len(NTUSource(cfg.data).samples()) == len(REAL_FILES)


def test_missing_list_with_junk_after_names(tmp_path: Path):
    bad = tmp_path / "missing.txt"
    bad.write_text("Some header\n\nS001C001P001R001A001\nnot a name\n")
    with pytest.raises(DataError, match="missing.txt: line 4"):
        load_missing_list(bad)


def test_class_names():
    assert len(NTU120_CLASS_NAMES) == 120 and NTU60_CLASS_NAMES == NTU120_CLASS_NAMES[:60]
    assert NTU120_CLASS_NAMES[0] == "drink water" and NTU120_CLASS_NAMES[57] == "handshaking"


def test_class_names_match_the_label_map(realdata: Path):
    label_map = (realdata / "ntu_meta/label_map_ntu120.txt").read_text(encoding="utf-8").splitlines()
    assert list(NTU120_CLASS_NAMES) == label_map


# ---------------------------------------------------------------------------------------------
# The source


def make_root(tmp_path: Path, realdata: Path) -> Path:
    root = tmp_path / "ntu"
    (root / "nturgb+d_skeletons").mkdir(parents=True)
    (root / "nturgb+d_rgb").mkdir()
    for name in REAL_FILES:
        file_name = f"{name}.skeleton"
        (root / "nturgb+d_skeletons" / file_name).symlink_to(realdata / "ntu_skeleton" / file_name)
    (root / "nturgb+d_rgb" / "S001C001P001R001A001_rgb.avi").symlink_to(
        realdata / "videos" / "S001C001P001R001A001_rgb.avi"
    )
    return root


def test_source_splits(tmp_path: Path, realdata: Path):
    root = make_root(tmp_path, realdata)
    missing = tmp_path / "missing.txt"
    missing.write_text("header line\n\nS003C001P015R001A034\n")
    cfg = DataConfig(
        root=str(root), protocol="xsub", val_performers=[8], missing_list=str(missing), num_classes=60
    )
    source = NTUSource(cfg)
    samples = {s.id: s for s in source.samples()}
    assert "S003C001P015R001A034" not in samples
    assert source.excluded == {"in the missing-skeleton list": 1}
    assert samples["S001C001P001R001A001"].split == "train"
    assert samples["S001C003P008R002A058"].split == "val"  # performer 8 is the validation slice
    assert samples["S002C001P003R001A003"].split == "test"
    assert samples["S001C003P008R002A058"].label == 57
    assert samples["S001C003P008R002A058"].meta == {"setup": 1, "camera": 3, "performer": 8, "replication": 2}
    assert samples["S001C003P008R002A058"].group == "P008" and source.group_kind == "performer"
    assert samples["S001C001P001R001A001"].video_path.name == "S001C001P001R001A001_rgb.avi"
    assert samples["S001C001P001R001A011"].video_path is None
    assert source.class_names[57] == "handshaking"
    skeleton = source.load_skeleton(samples["S001C003P008R002A058"])
    assert skeleton.points.shape == (2, 70, 25, 3)

    xview = NTUSource(DataConfig(root=str(root), protocol="xview", num_classes=10))
    assert {s.id: s.split for s in xview.samples()} == {
        "S001C001P001R001A001": "test",
        "S002C001P003R001A003": "test",
    }
    assert xview.excluded == {"action beyond num_classes (10)": 4}


def test_source_rejects_bad_config(tmp_path: Path):
    with pytest.raises(DataError, match="no nturgb\\+d_skeletons/ folder"):
        NTUSource(DataConfig(root=str(tmp_path)))
    with pytest.raises(ConfigError, match="X-Sub test performers"):
        NTUSource(DataConfig(root=str(tmp_path), val_performers=[3]))


@pytest.mark.parametrize("count", ["-1", "1.5", "inf", "nan", "1e12"])
def test_bad_counts(tmp_path: Path, count: str):
    bad = tmp_path / "bad.skeleton"
    bad.write_text(f"2\n{count}\n")
    with pytest.raises(DataError, match="frame 1 of 2: body count is .* not a non-negative integer"):
        parse_skeleton(bad)
    bad.write_text(f"{count}\n")
    with pytest.raises(DataError, match="frame count is .* not a non-negative integer"):
        parse_skeleton(bad)
