"""The report stage: accuracies of each modality and fusion method, the confusion matrix of the
best fused method, training curves and the paper's ablation table, as report.md and a
self-contained report.html in <workdir>/report/.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmfc import atomic, lock
from mmfc.branches import BRANCHES
from mmfc.config import Pipeline
from mmfc.errors import DataError
from mmfc.metrics import confusion_matrix, most_confused_pairs
from mmfc.report.plots import plot_confusion, plot_curves
from mmfc.report.render import Block, Figure, Heading, Paragraph, Table, render_html, render_markdown
from mmfc.scores.format import ScoreTable, read_scores, split_metrics

CURVE_KEYS = ("epoch", "train_loss", "val_loss", "val_top1")
CONFUSED_PAIRS = 10

# METHOD.md section 7: the target paper's ablation on NTU60 X-Sub, top-1 %.
PAPER_ABLATION = [
    ("baseline", "Baseline: plain RGB on whole frames", 92.3),
    ("pose", "Pose: skeleton branch alone", 92.8),
    ("crop", "+crop: plain RGB on skeleton-guided crops", 95.3),
    ("crop_ma", "+crop+MA", 96.9),
    ("crop_staa", "+crop+STAA", 97.6),
    ("full", "Full: +CCL and fusion with the skeleton branch", 98.8),
]
# The score file that gives each variant's number, relative to a run's workdir.
VARIANT_FILE = {
    "baseline": "scores/rgb.parquet",
    "pose": "scores/skel.parquet",
    "crop": "scores/rgb.parquet",
    "crop_ma": "scores/rgb.parquet",
    "crop_staa": "scores/rgb.parquet",
    "full": "fusion/fused.parquet",
}
# Published results: (method, NTU60 X-Sub, NTU60 X-View, FineGym, cost); None where not reported.
PUBLISHED = [
    ("Target paper (RGB + skeleton)", 98.8, 99.7, 96.0, "RGB branch 35.1 G"),
    ("EPAM-Net", 96.5, 99.0, None, ""),
    ("pi-ViT", 96.3, 99.0, None, ""),
    ("MMNet", 96.0, 98.8, None, ""),
    ("RGBPose-C3D", 95.3, 96.4, None, "1410 G"),
    ("CTR-GCN (skeleton only)", 92.4, 96.8, None, "1.97 G per stream"),
    ("PoseC3D", None, None, 93.2, ""),
]


@dataclass(eq=False)
class Scored:
    name: str  # as shown in the tables
    table: ScoreTable


def run_report(cfg: Pipeline) -> None:
    with lock.hold(cfg.paths.report / lock.LOCK, "mmfc stage report"):
        _report(cfg)


def _report(cfg: Pipeline) -> None:
    paths = cfg.paths
    weights = _read_json(_require(paths.fusion / "weights.json", "`mmfc stage fuse` (stage 4)"))
    modalities = [
        Scored(b.label, read_scores(_require(paths.scores / f"{m}.parquet", f"`mmfc stage scores --modality {m}` (stage 3)")))
        for m, b in BRANCHES.items()
    ]
    fused = [
        Scored(name, read_scores(_require(paths.fusion / f"{name}.parquet", "`mmfc stage fuse` (stage 4)")))
        for name in weights["methods"]
    ]
    curves = {
        m: read_curves(_require(paths.train(m) / "metrics.jsonl", f"`mmfc stage train --modality {m}` (stage 2)"))
        for m in BRANCHES
    }

    out = paths.report
    out.mkdir(parents=True, exist_ok=True)
    blocks: list[Block] = _header(cfg)
    blocks += _accuracy_section(modalities, fused, weights)
    selected = next(item for item in fused if item.name == weights["selected"])
    blocks += _confusion_section(selected, out / "confusion.png")
    plot_curves(curves, out / "curves.png")
    blocks += [Heading(2, "Training curves"), Figure(out / "curves.png", _curves_caption(curves))]
    blocks += _ablation_section(cfg)

    title = f"mmfc report: {cfg.name}"
    atomic.write_text(out / "report.md", render_markdown(blocks))
    atomic.write_text(out / "report.html", render_html(blocks, title))


# ---------------------------------------------------------------------------------------------
# Inputs


def read_curves(path: Path) -> list[dict]:
    """The per-epoch rows of a training metrics.jsonl, in epoch order."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"line {number} is not JSON ({exc.msg})") from None
        missing = [k for k in CURVE_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise DataError(path, f"line {number} lacks {missing}")
        # Accuracies are fractions, as mmfc.metrics returns them; a percentage would plot off the axes.
        if not 0 <= row["val_top1"] <= 1:
            raise DataError(path, f"line {number}: val_top1 = {row['val_top1']}, expected a fraction in [0, 1]")
        rows.append(row)
    if not rows:
        raise DataError(path, "no epochs recorded; training has not finished an epoch")
    return sorted(rows, key=lambda r: r["epoch"])


def _require(path: Path, made_by: str) -> Path:
    if not path.is_file():
        raise DataError(path, f"missing; made by {made_by}")
    return path


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("methods"), dict) or not data["methods"]:
        raise DataError(path, "no 'methods' in the fusion weights; rerun `mmfc stage fuse`")
    return data


# ---------------------------------------------------------------------------------------------
# Sections


def dataset_description(cfg: Pipeline) -> tuple[str, bool]:
    """A one-line name of the data this run used, and whether the paper's numbers compare to it."""
    synthetic = "synth" in cfg.name.lower() or "synth" in Path(cfg.data.root).name.lower()
    kind = "synthetic data (`mmfc synth`)" if synthetic else f"`{cfg.data.root}`"
    text = (
        f"**{cfg.name}**: {kind}, source `{cfg.data.source}`, protocol `{cfg.data.protocol}`, "
        f"{cfg.data.num_classes} classes"
    )
    comparable = not synthetic and cfg.data.source == "ntu" and cfg.data.num_classes == 60 and cfg.data.protocol == "xsub"
    return text, comparable


def _header(cfg: Pipeline) -> list[Block]:
    text, comparable = dataset_description(cfg)
    caveat = (
        "This run is NTU60 X-Sub, the protocol of the paper's numbers below."
        if comparable
        else "The paper's and peers' numbers below are on NTU RGB+D 60 (and FineGym); **this run's numbers are on "
        "different data and are not comparable to them** — they show how the pieces rank against each other here."
    )
    return [
        Heading(1, f"mmfc report: {cfg.name}"),
        Paragraph(f"Dataset: {text}. Pipeline digest `{cfg.digest()}`, workdir `{cfg.workdir}`."),
        Paragraph(caveat),
    ]


def _accuracy_section(modalities: list[Scored], fused: list[Scored], weights: dict) -> list[Block]:
    headers = ["scores", "val top-1", "val top-5", "val mean class", "test top-1", "test top-5", "test mean class"]
    rows = []
    labelled = [(m.name, m) for m in modalities] + [(f"fusion: {f.name}", f) for f in fused]
    for name, item in labelled:
        if name == f"fusion: {weights.get('selected')}":
            name += " (selected)"
        val, test = split_metrics(item.table.rows("val")), split_metrics(item.table.rows("test"))
        rows.append([name] + [_pct(m.get(k)) for m in (val, test) for k in ("top1", "top5", "mean_class")])
    params = [[name, _describe_params(entry["params"])] for name, entry in weights["methods"].items()]
    n_val = weights.get("num_fit_samples", "?")
    return [
        Heading(2, "Accuracy (%)"),
        Paragraph(
            f"Fusion weights were fit on the `{weights.get('fit_split', 'val')}` split ({n_val} samples, "
            f"choosing by {weights.get('metric', 'top1')}) and applied unchanged to test; the test split chose nothing. "
            "`pyskl_*` are the anchors' fixed RGB:skeleton probability ratios, with nothing fitted."
        ),
        Table(headers, rows),
        Heading(3, "Fitted fusion parameters"),
        Table(["method", "parameters"], params),
    ]


def _confusion_section(selected: Scored, png: Path) -> list[Block]:
    split = "test" if "test" in selected.table.splits else "val"
    rows = selected.table.rows(split)
    cm = confusion_matrix(rows.logits.argmax(axis=1), rows.labels, rows.num_classes)
    plot_confusion(cm, rows.class_names, f"fusion: {selected.name}, {split} split ({len(rows.ids)} samples)", png)
    pairs = most_confused_pairs(cm, rows.class_names, CONFUSED_PAIRS)
    pair_rows = [[p.true, p.predicted, str(p.count), _pct(p.rate)] for p in pairs]
    blocks: list[Block] = [
        Heading(2, "Confusion matrix"),
        Figure(
            png,
            f"Fusion method `{selected.name}` (the pipeline's `fusion.method`), rows = true class, "
            "colour = share of the true class's samples.",
        ),
        Heading(3, "Most confused class pairs"),
    ]
    if pair_rows:
        blocks.append(Table(["true class", "predicted as", "samples", "% of the true class"], pair_rows))
    else:
        blocks.append(Paragraph(f"No {split} sample was misclassified."))
    return blocks


def _curves_caption(curves: dict[str, list[dict]]) -> str:
    parts = []
    for modality, rows in curves.items():
        best = max(rows, key=lambda r: r["val_top1"])
        parts.append(
            f"{BRANCHES[modality].label}: {len(rows)} epochs, best val top-1 {_pct(best['val_top1'])}% at epoch {best['epoch']}"
        )
    return "Loss (solid train, dashed val) and top-1 per epoch. " + "; ".join(parts) + "."


def _ablation_section(cfg: Pipeline) -> list[Block]:
    text, comparable = dataset_description(cfg)
    rows = []
    for variant, description, paper in PAPER_ABLATION:
        value, source = _variant_result(cfg, variant)
        rows.append([description, f"{paper:.1f}", value, source])
    rgb_path = cfg.paths.scores / "rgb.parquet"
    ccl = "+CCL" if cfg.rgb.ccl.weight > 0 else ", no CCL"
    rgb_row = f"RGB branch of this run ({cfg.crops.mode} crop, {cfg.rgb.model.block}{ccl}; no fusion)"
    rows.append([rgb_row, "—", _test_top1(rgb_path), _rel(cfg, rgb_path)])
    published = [
        [name, _num(xsub), _num(xview), _num(gym), cost or "—"] for name, xsub, xview, gym, cost in PUBLISHED
    ]
    note = "" if comparable else " Not comparable: different data (see the top of the report)."
    return [
        Heading(2, "Ablation (paper: NTU60 X-Sub, top-1 %)"),
        Paragraph(
            f"This run's column is test top-1 % on {text}.{note} Variants come from "
            "`<workdir>/ablation/<variant>/` (filled by `make ablation`); `pose` and `full` fall back to the main "
            "run. — means the run does not exist yet."
        ),
        Table(["variant", "paper (NTU60 X-Sub)", f"this run ({cfg.name})", "from"], rows),
        Heading(2, "Published results (top-1 %)"),
        Table(["method", "NTU60 X-Sub", "NTU60 X-View", "FineGym", "cost (multiply-adds)"], published),
    ]


def _variant_result(cfg: Pipeline, variant: str) -> tuple[str, str]:
    candidates = [cfg.paths.root / "ablation" / variant / VARIANT_FILE[variant]]
    if variant in ("pose", "full"):
        candidates.append(cfg.paths.root / VARIANT_FILE[variant])
    for path in candidates:
        if path.is_file():
            return _test_top1(path), _rel(cfg, path)
    return "—", "—"


def _test_top1(path: Path) -> str:
    if not path.is_file():
        return "—"
    return _pct(split_metrics(read_scores(path).rows("test")).get("top1"))


def _rel(cfg: Pipeline, path: Path) -> str:
    return f"`{path.relative_to(cfg.paths.root)}`" if path.is_file() else "—"


def _describe_params(params: dict) -> str:
    parts = []
    for key, value in params.items():
        if isinstance(value, list):
            arr = np.asarray(value, dtype=float)
            parts.append(f"{key}: {len(arr)} values in [{arr.min():.3g}, {arr.max():.3g}]")
        elif isinstance(value, float):
            parts.append(f"{key} = {value:.4g}")
        else:
            parts.append(f"{key} = {value}")
    return ", ".join(parts)


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * value:.1f}"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"
