"""The tracker on constructed people: crossing, leaving and coming back, empty frames."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mmfc.poses.tracking import Tracker, assign

# A stick figure about 100 px tall: head, shoulders, hips, feet. [K, 2]
FIGURE = np.array([[0, -50], [-15, -30], [15, -30], [-10, 10], [10, 10], [-10, 50], [10, 50]], dtype=np.float64)


def person(x: float, y: float = 200.0) -> tuple[np.ndarray, np.ndarray]:
    return FIGURE + [x, y], np.ones(len(FIGURE))


def run(tracker: Tracker, frames: list[list[tuple[np.ndarray, np.ndarray]]]) -> list[list[int | None]]:
    return [tracker.update(t, people) for t, people in enumerate(frames)]


def test_assign_is_optimal():
    rng = np.random.default_rng(1)
    for rows, cols in [(3, 3), (2, 4), (4, 2), (5, 5)]:
        cost = rng.uniform(0, 10, size=(rows, cols))
        pairs = assign(cost)
        assert len(pairs) == min(rows, cols)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        if rows <= cols:
            best = min(sum(cost[r, c] for r, c in enumerate(p)) for p in itertools.permutations(range(cols), rows))
        else:
            best = min(sum(cost[r, c] for c, r in enumerate(p)) for p in itertools.permutations(range(rows), cols))
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(best)
    # Greedy would take the 0.1 and be left with 1.0; the optimum pairs the other way.
    assert assign(np.array([[0.1, 0.2], [0.15, 1.0]])) == [(0, 1), (1, 0)]
    assert assign(np.zeros((0, 2))) == []


def test_crossing_people_keep_their_slots():
    # A walks right, B walks left; they cross at frame 10 (the same spot), and on frames 9-11
    # only one of them is found (the other hidden behind).
    frames = []
    for t in range(21):
        a, b = person(100 + 20 * t), person(500 - 20 * t)
        people = [a, b] if t == 0 or not 9 <= t <= 11 else [a]
        if t > 0 and t % 2:
            people = people[::-1]  # the order people are listed in carries no identity
        frames.append(people)
    slots = run(Tracker(2), frames)
    first_a = slots[0][0]
    for t, (people, assigned) in enumerate(zip(frames, slots)):
        for (keypoints, _), slot in zip(people, assigned):
            walking_right = np.isclose(keypoints[0, 0], 100 + 20 * t)
            assert (slot == first_a) == walking_right, f"frame {t}"


def test_a_person_leaving_and_coming_back_gets_their_slot_back():
    frames = [[person(300)] for _ in range(5)] + [[] for _ in range(30)] + [[person(600)] for _ in range(5)]
    slots = run(Tracker(2), frames)
    assert {s for frame in slots for s in frame} == {0}

    # Two people; B leaves at frame 5 and comes back far away at frame 40; A never moves.
    frames = [[person(100), person(400)] for _ in range(5)]
    frames += [[person(100)] for _ in range(35)]
    frames += [[person(700), person(100)] for _ in range(5)]
    slots = run(Tracker(2), frames)
    a_slot, b_slot = slots[0]
    assert all(frame == [a_slot] for frame in slots[5:40])
    assert all(frame == [b_slot, a_slot] for frame in slots[40:])


def test_empty_frames_and_more_people_than_slots():
    tracker = Tracker(2)
    assert tracker.update(0, []) == []
    slots = tracker.update(1, [person(100), person(300), person(500)])
    assert slots == [0, 1, None]  # the most trusted first; the third has no slot
    assert tracker.update(2, []) == []
    assert tracker.update(3, [person(305), person(102)]) == [1, 0]


def test_a_newcomer_does_not_take_the_slot_of_someone_missed_for_a_frame():
    tracker = Tracker(2)
    for t in range(5):
        assert tracker.update(t, [person(100)]) == [0]
    assert tracker.update(5, [person(600)]) == [1]  # A missed on this frame, B appears far away
    assert tracker.update(6, [person(100), person(600)]) == [0, 1]
    # ...but someone found again right where a missed person was is that person.
    tracker = Tracker(2)
    tracker.update(0, [person(100)])
    tracker.update(1, [])
    assert tracker.update(2, [person(160)]) == [0]  # beyond the gate, within the re-entry distance
