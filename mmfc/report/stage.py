"""The report stage: accuracies of each branch and fusion method, each branch against the fused
result, how the fusion method was chosen and the weight it gives each branch, per-class
accuracies, each branch's cost beside its accuracy and the best subset of branches within the
cost of one RGB branch, the confusion matrix of the selected fusion, training curves, this run's
branches and ensembles and, where they apply, the paper's ablation table and the published
results, as report.md and a self-contained report.html in <workdir>/report/. The branches are
those stage 4 fused (weights.json lists them, and the declared ones the data left out).

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
from mmfc.branches import BRANCHES, RGB
from mmfc.config import VIDEO_BRANCHES, Pipeline
from mmfc.cost import branch_cost, ensemble_cost
from mmfc.errors import DataError
from mmfc.fusion.files import FUSED, WEIGHTS, FusionSet, open_fusion
from mmfc.fusion.methods import best_fixed_ratio, mix_probabilities
from mmfc.fusion.fit_scores import FIT_ON_OOF, FIT_ON_VAL, fit_rows, read_oof_scores
from mmfc.fusion.selection import best_subset, fit_folds, subset_fusion
from mmfc.metrics import confusion_matrix, most_confused_pairs, per_class_recall, topk_accuracy
from mmfc.report.ablation import Variant, read_ablation
from mmfc.oof.plan import oof_scores_path, plan_of_scores, training_side
from mmfc.report.plots import plot_branch_weights, plot_confusion, plot_curves, plot_group_accuracy
from mmfc.report.render import Block, Figure, Heading, Paragraph, Table, render_html, render_markdown
from mmfc.scores.format import ScoreTable, read_scores, split_metrics
from mmfc.stage_frame import Stage, run_stage
from mmfc.stats import Interval, accuracy_interval, compare_paired, mean_class_interval

METRIC_LABEL = {"top1": "top-1", "mean_class": "mean class accuracy"}
# Fusion candidates that are one modality alone: in the accuracy table they repeat the rows above.
SINGLE_CANDIDATES = {f"{name}_alone": branch.label for name, branch in BRANCHES.items()}
CURVE_KEYS = ("epoch", "train_loss", "val_loss", "val_top1")
CONFUSED_PAIRS = 10
# The out-of-fold section's table and plot show at most this many groups, the largest.
GROUPS_SHOWN = 40
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
    branch: str = ""  # the branch whose scores these are; "" for a fusion


def report_stage(cfg: Pipeline) -> Stage:
    """The report describes the whole run and only reads what the stages made (no pipeline.json)."""
    return Stage("report", "mmfc stage report", lock="report", settings=(), outputs=(cfg.paths.report,),
                 saves_pipeline=False)


def run_report(cfg: Pipeline) -> None:
    paths = cfg.paths
    with run_stage(cfg, report_stage(cfg), Console(stderr=True)) as run:
        fusion = open_fusion(paths.fusion)
        branches = fusion.weights["branches"]
        inputs = [paths.fusion / WEIGHTS, *(paths.scores / f"{m}.parquet" for m in branches),
                  *(paths.train(m) / "metrics.jsonl" for m in branches)]
        if fitted_on(fusion.weights) == FIT_ON_OOF:
            inputs += [oof_scores_path(cfg, m) for m in branches]
        with run.producing(paths.report, inputs):
            _report(cfg, fusion)
        run.summary = f"{paths.report / 'report.html'} and {paths.report / 'report.md'}"


def _report(cfg: Pipeline, fusion: FusionSet) -> None:
    paths = cfg.paths
    weights = fusion.weights
    modalities: list[Scored] = []
    for m in weights["branches"]:
        path = _require(paths.scores / f"{m}.parquet", f"`mmfc stage scores --modality {m}` (stage 3)")
        table = read_scores(path)
        fusion.check_fitted_on(m, table, path)
        # Every branch's rows in the first one's order, as stage 4 fused them.
        aligned = table.aligned_to(modalities[0].table.ids) if modalities else table
        modalities.append(Scored(BRANCHES[m].label, aligned, m))
    fused = [Scored(name, fusion.scores(name)) for name in fusion.candidates]
    curves = {
        m.branch: read_curves(_require(paths.train(m.branch) / "metrics.jsonl",
                                       f"`mmfc stage train --modality {m.branch}` (stage 2)"))
        for m in modalities
    }

    out = paths.report
    out.mkdir(parents=True, exist_ok=True)
    selected = next(item for item in fused if item.name == weights["selected"])
    ablation, published = ablation_applies(cfg), published_column(cfg)
    blocks: list[Block] = _header(cfg, ablation, published) + _branches_paragraph(weights)
    blocks += _accuracy_section(modalities, fused, weights)
    blocks += _against_fused_section(modalities, selected)
    blocks += _selection_section(weights)
    blocks += _oof_section(cfg, modalities, fusion, out / "groups.png")
    blocks += _paired_section(modalities, [f for f in fused if f.name not in SINGLE_CANDIDATES], selected)
    blocks += _per_class_section(modalities, selected)
    blocks += _weights_section(weights, out / "weights.png")
    fit, fit_paths = fit_rows(cfg, fitted_on(weights), {m.branch: m.table for m in modalities},
                              {m.branch: paths.scores / f"{m.branch}.parquet" for m in modalities})
    blocks += _cost_section(cfg, modalities, selected, weights, fit, fit_paths[modalities[0].branch])
    blocks += _confusion_section(selected, out / "confusion.png")
    plot_curves(curves, out / "curves.png")
    num_val = {m.name: len(m.table.rows("val").ids) for m in modalities}
    blocks += [Heading(2, "Training curves"), Figure(out / "curves.png", _curves_caption(curves, num_val))]
    blocks += _ablation_section(cfg, modalities, selected, weights, fit, ablation)
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
    if data.source in ("ntu", "nw_ucla"):
        splits = f"protocol `{data.protocol}`"
    elif data.source == "pose_pickle":
        splits = f"the pickle's splits `{data.train_split}` and `{data.test_split}`"
    elif data.source == "penn_action":
        splits = "the release's train/test flag"
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
    tests = [m.table.rows("test") for m in modalities]
    blocks: list[Block] = [Heading(2, "Accuracy (%)")]
    paragraph = (
        f"95% intervals (bootstrap over the samples of each split, seed {INTERVAL_SEED}) in brackets"
        + ("" if top5 else f"; no top-5 with {TOP5_ABOVE_CLASSES} classes or fewer") + ". Fusion "
        f"weights were fit on {_fit_rows_text(weights)} ({weights.get('num_fit_samples', '?')} samples; "
        + ("the validation figures are the fitted ones, see the cross-validated ones below" if fitted_on(weights) ==
           FIT_ON_VAL else "the validation figures above are of clips the fusion was fitted on, scored by stage 2's "
           "networks") + ") and applied unchanged to stage 2's networks' scores of test; the test split chose nothing. "
        "`pyskl_*` are PYSKL's fixed ratios of the branches' probabilities "
        "(in the order of the branches above), `ctrgcn` CTR-GCN's fixed sum of its four streams' logits."
    )
    # The oracle searches the ratio of two branches; over more a grid on the simplex is no one's practice.
    if len(modalities) == 2 and tests[0].ids:
        (first, second), (test_first, test_second) = modalities, tests
        w, _ = best_fixed_ratio(test_first.logits, test_second.logits, test_first.labels, metric)
        mixed = mix_probabilities({"a": test_first.logits, "b": test_second.logits}, {"a": w, "b": 1 - w})
        oracle = replace(test_first, logits=mixed)
        rows.append(
            [f"**oracle**: fixed ratio chosen on test (what peers report), {first.name}:{second.name} "
             f"{w:.2f}:{1 - w:.2f}", *["—"] * len(_figures(top5)), *_accuracy_cells(oracle, top5)]
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
    rows_text = _fit_rows_text(weights)
    if cv.get("grouped_by"):
        folds = f"{cv['folds']} folds of whole {cv['grouped_by']}s ({cv['num_groups']} of them)"
    else:
        folds = (
            f"{cv.get('folds', '?')} folds stratified by class (the clips name fewer than two performers, "
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
        Heading(2, "Fusion selection, cross-validated inside " + (
            "the out-of-fold scores" if fitted_on(weights) == FIT_ON_OOF else "validation")),
        Paragraph(
            f"{weights.get('fit_on', {}).get('reason', 'fusion.fit_on = val')}. The fusion was fitted on "
            f"{rows_text}, cut into {folds}; every candidate, its temperatures included, was fitted "
            "on the other folds and scored on each held-out one. The criterion is the NLL of these out-of-fold "
            f"scores; {METRIC_LABEL[metric]} breaks near-ties (an NLL less than one standard error of the paired "
            "per-sample difference above the lowest) where its own difference is more than one standard error, "
            "else the simpler candidate is taken (a fixed recipe, then the fitted methods, a branch alone last). "
            "**Guarantee:** the candidate `auto` selects has a cross-validated "
            "NLL no higher than each single branch's and each fixed recipe's (the baselines); where a baseline is "
            "best, it is selected. Intervals: bootstrap over the fitted samples' out-of-fold predictions."
        ),
        Paragraph(decision),
        Table(["candidate", "kind", "CV NLL", "CV top-1", "CV mean class", "free choice, chosen by CV"], rows),
    ]


def fitted_on(weights: dict) -> str:
    """Which scores stage 4 fitted on: "val" or "oof" (a weights.json written before fit_on: "val")."""
    return weights.get("fit_on", {}).get("scores", FIT_ON_VAL)


def _fit_rows_text(weights: dict) -> str:
    if fitted_on(weights) == FIT_ON_OOF:
        return ("the out-of-fold scores of every training clip (train and val, each scored by a network trained "
                "without its group: `mmfc stage oof`)")
    return "the validation split"


def _oof_section(cfg: Pipeline, modalities: list[Scored], fusion: FusionSet, png: Path) -> list[Block]:
    """Where the fusion was fitted on out-of-fold scores: each branch's out-of-fold top-1 on each
    group of the training side (a table and a plot), the fusion weights that follow, and each
    branch and the fusion on test from stage 2's network against the mean of the fold networks."""
    weights = fusion.weights
    if fitted_on(weights) != FIT_ON_OOF:
        return []
    first = modalities[0]
    oof = read_oof_scores(cfg, [m.branch for m in modalities], first.table,
                          cfg.paths.scores / f"{first.branch}.parquet")
    training = {m.branch: training_side(oof[m.branch]) for m in modalities}
    reference = training[first.branch]
    plan = plan_of_scores(reference, cfg.fusion.oof)
    kind = reference.group_kind or "group"
    members = {group: np.flatnonzero([g == group for g in reference.groups]) for group in sorted(set(reference.groups))}
    right = {m.branch: _correct(training[m.branch]) for m in modalities}
    shown = sorted(sorted(members, key=lambda g: (-len(members[g]), g))[:GROUPS_SHOWN])
    rows = []
    for group in shown:
        clips = members[group]
        rows.append([group, str(int(plan.folds.index[clips[0]])), str(len(clips)),
                     *(f"{_pct(right[m.branch][clips].mean())} ({int(right[m.branch][clips].sum())}/{len(clips)})"
                       for m in modalities)])
    spread = []
    for m in modalities:
        accuracy = np.array([right[m.branch][clips].mean() for clips in members.values()])
        spread.append(f"{_pct(right[m.branch].mean())}; {_pct(accuracy.min())} to {_pct(accuracy.max())}")
    rows.append([f"all {len(members)} {kind}s", "", str(len(reference.ids)), *spread])
    plot_group_accuracy(shown, {m.name: [right[m.branch][members[g]].mean() for g in shown] for m in modalities},
                        kind, png)
    more = f" (the {GROUPS_SHOWN} largest of {len(members)} shown)" if len(members) > GROUPS_SHOWN else ""
    blocks: list[Block] = [
        Heading(2, f"Out-of-fold scores across {kind}s"),
        Paragraph(
            f"Every branch was trained {plan.count} more times, each time without one fold of whole {kind}s of the "
            f"training side, and scored the fold it left out (`mmfc stage oof`), so each training clip has a score "
            f"from a network that never saw its {kind}. Each branch's out-of-fold top-1 (%) on each {kind}{more}; "
            f"the last row: over all training clips, then the lowest and highest of the {kind}s. A branch that works "
            f"on some {kind}s and not on others is what one validation {kind} cannot show; the fusion fitted on "
            "these scores weighs each branch by what holds across them."
        ),
        Table([kind, "fold", "clips", *(m.name for m in modalities)], rows),
        Figure(png, f"Out-of-fold top-1 of each branch on each {kind}{more}."),
    ]
    selected = weights["methods"][weights["selected"]]
    if selected.get("branch_shares"):
        shares = ", ".join(f"`{b}` {share:.2f}" for b, share in selected["branch_shares"].items())
        blocks.append(Paragraph(f"The fusion that follows, `{weights['selected']}`: each branch's share of its evidence "
                                f"for the true class over these clips: {shares}."))
    return blocks + _fold_average_blocks(modalities, oof, fusion)


def _fold_average_blocks(modalities: list[Scored], oof: dict[str, ScoreTable], fusion: FusionSet) -> list[Block]:
    """Test top-1 of each branch and of the selected fusion from stage 2's networks (trained on the
    training split) against the mean of the k fold networks' logits."""
    tests = {m.branch: oof[m.branch].rows("test") for m in modalities}
    if not tests[modalities[0].branch].ids:
        return []
    rows = []
    for m in modalities:
        final = m.table.rows("test").aligned_to(tests[m.branch].ids)
        rows.append([m.name, _accuracy_cells(final)[0], _accuracy_cells(tests[m.branch])[0],
                     *_paired_cells(tests[m.branch], final)])
    name, fitted = fusion.fitted()
    final = fusion.scores(FUSED).rows("test").aligned_to(tests[modalities[0].branch].ids)
    averaged = replace(final, logits=fitted.log_probabilities({b: t.logits for b, t in tests.items()}))
    rows.append([f"fusion `{name}`", _accuracy_cells(final)[0], _accuracy_cells(averaged)[0],
                 *_paired_cells(averaged, final)])
    return [
        Heading(3, "On test: stage 2's network against the mean of the fold networks"),
        Paragraph("The fused result uses stage 2's networks. The fold networks' mean logits are the other choice; "
                  "here is each on test, and the difference (fold mean minus stage 2's, paired bootstrap interval, "
                  "McNemar's exact p). Measured, not chosen: the test split decides nothing."),
        Table(["scores", "stage 2's network", "mean of the fold networks", "difference (points)",
               "right only the fold mean", "right only stage 2's", "McNemar p"], rows),
    ]


def _branches_paragraph(weights: dict) -> list[Block]:
    """Which branches were fused, and which declared ones the data left out."""
    branches = weights["branches"]
    left_out = weights.get("left_out") or {}
    if len(branches) == 1:
        text = (f"One branch, `{branches[0]}`: the fusion is that branch, temperature-scaled (which changes no "
                "prediction); there is nothing to fuse, so the fusion sections below have one candidate.")
    else:
        text = f"Branches fused: {', '.join(f'`{b}`' for b in branches)} (the pipeline's `branches`)."
    if left_out:
        text += " Declared but left out: " + "; ".join(f"`{b}`, {why}" for b, why in left_out.items()) + "."
    return [Paragraph(text)]


def _against_fused_section(modalities: list[Scored], selected: Scored) -> list[Block]:
    """Each branch's test top-1 against the selected fusion's, paired on the same clips."""
    fused = selected.table.rows("test")
    if len(modalities) < 2 or not fused.ids:
        return []
    rows = []
    for m in modalities:
        test = m.table.rows("test").aligned_to(fused.ids)
        rows.append([m.name, _accuracy_cells(test)[0], *_paired_cells(test, fused)])
    return [
        Heading(3, f"Each branch against the fused result (`{selected.name}`), paired on the test clips"),
        Paragraph("Each branch's test top-1 minus the selected fusion's, with a paired bootstrap 95% interval, and "
                  "McNemar's exact test on the clips where the two disagree."),
        Table(["branch", "test top-1", "difference (points)", "right only the branch", "right only fused",
               "McNemar p"], rows),
    ]


def _paired_section(modalities: list[Scored], fused: list[Scored], selected: Scored) -> list[Block]:
    tests = {m.name: m.table.rows("test") for m in modalities}
    if not fused or not all(t.ids for t in tests.values()):
        return []
    best_name = max(tests, key=lambda name: topk_accuracy(tests[name].logits, tests[name].labels, 1))
    best = tests[best_name]
    rows = []
    for item in fused:
        name = f"`{item.name}`" + (" (selected)" if item is selected else "")
        rows.append([name, *_paired_cells(item.table.rows("test").aligned_to(best.ids), best)])
    return [
        Heading(3, f"Fusion against the best single branch ({best_name}), paired on the test clips"),
        Paragraph(
            f"Each method's test top-1 minus {best_name}'s (the best single branch on test, so the comparison is "
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


def _weights_section(weights: dict, png: Path) -> list[Block]:
    """The fitted weight of each branch, and each branch's share of the fused evidence, as bars."""
    methods = weights["methods"]
    if len(weights["branches"]) < 2:
        return []
    simplex = {b: float(w) for b, w in methods["global"]["params"]["weights"].items()}
    shares = {name: entry["branch_shares"] for name, entry in methods.items()
              if entry.get("branch_shares") and name not in SINGLE_CANDIDATES}
    plot_branch_weights(simplex, shares, weights["selected"], png)
    selected = weights["selected"]
    note = ("" if selected in shares or selected in SINGLE_CANDIDATES else
            f" The selected `{selected}` mixes the branches' raw probabilities, which sum no per-branch terms, so it "
            "has no shares.")
    return [
        Heading(2, "Fusion weights per branch"),
        Figure(png, (
            "Left: the weights of `global` on the simplex, which mix the branches' temperature-scaled "
            "log-probabilities (every fitted method is shrunk toward them). A weight alone overstates a branch "
            "that its temperature has flattened (a branch of noise gets a flat distribution, which moves no "
            "prediction whatever its weight). Right, the honest picture: each branch's share of the fused "
            "scores' evidence for the true class on the validation rows (`branch_shares`: its term's mean margin "
            "of the true class over the mean class, divided by the sum over branches; below 0 it points away), "
            f"for each candidate that sums a term per branch.{note}"
        )),
    ]


def _cost_section(cfg: Pipeline, modalities: list[Scored], selected: Scored, weights: dict,
                  fit: dict[str, ScoreTable], path: Path) -> list[Block]:
    """Each branch's and the ensemble's multiply-adds per clip beside their test top-1, and the best
    subset of the branches within the cost of one RGB branch, chosen on the rows the fusion was
    fitted on (`fit`, by branch, from the file `path` for the first)."""
    num_classes = modalities[0].table.num_classes
    costs = {m.branch: branch_cost(BRANCHES[m.branch], cfg, num_classes) for m in modalities}
    rows = [[m.name, costs[m.branch]["model"], f"{costs[m.branch]['gmacs']:.3g}", f"{costs[m.branch]['params_m']:.3g}",
             _accuracy_cells(m.table.rows("test"))[0]] for m in modalities]
    if len(modalities) > 1:
        total = ensemble_cost(costs)
        rows.append([f"ensemble of the {len(modalities)} branches (`{selected.name}`)", "every branch above",
                     f"{total['gmacs']:.3g}", f"{total['params_m']:.3g}",
                     _accuracy_cells(selected.table.rows("test"))[0]])
    budget = (costs["rgb"] if "rgb" in costs else branch_cost(RGB, cfg, num_classes))["gmacs"]
    first = fit[modalities[0].branch]
    blocks: list[Block] = [
        Heading(2, "Cost (multiply-adds per clip, as configured) and accuracy"),
        Paragraph("GMACs and parameters of one clip through each branch's network as this pipeline configures it "
                  "(`mmfc cost`, counted on the meta device); an ensemble runs every branch, so its cost is the sum "
                  "(the fusion itself is negligible). Test top-1 with its 95% interval."),
        Table(["branch", "model", "GMACs", "params (M)", "test top-1"], rows),
    ]
    if len(first.ids) < 2:
        return blocks
    metric = weights.get("metric", "top1")
    folds = fit_folds(first, path, cfg.fusion)
    subset = best_subset({b: t.logits for b, t in fit.items()}, first.labels, folds,
                         {b: c["gmacs"] for b, c in costs.items()}, budget, metric)
    rgb_text = f"one RGB branch as this pipeline configures it ({budget:.3g} GMACs)"
    if subset is None:
        return blocks + [Paragraph(f"No branch costs at most {rgb_text}.")]
    test = modalities[0].table.rows("test")
    fused = replace(test, logits=subset.fitted.apply({m.branch: m.table.rows("test").logits for m in modalities})) \
        if test.ids else test
    label = "top-1" if metric == "top1" else "mean class accuracy"
    return blocks + [
        Heading(3, "The best subset of branches within the cost of one RGB branch"),
        Paragraph(
            f"Every subset of the branches costing at most {rgb_text} was fused as the product of its "
            "temperature-scaled branches (the global rule at equal weights, the value every fitted method is "
            "shrunk toward; one branch alone is that branch), a rule with no free choice, so that comparing the "
            "subsets adds no search inside each one. The subsets were compared by cross-validation over "
            f"{_fit_rows_text(weights)} on stage 4's folds: the lowest NLL, {label} breaking near-ties where it is "
            "evidence, a "
            f"tie going to the cheaper. Best: **{' + '.join(f'`{b}`' for b in subset.branches)}**, "
            f"{subset.cost:.3g} GMACs per clip, cross-validated NLL {subset.cv.nll:.4f} and {label} "
            f"{100 * subset.cv.accuracy(metric):.1f}%; test top-1 {_accuracy_cells(fused)[0]} (the test split chose "
            "nothing)."
        ),
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


def _ablation_section(cfg: Pipeline, modalities: list[Scored], selected: Scored, weights: dict,
                      fit: dict[str, ScoreTable], paper: bool) -> list[Block]:
    """The paper's ablation beside this run's branches and ensembles (`paper`: where it applies),
    else this run's rows alone. `fit`: each branch's rows the fusion was fitted on."""
    own = _run_rows(cfg, modalities, selected, weights, fit)
    run_rows = (
        "each branch alone, the skeleton branches' ensemble where there are several (the product of the "
        f"temperature-scaled streams, fitted on {_fit_rows_text(weights)}, as the cost section's subsets), and the "
        "ensemble of "
        "every branch (the selected fusion)"
    )
    text, comparable = dataset_description(cfg)
    if not paper:
        return [
            Heading(2, "This run's branches and ensembles (test top-1 %)"),
            Paragraph(f"Test top-1 % with its 95% interval on {text}: {run_rows}."),
            Table(["scores", f"this run ({cfg.name})", "from"], [[r[0], r[2], r[4]] for r in own]),
        ]
    variants = read_ablation()
    results = {variant.name: _variant_scores(cfg, variant) for variant in variants}
    rows = []
    for variant in variants:
        path, test = results[variant.name]
        step = variant.step_from
        rows.append([
            variant.label,
            _num(variant.paper),
            _accuracy_cells(test)[0] if test is not None else "—",
            _step_change(test, results[step][1]) if step else "",
            _rel(cfg, path) if path else "—",
        ])
    rows += own
    note = "" if comparable else " Not comparable: different data (see the top of the report)."
    return [
        Heading(2, "Ablation (paper: NTU60 X-Sub, top-1 %)"),
        Paragraph(
            f"This run's column is test top-1 % with its 95% interval on {text}.{note} Variants come from "
            "`<workdir>/ablation/<variant>/` (filled by `make ablation`: the RGB steps without CCL, then STAA with "
            "CCL, and the skeleton branch without and with CCL); `pose` and `full` fall back to the main run. "
            "The step column is the change against the row the step adds to, on the same test clips (paired "
            "bootstrap interval, McNemar's exact p). — means the run does not exist yet. The paper reports CCL "
            f"only inside the full model. The last rows are this run's: {run_rows}."
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


def _run_rows(cfg: Pipeline, modalities: list[Scored], selected: Scored, weights: dict,
              fit: dict[str, ScoreTable]) -> list[list[str]]:
    """The ablation's rows of this run: a row per branch, the skeleton branches' ensemble, the whole ensemble."""
    rows = []
    for m in modalities:
        section = BRANCHES[m.branch].section(cfg)
        ccl = "+CCL" if section.ccl.weight > 0 else ", no CCL"
        network = (f"{cfg.crops.mode} crop, {section.model.block}" if m.branch in VIDEO_BRANCHES
                   else f"CTR-GCN {section.model.stream}")
        rows.append([f"{m.name} branch of this run ({network}{ccl}; no fusion)", "—",
                     _accuracy_cells(m.table.rows("test"))[0], "", _rel(cfg, cfg.paths.scores / f"{m.branch}.parquet")])
    streams = [m for m in modalities if m.branch not in VIDEO_BRANCHES]
    if len(streams) > 1:
        fitted = subset_fusion({m.branch: fit[m.branch].logits for m in streams},
                               fit[streams[0].branch].labels, tuple(m.branch for m in streams))
        test = streams[0].table.rows("test")
        ensemble = replace(test, logits=fitted.apply({m.branch: m.table.rows("test").logits for m in streams}))
        rows.append([f"Skeleton ensemble of this run ({' + '.join(m.branch for m in streams)}, product of the "
                     "temperature-scaled streams)", "—", _accuracy_cells(ensemble)[0] if test.ids else "—", "",
                     "—"])
    if len(modalities) > 1:
        rows.append([f"Ensemble of this run's {len(modalities)} branches (selected fusion `{weights['selected']}`)",
                     "—", _accuracy_cells(selected.table.rows("test"))[0], "",
                     _rel(cfg, cfg.paths.fusion / f"{FUSED}.parquet")])
    return rows


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


def _accuracy_cells(rows: ScoreTable, top5: bool = False) -> list[str]:
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


def _paired_cells(a: ScoreTable, b: ScoreTable) -> list[str]:
    """Top-1 of a minus b on the same rows (paired bootstrap interval), the rows only each gets
    right, and McNemar's exact p."""
    comparison = compare_paired(_correct(a), _correct(b), INTERVAL_SEED)
    interval = [comparison.interval.low, comparison.interval.high]
    return [_with_interval(comparison.difference, interval, signed=True), str(comparison.only_a),
            str(comparison.only_b), _p_value(comparison.p_value)]


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
