"""torch Datasets over the stage-1 crop store: clip sampling and augmentation per modality
(mmfc.branches builds each from its branch's settings).

Randomness comes from a generator seeded by (seed, epoch, sample index), so what a sample looks
like in an epoch does not depend on the worker that loads it, the batch it falls in, or on
whether the run was resumed.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from mmfc.data.layouts import get_layout
from mmfc.train.distributed import derive_seed

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma, as torchvision


def segment_indices(length: int, segments: int, offsets: np.ndarray) -> np.ndarray:
    """One index per equal segment of range(length), at `offsets` (in [0, 1)) into each segment.

    Works for length < segments too: frames then repeat, in order.
    """
    positions = (np.arange(segments) + offsets) * (length / segments)
    return np.minimum(positions.astype(np.int64), length - 1)


def eval_offsets(segments: int, clip: int, num_clips: int) -> np.ndarray:
    """Clip `clip` of `num_clips` evenly spaced clips; one clip is the segment centres."""
    return np.full(segments, (clip + 0.5) / num_clips)


class _StoreDataset(torch.utils.data.Dataset):
    def __init__(self, store, indices: list[int], train: bool, seed: int, clip: int, num_clips: int):
        if not 0 <= clip < num_clips:
            raise ValueError(f"clip {clip} is not in range({num_clips})")
        self.store = store
        self.indices = list(indices)
        self.train = train
        self.seed = seed
        self.clip = clip
        self.num_clips = num_clips
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng(derive_seed(self.seed, self.epoch, index))

    def _offsets(self, rng: np.random.Generator, segments: int) -> np.ndarray:
        if self.train:
            return rng.random(segments)
        return eval_offsets(segments, self.clip, self.num_clips)


class RGBClipDataset(_StoreDataset):
    """TSN-style clips: item i -> (float32 [T, 3, H, W] normalised, label, store index)."""

    def __init__(
        self,
        store,
        indices: list[int],
        segments: int,
        input_size: int,
        train: bool,
        scale_range: tuple[float, float] = (0.5, 1.0),
        flip: bool = True,
        color_jitter: float = 0.0,
        seed: int = 0,
        clip: int = 0,
        num_clips: int = 1,
    ):
        super().__init__(store, indices, train, seed, clip, num_clips)
        self.segments = segments
        self.input_size = input_size
        self.scale_range = tuple(scale_range)
        self.flip = flip
        self.color_jitter = color_jitter

    def __getitem__(self, item: int):
        index = self.indices[item]
        rng = self._rng(index)
        stored = len(self.store.frame_indices(index))
        picked = segment_indices(stored, self.segments, self._offsets(rng, self.segments))
        # Decode only the picked frames, each once even when short clips repeat frames.
        unique, inverse = np.unique(picked, return_inverse=True)
        frames = self.store.rgb(index, unique)[inverse]  # [T, S, S, 3] uint8
        if self.train:
            box = random_resized_box(frames.shape[1:3], self.scale_range, rng)
            flip = self.flip and rng.random() < 0.5
        else:
            box = center_box(frames.shape[1:3], self.input_size)
            flip = False
        clip = crop_resize(frames, box, self.input_size)  # [T, s, s, 3] uint8
        if flip:
            clip = clip[:, :, ::-1]
        x = clip.astype(np.float32) / 255.0
        if self.train and self.color_jitter > 0:
            x = jitter_colors(x, *rng.uniform(1 - self.color_jitter, 1 + self.color_jitter, size=3).tolist())
        x = (x - IMAGENET_MEAN) / IMAGENET_STD
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # [T, 3, s, s]
        return x, int(self.store.index[index]["label"]), index


def jitter_colors(x: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """[..., 3] RGB in [0, 1], one set of factors for the whole clip. As torchvision's
    ColorJitter: contrast about the clip's mean grey, saturation about each pixel's grey; one
    clamp at the end instead of one per step."""
    x = x * brightness
    mean_grey = (x @ GREY_WEIGHTS).mean()
    x = (x - mean_grey) * contrast + mean_grey
    grey = x @ GREY_WEIGHTS[:, None]  # [..., 1]
    x = grey + (x - grey) * saturation
    return np.clip(x, 0.0, 1.0)


def random_resized_box(
    shape: tuple[int, int], scale_range: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """(y0, x0, h, w) covering a random fraction of the area, aspect ratio in [3/4, 4/3]."""
    height, width = shape
    area = height * width * rng.uniform(*scale_range)
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    w = int(round(min(math.sqrt(area * ratio), width)))
    h = int(round(min(math.sqrt(area / ratio), height)))
    w, h = max(w, 1), max(h, 1)
    y0 = int(rng.integers(0, height - h + 1))
    x0 = int(rng.integers(0, width - w + 1))
    return y0, x0, h, w


def center_box(shape: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """The centre size x size square, or the whole frame when it is smaller than that."""
    height, width = shape
    h, w = min(size, height), min(size, width)
    return (height - h) // 2, (width - w) // 2, h, w


def crop_resize(frames: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """[T, H, W, 3] -> [T, size, size, 3]: the same box cut from every frame, resized."""
    y0, x0, h, w = box
    region = frames[:, y0 : y0 + h, x0 : x0 + w]
    if (h, w) == (size, size):
        return np.ascontiguousarray(region)
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in region])


class SkeletonDataset(_StoreDataset):
    """Uniformly sampled skeleton clips: item i -> (float32 [C, T, V, M], label, store index).

    C = 3 is camera space: x right, y up, z depth, or z up when stage 1 aligned the spine to +z
    (crops.align); rotation turns about that vertical axis. C = 2 is image space: rotation is in
    the image plane.
    """

    def __init__(
        self,
        store,
        indices: list[int],
        num_frames: int,
        num_persons: int,
        train: bool,
        flip: bool = True,
        rotate_degrees: float = 0.0,
        scale: float = 0.0,
        seed: int = 0,
        clip: int = 0,
        num_clips: int = 1,
    ):
        super().__init__(store, indices, train, seed, clip, num_clips)
        self.num_frames = num_frames
        self.num_persons = num_persons
        self.flip = flip
        self.rotate_degrees = rotate_degrees
        self.scale = scale
        self.flip_perm = np.array(get_layout(store.layout).flip_permutation())
        self.vertical_axis = 2 if store.config.get("align", False) else 1

    def __getitem__(self, item: int):
        index = self.indices[item]
        rng = self._rng(index)
        x = keep_persons(self.store.skeleton(index), self.num_persons)  # [C, T, V, M]
        x = x[:, segment_indices(x.shape[1], self.num_frames, self._offsets(rng, self.num_frames))]
        if self.train:
            x = self._augment(x, rng)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(self.store.index[index]["label"]), index

    def _augment(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.flip and rng.random() < 0.5:
            x = flip_skeleton(x, self.flip_perm)
        angle = math.radians(rng.uniform(-self.rotate_degrees, self.rotate_degrees))
        x = rotate_skeleton(x, angle, self.vertical_axis)
        factors = rng.uniform(1 - self.scale, 1 + self.scale, size=x.shape[0]).astype(np.float32)
        return x * factors[:, None, None, None]


def keep_persons(x: np.ndarray, persons: int) -> np.ndarray:
    """[C, T, V, M'] -> [C, T, V, persons]: the first persons, zero-padded when fewer."""
    if x.shape[3] >= persons:
        return x[..., :persons]
    pad = np.zeros(x.shape[:3] + (persons - x.shape[3],), dtype=x.dtype)
    return np.concatenate([x, pad], axis=3)


def flip_skeleton(x: np.ndarray, flip_perm: np.ndarray) -> np.ndarray:
    """Mirror left-right: negate x and swap each left joint with its right twin."""
    x = x[:, :, flip_perm].copy()
    x[0] = -x[0]
    return x


def rotate_skeleton(x: np.ndarray, angle: float, vertical_axis: int = 1) -> np.ndarray:
    """Turn x into the horizontal axis that is not x: 3D about `vertical_axis`, 2D in-plane."""
    cos, sin = math.cos(angle), math.sin(angle)
    other = 1 if x.shape[0] == 2 else 3 - vertical_axis  # 3D: y up -> z, z up -> y
    out = x.copy()
    out[0] = cos * x[0] + sin * x[other]
    out[other] = -sin * x[0] + cos * x[other]
    return out
