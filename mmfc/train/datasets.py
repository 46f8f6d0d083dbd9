"""torch Datasets over the stage-1 crop store: clip sampling and augmentation per modality
(mmfc.branches builds each from its branch's settings).

Randomness comes from a generator seeded by (seed, epoch, sample index), so what a sample looks
like in an epoch does not depend on the worker that loads it, the batch it falls in, or on
whether the run was resumed.
"""

from __future__ import annotations

import math
import typing

import cv2
import numpy as np
import torch

from mmfc.config import SkelNormalization, SkelRotation, SkelSampling
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
    """Skeleton clips: item i -> (float32 [C, T, V, M], label, store index).

    C = 3 is camera space: x right, y up, z depth, or z up when stage 1 aligned the spine to +z
    (crops.align); "vertical" rotation turns about that vertical axis. C = 2 is image space:
    "vertical" rotation is in the image plane. The T frames are picked from the stored
    sequence's frames with a body (all of them, unless stage 1 zero-padded it: crops.pad_skeleton);
    augmentation and min-max normalisation see the whole sequence, as CTR-GCN's NW-UCLA feeder.
    """

    def __init__(
        self,
        store,
        indices: list[int],
        num_frames: int,
        num_persons: int,
        train: bool,
        flip: bool = True,
        rotate_axes: str = "vertical",
        rotate_degrees: float = 0.0,
        scale: float = 0.0,
        uniform_scale: tuple[float, float] = (1.0, 1.0),
        normalize: str = "none",
        sampling: str = "segments",
        seed: int = 0,
        clip: int = 0,
        num_clips: int = 1,
    ):
        super().__init__(store, indices, train, seed, clip, num_clips)
        for value, choice in ((rotate_axes, SkelRotation), (normalize, SkelNormalization), (sampling, SkelSampling)):
            if value not in typing.get_args(choice):
                raise ValueError(f"{value!r} is not one of {', '.join(typing.get_args(choice))}")
        self.num_frames = num_frames
        self.num_persons = num_persons
        self.flip = flip
        self.rotate_axes = rotate_axes
        self.rotate_degrees = rotate_degrees
        self.scale = scale
        self.uniform_scale = tuple(uniform_scale)
        self.normalize = normalize
        self.sampling = sampling
        self.flip_perm = np.array(store.layout.flip_permutation())
        self.vertical_axis = 2 if store.config.get("align", False) else 1
        self.padded = store.config.get("pad_skeleton", False)

    def __getitem__(self, item: int):
        index = self.indices[item]
        rng = self._rng(index)
        stored = self.store.skeleton(index)  # [C, T, V, M']
        length = frames_with_body(stored) if self.padded else stored.shape[1]
        picked = self._frames(rng, length)
        x = keep_persons(stored[:, :length], self.num_persons)  # [C, T, V, M]
        if self.train:
            x = self._augment(x, rng)
        if self.normalize == "minmax":
            x = minmax_normalize(x)
        return torch.from_numpy(np.ascontiguousarray(x[:, picked], dtype=np.float32)), int(self.store.index[index]["label"]), index

    def _frames(self, rng: np.random.Generator, length: int) -> np.ndarray:
        if self.sampling == "segments":
            return segment_indices(length, self.num_frames, self._offsets(rng, self.num_frames))
        if self.train:
            return random_choice_indices(length, self.num_frames, rng)
        return evenly_spaced(length, self.num_frames, self.clip, self.num_clips)

    def _augment(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.flip and rng.random() < 0.5:
            x = flip_skeleton(x, self.flip_perm)
        if self.rotate_axes == "xy":
            angle_x, angle_y = np.radians(rng.uniform(-self.rotate_degrees, self.rotate_degrees, size=2))
            x = rotate_xy(x, float(angle_x), float(angle_y))
        else:
            angle = math.radians(rng.uniform(-self.rotate_degrees, self.rotate_degrees))
            x = rotate_skeleton(x, angle, self.vertical_axis)
        factors = rng.uniform(1 - self.scale, 1 + self.scale, size=x.shape[0]).astype(np.float32)
        x = x * factors[:, None, None, None]
        if self.uniform_scale != (1.0, 1.0):
            x = x * np.float32(rng.uniform(*self.uniform_scale))
        return x


def frames_with_body(x: np.ndarray) -> int:
    """[C, T, V, M] zero-padded after its last frame with a body -> frames up to that one (all T
    when no frame has one)."""
    has_body = np.flatnonzero((x != 0).any(axis=(0, 2, 3)))
    return int(has_body[-1]) + 1 if len(has_body) else x.shape[1]


def random_choice_indices(length: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` frames of range(length) at random, in time order. As CTR-GCN's NW-UCLA feeder
    (random.sample of 100 copies of every frame): `count` distinct draws from `copies` copies of
    each frame, so a frame repeats only as often as drawing without replacement allows."""
    copies = max(100, math.ceil(count / length))
    return np.sort(rng.choice(length * copies, size=count, replace=False) % length)


def evenly_spaced(length: int, count: int, clip: int = 0, num_clips: int = 1) -> np.ndarray:
    """`count` frames from the first to the last of range(length), rounded down (CTR-GCN's test
    sampling); clip `clip` of `num_clips` moved on by that share of one step."""
    step = (length - 1) / max(count - 1, 1)
    positions = np.linspace(0, length - 1, count) + step * clip / num_clips
    return np.minimum(positions.astype(np.int64), length - 1)


def minmax_normalize(x: np.ndarray) -> np.ndarray:
    """[C, T, V, M] -> each coordinate mapped linearly onto [-1, 1] over every joint of every
    (frame, person) with a body; the rest stays 0, and so does a coordinate that never varies."""
    body = (x != 0).any(axis=(0, 2))  # [T, M]
    if not body.any():
        return x
    values = x.transpose(1, 3, 0, 2)[body]  # [bodies, C, V]
    low = values.min(axis=(0, 2)).astype(np.float64)
    span = values.max(axis=(0, 2)) - low
    scaled = np.divide(x - low[:, None, None, None], span[:, None, None, None], out=np.full(x.shape, 0.5),
                       where=span[:, None, None, None] > 0) * 2 - 1
    return np.where(body[None, :, None, :], scaled, 0).astype(np.float32)


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


def rotate_xy(x: np.ndarray, angle_x: float, angle_y: float) -> np.ndarray:
    """Turn about y, then about x, as CTR-GCN's NW-UCLA feeder does (rows times Ry Rx). A 2D
    skeleton is turned as if at depth 0 and seen from the front again."""
    cos_x, sin_x, cos_y, sin_y = math.cos(angle_x), math.sin(angle_x), math.cos(angle_y), math.sin(angle_y)
    turn_x = np.array([[1, 0, 0], [0, cos_x, sin_x], [0, -sin_x, cos_x]])
    turn_y = np.array([[cos_y, 0, -sin_y], [0, 1, 0], [sin_y, 0, cos_y]])
    channels = x.shape[0]
    return np.einsum("ctvm,cd->dtvm", x, (turn_y @ turn_x)[:channels, :channels]).astype(np.float32)


def rotate_skeleton(x: np.ndarray, angle: float, vertical_axis: int = 1) -> np.ndarray:
    """Turn x into the horizontal axis that is not x: 3D about `vertical_axis`, 2D in-plane."""
    cos, sin = math.cos(angle), math.sin(angle)
    other = 1 if x.shape[0] == 2 else 3 - vertical_axis  # 3D: y up -> z, z up -> y
    out = x.copy()
    out[0] = cos * x[0] + sin * x[other]
    out[other] = -sin * x[0] + cos * x[other]
    return out
