"""The first figures on real recordings: mmfc's skeleton branch (joint stream) on NW-UCLA and Penn
Action, and on NW-UCLA the official CTR-GCN code beside it (docs/benchmarks.md, "16. Real recordings").

Parts (--parts, all three by default):
  nw-ucla, penn-action  the pipeline as shipped (pipelines/<part>.toml; only the data folder, the
                        workdir and the threads set): stages 1, 2 and 3, then test top-1 from
                        stage 3's score file with its 95% bootstrap interval (mmfc/stats.py).
  side-by-side          NW-UCLA at a reduced schedule (--width, --epochs, --warmup, --step, in
                        CTR-GCN's epochs of 5 passes): mmfc's joint stream and the official
                        CTR-GCN code (--ctrgcn, a local checkout of Uason-Chen/CTR-GCN) with the
                        same width, epochs, batch, optimiser schedule and threads, one training
                        process at a time, the two alternating seed by seed; the median test
                        top-1 of --seeds seeds and the seconds per training epoch of each.

    .venv/bin/python bench/bench_real.py --ctrgcn ../peers/CTR-GCN        # everything (make bench-real)
    .venv/bin/python bench/bench_real.py --parts side-by-side --ctrgcn ../peers/CTR-GCN

Neither side picks a checkpoint on test: mmfc scores the epoch its validation split chose (a
tenth of the training recordings), the official code is evaluated after its final epoch. Every
run keeps its files under --out; a rerun reuses the runs that finished (mmfc's `--resume`, the
official runs' result files) and redoes the rest.

The official code runs from the checkout, never copied: its model (model/ctrgcn.py), graph
(graph/ucla.py) and NW-UCLA feeder (feeders/feeder_ucla.py) as they are, imported from there in
a child process whose working directory is a fresh folder where data/NW-UCLA/all_sqe, the path
the feeder reads, links to the data. Two things come from outside rather than from edits to
their files: numpy 2's missing alias np.int, which their feeder uses, and the width: their model
fixes `base_channel = 64`, and that one line is read from CTRGCN_BASE_CHANNEL as the module
loads. The training loop is main.py's, minimal: SGD with Nesterov momentum 0.9, the learning
rate set once per epoch (linear warm-up, then steps of 0.1), cross-entropy.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# This checkout's mmfc, the code its `python -m mmfc` stages (run from REPO) are, whatever is installed.
sys.path.insert(0, str(REPO))
REALDATA = REPO.parent / "shared" / "realdata"
PARTS = ("nw-ucla", "penn-action", "side-by-side")
# Where each real set lies under --data, and what its data source reads.
DATA_FOLDERS = {"nw-ucla": "nw_ucla", "penn-action": "penn_action"}
# The branch every figure here is of: the joint stream, the one the published single-stream
# figures and the official code's default configuration train.
BRANCH = "joint"

# CTR-GCN's NW-UCLA recipe (config/ucla/default.yaml and main.py at e13d758): an epoch is 5
# passes over the 1,020 training clips (the feeder's repeat), batch 16, lr 0.1, weight decay
# 1e-4, Nesterov momentum 0.9; 65 epochs, 5 of warm-up, a step at 50.
PASSES = 5
BATCH = 16
BASE_LR = 0.1
WEIGHT_DECAY = 1e-4
MOMENTUM = 0.9
TEST_BATCH = 64
FULL_SCHEDULE = (65, 5, 50)  # epochs, warm-up epochs, step epoch

# What the bench imports from a checkout, and the one line it reads the width into.
CHECKOUT_FILES = ("model/ctrgcn.py", "graph/__init__.py", "graph/ucla.py", "graph/tools.py",
                  "feeders/__init__.py", "feeders/feeder_ucla.py")
WIDTH_LINE = "base_channel = 64"
WIDTH_VARIABLE = "CTRGCN_BASE_CHANNEL"

PUBLISHED = (
    ("CTR-GCN (Chen et al., ICCV 2021)", 96.5),
    ("InfoGCN (Chi et al., CVPR 2022)", 97.0),
    ("HD-GCN (Lee et al., ICCV 2023)", 96.9),
)
PUBLISHED_NOTE = ("ensembles of 4 or more streams (joint, bone and their motions) at the full schedule (65 epochs of "
                  "5 passes, width 64): not comparable with one stream at a short one")
# The best pose-only figure found for Penn Action: estimated 2D poses, pre-trained on Posetics.
PENN_PUBLISHED = (("UNIK (Yang et al., BMVC 2021), pre-trained on Posetics", 97.9),)


class CheckoutError(Exception):
    """A --ctrgcn path that is not a usable CTR-GCN checkout."""


class RunFailed(Exception):
    """A stage or training process of the bench that did not finish."""


def run_logged(command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    """Run `command` from the repository, its output appended to `log`; RunFailed naming the log."""
    with open(log, "a") as out:
        done = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        raise RunFailed(f"{' '.join(command[1:5])} ... failed (exit status {done.returncode}); its output: {log}")


@dataclass(frozen=True)
class CtrGcnCheckout:
    """An unpacked copy of Uason-Chen/CTR-GCN (e13d758), checked before anything trains."""

    root: Path

    @classmethod
    def at(cls, path: str | Path) -> CtrGcnCheckout:
        """The checkout at `path`; CheckoutError naming the path and what is wrong with it."""
        root = Path(path).expanduser()
        expected = "give --ctrgcn the folder of an unpacked Uason-Chen/CTR-GCN (e13d758)"
        if not root.is_dir():
            raise CheckoutError(f"{root}: no such folder; {expected}")
        missing = [name for name in CHECKOUT_FILES if not (root / name).is_file()]
        if missing:
            raise CheckoutError(f"{root}: not a CTR-GCN checkout, {missing[0]} is missing; {expected}")
        found = (root / "model" / "ctrgcn.py").read_text(encoding="utf-8", errors="replace").count(WIDTH_LINE)
        if found != 1:
            raise CheckoutError(f"{root / 'model' / 'ctrgcn.py'}: the line {WIDTH_LINE!r} occurs {found} times, "
                                f"not once as at e13d758, so the width cannot be set; {expected}")
        return cls(root)

    def load(self) -> tuple[type, type]:
        """(Model, Feeder) of the checkout, for a process of their own: the checkout's packages
        (model, graph, feeders) go first on sys.path, numpy gets np.int back, and no bytecode is
        written into the checkout. The model reads its width from CTRGCN_BASE_CHANNEL."""
        import numpy as np

        if WIDTH_VARIABLE not in os.environ:
            raise CheckoutError(f"set {WIDTH_VARIABLE} to the width the official model is to have")
        sys.dont_write_bytecode = True
        np.int = int  # removed in numpy 1.24; their feeder's test path uses it
        sys.path.insert(0, str(self.root))
        feeder = importlib.import_module("feeders.feeder_ucla")
        path = self.root / "model" / "ctrgcn.py"
        source = path.read_text(encoding="utf-8").replace(
            WIDTH_LINE, f"base_channel = int(__import__('os').environ[{WIDTH_VARIABLE!r}])")
        model = types.ModuleType("model.ctrgcn")
        model.__file__ = str(path)
        exec(compile(source, str(path), "exec"), model.__dict__)  # noqa: S102 (their file, one line patched)
        return model.Model, feeder.Feeder


@dataclass(frozen=True)
class Schedule:
    """A schedule in CTR-GCN's epochs of PASSES passes, and the width of both networks."""

    width: int
    epochs: int
    warmup: int
    step: int

    def describe(self) -> str:
        warmup = f"warm-up {self.warmup}, " if self.warmup else "no warm-up, "
        return f"width {self.width}, {self.epochs} epochs of {PASSES} passes ({warmup}lr x0.1 at {self.step}), batch {BATCH}"

    def mmfc_settings(self) -> list[str]:
        """The same schedule in mmfc's settings, where an epoch is one pass. Only a warm-up
        differs in form: CTR-GCN raises the rate once per epoch, (e + 1) / warm-up of it, mmfc
        at every step from 0, over the same passes."""
        return [f"skel.model.base_channels={self.width}", f"skel.train.epochs={self.epochs * PASSES}",
                f"skel.train.warmup_epochs={self.warmup * PASSES}", f"skel.train.milestones=[{self.step * PASSES}]",
                'skel.train.schedule="step"', f"skel.train.batch_size={BATCH}", f"skel.train.lr={BASE_LR}",
                f"skel.train.weight_decay={WEIGHT_DECAY}", f"skel.train.momentum={MOMENTUM}",
                "skel.train.nesterov=true"]


@dataclass
class TestResult:
    """One trained network on the test clips."""

    system: str
    seed: int
    correct: dict[str, bool]  # test clip id -> predicted right
    pass_seconds: list[float]  # wall seconds of each training pass (forward, backward, loading)
    pass_clips: float  # clips one training pass learns from (whole batches)
    total_seconds: float  # the whole training, evaluation and checkpoints included

    def top1(self, ids: list[str] | None = None) -> float:
        ids = list(self.correct) if ids is None else ids
        return sum(self.correct[i] for i in ids) / len(ids)

    def seconds_per_epoch(self, epoch_clips: float) -> float:
        """Median wall seconds of a training pass, scaled to an epoch of `epoch_clips` clips."""
        return statistics.median(self.pass_seconds) * epoch_clips / self.pass_clips


# ---------------------------------------------------------------------------------------------
# The official code, in a child process of its own


def official_train(checkout: CtrGcnCheckout, data_root: Path, schedule: Schedule, seed: int, threads: int,
                   workers: int, out: Path) -> None:
    """Train and test the official code as main.py does (one process; the caller sets the width
    in the environment) and write the result to `out`."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    model_class, feeder_class = checkout.load()
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "data" / "NW-UCLA").mkdir(parents=True)
        (Path(folder) / "data" / "NW-UCLA" / "all_sqe").symlink_to(data_root.resolve() / "all_sqe")
        os.chdir(folder)  # the feeder reads data/NW-UCLA/all_sqe/ from here, all of it as it starts
        try:
            # main.py's init_seed, before the data and the model are made.
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            train_set = feeder_class(data_path="joint", label_path="train", repeat=PASSES, random_choose=True,
                                     window_size=52)
            test_set = feeder_class(data_path="joint", label_path="val")
        finally:
            os.chdir(here)
    model = model_class(num_class=10, num_point=20, num_person=1, graph="graph.ucla.Graph",
                        graph_args={"labeling_mode": "spatial"})
    loader = torch.utils.data.DataLoader(train_set, batch_size=BATCH, shuffle=True, num_workers=workers,
                                         drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=BASE_LR, momentum=MOMENTUM, nesterov=True,
                                weight_decay=WEIGHT_DECAY)
    seconds = []
    started = time.perf_counter()
    for epoch in range(schedule.epochs):
        # main.py's adjust_learning_rate
        if epoch < schedule.warmup:
            lr = BASE_LR * (epoch + 1) / schedule.warmup
        else:
            lr = BASE_LR * 0.1 ** int(epoch >= schedule.step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        start = time.perf_counter()
        for data, label, _ in loader:
            loss = torch.nn.functional.cross_entropy(model(data.float()), label.long())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
        print(f"official epoch {epoch + 1}/{schedule.epochs}: {seconds[-1]:.1f} s, loss {loss.item():.3f}", flush=True)
    model.eval()
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=TEST_BATCH, shuffle=False, num_workers=workers)
    predicted = []
    with torch.no_grad():
        for data, _, _ in test_loader:
            predicted += model(data.float()).argmax(1).tolist()
    correct = {entry["file_name"]: int(entry["label"]) - 1 == guess for entry, guess in zip(test_set.data_dict, predicted)}
    out.write_text(json.dumps({"correct": correct, "pass_seconds": [s / PASSES for s in seconds],
                               "pass_clips": len(loader) * BATCH / PASSES, "total_seconds": time.perf_counter() - started}))


def run_official(checkout: CtrGcnCheckout, data_root: Path, schedule: Schedule, seed: int, threads: int,
                 workers: int, folder: Path) -> TestResult:
    result = folder / "result.json"
    if not result.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, __file__, "official", "--ctrgcn", str(checkout.root), "--data-root", str(data_root),
                   "--width", str(schedule.width), "--epochs", str(schedule.epochs), "--warmup", str(schedule.warmup),
                   "--step", str(schedule.step), "--seed", str(seed), "--threads", str(threads),
                   "--workers", str(workers), "--result", str(result)]
        (folder / "log.txt").unlink(missing_ok=True)
        run_logged(command, folder / "log.txt", env={**os.environ, WIDTH_VARIABLE: str(schedule.width)})
    saved = json.loads(result.read_text())
    return TestResult("official", seed, saved["correct"], saved["pass_seconds"], saved["pass_clips"],
                      saved["total_seconds"])


# ---------------------------------------------------------------------------------------------
# mmfc, through its stage commands


def run_stage(stage: str, pipeline: Path, settings: list[str], log: Path) -> None:
    command = [sys.executable, "-m", "mmfc", "stage", stage, "--pipeline", str(pipeline)]
    if stage in ("train", "scores"):
        command += ["--modality", BRANCH]
    if stage == "train":
        command.append("--resume")
    for setting in settings:
        command += ["--set", setting]
    run_logged(command, log)


def run_mmfc(pipeline: Path, workdir: Path, settings: list[str], seed: int, crops_from: Path | None = None) -> TestResult:
    """Stages 1 (unless `crops_from` holds them), 2 and 3 of `pipeline`; the test rows of the score file."""
    from mmfc.config import load_pipeline
    from mmfc.scores.format import read_scores

    workdir.mkdir(parents=True, exist_ok=True)
    settings = [f"workdir={json.dumps(str(workdir))}", "jobs.n_jobs=1", f"skel.train.seed={seed}", *settings]
    if crops_from is not None:
        settings.append(f"crops_from={json.dumps(str(crops_from))}")
    else:
        run_stage("crops", pipeline, settings, workdir / "log.txt")
    run_stage("train", pipeline, settings, workdir / "log.txt")
    run_stage("scores", pipeline, settings, workdir / "log.txt")
    table = read_scores(workdir / "scores" / f"{BRANCH}.parquet")
    predicted = table.logits.argmax(1)
    correct = {sample: bool(guess == label) for sample, split, guess, label
               in zip(table.ids, table.splits, predicted, table.labels) if split == "test"}
    epochs = [json.loads(line) for line in (workdir / "train" / BRANCH / "metrics.jsonl").read_text().splitlines()]
    batch = load_pipeline(pipeline, settings).skel.train.batch_size
    pass_clips = sum(split == "train" for split in table.splits) // batch * batch
    return TestResult("mmfc", seed, correct, [row["train_seconds"] for row in epochs], pass_clips,
                      sum(row["seconds"] for row in epochs))


# ---------------------------------------------------------------------------------------------
# The tables

SET_NAMES = {"nw-ucla": "NW-UCLA", "penn-action": "Penn Action"}


def percent(value: float) -> str:
    return f"{100 * value:.1f}"


def interval_text(result: TestResult, ids: list[str]) -> str:
    from mmfc.stats import accuracy_interval

    hits = sum(result.correct[i] for i in ids)
    ci = accuracy_interval(hits, len(ids), seed=0)
    return f"{percent(hits / len(ids))} ({percent(ci.low)}-{percent(ci.high)})"


def shipped_row(part: str, result: TestResult, schedule: str) -> str:
    ids = sorted(result.correct)
    return (f"| {SET_NAMES[part]} | mmfc joint stream, `pipelines/{part}.toml` as shipped | {schedule} | "
            f"{interval_text(result, ids)} | {len(ids)} | {result.total_seconds / 60:.0f} min |")


MMFC = "mmfc joint stream"
OFFICIAL = "official CTR-GCN code"
NO_CCL = "mmfc joint stream without its contrastive loss"


def side_by_side_rows(systems: dict[str, list[TestResult]], schedule: Schedule) -> list[str]:
    """Each system's median seed on the test clips all score, and its seconds per epoch as
    CTR-GCN counts one (5 passes over its 1,020 clips); then each against the official code."""
    ids = sorted(set.intersection(*(set(r.correct) for results in systems.values() for r in results)))
    epoch_clips = systems[OFFICIAL][0].pass_clips * PASSES
    rows, medians = [], {}
    for name, results in systems.items():
        middle = sorted(results, key=lambda r: r.top1(ids))[len(results) // 2]
        seconds = statistics.median(r.seconds_per_epoch(epoch_clips) for r in results)
        medians[name] = middle.top1(ids), seconds
        seeds = ", ".join(f"{percent(r.top1(ids))} / {r.seconds_per_epoch(epoch_clips):.0f} s"
                          for r in sorted(results, key=lambda r: r.seed))
        rows.append(f"| {name} | {schedule.describe()} | {interval_text(middle, ids)} | {seconds:.0f} s | {seeds} |")
    theirs, their_seconds = medians[OFFICIAL]
    for name, (ours, our_seconds) in medians.items():
        if name != OFFICIAL:
            rows.append(f"| {name} - official | | {100 * (ours - theirs):+.1f} points | {our_seconds / their_seconds:.2f}x | |")
    return rows


def print_table(title: str, header: str, rows: list[str], notes: list[str]) -> None:
    print(f"\n{title}\n\n{header}\n|{'---|' * (header.count('|') - 1)}")
    for row in rows:
        print(row)
    for note in notes:
        print(f"\n{note}")


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    try:
        return bench(argv)
    except (CheckoutError, RunFailed) as exc:
        print(f"bench_real: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, CheckoutError) else 1


def bench(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--data", type=Path, default=REALDATA, help="the folder holding nw_ucla/ and penn_action/")
    parser.add_argument("--ctrgcn", type=Path, help="a local checkout of Uason-Chen/CTR-GCN (the side-by-side part)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "real")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6, help="side-by-side epochs, each of 5 passes")
    parser.add_argument("--warmup", type=int, help="warm-up epochs (default: CTR-GCN's 5 of 65, scaled and rounded)")
    parser.add_argument("--step", type=int, help="the epoch the learning rate drops tenfold at (default: CTR-GCN's "
                        "50 of 65, scaled and rounded)")
    parser.add_argument("--without-ccl", action="store_true",
                        help="side-by-side: also train mmfc without its contrastive loss (skel.ccl.weight = 0)")
    parser.add_argument("--threads", default="auto", help="torch threads of every training, the same for both codes; "
                        "auto: mmfc's choice for the free cores when the bench starts")
    args = parser.parse_args(argv)
    epochs, warmup, step = FULL_SCHEDULE
    args.warmup = round(args.epochs * warmup / epochs) if args.warmup is None else args.warmup
    args.step = round(args.epochs * step / epochs) if args.step is None else args.step
    if not 0 <= args.warmup <= args.step < args.epochs:
        parser.error("give 0 <= --warmup <= --step < --epochs")
    checkout = None
    if "side-by-side" in args.parts:
        if args.ctrgcn is None:
            parser.error("the side-by-side part trains the official code: give --ctrgcn PATH, or leave the part out")
        checkout = CtrGcnCheckout.at(args.ctrgcn)
    for part in args.parts:
        folder = args.data / DATA_FOLDERS.get(part, "nw_ucla")
        if not folder.is_dir():
            print(f"bench_real: {folder}: no such folder (the {part} part reads it; --data names the folder "
                  "holding nw_ucla/ and penn_action/)", file=sys.stderr)
            return 2

    from mmfc.config import TrainConfig, load_pipeline
    from mmfc.cores import plan_cores

    # Loading is a few milliseconds a clip: both codes load in the training process.
    workers = 0
    threads = plan_cores(TrainConfig(threads=args.threads, loader_workers=str(workers)), "cpu").threads
    compute = [f"skel.train.threads={threads}", f"skel.train.loader_workers={workers}"]
    print(f"bench_real: {threads} torch thread(s) per training, no loader workers, {os.cpu_count()} cores; "
          f"runs under {args.out}", flush=True)

    shipped = {}
    for part in ("nw-ucla", "penn-action"):
        if part in args.parts:
            pipeline = REPO / "pipelines" / f"{part}.toml"
            settings = [f"data.root={json.dumps(str(args.data / DATA_FOLDERS[part]))}", *compute]
            cfg = load_pipeline(pipeline, settings)
            result = run_mmfc(pipeline, args.out / part, settings, cfg.skel.train.seed)
            shipped[part] = shipped_row(part, result, f"width {cfg.skel.model.base_channels}, "
                                                      f"{cfg.skel.train.epochs} epochs of 1 pass")
            print(f"bench_real: {part}: {percent(result.top1())}% test top-1", flush=True)

    side = None
    if checkout is not None:
        schedule = Schedule(args.width, args.epochs, args.warmup, args.step)
        pipeline = REPO / "pipelines" / "nw-ucla.toml"
        root = args.data / "nw_ucla"
        folder = args.out / "side-by-side"
        settings = [f"data.root={json.dumps(str(root))}", *compute, *schedule.mmfc_settings()]
        if not (folder / "crops" / "crops" / "index.parquet").is_file():
            (folder / "crops").mkdir(parents=True, exist_ok=True)
            run_stage("crops", pipeline, [f"workdir={json.dumps(str(folder / 'crops'))}", *settings],
                      folder / "crops" / "log.txt")
        systems = {MMFC: [], OFFICIAL: []} | ({NO_CCL: []} if args.without_ccl else {})
        for seed in range(1, args.seeds + 1):
            # One training process at a time, the two codes alternating in the order ABBA..., so
            # that a load which grows or fades over the runs weighs on both alike.
            runs = [lambda: systems[MMFC].append(
                        run_mmfc(pipeline, folder / f"mmfc-{seed}", settings, seed, folder / "crops")),
                    lambda: systems[OFFICIAL].append(
                        run_official(checkout, root, schedule, seed, threads, workers, folder / f"official-{seed}"))]
            for run in runs if seed % 2 else runs[::-1]:
                run()
            if args.without_ccl:
                systems[NO_CCL].append(run_mmfc(pipeline, folder / f"mmfc-without-ccl-{seed}",
                                                [*settings, "skel.ccl.weight=0"], seed, folder / "crops"))
            print(f"bench_real: seed {seed}: " + ", ".join(f"{name} {percent(results[-1].top1())}%"
                                                           for name, results in systems.items()), flush=True)
        side = side_by_side_rows(systems, schedule), len(systems[MMFC][0].correct), len(systems[OFFICIAL][0].correct)

    header = "| set | system | schedule | test top-1 % (95% interval) | test clips | training |"
    if "nw-ucla" in shipped:
        print_table("NW-UCLA, cross-view (views 1 and 2 train, view 3 tests)", header, [shipped["nw-ucla"]], [])
    if side is not None:
        rows, ours, theirs = side
        print_table(
            f"NW-UCLA side by side: {args.seeds} seeds each, alternating, {threads} thread(s) each",
            "| system | schedule | median test top-1 % (95% interval) | s per epoch | each seed: top-1, s per epoch |",
            rows + [f"| published: {name} | full schedule, ensemble | {value:.1f} | | |" for name, value in PUBLISHED],
            [f"Published figures: {PUBLISHED_NOTE}.",
             f"Test clips: the {min(ours, theirs)} both score (stage 1 refuses the one clip of a single frame; the "
             f"official code tests all {theirs}). mmfc scores the epoch its validation split chose, the official "
             "code its final epoch. Seconds per epoch: the training passes alone (loading, forward, backward, "
             "step), as CTR-GCN counts an epoch: 5 passes over its 1,020 training clips, mmfc's passes over its "
             "smaller training split (a tenth of the recordings validate) scaled to that."])
    if "penn-action" in shipped:
        print_table("Penn Action (the release's train/test flag)", header, [shipped["penn-action"]],
                    [f"Best pose-only figure found: {name}: {value:.1f}%." for name, value in PENN_PUBLISHED])
    return 0


def official_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="one training of the official CTR-GCN code (bench_real's child)")
    for name in ("ctrgcn", "data-root", "result"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    for name in ("width", "epochs", "warmup", "step", "seed", "threads", "workers"):
        parser.add_argument(f"--{name}", type=int, required=True)
    args = parser.parse_args(argv)
    schedule = Schedule(args.width, args.epochs, args.warmup, args.step)
    official_train(CtrGcnCheckout.at(args.ctrgcn), args.data_root, schedule, args.seed, args.threads, args.workers,
                   args.result)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["official"]:
        sys.exit(official_main(sys.argv[2:]))
    sys.exit(main())
