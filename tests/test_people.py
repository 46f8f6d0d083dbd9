"""`mmfc predict --per-person`: each person's clip cut from constructed tracks, the nearest
partner and the frames a person is in; on the real hugging clip, two tracks both labelled with
the two-person class, and the files --out writes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mmfc.cli import app
from mmfc.config import load_pipeline
from mmfc.data.layouts import get_layout
from mmfc.data.sample import Skeleton
from mmfc.predict.clips import Window
from mmfc.predict.people import (MIN_PRESENCE, carry_two_person_classes, PeopleClips, frame_spans, interaction_classes, nearest_pairs,
                                 people_in, predict_people_video, presence)
from mmfc.predict.predictor import PoseModels, WindowPoses
from mmfc.run_folder import open_run
from conftest import PIPELINES

HUGGING = "ntu_sample_A055_hugging.avi"


def constructed(centres: list[tuple[float, float]], seen: list[slice], frames: int = 20) -> Skeleton:
    """One person per centre (17 joints around it), each seen on the frames of their slice."""
    persons, joints = len(centres), 17
    pixels = np.zeros((persons, frames, joints, 2), dtype=np.float32)
    score = np.zeros((persons, frames, joints), dtype=np.float32)
    for m, ((x, y), span) in enumerate(zip(centres, seen)):
        pixels[m, :, :, 0], pixels[m, :, :, 1] = x + np.arange(joints), y + np.arange(joints)
        score[m, span] = 0.9
    points = np.concatenate([pixels / 100, np.zeros((persons, frames, joints, 1), np.float32)], axis=-1)
    return Skeleton(points=points, pixels=pixels, score=score, frame_indices=np.arange(frames), frame_size=(640, 480),
                    layout="coco17", total_frames=frames)


def test_each_person_seen_long_enough_is_cut_alone_and_with_the_nearest_other():
    # Persons 7 and 9 stand close together, 4 far off; 12 is glimpsed on a few frames alone.
    skeleton = constructed([(100, 100), (130, 100), (500, 300), (300, 300)],
                           [slice(0, 20), slice(0, 20), slice(0, 15), slice(0, 4)])
    assert presence(skeleton).tolist() == pytest.approx([1.0, 1.0, 0.75, 0.2])
    assert nearest_pairs(skeleton, [0, 1, 2]) == [(0, 1), (1, 2)]  # 4's nearest is 9; 7 and 9 each other's
    cut: list[tuple[tuple[int, ...], int, int]] = []

    def crop(clips, number, alone):
        key = next(k for k, v in people.clips.items() if v is clips)
        cut.append((key, number, alone.num_persons))
        assert alone.total_frames == skeleton.total_frames

    # PeopleClips reads a run's pipeline and layout alone, to make each person's empty clips.
    run = SimpleNamespace(cfg=load_pipeline(PIPELINES / "videos-example.toml"), layout=get_layout("coco17"))
    people = PeopleClips(run, windows=[Window(0, 20)], pairs=True)
    people.add(0, WindowPoses(skeleton, None, [7, 9, 4, 12]), crop)
    assert sorted(cut) == [((4,), 0, 1), ((4, 9), 0, 2), ((7,), 0, 1), ((7, 9), 0, 2), ((9,), 0, 1)]
    assert 12 not in {k for key, _, _ in cut for k in key}  # under MIN_PRESENCE of the window

    cut.clear()
    alone = PeopleClips(run, windows=[Window(0, 20)], pairs=False)
    people = alone
    alone.add(0, WindowPoses(skeleton, None, [7, 9, 4, 12]), crop)
    assert sorted(key for key, _, _ in cut) == [(4,), (7,), (9,)]
    assert MIN_PRESENCE == 0.5


def test_the_frames_a_person_is_in_bridge_short_gaps():
    seen = np.zeros(60, dtype=bool)
    seen[[0, 1, 2, 8, 9, 40, 41]] = True  # a 5-frame gap bridged, a 30-frame one not
    assert frame_spans(seen, np.arange(60)) == [(0, 10), (40, 42)]
    skeleton = constructed([(100, 100), (300, 100)], [slice(0, 10), slice(5, 20)])
    spans, seen_on = people_in(skeleton, [3, 5], frames=40)  # the video has twice the skeleton's frames
    assert spans == {3: [(0, 20)], 5: [(10, 40)]} and seen_on == {3: 10, 5: 15}


# -- the real hugging clip, through runs trained on stage 0's poses of real clips ---------------


def mmfc(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.mark.slow
def test_both_people_hugging_carry_the_two_person_class(people_runs, realdata, pose_models):
    run = open_run(people_runs["skel"])
    assert interaction_classes(run) == []  # "hug" is no NTU name: it is named
    interactions = interaction_classes(run, ["hug"])
    prediction, _, found, persons = predict_people_video(run, realdata / "videos" / HUGGING, window=2.0, stride=1.0,
                                                         poses=PoseModels(pose_models), interactions=interactions)
    assert len(prediction.persons) == 2 and len(persons) >= 2
    first, second = prediction.persons.values()
    for timeline, other in ((first, second), (second, first)):
        labels = [timeline.label(w, run.class_names) for w in range(len(timeline.shown))]
        assert [label for label, _, _ in labels] == ["hug"] * len(labels)
        # A window names the other person (partner) where the pair's clip was labelled the
        # two-person class; where the person's own clip already says "hug", it keeps its own (0).
        assert {partner for _, _, partner in labels} <= {other.track, 0}
        assert prediction.spans[timeline.track] and prediction.seen[timeline.track] > 0
    assert list(prediction.pairs) == [(first.track, second.track)]
    with pytest.raises(Exception, match="not a class of this run"):
        interaction_classes(run, ["waving"])


@pytest.mark.slow
def test_per_person_files_on_the_hugging_clip(people_runs, realdata, pose_models, tmp_path):
    out = tmp_path / "out"
    video = realdata / "videos" / HUGGING
    code, output = mmfc("predict", video, "--run", people_runs["rgb+skel"], "--per-person", "--interaction", "hug",
                        "--window", "2", "--stride", "1", "--out", out, "--jobs", "1", "--set",
                        f"poses.models_dir={pose_models}")
    assert code == 0, output
    folder = out / Path(HUGGING).stem
    result = json.loads((folder / "prediction.json").read_text())
    assert result["branches"] == ["rgb", "skel"] and result["interactions"] == ["hug"]
    assert len(result["persons"]) == 2
    for person in result["persons"]:
        assert person["frames"] and person["windows"]
        assert set(person["windows"][0]["top5"]) == {"rgb", "skel", "fused"}
    for name in ("timeline.png", "annotated.mp4", "strip.png", "segments.json", "windows_rgb.parquet",
                 "windows_skel.parquet", "windows_fused.parquet"):
        assert (folder / name).stat().st_size > 0, name
    rows = pq.read_table(out / "predictions.parquet").to_pylist()
    assert {r["person"] for r in rows} == {p["track"] for p in result["persons"]}
    groups = set(pq.read_table(folder / "windows_fused.parquet").column("group").to_pylist())
    tracks = sorted(p["track"] for p in result["persons"])
    assert {str(t) for t in tracks} <= groups and f"{tracks[0]}+{tracks[1]}" in groups

    code, output = mmfc("predict", video, "--run", people_runs["skel"], "--interaction", "hug")
    assert code != 0 and "--per-person" in output


def test_the_pair_rule_carries_a_two_person_class_to_both_and_keeps_own_labels_otherwise():
    hug, wave = 0, 2  # class 1: drink, no two-person class
    probabilities = {
        (1,): ([0, 1, 2], np.array([[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])),
        (2,): ([0, 1, 2], np.array([[0.1, 0.2, 0.7], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8]])),
        (3,): ([1, 2], np.array([[0.1, 0.1, 0.8], [0.2, 0.1, 0.7]])),
        # Window 0: the pair 1+2 hugs. Window 1: 1+2 drink (no two-person class), 1+3 hug.
        # Window 2: 1+2 hug at 0.6, 1+3 hug at 0.9: the surer pair is shown.
        (1, 2): ([0, 1, 2], np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.6, 0.2, 0.2]])),
        (1, 3): ([1, 2], np.array([[0.7, 0.2, 0.1], [0.9, 0.05, 0.05]])),
    }
    shown, partner = carry_two_person_classes(1, probabilities, {hug})
    assert shown.argmax(1).tolist() == [hug, hug, hug] and partner.tolist() == [2, 3, 3]
    assert shown[2, hug] == 0.9
    shown, partner = carry_two_person_classes(2, probabilities, {hug})
    assert shown.argmax(1).tolist() == [hug, wave, hug] and partner.tolist() == [1, 0, 1]
    # Without a two-person class every person keeps their own probabilities, untouched.
    own = probabilities[(1,)][1].copy()
    shown, partner = carry_two_person_classes(1, probabilities, set())
    assert np.array_equal(shown, own) and partner.tolist() == [0, 0, 0]
    assert np.array_equal(probabilities[(1,)][1], own)
