"""Folds of whole groups, and where stage 4 fits the fusion (`fusion.fit_on`).

Two places cut samples into folds that keep each group (performer, source video) on one side:
stage 4's cross-validation of the fusion candidates (mmfc/fusion/selection.py), and the
out-of-fold stage (mmfc/oof/), which trains every branch again on k - 1 folds of the training
side and scores the fold it left out. Both use `make_folds`, so a fold means the same thing in
each.

`fusion.fit_on` says which scores stage 4 fits on: "val", the validation split's scores from the
stage-2 networks; "oof", the out-of-fold scores of every training clip (train and val together);
"auto", out-of-fold where validation is too thin to tell what carries over to new people
(`resolve_fit_on`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmfc.config import FusionConfig

# "auto" fits on out-of-fold scores below either of these. Groups: stage 4 learns which branch
# carries over to new people from how each varies across the groups it fits on: fitted on one
# validation actor (24 clips), the fusion came out below the skeleton branch alone on test in
# each of three runs, by 2.3 to 7.0 points (issue 25); with fewer than 5 groups its own
# cross-validation holds out at most 4 of them, each fitted on 3 people or fewer. Clips: a top-1 of 80% measured on 300 clips has
# a standard error of 2.3 points, about what fusing two branches gains on the demo; on fewer,
# the difference between a fusion and a branch alone is below the noise it is chosen in.
MIN_VALIDATION_GROUPS_TO_FIT = 5
MIN_VALIDATION_CLIPS_TO_FIT = 300
# The splits that make up the training side: what the out-of-fold stage cuts into folds.
TRAINING_SIDE = ("train", "val")


@dataclass
class Folds:
    index: np.ndarray  # fold of each sample, [N]
    grouped_by: str | None  # "performer", "source video", or None for stratified by class
    num_groups: int

    @property
    def count(self) -> int:
        return int(self.index.max()) + 1

    def splits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(training rows, held-out rows) of each fold."""
        return [(np.flatnonzero(self.index != f), np.flatnonzero(self.index == f)) for f in range(self.count)]

    def describe(self) -> dict:
        return {
            "folds": self.count,
            "grouped_by": self.grouped_by,
            "num_groups": self.num_groups,
            "fold_sizes": np.bincount(self.index).tolist(),
        }


def make_folds(labels: np.ndarray, groups: list[str] | None, grouped_by: str | None, k: int, seed: int) -> Folds:
    """k folds (fewer when there are fewer groups or samples), seeded.

    With at least two groups, whole groups go to folds, largest first into the smallest fold, so
    no group is on both sides. Otherwise each class's samples, in seeded random order, are dealt
    to the folds in turn, which balances both the classes and the fold sizes.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.size
    if n < 2:
        raise ValueError(f"cross-validation needs at least 2 samples, got {n}")
    rng = np.random.default_rng(seed)
    if groups is not None:
        names, member = np.unique(np.asarray(groups), return_inverse=True)
        if len(names) >= 2:
            k = min(k, len(names))
            sizes = np.bincount(member)
            order = rng.permutation(len(names))
            order = order[np.argsort(-sizes[order], kind="stable")]
            fold_of_group, load = np.empty(len(names), dtype=np.int64), np.zeros(k)
            for group in order:
                fold_of_group[group] = int(np.argmin(load))
                load[fold_of_group[group]] += sizes[group]
            return Folds(fold_of_group[member], grouped_by, len(names))
    k = min(k, n)
    order = rng.permutation(n)
    order = order[np.argsort(labels[order], kind="stable")]
    index = np.empty(n, dtype=np.int64)
    index[order] = np.arange(n) % k
    return Folds(index, None, 0)


def distinct_groups(groups: list[str]) -> list[str] | None:
    """The groups to keep apart, or None where every sample is its own group (a dataset that
    names none): folds are then stratified by class instead."""
    return list(groups) if len(set(groups)) < len(groups) else None


@dataclass(frozen=True)
class FitOn:
    """Where stage 4 fits the fusion, as `fusion.fit_on` resolves for some data."""

    scores: str  # "val" or "oof"
    reason: str  # why, in words: what "auto" saw, or that the pipeline names it


def resolve_fit_on(fusion: FusionConfig, validation_groups: dict[str, int], group_kind: str) -> FitOn:
    """`fusion.fit_on` for a validation split of these groups ({group: clips}; read only by
    "auto"): "auto" is "oof" below MIN_VALIDATION_GROUPS_TO_FIT groups or
    MIN_VALIDATION_CLIPS_TO_FIT clips, else "val"."""
    if fusion.fit_on != "auto":
        return FitOn(fusion.fit_on, f"fusion.fit_on = {fusion.fit_on!r}")
    kind = group_kind or "group"
    clips, count = sum(validation_groups.values()), len(validation_groups)
    held = f"validation holds {clips} clip{'s' if clips != 1 else ''} of {count} {kind}{'s' if count != 1 else ''}"
    if count < MIN_VALIDATION_GROUPS_TO_FIT or clips < MIN_VALIDATION_CLIPS_TO_FIT:
        return FitOn("oof", f"fusion.fit_on = 'auto': {held}, fewer than {MIN_VALIDATION_GROUPS_TO_FIT} {kind}s or "
                            f"{MIN_VALIDATION_CLIPS_TO_FIT} clips, too few to tell which branch carries over to new "
                            f"{kind}s; so the fusion is fitted on the out-of-fold scores of every training clip")
    return FitOn("val", f"fusion.fit_on = 'auto': {held}, enough to fit the fusion on")
