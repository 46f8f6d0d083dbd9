"""Your own videos as a dataset: class folders or a CSV, with a seeded group-disjoint split.

Two layouts (data.root names either):
- class folders, as UCF101 and torchvision's folder datasets: root/<class name>/<clip>.<ext>;
  the class names are the folder names, sorted (or data.class_names, a file, fixes the order);
- a CSV file with a header line `path,label[,split][,group]`: paths relative to the CSV's
  folder (or absolute), labels are class names, split is train, val or test.

Without a split column, the split is carved by group: a seeded hash places each group in test
(data.test_fraction of the groups), validation (data.val_fraction) or training, so no group is
on two sides. The group is the CSV's group column, else what data.group_pattern (a regular
expression, its first parenthesised group if it has one) finds in the clip's file name, e.g.
"_g(\\d+)_" for UCF101's v_<class>_g<group>_c<clip> (the person and recording); with neither,
each clip is its own group (its file name). A CSV split with train and test only gets validation carved out of
its training side the same way.

Skeletons come from stage 0 (`mmfc stage poses`), which writes the PYSKL pose pickle named by
data.poses; this source reads it with the pose-pickle reader, so stages 1 to 4 see the videos
like any other dataset. A sample's id is its path without extension as the dataset names it,
never resolved through symlinks: <class>/<clip> for class folders (a class folder linked in from
elsewhere keeps its name); for a CSV, the path as written, normalised: relative to the CSV's
folder (`../videos/drink/clip001` for a clip beside it), or absolute where the CSV gives it so
outside that folder. Ids are so unique and the same on every run, however the files lie.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from mmfc.config import ConfigError, DataConfig
from mmfc.data.layouts import Layout, layout_of
from mmfc.data.ntu_names import read_class_names
from mmfc.data.pose_pickle import annotation_skeleton, read_pose_pickle, seeded_position
from mmfc.data.sample import BLAZEPOSE, SPLITS, Sample, Skeleton
from mmfc.errors import DataError

CSV_COLUMNS = ("path", "label", "split", "group")



def group_in_name(name: str, pattern: str) -> str | None:
    """What `pattern` finds in a file name, its first parenthesised group if it has one; None
    when it finds nothing."""
    found = re.search(pattern, name)
    if found is None:
        return None
    return found.group(1) if found.groups() else found.group(0)

class VideoFolderSource:
    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.root = Path(cfg.root)
        self.layout: Layout = layout_of(cfg)
        self.group_kind = "group"
        self.excluded: dict[str, int] = {}
        self.notes: dict[str, int] = {}  # kept, with a remark
        self.unreadable: dict[str, str] = {}  # every video is listed by name
        if not self.root.exists():
            raise DataError(self.root, "no such video folder or CSV file")
        rows = self._csv_rows() if self.root.is_file() else self._folder_rows()
        self.class_names = self._classes({label for _, _, label, _, _ in rows})
        self.num_classes = len(self.class_names)
        if cfg.num_classes != self.num_classes:
            raise ConfigError(
                f"data.num_classes = {cfg.num_classes}, but {self.root} has {self.num_classes} classes "
                f"({', '.join(self.class_names[:8])}{', ...' if self.num_classes > 8 else ''}): "
                f"set data.num_classes = {self.num_classes}"
            )
        self._samples = self._split(rows)
        self._poses: dict[str, dict] | None = None
        self.pose_source = BLAZEPOSE  # stage 0 estimates every pose

    # -- listing ---------------------------------------------------------------------------

    def _folder_rows(self) -> list[tuple[str, Path, str, str, str]]:
        """(id, video, label, split "", group) for root/<class>/<clip>.<ext>."""
        exts = {e.lower() for e in self.cfg.video_exts}
        rows = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() not in exts:
                    self._exclude(f"not a video file (extension not in data.video_exts): {path.suffix or path.name}")
                    continue
                if not path.is_file():
                    self._exclude("not a readable file (a broken symlink, a symlink loop, or a folder)")
                    continue
                clip_id = f"{folder.name}/{path.with_suffix('').name}"
                rows.append((clip_id, path, folder.name, "", self._group(path)))
        if not rows:
            raise DataError(self.root, f"no videos in class folders ({self.root}/<class>/<clip> with {', '.join(sorted(exts))})")
        return rows

    def _csv_rows(self) -> list[tuple[str, Path, str, str, str]]:
        """(id, video, label, split, group) of each line naming a video that exists."""
        try:
            # utf-8-sig: Excel starts the UTF-8 CSVs it saves with a byte-order mark.
            with open(self.root, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                header = reader.fieldnames or []
                records = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(self.root, f"not a readable CSV file: {exc}") from None
        if "path" not in header or "label" not in header:
            raise DataError(self.root, f"the CSV's header must name path,label[,split][,group]; it has {', '.join(header)}")
        unknown = [c for c in header if c not in CSV_COLUMNS]
        if unknown:
            raise DataError(self.root, f"unknown CSV column {unknown[0]!r}; the columns are {', '.join(CSV_COLUMNS)}")
        rows = []
        for line, record in enumerate(records, start=2):
            written = Path(record["path"] or "")
            path = written if written.is_absolute() else self.root.parent / written
            split = (record.get("split") or "").strip()
            if split and split not in SPLITS:
                raise DataError(self.root, f"line {line}: split {split!r} is not one of {', '.join(SPLITS)}")
            if not (record["label"] or "").strip():
                raise DataError(self.root, f"line {line}: no label")
            if not path.is_file():
                self._exclude("video file missing")
                continue
            group = (record.get("group") or "").strip() or self._group(path)
            rows.append((self._csv_id(written), path, record["label"].strip(), split, group))
        if not rows:
            raise DataError(self.root, "the CSV lists no video that exists")
        return rows

    def _group(self, path: Path) -> str:
        """The clip's group; its file name when it has none, so the split stays the same wherever
        the dataset is."""
        if not self.cfg.group_pattern:
            return path.name
        group = group_in_name(path.name, self.cfg.group_pattern)
        if group is None:
            self._note("no group in the file name (data.group_pattern found nothing): its own group")
            return path.name
        return group

    def _csv_id(self, written: Path) -> str:
        """A CSV line's id (module docstring): its path relative to the CSV's folder, normalised
        without following symlinks; an absolute path outside that folder stays absolute."""
        folder = self.root.parent.absolute()
        relative = Path(os.path.relpath(written, folder)) if written.is_absolute() else written
        if written.is_absolute() and relative.parts[:1] == ("..",):
            relative = written
        return Path(os.path.normpath(relative)).with_suffix("").as_posix()

    def _classes(self, labels: set[str]) -> list[str]:
        if not self.cfg.class_names:
            return sorted(labels)
        names = read_class_names(self.cfg.class_names, 1)
        missing = sorted(labels - set(names))
        if missing:
            raise DataError(self.cfg.class_names, f"does not name the class {missing[0]!r} found in {self.root}")
        return names

    def _split(self, rows: list[tuple[str, Path, str, str, str]]) -> list[Sample]:
        carve_val = not any(split == "val" for _, _, _, split, _ in rows)
        samples = []
        for clip_id, path, label, split, group in rows:
            samples.append(Sample(
                id=clip_id,
                label=self.class_names.index(label),
                split=self._side(split, seeded_position(group, self.cfg.val_seed), carve_val),
                # Stage 1 redoes a sample when this file changes: the poses stage 0 wrote.
                skeleton_path=Path(self.cfg.poses) if self.cfg.poses else None,
                video_path=path,
                group=group,
            ))
        ids = [s.id for s in samples]
        if len(set(ids)) != len(ids):
            twice = next(i for i in ids if ids.count(i) > 1)
            raise DataError(self.root, f"two videos have the id {twice!r} (their path without extension): "
                                       "list each video once, and rename one of two that differ only in extension")
        return samples

    def _side(self, split: str, position: float, carve_val: bool) -> str:
        """The split of a clip whose group sits at `position` in [0, 1)."""
        cfg = self.cfg
        if not split:
            if position < cfg.test_fraction:
                return "test"
            # The training side's groups, spread over [0, 1) again for the validation share.
            split, position = "train", (position - cfg.test_fraction) / (1 - cfg.test_fraction)
        if split == "train" and carve_val and position < cfg.val_fraction:
            return "val"
        return split

    def _exclude(self, reason: str) -> None:
        self.excluded[reason] = self.excluded.get(reason, 0) + 1

    def _note(self, remark: str) -> None:
        self.notes[remark] = self.notes.get(remark, 0) + 1

    # -- the Source protocol ---------------------------------------------------------------

    def samples(self) -> list[Sample]:
        return list(self._samples)

    def load_skeleton(self, sample: Sample) -> Skeleton:
        """The sample's poses, from the pickle stage 0 wrote."""
        poses = Path(self.cfg.poses)
        if self._poses is None:
            if not poses.is_file():
                raise DataError(poses, "no poses for these videos yet: run `mmfc stage poses` (make poses) first")
            self._poses = {a["frame_dir"]: a for a in read_pose_pickle(poses).annotations}
        if sample.id not in self._poses:
            raise DataError(sample.video_path or sample.id, f"stage 0 found no poses for this video (see {poses.parent / 'failures.parquet'})")
        return annotation_skeleton(self._poses[sample.id], poses, self.layout, self.cfg.skeleton_frame_size)
