"""Open the data source a pipeline names, and summarise what it selects (`mmfc info`)."""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from mmfc.config import DataConfig
from mmfc.data.layouts import Layout
from mmfc.data.ntu import NTUSource
from mmfc.data.nw_ucla import NWUCLASource
from mmfc.data.penn_action import PennActionSource
from mmfc.data.pose_pickle import PosePickleSource
from mmfc.data.sample import SPLITS, Sample, Skeleton
from mmfc.data.video_dataset import VideoFolderSource


class Source(Protocol):
    class_names: list[str]
    num_classes: int
    layout: Layout
    # What its samples' groups are, in words for reports: "performer", "source video", "group".
    group_kind: str
    # reason -> number of samples of the dataset that the configuration leaves out
    excluded: dict[str, int]
    # remark -> number of samples kept with it (e.g. a clip that is its own split group)
    notes: dict[str, int]
    # file -> why the listing could not place it (no readable label or split); stage 1 records
    # each as a failed sample
    unreadable: dict[str, str]
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
    "nw_ucla": NWUCLASource,
    "penn_action": PennActionSource,
}


def open_source(cfg: DataConfig) -> Source:
    return SOURCES[cfg.source](cfg)


# Fewer groups (people, recordings) in validation than this, and the fusion fitted on it
# (stage 4) learns the ways of one or two of them: on a real set of 215 videos, one actor in
# validation chose a fusion 4.7 points below the skeleton branch alone on test.
MIN_VALIDATION_GROUPS = 3


def validation_groups(samples: list[Sample]) -> dict[str, int]:
    """Samples per group of the validation split, by group name."""
    return dict(sorted(Counter(s.group for s in samples if s.split == "val").items()))


def few_groups_warning(groups: dict[str, int]) -> str | None:
    """What to say when validation holds fewer than MIN_VALIDATION_GROUPS groups (none: None)."""
    if not groups:
        return ("validation is empty, and stage 4 fits the fusion on validation alone, never on test: it will stop; "
                "carve validation out of training (data.val_fraction, data.val_performers, or the CSV's split column)")
    if len(groups) >= MIN_VALIDATION_GROUPS:
        return None
    listed = ", ".join(f"{name}: {count} sample{'s' if count != 1 else ''}" for name, count in groups.items())
    return (
        f"validation holds {len(groups)} group{'s' if len(groups) > 1 else ''} ({listed}), fewer than "
        f"{MIN_VALIDATION_GROUPS}: the fusion fitted on it learns the ways of so few people or recordings and may "
        "choose worse on test than a branch alone; put more groups in validation (data.val_fraction, "
        "data.val_performers, or the CSV's split and group columns)"
    )


def describe_selection(cfg: DataConfig) -> dict:
    """Counts per split and per class, the validation groups, videos found, what was left out and
    why, and what was kept with a remark."""
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
        "validation_groups": validation_groups(samples),
        "group_kind": source.group_kind,
        "video": {"with": with_video, "without": len(samples) - with_video},
        "excluded": dict(source.excluded),
        "unreadable": dict(source.unreadable),
        "notes": dict(source.notes),
        "classes": per_class,
    }


def format_selection(name: str, selection: dict, limit: int = 12) -> str:
    """describe_selection as text for people: where the data is, counts per split, the
    validation groups, what was left out or remarked on, and a table of counts per class."""
    splits = selection["splits"]
    lines = [
        f"{name}: {selection['samples']} samples of {selection['num_classes']} classes from {selection['root']} "
        f"(source {selection['source']}, joints {selection['layout']})",
        "splits: " + ", ".join(f"{count} {split}" for split, count in splits.items()),
    ]
    without = selection["video"]["without"]
    lines.append("videos: every sample has one" if not without else f"videos: {without} samples without one")
    lines += [f"branch {name}: {support}" for name, support in selection.get("branches", {}).items()]
    groups = selection["validation_groups"]
    shown = ", ".join(f"{group} ({count})" for group, count in list(groups.items())[:limit])
    more = f", and {len(groups) - limit} more" if len(groups) > limit else ""
    samples = "sample" if splits["val"] == 1 else "samples"
    listed = f": {shown}{more}" if groups else ""
    lines.append(f"validation: {splits['val']} {samples} in {len(groups)} group{'' if len(groups) == 1 else 's'}{listed}")
    for title, counts in (("left out", selection["excluded"]), ("kept with a remark", selection["notes"])):
        lines += [f"{title}: {count} {reason}" for reason, count in counts.items()]
    width = max(len("class"), *(len(c) for c in selection["classes"]))
    header = f"{'class':<{width}}  " + "  ".join(f"{split:>6}" for split in splits)
    lines += ["", header]
    for class_name, counts in selection["classes"].items():
        lines.append(f"{class_name:<{width}}  " + "  ".join(f"{counts[split]:>6}" for split in splits))
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{count:>6}" for count in splits.values()))
    return "\n".join(lines)
