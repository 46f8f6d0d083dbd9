"""The report's figures, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from mmfc.atomic import atomic_path  # noqa: E402

_DPI = 110
# Longer class names are cut so the axes keep most of the figure.
_NAME_CHARS = 28
# Counts are written in the cells up to this many classes; beyond, colour alone.
_ANNOTATE_UP_TO = 30


def plot_confusion(cm: np.ndarray, class_names: list[str], title: str, path: Path) -> None:
    """Row-normalised confusion matrix (colour = share of the true class), class names on both axes.

    The figure grows with the class count and the label font shrinks, so every name stays
    legible from 12 to 120 classes.
    """
    k = cm.shape[0]
    totals = cm.sum(axis=1, keepdims=True)
    rates = np.divide(cm, totals, out=np.zeros(cm.shape, dtype=float), where=totals > 0)
    side = float(np.clip(0.17 * k + 3.5, 7, 26))
    label_size = float(np.clip(220 / k, 7, 10))
    names = [_short(n) for n in class_names]

    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    # A square-root scale keeps the small off-diagonal shares, the confusions, visible.
    norm = matplotlib.colors.PowerNorm(gamma=0.5, vmin=0, vmax=1)
    image = ax.imshow(rates, cmap="Blues", norm=norm, interpolation="nearest")
    ax.set_xticks(range(k), names, rotation=90, fontsize=label_size)
    ax.set_yticks(range(k), names, fontsize=label_size)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    # Faint cell borders help follow a row across a large matrix.
    ax.set_xticks(np.arange(-0.5, k), minor=True)
    ax.set_yticks(np.arange(-0.5, k), minor=True)
    ax.grid(which="minor", color="0.9", linewidth=0.3)
    ax.tick_params(which="minor", length=0)
    if k <= _ANNOTATE_UP_TO:
        for t in range(k):
            for p in range(k):
                if cm[t, p]:
                    colour = "white" if rates[t, p] > 0.35 else "black"
                    ax.text(p, t, str(cm[t, p]), ha="center", va="center", fontsize=label_size * 0.8, color=colour)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="share of the true class")
    fig.tight_layout()
    _save(fig, path)


def plot_curves(curves: dict[str, list[dict]], path: Path) -> None:
    """Loss and top-1 per epoch for each modality, from the rows of metrics.jsonl."""
    _save(curves_figure(curves), path)


def curves_figure(curves: dict[str, list[dict]]) -> matplotlib.figure.Figure:
    """plot_curves' figure: the losses on a log axis, so one epoch's spike (a loss of 35 where
    the others are below 1) leaves the rest of the curve readable."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for colour, (modality, rows) in zip(colours, curves.items()):
        epochs = [r["epoch"] for r in rows]
        loss_ax.plot(epochs, [r["train_loss"] for r in rows], color=colour, label=f"{modality} train")
        loss_ax.plot(epochs, [r["val_loss"] for r in rows], color=colour, linestyle="--", label=f"{modality} val")
        acc_ax.plot(epochs, [100 * r["val_top1"] for r in rows], color=colour, marker="o", ms=3, label=f"{modality} val")
        if all("train_top1" in r for r in rows):
            acc_ax.plot(
                epochs, [100 * r["train_top1"] for r in rows], color=colour, linestyle=":", label=f"{modality} train"
            )
    loss_ax.set_title("loss (log scale)")
    loss_ax.set_yscale("log")
    acc_ax.set_title("top-1 accuracy (%)")
    acc_ax.set_ylim(0, 102)
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def plot_branch_weights(
    weights: dict[str, float], shares: dict[str, dict[str, float]], selected: str, path: Path
) -> None:
    """Two bar charts over the branches: `weights` (one weight per branch, on the simplex), and
    for each candidate of `shares` its branches' shares of the fused evidence, `selected` drawn
    solid and the others hatched."""
    branches = list(weights)
    fig, (weight_ax, share_ax) = plt.subplots(1, 2, figsize=(max(10, 2.2 * len(branches) + 4), 4.5))
    x = np.arange(len(branches))
    weight_ax.bar(x, [weights[b] for b in branches], color="0.45")
    weight_ax.set_title("global: weight on the simplex")
    weight_ax.set_ylim(0, 1)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / max(len(shares), 1)
    for i, (name, by_branch) in enumerate(shares.items()):
        chosen = name == selected
        share_ax.bar(x - 0.4 + width * (i + 0.5), [by_branch.get(b, 0.0) for b in branches], width,
                     color=colours[i % len(colours)], hatch=None if chosen else "//", edgecolor="white",
                     label=f"{name} (selected)" if chosen else name)
    share_ax.axhline(0, color="black", linewidth=0.6)
    share_ax.set_title("share of the fused evidence for the true class")
    if shares:
        share_ax.legend(fontsize=8)
    for ax in (weight_ax, share_ax):
        ax.set_xticks(x, branches, rotation=20)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_group_accuracy(groups: list[str], accuracy: dict[str, list[float]], kind: str, path: Path) -> None:
    """Each branch's out-of-fold top-1 on each group (`accuracy`: a fraction per group, by branch):
    a dot per group, a line through a branch's dots, so that a branch that works for some people
    and not for others stands out from one that holds across them."""
    fig, ax = plt.subplots(figsize=(float(np.clip(0.4 * len(groups) + 3, 6, 18)), 4))
    x = np.arange(len(groups))
    for name, values in accuracy.items():
        ax.plot(x, 100 * np.asarray(values), marker="o", ms=4, label=name)
    ax.set_xticks(x, [_short(g) for g in groups], rotation=45 if len(groups) > 6 else 0,
                  ha="right" if len(groups) > 6 else "center", fontsize=8)
    ax.set_xlabel(kind)
    ax.set_ylabel("out-of-fold top-1 (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _short(name: str) -> str:
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    plt.close(fig)
