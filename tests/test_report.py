import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mmfc.config import Pipeline
from mmfc.errors import DataError
from mmfc.fusion.files import open_fusion
from mmfc.fusion.stage import run_fuse
from mmfc.report.plots import curves_figure, plot_confusion, plt
from mmfc.report.stage import read_curves, run_report
from mmfc.scores.format import ScoreTable, read_scores, write_scores

torch.set_num_threads(1)

NTU_NAMES = ["drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup",
             "throw", "sitting down", "standing up (from sitting position)", "clapping", "reading", "writing"]


def _scores(rng, k, n_per_split=(60, 120, 120)):
    splits = [s for s, n in zip(("train", "val", "test"), n_per_split) for _ in range(n)]
    n = len(splits)
    labels = rng.integers(0, k, n)
    onehot = np.eye(k)[labels]
    names = NTU_NAMES if k == len(NTU_NAMES) else [f"class {c:03d}" for c in range(k)]
    ids = [f"S{i:05d}" for i in range(n)]
    rgb = (2.0 * onehot + rng.normal(size=(n, k))).astype(np.float32)
    skel = (1.5 * onehot + rng.normal(size=(n, k))).astype(np.float32)
    return (
        ScoreTable(list(ids), list(splits), labels, rgb, "rgb", "ck-r", "pd", list(names), groups=list(ids)),
        ScoreTable(list(ids), list(splits), labels.copy(), skel, "skel", "ck-s", "pd", list(names), groups=list(ids)),
    )


def _epochs(n, start_acc):
    return [
        {"epoch": e, "lr": 0.01, "train_loss": 2.0 / e, "train_ce": 2.0 / e, "train_ccl": 0.1, "train_top1": min(1, start_acc + 0.1 * e),
         "val_loss": 2.2 / e + 0.1, "val_top1": min(1, start_acc + 0.08 * e), "val_top5": 1.0, "val_mean_class": 0.5,
         "seconds": 1.0}
        for e in range(1, n + 1)
    ]


def _make_run(tmp_path, k=12, name="synth", cv_seed=0):
    cfg = Pipeline(name=name, workdir=str(tmp_path / "run"))
    cfg.data.num_classes = k
    cfg.fusion.cv_seed = cv_seed
    cfg.fusion.grid = 11
    rgb, skel = _scores(np.random.default_rng(k), k)
    write_scores(cfg.paths.scores / "rgb.parquet", rgb)
    write_scores(cfg.paths.scores / "skel.parquet", skel)
    for modality, epochs in (("rgb", 8), ("skel", 12)):
        folder = cfg.paths.train(modality)
        folder.mkdir(parents=True)
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _epochs(epochs, 0.2)))
    run_fuse(cfg)
    return cfg, rgb


def test_report_writes_markdown_html_and_figures(tmp_path):
    cfg, rgb = _make_run(tmp_path)
    # One ablation variant exists; the others must show as missing.
    crop_rgb = rgb.take(np.arange(len(rgb.ids)))
    crop_rgb.logits = crop_rgb.logits.copy()
    crop_rgb.logits[:] = np.eye(12)[crop_rgb.labels] * 5  # a perfect classifier: 100.0 on test
    write_scores(cfg.paths.root / "ablation" / "crop" / "scores" / "rgb.parquet", crop_rgb)
    # The skeleton branch without and with CCL: the second gets every test clip right.
    _, skel = _scores(np.random.default_rng(12), 12)
    write_scores(cfg.paths.root / "ablation" / "skel_noccl" / "scores" / "skel.parquet", skel)
    write_scores(cfg.paths.root / "ablation" / "skel_ccl" / "scores" / "skel.parquet", crop_rgb)
    killed = cfg.paths.report / ".tmp-0123abcd-report.html"  # what a killed run left
    killed.parent.mkdir(parents=True)
    killed.write_text("<html>half")
    run_report(cfg)
    out = cfg.paths.report
    assert not killed.exists()
    for name in ("report.md", "report.html", "confusion.png", "curves.png", "weights.png"):
        assert (out / name).stat().st_size > 0
    md = (out / "report.md").read_text()
    selected = json.loads((cfg.paths.fusion / "weights.json").read_text())["selected"]
    for needle in ("Accuracy (%)", f"fusion: {selected} (selected)", "fusion: adaptive", "fusion: per_class",
                   "fusion: pyskl_1_1", "Most confused class pairs", "not comparable", "synthetic data",
                   f"Fusion method `{selected}` (the selected one", "Fusion selection, cross-validated",
                   f"Selected by `fusion.method = \"auto\"`: **`{selected}`**", "**Guarantee:**",
                   "**oracle**: fixed ratio chosen on test (what peers report)", "McNemar p"):
        assert needle in md
    # Every accuracy of the accuracy table carries an interval that holds it.
    accuracy_rows = [line for line in md.split("## Accuracy (%)")[1].split("###")[0].splitlines()
                     if line.startswith("| ") and not line.startswith(("| scores", "| ---"))]
    assert len(accuracy_rows) == 9  # RGB, skeleton, six fusion methods, the oracle
    for line in accuracy_rows:
        for cell in [c.strip() for c in line.split("|")[2:-1]]:
            if cell != "—":
                value, low, high = map(float, re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", cell).groups())
                assert low <= value <= high
    table = md.split("## Ablation")[1].split("## Published")[0]
    ablation = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table.splitlines()
                if line.startswith("| ") and not line.startswith(("| variant", "| ---"))}
    assert ablation["+crop: plain RGB on skeleton-guided crops"][:3] == ["95.3", "100.0 [100.0, 100.0]", "—"]
    assert ablation["Baseline: plain RGB on whole frames"][1] == "—"
    assert ablation["+crop+STAA (RGB, no CCL)"][1] == "—"
    assert ablation["+crop+STAA+CCL (RGB with CCL)"][:2] == ["—", "—"]
    interval = r"\d+\.\d \[\d+\.\d, \d+\.\d\]"
    assert re.fullmatch(interval, ablation["Full: +CCL and fusion with the skeleton branch (this run's selected fusion)"][1])
    assert re.fullmatch(interval, ablation["Pose: skeleton branch alone (this run's)"][1])
    # The CCL step on the skeleton branch, paired on the same test clips.
    no_ccl, with_ccl = ablation["Skeleton branch without CCL"], ablation["Skeleton branch with CCL"]
    assert with_ccl[1].startswith("100.0") and no_ccl[2] == ""
    gain, p_value = re.fullmatch(r"(\+\d+\.\d) \[.*\], p (\S+)", with_ccl[2]).groups()
    assert float(gain) == pytest.approx(100 - float(no_ccl[1].split()[0]), abs=0.11) and float(p_value) < 1e-3
    html = (out / "report.html").read_text()
    # Self-contained: both figures inlined, nothing fetched from elsewhere.
    assert html.count('src="data:image/png;base64,') == 3
    assert "http" not in html and "<table>" in html
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_report_on_ntu60_xsub_is_marked_comparable(tmp_path):
    cfg, _ = _make_run(tmp_path, name="ntu60-xsub")
    cfg.data.root = "/data/nturgbd"
    cfg.data.num_classes = 60  # only the description reads it; the scores have 12 classes
    run_report(cfg)
    md = (cfg.paths.report / "report.md").read_text()
    assert "not comparable" not in md and "protocol of the paper's numbers" in md


def _sections(md: str) -> list[str]:
    return [line[3:] for line in md.splitlines() if line.startswith("## ")]


def test_a_report_on_own_videos_leaves_out_what_does_not_apply(tmp_path):
    cfg, _ = _make_run(tmp_path, k=9, name="own-videos")
    cfg.data.source, cfg.data.root, cfg.data.num_classes = "videos", "/data/clips.csv", 9
    run_report(cfg)
    md = (cfg.paths.report / "report.md").read_text()
    # 9 classes: no top-5 (of 9, it is right by construction), and no NTU protocol for a CSV.
    assert "top-5" not in md.split("## Accuracy (%)")[1].split("## ")[0].replace("no top-5 with 10 classes", "")
    assert "| scores | val top-1 | val mean class | test top-1 | test mean class |" in md
    assert "protocol" not in md and "source `videos`, a CSV file, split by its split column" in md
    assert _sections(md) == [
        "Accuracy (%)", "Fusion selection, cross-validated inside validation",
        "Per-class accuracy (test split, %)", "Fusion weights per branch",
        "Cost (multiply-adds per clip, as configured) and accuracy", "Confusion matrix", "Training curves",
        "This run's branches and ensembles (test top-1 %)"]
    assert "The paper's ablation and the published results (NTU RGB+D 60, FineGym) are left out" in md
    # Per-class accuracy: every class, each branch and the selected fusion, right / samples.
    table = md.split("## Per-class accuracy (test split, %)")[1].split("## ")[0]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines() if line.startswith("| class 0")]
    assert len(rows) == 9 and sum(int(r[1]) for r in rows) == 120
    for row in rows:
        for cell in row[2:]:
            value, right, total = re.fullmatch(r"(\S+) \((\d+)/(\d+)\)", cell).groups()
            assert total == row[1] and float(value) == pytest.approx(100 * int(right) / int(total), abs=0.05)


def test_published_results_show_for_their_data_and_the_ablation_for_ntu60_xsub_or_its_variants(tmp_path):
    cfg, rgb = _make_run(tmp_path, name="ntu60-xview")
    cfg.data.root, cfg.data.num_classes, cfg.data.protocol = "/data/nturgbd", 60, "xview"
    run_report(cfg)
    md = (cfg.paths.report / "report.md").read_text()
    assert _sections(md)[-1] == "Published results (top-1 %)" and "Ablation (paper: NTU60 X-Sub, top-1 %)" not in md
    assert "this run's data is the NTU60 X-View column" in md and "protocol `xview`" in md
    assert "| scores | val top-1 | val top-5 | val mean class |" in md  # 12 classes: top-5 shown
    # A variant trained by `make ablation` brings the ablation table back, marked not comparable.
    cfg.data.protocol = "xsub"
    cfg.data.num_classes = 12
    write_scores(cfg.paths.root / "ablation" / "crop" / "scores" / "rgb.parquet", rgb)
    run_report(cfg)
    md = (cfg.paths.report / "report.md").read_text()
    assert _sections(md)[-1] == "Ablation (paper: NTU60 X-Sub, top-1 %)" and "Published results" not in md
    assert "**this run's numbers are on different data and are not comparable to it**" in md


def test_training_losses_are_drawn_on_a_log_axis():
    history = _epochs(8, 0.2)
    history[3]["train_loss"] = 35.0  # one spike, as a real run had in epoch 4
    figure = curves_figure({"rgb": history, "skel": history})
    loss_axis, accuracy_axis = figure.axes
    assert loss_axis.get_yscale() == "log" and accuracy_axis.get_yscale() == "linear"
    low, high = loss_axis.get_ylim()
    assert low < min(r["val_loss"] for r in history) and high >= 35.0
    plt.close(figure)


def test_missing_inputs_name_the_file_and_the_stage(tmp_path):
    cfg, _ = _make_run(tmp_path)
    (cfg.paths.train("skel") / "metrics.jsonl").unlink()
    with pytest.raises(DataError, match=r"train/skel/metrics.jsonl: missing; made by `mmfc stage train --modality skel`"):
        run_report(cfg)
    (cfg.paths.fusion / "weights.json").unlink()
    with pytest.raises(DataError, match=r"fusion/weights.json: missing: this run has no fitted fusion yet; made by `mmfc stage fuse`"):
        run_report(cfg)


def test_broken_metrics_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(_epochs(1, 0.1)[0]) + "\n{not json\n")
    with pytest.raises(DataError, match="line 2 is not JSON"):
        read_curves(path)
    path.write_text(json.dumps({"epoch": 1}) + "\n")
    with pytest.raises(DataError, match="line 1 lacks"):
        read_curves(path)
    path.write_text(json.dumps({**_epochs(1, 0.1)[0], "val_top1": 85.0}) + "\n")
    with pytest.raises(DataError, match="expected a fraction"):
        read_curves(path)


def test_confusion_png_renders_for_many_classes(tmp_path):
    rng = np.random.default_rng(0)
    k = 120
    labels = rng.integers(0, k, 3000)
    pred = np.where(rng.random(3000) < 0.7, labels, rng.integers(0, k, 3000))
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    names = [f"class {c}: {'a long action name ' * 2}" for c in range(k)]
    plot_confusion(cm, names, "120 classes", tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# The fusion files as one set


def test_a_killed_fuse_rerun_leaves_the_previous_set_whole(tmp_path, monkeypatch):
    from mmfc.fusion import stage as fusion_stage

    cfg, _ = _make_run(tmp_path)
    before = {p.name: p.read_bytes() for p in cfg.paths.fusion.iterdir()}
    cfg.fusion.method = "pyskl_1_2"
    real_write, written = fusion_stage.write_scores, []

    def killed_after_two(path, table):
        written.append(path)
        if len(written) == 3:
            raise KeyboardInterrupt
        real_write(path, table)

    monkeypatch.setattr(fusion_stage, "write_scores", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_fuse(cfg)
    monkeypatch.setattr(fusion_stage, "write_scores", real_write)
    assert {p.name: p.read_bytes() for p in cfg.paths.fusion.iterdir()} == before
    run_report(cfg)  # the old set, whole
    # A kill past the cleanup of atomic_path (SIGKILL) leaves the unfinished folder; the next run clears it.
    leftover = cfg.paths.root / ".tmp-0123abcd-fusion"
    shutil.copytree(cfg.paths.fusion, leftover)
    run_fuse(cfg)
    assert not leftover.exists()
    assert open_fusion(cfg.paths.fusion).selected == "pyskl_1_2"


def test_a_mixed_fusion_set_is_refused_by_the_report(tmp_path):
    cfg, _ = _make_run(tmp_path)
    other, _ = _make_run(tmp_path / "other", cv_seed=1)
    # What an interrupted writer of the old, file-by-file stage left: one method's file from another run
    # (one with other settings: a run whose settings shape the same results writes the same bytes).
    shutil.copyfile(other.paths.fusion / "global.parquet", cfg.paths.fusion / "global.parquet")
    with pytest.raises(DataError, match=r"fusion/global.parquet: not the file written with .*weights.json"):
        run_report(cfg)


def test_a_reader_between_two_files_of_a_swapped_set_is_refused(tmp_path):
    cfg, _ = _make_run(tmp_path)
    fusion = open_fusion(cfg.paths.fusion)
    fusion.scores("fused")
    cfg.fusion.method = "pyskl_1_2"
    run_fuse(cfg)  # the folder is swapped while the reader holds the old weights
    with pytest.raises(DataError, match="holds files of two fusion runs"):
        fusion.scores("global")


def test_the_ablation_full_row_reads_its_run_as_a_set(tmp_path):
    cfg, _ = _make_run(tmp_path)
    full, _ = _make_run(tmp_path / "ablation-full")
    shutil.copytree(full.paths.fusion, cfg.paths.root / "ablation" / "full" / "fusion")
    run_report(cfg)
    fused = cfg.paths.root / "ablation" / "full" / "fusion" / "fused.parquet"
    shutil.copyfile(cfg.paths.fusion / "rgb_alone.parquet", fused)  # another method's scores as "Full"
    with pytest.raises(DataError, match=rf"{fused}: not the file written with"):
        run_report(cfg)


def test_fusion_older_than_its_inputs_or_without_digests_is_refused(tmp_path):
    cfg, rgb = _make_run(tmp_path)
    rgb.checkpoint_digest = "retrained"
    write_scores(cfg.paths.scores / "rgb.parquet", rgb)
    with pytest.raises(DataError, match=r"weights.json: fitted on rgb scores of checkpoint ck-r, but .*rgb.parquet now "
                                        r"holds those of checkpoint retrained; rerun `mmfc stage fuse`"):
        run_report(cfg)
    run_fuse(cfg)
    run_report(cfg)
    weights_path = cfg.paths.fusion / "weights.json"
    weights = json.loads(weights_path.read_text())
    del weights["files"]
    weights_path.write_text(json.dumps(weights))
    with pytest.raises(DataError, match="lists no digests of its files"):
        run_report(cfg)


# ---------------------------------------------------------------------------------------------
# The ablation, declared once (mmfc/report/ablation.toml) for the report and `make ablation`


def test_every_ablation_variant_is_a_valid_pipeline_and_steps_from_a_variant():
    from mmfc.config import load_pipeline
    from mmfc.report.ablation import read_ablation

    variants = read_ablation()
    assert [v.name for v in variants][:3] == ["baseline", "pose", "crop"] and variants[-1].scores == "fusion"
    for variant in variants:
        load_pipeline(Path(__file__).parents[1] / "pipelines" / "synth.toml", list(variant.overrides))
    assert {v.name for v in variants if not v.trained} == {"pose", "full"}  # the main run's scores


def test_a_table_entry_that_does_not_fit_is_named(tmp_path):
    from mmfc.report.ablation import read_ablation

    table = tmp_path / "ablation.toml"
    table.write_text('[[variant]]\nname = "a"\nlabel = "A"\nscores = "rgb"\nstep_form = "b"\n')
    with pytest.raises(ValueError, match=r"ablation.toml: variant 1 \('a'\) has unknown keys \['step_form'\]"):
        read_ablation(table)
    table.write_text('[[variant]]\nname = "a"\nlabel = "A"\nscores = "rgb"\nstep_from = "b"\n')
    with pytest.raises(ValueError, match="variant 'a' steps from 'b', which is no variant"):
        read_ablation(table)


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_ablation_trains_the_variants_of_the_table(tmp_path):
    from mmfc.report.ablation import read_ablation

    root = Path(__file__).parents[1]
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / ".installed").touch()
    os.utime(tmp_path / "venv" / ".installed", (time.time() + 60,) * 2)  # newer: setup has nothing to do
    result = subprocess.run(["make", "-n", "-f", str(root / "Makefile"), f"PIPELINE={root / 'pipelines' / 'synth.toml'}",
                             f"ABLATION_TABLE={root / 'mmfc' / 'report' / 'ablation.toml'}", f"VENV={tmp_path / 'venv'}",
                             "MMFC=mmfc", "ablation"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    trained = {}
    for line in result.stdout.splitlines():
        if line.startswith("mmfc stage train") and "ablation/" in line:
            args = line.split()
            workdir = next(a for a in args if a.startswith("workdir="))
            trained[workdir.rsplit("/", 1)[1]] = (args[args.index("--modality") + 1], line)
    variants = [v for v in read_ablation() if v.trained]
    assert sorted(trained) == sorted(v.name for v in variants)
    for v in variants:
        modality, line = trained[v.name]
        assert modality == v.scores and all(f"--set {o}" in line for o in v.overrides)
        assert ("crops_from=" in line) != v.own_crops


# ---------------------------------------------------------------------------------------------
# Any number of branches, and one


def _branch_run(tmp_path, strengths: dict[str, float], k=12, branches=None):
    """A run whose branches score constructed logits: `strength` times the one-hot label plus
    unit noise (0: a branch of pure noise), each branch with its own noise; stage 4 not run."""
    cfg = Pipeline(name="synth", workdir=str(tmp_path / "run"), branches=list(branches or strengths))
    cfg.data.num_classes = k
    rng = np.random.default_rng(1)
    template, _ = _scores(rng, k)
    onehot = np.eye(k)[template.labels]
    for number, (branch, strength) in enumerate(strengths.items()):
        logits = (strength * onehot + rng.normal(size=onehot.shape)).astype(np.float32)
        table = ScoreTable(list(template.ids), list(template.splits), template.labels.copy(), logits, branch,
                           f"ck-{number}", "pd", list(template.class_names), groups=list(template.ids))
        write_scores(cfg.paths.scores / f"{branch}.parquet", table)
        folder = cfg.paths.train(branch)
        folder.mkdir(parents=True)
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _epochs(4, 0.2)))
    return cfg


def _table_rows(md: str, heading: str) -> dict[str, list[str]]:
    table = md.split(heading)[1].split("\n#")[0]
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| ---") and line.count("|") > 2}


def test_five_branches_are_fused_weighed_costed_and_ablated(tmp_path):
    streams = ["joint", "bone", "joint_motion", "bone_motion"]
    cfg = _branch_run(tmp_path, {"rgb": 2.0, "joint": 1.5, "bone": 1.5, "joint_motion": 1.0, "bone_motion": 0.0})
    run_fuse(cfg)
    weights = json.loads((cfg.paths.fusion / "weights.json").read_text())
    assert weights["branches"] == ["rgb", *streams] and weights["left_out"] == {}
    assert {"ctrgcn", "pyskl_1_1_1_1_1", "global", "adaptive", "per_class"} <= set(weights["methods"])
    # The branch of noise carries next to none of the fused evidence, whatever its weight.
    assert abs(weights["methods"]["global"]["branch_shares"]["bone_motion"]) < 0.05
    # Named as NTU60 X-Sub, where the paper's ablation and the published results apply.
    cfg.name, cfg.data.root, cfg.data.num_classes = "ntu60-xsub", "/data/nturgbd", 60
    run_report(cfg)
    md = (cfg.paths.report / "report.md").read_text()
    assert "Branches fused: `rgb`, `joint`, `bone`, `joint_motion`, `bone_motion`" in md
    assert "**oracle**" not in md  # a ratio of two branches only
    against = _table_rows(md, "### Each branch against the fused result")
    assert list(against) == ["branch", "RGB", "Joint", "Bone", "Joint motion", "Bone motion"]
    assert float(against["Bone motion"][1].split()[0]) < 0  # noise against the fusion
    assert (cfg.paths.report / "weights.png").stat().st_size > 0 and "`branch_shares`" in md
    cost = _table_rows(md, "## Cost (multiply-adds per clip, as configured) and accuracy")
    assert float(cost["ensemble of the 5 branches (`" + weights["selected"] + "`)"][1]) == pytest.approx(
        sum(float(cost[label][1]) for label in ("RGB", "Joint", "Bone", "Joint motion", "Bone motion")), rel=0.01)
    best = re.search(r"Best: \*\*(.+?)\*\*, (\S+) GMACs per clip", md)
    assert best and float(best.group(2)) <= float(cost["RGB"][1])
    ablation = _table_rows(md, "## Ablation")
    assert "Bone motion branch of this run (CTR-GCN bone_motion+CCL; no fusion)" in ablation
    ensemble = ablation["Skeleton ensemble of this run (joint + bone + joint_motion + bone_motion, product of the "
                        "temperature-scaled streams)"]
    assert re.fullmatch(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", ensemble[1])
    assert f"Ensemble of this run's 5 branches (selected fusion `{weights['selected']}`)" in ablation
    # The paper's ablation and the published results are still there.
    assert "Baseline: plain RGB on whole frames" in ablation and "## Published results" in md


def test_one_branch_is_the_fusion_and_the_report_says_so(tmp_path):
    cfg = _branch_run(tmp_path, {"skel": 1.5})
    run_fuse(cfg)
    fusion = open_fusion(cfg.paths.fusion)
    assert fusion.weights["branches"] == ["skel"] and fusion.candidates == ["skel_alone"]
    assert fusion.selected == "skel_alone"
    # Temperature-scaled: the same prediction for every sample.
    fused, skel = fusion.scores("fused"), read_scores(cfg.paths.scores / "skel.parquet")
    assert (fused.aligned_to(skel.ids).logits.argmax(1) == skel.logits.argmax(1)).all()
    run_report(cfg)
    md = (cfg.paths.report / "report.md").read_text()
    assert "One branch, `skel`: the fusion is that branch, temperature-scaled" in md
    assert "Skeleton (selected: `skel_alone`)" in md
    assert not (cfg.paths.report / "weights.png").exists() and "Fusion weights per branch" not in md
    assert "Ensemble of this run" not in md and "Skeleton branch of this run" in md
    assert "Best: **`skel`**" in md  # the budget: one RGB branch as configured


def test_a_declared_video_branch_on_data_without_videos_is_left_out(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mmfc.fusion import stage as fusion_stage

    cfg = _branch_run(tmp_path, {"joint": 1.5, "bone": 1.0}, branches=["rgb", "joint", "bone"])
    monkeypatch.setattr(fusion_stage, "open_crops", lambda path: SimpleNamespace(has_video=True))
    with pytest.raises(DataError, match=r"scores/rgb.parquet: missing; written by `mmfc stage scores --modality rgb`"):
        run_fuse(cfg)
    monkeypatch.setattr(fusion_stage, "open_crops", lambda path: SimpleNamespace(has_video=False))
    run_fuse(cfg)
    weights = json.loads((cfg.paths.fusion / "weights.json").read_text())
    assert weights["branches"] == ["joint", "bone"] and list(weights["left_out"]) == ["rgb"]
    run_report(cfg)
    md = (cfg.paths.report / "report.md").read_text()
    assert "Declared but left out: `rgb`, not supported: it learns from video frames" in md
