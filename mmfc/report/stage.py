"""The report stage: accuracies of each modality and fusion method, how the fusion method was
chosen, per-class accuracies, the confusion matrix of the selected one, training curves and,
where they apply, the paper's ablation table and the published results, as report.md and a
self-contained report.html in <workdir>/report/.

Every accuracy carries a seeded 95% bootstrap interval over the samples it counts, and every
comparison on the same test samples a paired test (mmfc/stats.py): with a few hundred test
clips, a point is noise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rich.console import Console

from mmfc import atomic
from mmfc.branches import BRANCHES
from mmfc.config import Pipeline
from mmfc.errors import DataError
from mmfc.fusion.files import FUSED, WEIGHTS, open_fusion
from mmfc.fusion.methods import best_fixed_ratio, mix_probabilities
from mmfc.metrics import confusion_matrix, most_confused_pairs, per_class_recall, topk_accuracy
from mmfc.report.ablation import Variant, read_ablation
from mmfc.report.plots import plot_confusion, plot_curves
from mmfc.report.render import Block, Figure, Heading, Paragraph, Table, render_html, render_markdown
from mmfc.scores.format import ScoreTable, read_scores, split_metrics
from mmfc.stage_frame import Stage, run_stage
from mmfc.stats import Interval, accuracy_interval, compare_paired, mean_class_interval

METRIC_LABEL = {"top1": "top-1", "mean_class": "mean class accuracy"}
# Fusion candidates that are one modality alone: in the accuracy table they repeat the rows above.
SINGLE_CANDIDATES = {f"{name}_alone": branch.label for name, branch in BRANCHES.items()}
CURVE_KEYS = ("epoch", "train_loss", "val_loss", "val_top1")
CONFUSED_PAIRS = 10
# Top-5 is shown above this many classes only: of 10 or fewer it is half the classes or more,
# right by construction.
TOP5_ABOVE_CLASSES = 10

# Seed of every bootstrap interval in the report.
INTERVAL_SEED = 0
# Published results: (method, NTU60 X-Sub, NTU60 X-View, FineGym, cost); None where not reported.
PUBLISHED_COLUMNS = ("NTU60 X-Sub", "NTU60 X-View", "FineGym")
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


def report_stage(cfg: Pipeline) -> Stage:
    """The report describes the whole run and only reads what the stages made (no pipeline.json)."""
    return Stage("report", "mmfc stage report", lock="report", settings=(), outputs=(cfg.paths.report,),
                 saves_pipeline=False)


def run_report(cfg: Pipeline) -> None:
    paths = cfg.paths
    inputs = [paths.fusion / WEIGHTS, *(paths.scores / f"{m}.parquet" for m in BRANCHES),
              *(paths.train(m) / "metrics.jsonl" for m in BRANCHES)]
    with run_stage(cfg, report_stage(cfg), Console(stderr=True)) as run:
        with run.producing(paths.report, inputs):
            _report(cfg)
        run.summary = f"{paths.report / 'report.html'} and {paths.report / 'report.md'}"


def _report(cfg: Pipeline) -> None:
    paths = cfg.paths
    fusion = open_fusion(paths.fusion)
    weights = fusion.weights
    modalities = []
    for m, b in BRANCHES.items():
        path = _require(paths.scores / f"{m}.parquet", f"`mmfc stage scores --modality {m}` (stage 3)")
        modalities.append(Scored(b.label, read_scores(path)))
        fusion.check_fitted_on(m, modalities[-1].table, path)
    fused = [Scored(name, fusion.scores(name)) for name in fusion.candidates]
    curves = {
        m: read_curves(_require(paths.train(m) / "metrics.jsonl", f"`mmfc stage train --modality {m}` (stage 2)"))
        for m in BRANCHES
    }

    out = paths.report
    out.mkdir(parents=True, exist_ok=True)
    selected = next(item for item in fused if item.name == weights["selected"])
    ablation, published = ablation_applies(cfg), published_column(cfg)
    blocks: list[Block] = _header(cfg, ablation, published)
    blocks += _accuracy_section(modalities, fused, weights)
    blocks += _selection_section(weights)
    blocks += _paired_section(modalities, [f for f in fused if f.name not in SINGLE_CANDIDATES], selected)
    blocks += _per_class_section(modalities, selected)
    blocks += _confusion_section(selected, out / "confusion.png")
    plot_curves(curves, out / "curves.png")
    num_val = {m.name: len(m.table.rows("val").ids) for m in modalities}
    blocks += [Heading(2, "Training curves"), Figure(out / "curves.png", _curves_caption(curves, num_val))]
    if ablation:
        blocks += _ablation_section(cfg)
    if published:
        blocks += _published_section(published)

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


# ---------------------------------------------------------------------------------------------
# Sections


def dataset_description(cfg: Pipeline) -> tuple[str, bool]:
    """A one-line name of the data this run used, and whether the paper's numbers compare to it."""
    data = cfg.data
    kind = "synthetic data (`mmfc synth`)" if _synthetic(cfg) else f"`{data.root}`"
    if data.source == "ntu":
        splits = f"protocol `{data.protocol}`"
    elif data.source == "pose_pickle":
        splits = f"the pickle's splits `{data.train_split}` and `{data.test_split}`"
    elif Path(data.root).suffix.lower() == ".csv":
        splits = "a CSV file, split by its split column or a seeded hash of each clip's group"
    else:
        splits = "class folders, split by a seeded hash of each clip's group"
    text = f"**{cfg.name}**: {kind}, source `{data.source}`, {splits}, {data.num_classes} classes"
    comparable = not _synthetic(cfg) and data.source == "ntu" and data.num_classes == 60 and data.protocol == "xsub"
    return text, comparable


def _synthetic(cfg: Pipeline) -> bool:
    return "synth" in cfg.name.lower() or "synth" in Path(cfg.data.root).name.lower()


def ablation_applies(cfg: Pipeline) -> bool:
    """Whether the paper's NTU60 X-Sub ablation belongs in the report: the run is NTU60 X-Sub, or
    `make ablation` has trained a variant of it."""
    _, comparable = dataset_description(cfg)
    return comparable or any((cfg.paths.root / "ablation" / v.name / v.score_file).is_file() for v in read_ablation())


def published_column(cfg: Pipeline) -> str | None:
    """The column of the published results (PUBLISHED_COLUMNS) that this run's data is, or None."""
    data = cfg.data
    if _synthetic(cfg):
        return None
    if data.source == "ntu" and data.num_classes == 60 and data.protocol in ("xsub", "xview"):
        return PUBLISHED_COLUMNS[0] if data.protocol == "xsub" else PUBLISHED_COLUMNS[1]
    gym = "gym" in cfg.name.lower() or "gym" in Path(data.root).name.lower()
    if data.source == "pose_pickle" and gym and data.num_classes == 99:
        return PUBLISHED_COLUMNS[2]
    return None


def _header(cfg: Pipeline, ablation: bool, published: str | None) -> list[Block]:
    text, comparable = dataset_description(cfg)
    if comparable:
        caveat = "This run is NTU60 X-Sub, the protocol of the paper's numbers below."
    elif published:
        caveat = f"This run is {published}, a column of the published results below."
    elif ablation:
        caveat = (
            "The paper's ablation below is on NTU RGB+D 60 X-Sub; **this run's numbers are on different data and "
            "are not comparable to it**: they show how the pieces rank against each other here."
        )
    else:
        caveat = (
            "The paper's ablation and the published results (NTU RGB+D 60, FineGym) are left out: this run's data "
            "is none of them, and `make ablation` has not trained its variants."
        )
    return [
        Heading(1, f"mmfc report: {cfg.name}"),
        Paragraph(f"Dataset: {text}. Pipeline digest `{cfg.digest()}`, workdir `{cfg.workdir}`."),
        Paragraph(caveat),
    ]


def _accuracy_section(modalities: list[Scored], fused: list[Scored], weights: dict) -> list[Block]:
    top5 = modalities[0].table.num_classes > TOP5_ABOVE_CLASSES
    headers = ["scores", *(f"{split} {figure}" for split in ("val", "test") for figure in _figures(top5))]
    rows = []
    # The single-modality candidates are the rows above them, calibrated: the same predictions.
    shown = [(m.name, m) for m in modalities] + [
        (f"fusion: {f.name}", f) for f in fused if f.name not in SINGLE_CANDIDATES
    ]
    # A single modality selected is marked on its own row.
    selected_row = SINGLE_CANDIDATES.get(weights["selected"], f"fusion: {weights['selected']}")
    for name, item in shown:
        if name == selected_row:
            name += f" (selected: `{weights['selected']}`)" if weights["selected"] in SINGLE_CANDIDATES else " (selected)"
        cells = [cell for split in ("val", "test") for cell in _accuracy_cells(item.table.rows(split), top5)]
        rows.append([name, *cells])

    metric = weights.get("metric", "top1")
    test_rgb, test_skel = (m.table.rows("test") for m in modalities)
    blocks: list[Block] = [Heading(2, "Accuracy (%)")]
    paragraph = (
        f"95% intervals (bootstrap over the samples of each split, seed {INTERVAL_SEED}) in brackets"
        + ("" if top5 else f"; no top-5 with {TOP5_ABOVE_CLASSES} classes or fewer") + ". Fusion "
        f"weights were fit on the `{weights.get('fit_split', 'val')}` split ({weights.get('num_fit_samples', '?')} "
        "samples; its figures are the fitted ones, see the cross-validated ones below) and applied unchanged to "
        "test; the test split chose nothing. `pyskl_*` are the anchors' fixed RGB:skeleton probability ratios."
    )
    if test_rgb.ids:
        skel = test_skel.aligned_to(test_rgb.ids)
        w, _ = best_fixed_ratio(test_rgb.logits, skel.logits, test_rgb.labels, metric)
        mixed = mix_probabilities({"rgb": test_rgb.logits, "skel": skel.logits}, {"rgb": w, "skel": 1 - w})
        oracle = replace(test_rgb, logits=mixed)
        rows.append(
            [f"**oracle**: fixed ratio chosen on test (what peers report), RGB:skeleton {w:.2f}:{1 - w:.2f}",
             *["—"] * len(_figures(top5)), *_accuracy_cells(oracle, top5)]
        )
        chosen = next(f for f in fused if f.name == weights["selected"]).table.rows("test")
        gap = split_metrics(oracle)[metric] - split_metrics(chosen)[metric]
        verdict = (
            "that is how much choosing on test inflates the number here"
            if gap > 0
            else "here the validation-fitted selection does at least as well as the best ratio chosen on test"
        )
        paragraph += (
            f" The last row is an **oracle**, not a method: the fixed ratio (of 21, RGB weight 0 to 1) with the best "
            f"test {METRIC_LABEL[metric]}, as papers that tune the ratio on test report it. It reads "
            f"{100 * gap:+.1f} points against the validation-fitted selection (`{weights['selected']}`): {verdict}."
        )
    params = [[name, _describe_params(entry["params"])] for name, entry in weights["methods"].items()]
    return blocks + [
        Paragraph(paragraph),
        Table(headers, rows),
        Heading(3, "Fitted fusion parameters"),
        Table(["method", "parameters"], params),
    ]


def _selection_section(weights: dict) -> list[Block]:
    cv = weights.get("cv", {})
    metric = weights.get("metric", "top1")
    if cv.get("grouped_by"):
        folds = f"{cv['folds']} folds of whole {cv['grouped_by']}s ({cv['num_groups']} in validation)"
    else:
        folds = (
            f"{cv.get('folds', '?')} folds stratified by class (the validation ids name fewer than two performers, "
            "source videos or groups)"
        )
    auto = weights.get("auto", {})
    method = f"`fusion.method = \"{weights.get('requested', weights['selected'])}\"`"
    if weights.get("requested") == "auto":
        decision = f"Selected by {method}: **`{weights['selected']}`**. {auto.get('reason', '')}"
    else:
        decision = (
            f"{method} names the method: **`{weights['selected']}`**. `auto` would have picked "
            f"`{auto.get('pick', '?')}`: {auto.get('reason', '')}"
        )
    rows = []
    for name, entry in weights["methods"].items():
        figures = entry.get("cv", {})
        n = weights.get("num_fit_samples", 0)
        rows.append([
            f"`{name}`" + (" (selected)" if name == weights["selected"] else ""),
            "baseline" if entry.get("baseline") else "fitted",
            f"{figures['nll']:.4f}" if "nll" in figures else "—",
            _with_interval(figures.get("top1"), figures.get("top1_interval")),
            _with_interval(figures.get("mean_class"), figures.get("mean_class_interval")),
            _describe_choice(entry, n),
        ])
    return [
        Heading(2, "Fusion selection, cross-validated inside validation"),
        Paragraph(
            f"The validation split was cut into {folds}; every candidate, its temperatures included, was fitted "
            "on the other folds and scored on each held-out one. The criterion is the NLL of these out-of-fold "
            f"scores; {METRIC_LABEL[metric]} breaks near-ties (an NLL less than one standard error of the paired "
            "per-sample difference above the lowest) where its own difference is more than one standard error, "
            "else the simpler candidate is taken (a fixed ratio, then the fitted methods, a modality alone last). "
            "**Guarantee:** the candidate `auto` selects has a cross-validated "
            "NLL no higher than each single modality's and each fixed ratio's (the baselines); where a baseline is "
            "best, it is selected. Intervals: bootstrap over the validation samples' out-of-fold predictions."
        ),
        Paragraph(decision),
        Table(["candidate", "kind", "CV NLL", "CV top-1", "CV mean class", "free choice, chosen by CV"], rows),
    ]


def _paired_section(modalities: list[Scored], fused: list[Scored], selected: Scored) -> list[Block]:
    tests = {m.name: m.table.rows("test") for m in modalities}
    if not all(t.ids for t in tests.values()):
        return []
    best_name = max(tests, key=lambda name: topk_accuracy(tests[name].logits, tests[name].labels, 1))
    best = tests[best_name]
    rows = []
    for item in fused:
        comparison = compare_paired(_correct(item.table.rows("test").aligned_to(best.ids)), _correct(best), INTERVAL_SEED)
        name = f"`{item.name}`" + (" (selected)" if item is selected else "")
        rows.append([
            name,
            _with_interval(comparison.difference, [comparison.interval.low, comparison.interval.high], signed=True),
            str(comparison.only_a),
            str(comparison.only_b),
            _p_value(comparison.p_value),
        ])
    return [
        Heading(3, f"Fusion against the better single modality ({best_name}), paired on the test clips"),
        Paragraph(
            f"Each method's test top-1 minus {best_name}'s (the better single modality on test, so the comparison is "
            "the harder one), with a paired bootstrap 95% interval, and McNemar's exact test on the clips where the "
            "two disagree."
        ),
        Table(["fusion", "test top-1 difference (points)", "right only fused", f"right only {best_name}",
               "McNemar p"], rows),
    ]


def _per_class_section(modalities: list[Scored], selected: Scored) -> list[Block]:
    split = "test" if "test" in selected.table.splits else "val"
    tables = [(m.name, m.table.rows(split)) for m in modalities]
    tables.append((f"fusion: `{selected.name}`", selected.table.rows(split)))
    counts = [confusion_matrix(t.logits.argmax(axis=1), t.labels, t.num_classes) for _, t in tables]
    recalls = [per_class_recall(cm) for cm in counts]
    totals = counts[0].sum(axis=1)
    rows = []
    for k, class_name in enumerate(tables[0][1].class_names):
        cells = ["—" if not totals[k] else f"{_pct(r[k])} ({cm[k, k]}/{totals[k]})" for cm, r in zip(counts, recalls)]
        rows.append([class_name, str(totals[k]), *cells])
    return [
        Heading(2, f"Per-class accuracy ({split} split, %)"),
        Paragraph(f"Each class's {split} samples and the share of them each branch and the selected fusion classify "
                  "right (right / samples); — where the split has no sample of the class."),
        Table(["class", "samples", *(name for name, _ in tables)], rows),
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
            f"Fusion method `{selected.name}` (the selected one, see above), rows = true class, "
            "colour = share of the true class's samples.",
        ),
        Heading(3, "Most confused class pairs"),
    ]
    if pair_rows:
        blocks.append(Table(["true class", "predicted as", "samples", "% of the true class"], pair_rows))
    else:
        blocks.append(Paragraph(f"No {split} sample was misclassified."))
    return blocks


def _curves_caption(curves: dict[str, list[dict]], num_val: dict[str, int]) -> str:
    parts = []
    for modality, rows in curves.items():
        best = max(rows, key=lambda r: r["val_top1"])
        n = num_val[BRANCHES[modality].label]
        interval = accuracy_interval(round(best["val_top1"] * n), n, INTERVAL_SEED)
        parts.append(
            f"{BRANCHES[modality].label}: {len(rows)} epochs, best val top-1 {_pct(best['val_top1'])}% "
            f"[{_pct(interval.low)}, {_pct(interval.high)}] at epoch {best['epoch']}"
        )
    return "Loss (solid train, dashed val) and top-1 per epoch. " + "; ".join(parts) + "."


def _ablation_section(cfg: Pipeline) -> list[Block]:
    text, comparable = dataset_description(cfg)
    variants = read_ablation()
    results = {variant.name: _variant_scores(cfg, variant) for variant in variants}
    rows = []
    for variant in variants:
        path, test = results[variant.name]
        step = variant.step_from
        rows.append([
            variant.label,
            _num(variant.paper),
            _accuracy_cells(test, False)[0] if test is not None else "—",
            _step_change(test, results[step][1]) if step else "",
            _rel(cfg, path) if path else "—",
        ])
    rgb_path = cfg.paths.scores / "rgb.parquet"
    ccl = "+CCL" if cfg.rgb.ccl.weight > 0 else ", no CCL"
    rgb_row = f"RGB branch of this run ({cfg.crops.mode} crop, {cfg.rgb.model.block}{ccl}; no fusion)"
    rgb_test = read_scores(rgb_path).rows("test") if rgb_path.is_file() else None
    rows.append([rgb_row, "—", _accuracy_cells(rgb_test, False)[0] if rgb_test is not None else "—", "",
                 _rel(cfg, rgb_path)])
    note = "" if comparable else " Not comparable: different data (see the top of the report)."
    return [
        Heading(2, "Ablation (paper: NTU60 X-Sub, top-1 %)"),
        Paragraph(
            f"This run's column is test top-1 % with its 95% interval on {text}.{note} Variants come from "
            "`<workdir>/ablation/<variant>/` (filled by `make ablation`: the RGB steps without CCL, then STAA with "
            "CCL, and the skeleton branch without and with CCL); `pose` and `full` fall back to the main run. "
            "The step column is the change against the row the step adds to, on the same test clips (paired "
            "bootstrap interval, McNemar's exact p). — means the run does not exist yet. The paper reports CCL "
            "only inside the full model."
        ),
        Table(["variant", "paper (NTU60 X-Sub)", f"this run ({cfg.name})", "step (points)", "from"], rows),
    ]


def _published_section(column: str) -> list[Block]:
    rows = [[name, _num(xsub), _num(xview), _num(gym), cost or "—"] for name, xsub, xview, gym, cost in PUBLISHED]
    return [
        Heading(2, "Published results (top-1 %)"),
        Paragraph(f"As published, on their data; this run's data is the {column} column. No intervals, since no "
                  "per-sample results are public."),
        Table(["method", *PUBLISHED_COLUMNS, "cost (multiply-adds)"], rows),
    ]


def _variant_scores(cfg: Pipeline, variant: Variant) -> tuple[Path | None, ScoreTable | None]:
    """The score file of an ablation variant and its test rows; (None, None) when not run yet."""
    candidates = [cfg.paths.root / "ablation" / variant.name / variant.score_file]
    if not variant.trained:  # the main run's scores stand for it
        candidates.append(cfg.paths.root / variant.score_file)
    for path in candidates:
        if path.is_file():
            # Fused scores are the selected fusion of that run's whole fusion set.
            table = open_fusion(path.parent).scores(FUSED) if variant.scores == "fusion" else read_scores(path)
            return path, table.rows("test")
    return None, None


def _step_change(test: ScoreTable | None, before: ScoreTable | None) -> str:
    if test is None or before is None or not test.ids or sorted(test.ids) != sorted(before.ids):
        return "—"
    comparison = compare_paired(_correct(test), _correct(before.aligned_to(test.ids)), INTERVAL_SEED)
    interval = [comparison.interval.low, comparison.interval.high]
    return f"{_with_interval(comparison.difference, interval, signed=True)}, p {_p_value(comparison.p_value)}"


def _rel(cfg: Pipeline, path: Path) -> str:
    return f"`{path.relative_to(cfg.paths.root)}`" if path.is_file() else "—"


def _describe_params(params: dict) -> str:
    parts = []
    for key, value in params.items():
        if isinstance(value, dict):
            parts.append(f"{key} ({_describe_params(value)})")
        elif isinstance(value, list):
            arr = np.asarray(value, dtype=float)
            parts.append(f"{key}: {len(arr)} values in [{arr.min():.3g}, {arr.max():.3g}]")
        elif isinstance(value, float):
            parts.append(f"{key} = {value:.4g}")
        else:
            parts.append(f"{key} = {value}")
    return ", ".join(parts)


def _describe_choice(entry: dict, num_samples: int) -> str:
    choice = entry.get("choice")
    if not choice:
        return "—" if entry.get("baseline") else ""
    values = choice["values"]
    if len(values) == 1:
        text = f"{choice['name']} = {_fmt(choice['chosen'])}"
    elif choice["name"] == "alpha":
        text = f"alpha = {_fmt(choice['chosen'])} (of {len(values)} values from {_fmt(values[0])} to {_fmt(values[-1])})"
    else:
        text = f"{choice['name']} = {_fmt(choice['chosen'])} (of {', '.join(_fmt(v) for v in values)})"
    if entry.get("note"):
        text += f"; {entry['note']}"
    return text


def _figures(top5: bool) -> list[str]:
    return ["top-1", "top-5", "mean class"] if top5 else ["top-1", "mean class"]


def _accuracy_cells(rows: ScoreTable, top5: bool) -> list[str]:
    """Top-1, top-5 (with `top5`) and mean class accuracy of a split's rows, each with its 95%
    interval."""
    if not rows.ids:
        return ["—"] * len(_figures(top5))
    n = len(rows.ids)
    correct = _correct(rows)
    metrics = split_metrics(rows)
    intervals = [("top1", accuracy_interval(int(correct.sum()), n, INTERVAL_SEED))]
    if top5:
        intervals.append(("top5", accuracy_interval(round(metrics["top5"] * n), n, INTERVAL_SEED)))
    intervals.append(("mean_class", mean_class_interval(correct, rows.labels, rows.num_classes, INTERVAL_SEED)))
    return [_with_interval(metrics[key], [i.low, i.high]) for key, i in intervals]


def _correct(rows: ScoreTable) -> np.ndarray:
    return rows.logits.argmax(axis=1) == rows.labels


def _with_interval(value: float | None, interval: list | Interval | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    sign = "+" if signed else ""
    text = f"{100 * value:{sign}.1f}"
    if interval:
        low, high = interval
        text += f" [{100 * low:{sign}.1f}, {100 * high:{sign}.1f}]"
    return text


def _p_value(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def _fmt(value) -> str:
    return value if isinstance(value, str) else f"{value:.4g}"


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * value:.1f}"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"
