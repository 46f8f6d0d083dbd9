"""Per-class scores of every sample, one Parquet file per modality or fusion method."""

from mmfc.scores.format import ScoreTable, check_compatible, read_scores, split_metrics, write_scores

__all__ = ["ScoreTable", "check_compatible", "read_scores", "split_metrics", "write_scores"]
