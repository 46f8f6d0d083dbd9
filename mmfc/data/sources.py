"""Open the data source a pipeline names, and summarise what it selects (`mmfc info`)."""

from __future__ import annotations

from typing import Protocol

from mmfc.config import DataConfig
from mmfc.data.layouts import Layout
from mmfc.data.ntu import NTUSource
from mmfc.data.pose_pickle import PosePickleSource
from mmfc.data.sample import SPLITS, Sample, Skeleton
from mmfc.data.video_dataset import VideoFolderSource


class Source(Protocol):
    class_names: list[str]
    num_classes: int
    layout: Layout
    # reason -> number of samples of the dataset that the configuration leaves out
    excluded: dict[str, int]
    # remark -> number of samples kept with it (e.g. a clip that is its own split group)
    notes: dict[str, int]
    # Which sensor or estimator the skeletons come from (mmfc.data.sample: KINECT, BLAZEPOSE, ...).
    pose_source: str

    def samples(self) -> list[Sample]: ...

    def load_skeleton(self, sample: Sample) -> Skeleton:
        """The sample's skeleton; raises DataError when its file is unusable."""
        ...


# The choices of data.source (config.Source).
SOURCES = {
    "ntu": NTUSource,
    "pose_pickle": PosePickleSource,
    "videos": VideoFolderSource,
}


def open_source(cfg: DataConfig) -> Source:
    return SOURCES[cfg.source](cfg)


def describe_selection(cfg: DataConfig) -> dict:
    """Counts per split and per class, videos found, what was left out and why, and what was
    kept with a remark."""
    source = open_source(cfg)
    samples = source.samples()
    per_split = {split: sum(s.split == split for s in samples) for split in SPLITS}
    per_class = {
        name: {split: 0 for split in SPLITS} for name in source.class_names
    }
    for s in samples:
        per_class[source.class_names[s.label]][s.split] += 1
    with_video = sum(s.video_path is not None for s in samples)
    return {
        "source": cfg.source,
        "root": cfg.root,
        "layout": source.layout.name,
        "pose_source": source.pose_source,
        "num_classes": source.num_classes,
        "samples": len(samples),
        "splits": per_split,
        "video": {"with": with_video, "without": len(samples) - with_video},
        "excluded": dict(source.excluded),
        "notes": dict(source.notes),
        "classes": per_class,
    }
