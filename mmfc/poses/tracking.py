"""Who is who across frames: each person found on a frame is given a slot (its index m in
keypoint[m]) that it keeps for the whole video.

The tracker only sees keypoints, so it works for any estimator. A person's slot follows its
motion: each slot predicts where its keypoints are now from where they were and how fast they
moved, and the frame's people are matched to the slots by the smallest total distance
(optimal assignment), a distance being the mean keypoint distance in units of the body size.
Crossing people therefore keep their slots as long as they keep moving the way they did, and a
person missed for a few frames is found again where the motion predicts.

A person that matches no slot within `gate` body sizes is someone new or someone coming back.
They take the slot of a person not seen on this frame if that person has been gone for a while
(longer than the motion is carried forward) or was last seen within `reentry` body sizes of
them; otherwise a slot never used; otherwise the slot of whoever was last seen nearest. So a
person who leaves and comes back gets their slot back, and a newcomer does not take the slot of
someone missed on one frame. At most `max_persons` slots; anyone beyond them is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GATE = 0.5  # largest matching distance, in body sizes
REENTRY = 1.0  # a newcomer this near (body sizes) to where a missed person was is that person
VELOCITY_SMOOTHING = 0.5  # weight of the newest displacement in the velocity estimate
MAX_EXTRAPOLATION = 10  # frames a slot's motion is carried forward while it is not seen
UNMATCHED = 1e6


@dataclass
class Track:
    keypoints: np.ndarray  # [K, 2] where the person was last seen
    weights: np.ndarray  # [K] how much each keypoint counts (its confidence)
    velocity: np.ndarray  # [K, 2] pixels per frame
    last_frame: int

    def gone(self, frame: int) -> bool:
        return frame - self.last_frame > MAX_EXTRAPOLATION

    def predict(self, frame: int) -> np.ndarray:
        gap = min(frame - self.last_frame, MAX_EXTRAPOLATION)
        return self.keypoints + self.velocity * gap

    def size(self) -> float:
        """The body size: the diagonal of the box around the confident keypoints."""
        points = self.keypoints[self.weights > 0] if (self.weights > 0).any() else self.keypoints
        return float(max(np.linalg.norm(points.max(axis=0) - points.min(axis=0)), 1.0))


def pose_distance(track: Track, keypoints: np.ndarray, weights: np.ndarray, frame: int | None = None) -> float:
    """Mean distance between a person's keypoints and a slot's, in body sizes: to where the
    slot predicts them on `frame`, or to where it was last seen when frame is None."""
    w = np.minimum(track.weights, weights)
    if w.sum() <= 0:
        w = np.ones_like(w)
    expected = track.keypoints if frame is None else track.predict(frame)
    distances = np.linalg.norm(keypoints - expected, axis=1)
    return float((w * distances).sum() / w.sum() / track.size())


def assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Optimal assignment (Hungarian method) of rows to columns minimising the total cost.
    cost [R, C] -> (row, column) pairs, min(R, C) of them."""
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return []
    transposed = rows > cols
    a = cost.T if transposed else cost  # [n, m], n <= m
    n, m = a.shape
    # Shortest augmenting paths with potentials u (rows) and v (columns); column 0 is a sentinel.
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=np.int64)  # owner[j]: 1-based row matched to column j
    for i in range(1, n + 1):
        owner[0] = i
        j0 = 0
        best = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        previous = np.zeros(m + 1, dtype=np.int64)
        while owner[j0] != 0:
            used[j0] = True
            i0 = owner[j0]
            reduced = a[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            improve = free & (reduced < best[1:])
            best[1:][improve] = reduced[improve]
            previous[1:][improve] = j0
            candidates = np.where(free, best[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            best[1:][free] -= delta
            j0 = j1
        while j0:
            j1 = previous[j0]
            owner[j0] = owner[j1]
            j0 = j1
    pairs = [(int(owner[j]) - 1, j - 1) for j in range(1, m + 1) if owner[j]]
    if transposed:
        pairs = [(c, r) for r, c in pairs]
    return sorted(pairs)


class Tracker:
    def __init__(self, max_persons: int, gate: float = GATE, reentry: float = REENTRY):
        self.max_persons = max_persons
        self.gate = gate
        self.reentry = reentry
        self.tracks: list[Track | None] = [None] * max_persons

    def update(self, frame: int, people: list[tuple[np.ndarray, np.ndarray]]) -> list[int | None]:
        """people: (keypoints [K, 2], weights [K]) of everyone found on `frame`, the most
        trusted first. -> each one's slot, or None for one beyond max_persons."""
        slots: list[int | None] = [None] * len(people)
        existing = [s for s, t in enumerate(self.tracks) if t is not None]
        cost = np.array([[pose_distance(self.tracks[s], *p, frame) for s in existing] for p in people])
        cost = cost.reshape(len(people), len(existing))
        for person, column in assign(np.where(cost <= self.gate, cost, UNMATCHED)):
            if cost[person, column] <= self.gate:
                slots[person] = existing[column]
        taken = {s for s in slots if s is not None}
        for person in range(len(people)):
            if slots[person] is None:
                slots[person] = self._free_slot(frame, people[person], taken)
                if slots[person] is not None:
                    taken.add(slots[person])
        for person, slot in enumerate(slots):
            if slot is not None:
                self._observe(slot, frame, *people[person])
        return slots

    def _free_slot(self, frame: int, person: tuple[np.ndarray, np.ndarray], taken: set[int]) -> int | None:
        """A slot for someone matching no slot (see the module docstring for the order)."""
        unseen = [s for s, t in enumerate(self.tracks) if t is not None and s not in taken]
        unseen.sort(key=lambda s: pose_distance(self.tracks[s], *person))
        for s in unseen:
            if self.tracks[s].gone(frame) or pose_distance(self.tracks[s], *person) <= self.reentry:
                return s
        unused = [s for s, t in enumerate(self.tracks) if t is None and s not in taken]
        if unused:
            return unused[0]
        return unseen[0] if unseen else None

    def _observe(self, slot: int, frame: int, keypoints: np.ndarray, weights: np.ndarray) -> None:
        track = self.tracks[slot]
        if track is None or track.gone(frame):
            velocity = np.zeros_like(keypoints)
        else:
            step = (keypoints - track.keypoints) / max(frame - track.last_frame, 1)
            velocity = VELOCITY_SMOOTHING * step + (1 - VELOCITY_SMOOTHING) * track.velocity
        self.tracks[slot] = Track(keypoints.astype(np.float64), weights.astype(np.float64), velocity, frame)
