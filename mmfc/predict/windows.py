"""Segments of an untrimmed video: where one class stays on top of the fused scores of its windows.

Windows overlap (a stride shorter than the window), so a segment runs from the start of its first
window to the end of its last; two windows in a row with the same top class, each above the
threshold, are one segment, and a window below it (or with another class on top) ends it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Segment:
    label: str
    start: float  # seconds
    end: float
    mean_probability: float  # of the class, over the segment's windows
    windows: int

    def to_dict(self) -> dict:
        return asdict(self)


def find_segments(windows: np.ndarray, probabilities: np.ndarray, class_names: list[str],
                  threshold: float) -> list[Segment]:
    """windows float [W, 2] (start, end seconds, in order), probabilities [W, K] -> the segments."""
    segments: list[Segment] = []
    top = probabilities.argmax(axis=1)
    current: list[int] = []

    def close() -> None:
        if current:
            p = probabilities[current, top[current[0]]]
            segments.append(Segment(class_names[top[current[0]]], float(windows[current[0], 0]),
                                    float(windows[current[-1], 1]), float(p.mean()), len(current)))
            current.clear()

    for w in range(len(windows)):
        if probabilities[w, top[w]] < threshold:
            close()
            continue
        if current and top[current[0]] != top[w]:
            close()
        current.append(w)
    close()
    return segments


def overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Seconds two intervals share."""
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
