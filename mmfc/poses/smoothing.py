"""The One Euro filter (Casiez et al., CHI 2012) as MediaPipe's LandmarksSmoothingCalculator
runs it: a low-pass filter whose cutoff rises with the speed of the signal, so a still point
barely moves and a fast one is followed closely.

MediaPipe's pose graph always smooths the two auxiliary landmarks this way before they give
the next frame's region (min cutoff 0.01, beta 10, derivative cutoff 1), which keeps the region
steady on a still person; the speed is measured in object sizes per second.
"""

from __future__ import annotations

import numpy as np


def alpha(cutoff: np.ndarray | float, frequency: float) -> np.ndarray | float:
    """The exponential smoothing weight of a first-order low-pass filter at `cutoff` Hz."""
    tau = 1.0 / (2 * np.pi * cutoff)
    return 1.0 / (1.0 + tau * frequency)


class OneEuroFilter:
    def __init__(self, frequency: float, min_cutoff: float, beta: float, derivative_cutoff: float):
        self.frequency = frequency
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.derivative_cutoff = derivative_cutoff
        self.raw: np.ndarray | None = None  # the previous sample as it came
        self.value: np.ndarray | None = None  # the previous filtered sample
        self.derivative: np.ndarray | None = None  # filtered speed

    def __call__(self, value: np.ndarray, scale: float) -> np.ndarray:
        """Filter the next sample (any shape); `scale` is the object size the speed is measured in."""
        value = np.asarray(value, dtype=np.float64)
        if self.value is None:
            self.raw = self.value = value
            self.derivative = np.zeros_like(value)
            return value
        speed = (value - self.raw) * self.frequency / max(scale, 1e-6)
        self.raw = value
        self.derivative = self.derivative + alpha(self.derivative_cutoff, self.frequency) * (speed - self.derivative)
        cutoff = self.min_cutoff + self.beta * np.abs(self.derivative)
        self.value = self.value + alpha(cutoff, self.frequency) * (value - self.value)
        return self.value
