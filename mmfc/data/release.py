"""What the sources of published skeleton-only releases (NW-UCLA, Penn Action) share: the folder
of their files under data.root, their built-in class names (or data.class_names), and the
tallies `mmfc info` reports. A release lists its samples in `_scan` and reads one in
`load_skeleton`; its samples have no video."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path

import numpy as np

from mmfc.config import ConfigError, DataConfig
from mmfc.data.layouts import Layout, layout_of
from mmfc.data.ntu_names import read_class_names
from mmfc.data.sample import Sample, Skeleton
from mmfc.errors import DataError


class SkeletonRelease(ABC):
    # The release's name in messages, its class names in label order, and the folder under
    # data.root that holds its files as distributed (data.root may also be that folder).
    dataset: str
    class_names_built_in: tuple[str, ...]
    files_folder: str
    # What its samples' groups are, in words (mmfc.data.sources.Source.group_kind).
    group_kind: str
    # The sensor or annotation its joints come from (mmfc.data.sample.POSE_SOURCES).
    pose_source: str

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.root = Path(cfg.root)
        self.layout: Layout = layout_of(cfg)
        if cfg.num_classes > len(self.class_names_built_in):
            raise ConfigError(f"data.num_classes = {cfg.num_classes}: {self.dataset} has "
                              f"{len(self.class_names_built_in)} actions")
        self.num_classes = cfg.num_classes
        self.class_names = (
            read_class_names(cfg.class_names, cfg.num_classes) if cfg.class_names
            else list(self.class_names_built_in[: cfg.num_classes])
        )
        self.excluded: Counter[str] = Counter()
        self.notes: Counter[str] = Counter()
        self.unreadable: dict[str, str] = {}
        self._samples = self._scan(self._folder())

    def samples(self) -> list[Sample]:
        return list(self._samples)

    def _folder(self) -> Path:
        if (self.root / self.files_folder).is_dir():
            return self.root / self.files_folder
        if self.root.is_dir():
            return self.root
        raise DataError(self.root, f"no such folder: expected {self.dataset}'s folder holding {self.files_folder}/")

    @abstractmethod
    def load_skeleton(self, sample: Sample) -> Skeleton:
        """The sample's skeleton; raises DataError when its file is unusable."""

    @abstractmethod
    def _scan(self, folder: Path) -> list[Sample]:
        """Every sample of the files in `folder`, placed in its split; what is left out is
        counted in `excluded`, a file that cannot be placed goes to `unreadable`."""


def one_person_skeleton(points: np.ndarray, pixels: np.ndarray, score: np.ndarray, frame_size: tuple[int, int],
                        layout: str) -> Skeleton:
    """A recorded sequence of one person with a body in every frame: points [T, V, C], pixels
    [T, V, 2] in a frame of frame_size (width, height), score [T, V]."""
    frames = points.shape[0]
    return Skeleton(
        points=points[None].astype(np.float32),
        pixels=pixels[None].astype(np.float32),
        score=score[None].astype(np.float32),
        frame_indices=np.arange(frames, dtype=np.int64),
        frame_size=frame_size,
        layout=layout,
        total_frames=frames,
    )
