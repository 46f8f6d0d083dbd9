"""The score file: the contract between stage 3 (scores), stage 4 (fusion) and the report.

One Parquet file per modality (or fusion method), one row per sample with columns id, split,
label, modality, checkpoint_digest, pipeline_digest and logits (fixed_size_list<float32>[K]).
The class names and a format tag live in the schema metadata, so a file carries everything
needed to read it without the pipeline file.

Stage 3 adds the optional column group: each sample's group from the crop index (the
performer, source video or group column that validation was carved by; its kind in the schema
metadata), which stage 4's cross-validation folds keep apart. Scores of windows of a longer
video (`mmfc predict --window`) add two optional columns, window_start and window_end (float64
seconds into the video), and may be unlabelled (label -1, UNLABELLED); a file without them reads
as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmfc.atomic import atomic_path
from mmfc.errors import DataError
from mmfc.metrics import mean_class_accuracy, nll, topk_accuracy

FORMAT_TAG = b"mmfc-scores/1"
SPLITS = ("train", "val", "test")
_COLUMNS = ("id", "split", "label", "modality", "checkpoint_digest", "pipeline_digest", "logits")
WINDOW_COLUMNS = ("window_start", "window_end")
GROUP_COLUMN = "group"
# The label of a row whose class nobody knows: a clip given to `mmfc predict`.
UNLABELLED = -1


@dataclass
class ScoreTable:
    ids: list[str]
    splits: list[str]
    labels: np.ndarray  # int64 [N]
    logits: np.ndarray  # float32 [N, K]
    # "rgb", "skel", or a fusion method such as "fusion:global".
    modality: str
    checkpoint_digest: str
    pipeline_digest: str
    class_names: list[str]
    # float64 [N, 2]: start and end (seconds) of each row's window of its video; None when the
    # rows are whole clips.
    windows: np.ndarray | None = None
    # Each row's sample group (stage 1's) and what the groups are ("performer", "source video",
    # "group"); None when the rows name none.
    groups: list[str] | None = None
    group_kind: str = ""

    @property
    def num_classes(self) -> int:
        return self.logits.shape[1]

    def rows(self, split: str) -> ScoreTable:
        """The rows of one split, in file order."""
        keep = np.array([s == split for s in self.splits], dtype=bool)
        return self.take(np.flatnonzero(keep))

    def take(self, index: np.ndarray) -> ScoreTable:
        """The rows at `index`, in that order."""
        return replace(
            self,
            ids=[self.ids[i] for i in index],
            splits=[self.splits[i] for i in index],
            labels=self.labels[index],
            logits=self.logits[index],
            windows=None if self.windows is None else self.windows[index],
            groups=None if self.groups is None else [self.groups[i] for i in index],
        )

    def aligned_to(self, ids: list[str]) -> ScoreTable:
        """The same rows reordered to follow `ids` (which must be the same set)."""
        position = {sample_id: i for i, sample_id in enumerate(self.ids)}
        return self.take(np.array([position[i] for i in ids], dtype=np.int64))


def write_scores(path: str | Path, table: ScoreTable) -> None:
    """Write a score table as Parquet, atomically."""
    _validate(table, path)
    n, k = table.logits.shape
    flat = pa.array(np.ascontiguousarray(table.logits, dtype=np.float32).ravel(), type=pa.float32())
    columns = {
        "id": pa.array(table.ids, type=pa.string()),
        "split": pa.array(table.splits, type=pa.string()),
        "label": pa.array(np.asarray(table.labels, dtype=np.int64), type=pa.int64()),
        "modality": pa.array([table.modality] * n, type=pa.string()),
        "checkpoint_digest": pa.array([table.checkpoint_digest] * n, type=pa.string()),
        "pipeline_digest": pa.array([table.pipeline_digest] * n, type=pa.string()),
        "logits": pa.FixedSizeListArray.from_arrays(flat, k),
    }
    if table.windows is not None:
        windows = np.asarray(table.windows, dtype=np.float64)
        for column, values in zip(WINDOW_COLUMNS, windows.T):
            columns[column] = pa.array(values, type=pa.float64())
    metadata = {b"mmfc.format": FORMAT_TAG, b"mmfc.class_names": json.dumps(table.class_names).encode()}
    if table.groups is not None:
        columns[GROUP_COLUMN] = pa.array(table.groups, type=pa.string())
        metadata[b"mmfc.group_kind"] = table.group_kind.encode()
    arrow = pa.table(columns).replace_schema_metadata(metadata)
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)


def read_scores(path: str | Path, data: bytes | None = None) -> ScoreTable:
    """Read a score file; DataError naming the file for a missing, broken or foreign one.
    `data`: the file's bytes, when the caller has read them to check them against a digest."""
    path = Path(path)
    if data is None and not path.is_file():
        raise DataError(path, "score file not found")
    try:
        arrow = pq.read_table(path if data is None else pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, f"not a readable Parquet file ({exc})") from None
    metadata = arrow.schema.metadata or {}
    if metadata.get(b"mmfc.format") != FORMAT_TAG:
        raise DataError(path, f"not an mmfc score file (format tag {metadata.get(b'mmfc.format')!r})")
    missing = [c for c in _COLUMNS if c not in arrow.column_names]
    if missing:
        raise DataError(path, f"missing columns {missing}")
    logits_type = arrow.schema.field("logits").type
    if not pa.types.is_fixed_size_list(logits_type):
        raise DataError(path, f"logits column is {logits_type}, expected fixed_size_list<float32>")
    k = logits_type.list_size
    n = arrow.num_rows
    logits_column = arrow.column("logits").combine_chunks()
    if logits_column.null_count:
        raise DataError(path, f"{logits_column.null_count} rows have no logits")
    logits = logits_column.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, k)
    try:
        class_names = json.loads(metadata[b"mmfc.class_names"])
    except (KeyError, ValueError):
        raise DataError(path, "class names missing from the schema metadata") from None
    single = {}
    for column in ("modality", "checkpoint_digest", "pipeline_digest"):
        values = set(arrow.column(column).to_pylist())
        if len(values) > 1:
            raise DataError(path, f"column {column} holds several values {sorted(values)}; one file holds one source")
        single[column] = values.pop() if values else ""
    table = ScoreTable(
        ids=arrow.column("id").to_pylist(),
        splits=arrow.column("split").to_pylist(),
        labels=arrow.column("label").to_numpy().astype(np.int64),
        logits=logits,
        modality=single["modality"],
        checkpoint_digest=single["checkpoint_digest"],
        pipeline_digest=single["pipeline_digest"],
        class_names=class_names,
    )
    if all(c in arrow.column_names for c in WINDOW_COLUMNS):
        table.windows = np.stack([arrow.column(c).to_numpy().astype(np.float64) for c in WINDOW_COLUMNS], axis=1)
    if GROUP_COLUMN in arrow.column_names:
        table.groups = arrow.column(GROUP_COLUMN).to_pylist()
        table.group_kind = metadata.get(b"mmfc.group_kind", b"").decode()
    _validate(table, path)
    return table


def split_metrics(table: ScoreTable) -> dict:
    """Top-1, top-5, mean class accuracy (fractions) and NLL of a table's rows (one split's)."""
    if not table.ids:
        return {"num_samples": 0}
    return {
        "num_samples": len(table.ids),
        "top1": topk_accuracy(table.logits, table.labels, 1),
        "top5": topk_accuracy(table.logits, table.labels, 5),
        "mean_class": mean_class_accuracy(table.logits, table.labels, table.num_classes),
        "nll": nll(table.logits, table.labels),
    }


def top1_text(table: ScoreTable, split: str) -> str:
    """A split's top-1 as a percentage for a summary line, "-" when the split has no rows."""
    metrics = split_metrics(table.rows(split))
    return f"{100 * metrics['top1']:.1f}%" if metrics["num_samples"] else "-"


def check_compatible(a: ScoreTable, b: ScoreTable, a_path: str | Path, b_path: str | Path) -> None:
    """Refuse two score files that do not describe the same samples with the same labels."""
    where = f"{a_path} vs {b_path}"
    if a.num_classes != b.num_classes:
        raise DataError(where, f"class counts differ: {a.num_classes} vs {b.num_classes}")
    if a.class_names != b.class_names:
        diff = next(i for i, (x, y) in enumerate(zip(a.class_names, b.class_names)) if x != y)
        raise DataError(where, f"class names differ at {diff}: {a.class_names[diff]!r} vs {b.class_names[diff]!r}")
    a_ids, b_ids = set(a.ids), set(b.ids)
    if a_ids != b_ids:
        only_a, only_b = sorted(a_ids - b_ids), sorted(b_ids - a_ids)
        raise DataError(
            where,
            f"sample sets differ: {len(only_a)} only in the first (e.g. {only_a[:3]}), "
            f"{len(only_b)} only in the second (e.g. {only_b[:3]})",
        )
    b_row = {sample_id: i for i, sample_id in enumerate(b.ids)}
    label_diff = [i for i, x in zip(a.ids, a.labels) if b.labels[b_row[i]] != x]
    if label_diff:
        first = label_diff[0]
        raise DataError(
            where,
            f"labels differ for {len(label_diff)} samples, e.g. {first}: "
            f"{a.labels[a.ids.index(first)]} vs {b.labels[b_row[first]]}",
        )
    split_diff = [i for i, s in zip(a.ids, a.splits) if b.splits[b_row[i]] != s]
    if split_diff:
        raise DataError(where, f"splits differ for {len(split_diff)} samples, e.g. {split_diff[0]}")
    if a.groups is not None and b.groups is not None:
        group_diff = [i for i, g in zip(a.ids, a.groups) if b.groups[b_row[i]] != g]
        if group_diff:
            raise DataError(where, f"sample groups differ for {len(group_diff)} samples, e.g. {group_diff[0]}")


def _validate(table: ScoreTable, path: str | Path) -> None:
    n = len(table.ids)
    logits = np.asarray(table.logits)
    if logits.ndim != 2 or logits.shape[0] != n or len(table.splits) != n or np.shape(table.labels) != (n,):
        raise DataError(
            path,
            f"inconsistent sizes: {n} ids, {len(table.splits)} splits, labels {np.shape(table.labels)}, "
            f"logits {logits.shape}",
        )
    k = logits.shape[1]
    if len(table.class_names) != k:
        raise DataError(path, f"{len(table.class_names)} class names for {k} logit columns")
    if len(set(table.ids)) != n:
        raise DataError(path, f"{n - len(set(table.ids))} duplicate sample ids")
    bad_splits = sorted(set(table.splits) - set(SPLITS))
    if bad_splits:
        raise DataError(path, f"unknown splits {bad_splits}; expected {list(SPLITS)}")
    if n and (table.labels.min() < UNLABELLED or table.labels.max() >= k):
        raise DataError(path, f"labels outside [0, {k}) (or {UNLABELLED}, unlabelled): "
                              f"{table.labels.min()}..{table.labels.max()}")
    if table.groups is not None and (len(table.groups) != n or not all(isinstance(g, str) for g in table.groups)):
        raise DataError(path, f"{len(table.groups)} sample groups for {n} rows, or groups that are not text")
    if table.windows is not None and np.shape(table.windows) != (n, 2):
        raise DataError(path, f"windows of shape {np.shape(table.windows)} for {n} rows, expected ({n}, 2)")
    if not np.isfinite(logits).all():
        raise DataError(path, f"{int((~np.isfinite(logits)).any(axis=1).sum())} rows have non-finite logits")
