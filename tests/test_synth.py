"""`mmfc synth`: layout, exact NTU text format, determinism, and that the classes differ where
(and only where) they are meant to."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmfc.data.synth import ACTIONS, generate
from mmfc.data.synth import body as B
from mmfc.data.synth.clip import SampleKey, compose_clip
from mmfc.data.synth.render import OBJECTS, clip_background, person_pixels, render_clip
from mmfc.data.synth.writer import RGB_DIR, SKELETON_DIR, skeleton_text
from mmfc.errors import DataError

cv2.setNumThreads(1)

TINY = dict(actions=[1, 4, 7, 10], performers=[1, 3], cameras=[1, 2], n_jobs=1)
FRAME_SIZE = (480, 270)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "data"
    return out, generate(out, seed=3, **TINY)


def read_skeleton_text(path: Path) -> list[list[tuple[list[str], np.ndarray, np.ndarray]]]:
    """A strict independent reader: per frame, a list of (body-info fields, [25, 11] values,
    [25] tracking states). Fails on any line that is not exactly where the format puts it."""
    lines = path.read_text().split("\n")
    assert lines[-1] == "", "file must end with a newline"
    lines = lines[:-1]
    pos = 0

    def take() -> str:
        nonlocal pos
        pos += 1
        return lines[pos - 1]

    frames = []
    for _ in range(int(take())):
        bodies = []
        for _ in range(int(take())):
            info = take().split(" ")
            assert len(info) == 10 and info[0].isdigit() and info[9] == "2"
            assert take() == "25"
            rows = [take().split(" ") for _ in range(25)]
            assert all(len(row) == 12 for row in rows)
            values = np.array([[float(x) for x in row[:11]] for row in rows])
            states = np.array([int(row[11]) for row in rows])
            bodies.append((info, values, states))
        frames.append(bodies)
    assert pos == len(lines), "trailing lines after the last frame"
    return frames


def video_frames(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return np.stack(frames)


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_names_and_frame_counts(tiny):
    out, summary = tiny
    expected = {f"S001C{c:03d}P{p:03d}R001A{a:03d}"
                for a in TINY["actions"] for p in TINY["performers"] for c in TINY["cameras"]}
    assert summary["samples"] == len(expected) == 16
    assert {p.name[:-len(".skeleton")] for p in (out / SKELETON_DIR).iterdir()} == expected
    assert {p.name[:-len("_rgb.avi")] for p in (out / RGB_DIR).iterdir()} == expected
    names = (out / "class_names.txt").read_text().splitlines()
    assert names == [spec.name for spec in ACTIONS] and len(names) == 12
    assert (out / ".complete").is_file() and not list(out.rglob(".tmp-*"))
    assert "drink water" in (out / "README.txt").read_text()
    for name in sorted(expected)[:8]:
        frames = read_skeleton_text(out / SKELETON_DIR / f"{name}.skeleton")
        video = video_frames(out / RGB_DIR / f"{name}_rgb.avi")
        assert 40 <= len(frames) <= 70
        assert video.shape[0] == len(frames)
        assert video.shape[1:] == (FRAME_SIZE[1], FRAME_SIZE[0], 3)
        capture = cv2.VideoCapture(str(out / RGB_DIR / f"{name}_rgb.avi"))
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
        capture.release()


def test_skeleton_values_are_kinect_like(tiny):
    out, _ = tiny
    frames = read_skeleton_text(out / SKELETON_DIR / "S001C001P001R001A001.skeleton")
    actor = np.stack([bodies[0][1] for bodies in frames if bodies])  # [T, 25, 11]
    z = actor[..., 2]
    assert 3.0 < z.min() and z.max() < 6.0  # metres, in front of the sensor
    height = actor[..., 1].max() - actor[..., 1].min()
    assert 1.3 < height < 2.2  # head to feet, y up
    assert np.all((actor[..., 3] > 0) & (actor[..., 3] < 512) & (actor[..., 4] > 0) & (actor[..., 4] < 424))
    assert np.all((actor[..., 5] > 0) & (actor[..., 5] < 1920) & (actor[..., 6] > 0) & (actor[..., 6] < 1080))
    # The person fills 30-45% of the frame height, away from the centre.
    pixel_height = (actor[..., 6].max(axis=1) - actor[..., 6].min(axis=1)).mean()
    assert 0.25 * 1080 < pixel_height < 0.5 * 1080
    # Orientations are unit quaternions, zero on the leaf joints (head, feet, hand tips, thumbs).
    quat = actor[..., 7:11]
    leaves = [B.HEAD, B.L_FOOT, B.R_FOOT, B.L_HAND_TIP, B.L_THUMB, B.R_HAND_TIP, B.R_THUMB]
    assert np.all(quat[:, leaves] == 0)
    inner = np.delete(quat, leaves, axis=1)
    assert np.allclose(np.linalg.norm(inner, axis=-1), 1.0, atol=1e-5)


def test_roundtrip_through_ntu_parser(tiny):
    ntu = pytest.importorskip("mmfc.data.ntu")
    out, _ = tiny
    for path in sorted((out / SKELETON_DIR).iterdir())[:6]:
        mine = read_skeleton_text(path)
        raw = ntu.parse_skeleton(path)
        assert raw.num_frames == len(mine)
        assert list(raw.bodies_per_frame) == [len(bodies) for bodies in mine]
        actor_id = int(next(bodies for bodies in mine if bodies)[0][0][0])
        body = raw.bodies[actor_id]
        mine_actor = np.stack([b[1] for bodies in mine for b in bodies if int(b[0][0]) == actor_id])
        np.testing.assert_allclose(body.joints[..., :11], mine_actor, rtol=1e-5, atol=1e-5)
        skeleton, selection = ntu.load_skeleton(path)
        assert selection.persons == [[actor_id]]
        assert skeleton.total_frames == len(mine)


def test_body_selection_drops_the_bystander(tmp_path):
    """Some clips carry a second body (tracked a few frames, or a wide noisy blob) and some
    start with frames of no body; the NTU loader must keep only the actor."""
    ntu = pytest.importorskip("mmfc.data.ntu")
    keys = [SampleKey(1, c, p, 1, a) for a in range(1, 13) for p in (1, 2, 3) for c in (1, 2, 3)]
    clips = [compose_clip(key, seed=0) for key in keys]
    with_second = [clip for clip in clips if len(clip.bodies) == 2]
    late_start = [clip for clip in clips if not clip.bodies[0].present[0]]
    assert 0.03 < len(with_second) / len(clips) < 0.3 and late_start
    for clip in with_second[:4] + late_start[:2]:
        path = tmp_path / f"{clip.key.name}.skeleton"
        path.write_text(skeleton_text(clip))
        skeleton, selection = ntu.load_skeleton(path)
        assert selection.persons == [[clip.bodies[0].body_id]]
        np.testing.assert_array_equal(skeleton.frame_indices, np.flatnonzero(clip.bodies[0].present))


def test_colour_keypoints_land_on_the_drawn_person(tiny):
    out, _ = tiny
    key = SampleKey(1, 2, 3, 1, 7)
    clip = compose_clip(key, seed=3)
    frames = render_clip(clip, FRAME_SIZE, seed=3)
    background = np.stack(list(clip_background(clip, FRAME_SIZE, seed=3)))
    drawn = np.abs(frames.astype(int) - background).sum(-1) > 20  # [T, H, W] person mask
    decoded = video_frames(out / RGB_DIR / f"{key.name}_rgb.avi")
    scale = np.array([decoded.shape[2] / 1920, decoded.shape[1] / 1080])
    hits = total = 0
    for t, bodies in enumerate(read_skeleton_text(out / SKELETON_DIR / f"{key.name}.skeleton")):
        if not bodies:
            continue
        info, values, states = bodies[0]
        for x, y in np.round(values[states == 2, 5:7] * scale).astype(int):
            total += 1
            hits += drawn[t, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].any()
    assert total > 500 and hits / total > 0.95
    # The person is small and off-centre: the mask covers little of the frame, away from the middle.
    assert drawn.mean() < 0.06
    columns = np.flatnonzero(drawn.any(axis=(0, 1)))
    assert abs(columns.mean() - FRAME_SIZE[0] / 2) > 0.08 * FRAME_SIZE[0]
    # The decoded video is the rendered one (lossy, but close).
    assert np.abs(decoded.astype(int) - frames).mean() < 12


def _wrist_features(action: int, camera: int = 1) -> np.ndarray:
    """Per clip: right-wrist height above the neck and distance in front of the shoulder at the
    held pose, and its sideways oscillation while held, from the sensor's joints. [N, 3]"""
    rows = []
    for performer in range(1, 9):
        for replication in range(1, 4):
            clip = compose_clip(SampleKey(1, camera, performer, replication, action), seed=0)
            joints = clip.bodies[0].joints  # [T, 25, 3] camera space
            rel = joints[:, B.R_WRIST] - joints[:, B.NECK]
            held = rel[:, 1] >= np.quantile(rel[:, 1], 0.8)
            forward = (joints[:, B.R_SHOULDER, 2] - joints[:, B.R_WRIST, 2])[held].mean()
            wiggle = np.diff(rel[held, 0]).std()
            rows.append([rel[held, 1].mean(), forward, wiggle])
    return np.array(rows)


def test_classes_differ_only_where_intended():
    drink, snack, chin = (_wrist_features(a) for a in (1, 2, 3))
    # Appearance-only classes: the same motion statistics, so their means differ by no more
    # than sampling error (3 standard errors of a difference of two means).
    tolerance = 3 * np.sqrt(2 / len(chin)) * np.concatenate([drink, snack, chin]).std(axis=0)
    assert np.all(np.abs(drink.mean(0) - chin.mean(0)) < tolerance)
    assert np.all(np.abs(snack.mean(0) - chin.mean(0)) < tolerance)
    # ... while a class of another family is far outside that.
    assert np.any(np.abs(_wrist_features(10).mean(0) - chin.mean(0)) > 5 * tolerance)
    # Push forward vs raise palm: apart in depth (metres in front of the shoulder).
    push, palm = _wrist_features(4), _wrist_features(5)
    assert push[:, 1].min() > palm[:, 1].max() + 0.15
    # Wave vs flutter vs hold: the wrist oscillation orders them.
    wave, flutter, hold = (_wrist_features(a)[:, 2] for a in (7, 8, 9))
    assert np.median(wave) > np.median(flutter) > np.median(hold)


def _object_pixels(frame: np.ndarray, hand_xy: np.ndarray, colour: tuple[int, int, int]) -> int:
    x, y = np.round(hand_xy).astype(int)
    window = frame[max(y - 8, 0):y + 9, max(x - 8, 0):x + 9].astype(int)
    return int((np.abs(window - np.array(colour)).max(-1) < 20).sum())


@pytest.mark.parametrize("with_object, without", [(1, 3), (2, 3), (10, 11)])
def test_held_object_is_visible_only_in_its_class(with_object, without):
    kind = ACTIONS[with_object - 1].held
    colour = OBJECTS[kind][1]
    counts = {}
    for action in (with_object, without):
        found = []
        for performer in (1, 6):
            clip = compose_clip(SampleKey(1, 1, performer, 1, action), seed=0)
            frames = render_clip(clip, FRAME_SIZE, seed=0)
            t = int(np.argmax(clip.true_joints[:, B.R_WRIST, 1]))  # hand at its highest
            hand = person_pixels(clip.true_joints[t, B.R_HAND], FRAME_SIZE)
            found.append(_object_pixels(frames[t], hand, colour))
        counts[action] = found
    assert min(counts[with_object]) >= 6
    assert max(counts[without]) <= 1


@pytest.mark.slow
def test_deterministic_and_rerun_is_a_noop(tiny, tmp_path):
    out, _ = tiny
    again = tmp_path / "again"
    generate(again, seed=3, **TINY)
    assert file_hashes(again) == file_hashes(out)
    # A complete folder with the same arguments is left alone.
    before = {p: p.stat().st_mtime_ns for p in again.rglob("*") if p.is_file()}
    assert generate(again, seed=3, **TINY)["skipped"]
    assert {p: p.stat().st_mtime_ns for p in again.rglob("*") if p.is_file()} == before
    # An interrupted run (files missing, no .complete, a stale temp) is completed to the same bytes.
    (again / ".complete").unlink()
    (again / RGB_DIR / "S001C001P001R001A001_rgb.avi").unlink()
    (again / SKELETON_DIR / ".tmp-0123abcd-S001C001P001R001A001.skeleton").write_text("half")
    assert not generate(again, seed=3, **TINY)["skipped"]
    assert file_hashes(again) == file_hashes(out)
    # Another seed changes the data.
    other = tmp_path / "other"
    generate(other, seed=4, actions=[1], performers=[1], cameras=[1], n_jobs=1)
    name = "nturgb+d_skeletons/S001C001P001R001A001.skeleton"
    assert file_hashes(other)[name] != file_hashes(out)[name]


def test_bad_arguments_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="actions"):
        generate(tmp_path, actions=[13])
    with pytest.raises(DataError, match="performers"):
        generate(tmp_path, performers=[17])
    with pytest.raises(DataError, match="per_class"):
        generate(tmp_path, per_class=0)
