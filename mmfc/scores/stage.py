"""Stage 3: per-class logits of every stored sample (all splits) from the best checkpoint.

Writes <workdir>/scores/<modality>.parquet in the ScoreTable format of mmfc.scores.format,
stamped with the sha256 of best.pt and the pipeline digest so later stages can tell which
weights and configuration produced it, with each sample's group copied from the crop index:
stage 4 reads the groups there, and so needs no more than the score files.

Scoring is embarrassingly parallel over samples. On CPU the samples go out in jobs (mmfc.jobs,
the pipeline's [jobs] backend: one worker per core here, or a Ray or Dask cluster), each worker
loading the model once; on CUDA one process is right, since the GPU already batches the samples
and several processes would only share it, so the jobs run in this process, with the training
section's loader workers decoding the crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from mmfc.branches import check_store_feeds, declared_branch, get_branch
from mmfc.config import Pipeline
from mmfc.cores import apply_threads, plan_cores
from mmfc.crops.store import INDEX, open_crops
from mmfc.errors import DataError
from mmfc.jobs import PerWorker, run_jobs
from mmfc.scores.format import SPLITS, ScoreTable, top1_text, write_scores
from mmfc.scores.logits import branch_logits
from mmfc.stage_frame import Stage, run_stage
from mmfc.train.checkpoint import file_digest, load_checkpoint, load_weights

# Samples per job: in a pool, a few batches (jobs spread evenly over the workers and the progress
# bar moves); in one process, many (each job starts its loader workers anew).
POOL_JOB_BATCHES = 8
SINGLE_JOB_SAMPLES = 4096


def scores_stage(cfg: Pipeline, modality: str) -> Stage:
    """One lock and one output per branch: both branches can be scored at once (make -j2 scores)."""
    return Stage(f"scores-{modality}", f"mmfc stage scores --modality {modality}", lock=f"scores-{modality}",
                 settings=(modality, "scores"), outputs=(cfg.paths.scores / f"{modality}.parquet",))


def run_scores(cfg: Pipeline, modality: str) -> None:
    branch = declared_branch(cfg, modality)
    console = Console(stderr=True)
    stage = scores_stage(cfg, branch.name)
    (path,), checkpoint = stage.outputs, cfg.paths.train(branch.name) / "best.pt"
    with run_stage(cfg, stage, console) as run:
        with run.producing(path, inputs=[checkpoint, cfg.paths.crops / INDEX]):
            table = _scores(cfg, branch.name, checkpoint, console)
            write_scores(path, table)
        run.summary = f"top-1 {', '.join(f'{split} {top1_text(table, split)}' for split in SPLITS)} ({path})"


def _scores(cfg: Pipeline, modality: str, checkpoint: Path, console: Console) -> ScoreTable:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    one_process = device == "cuda" or cfg.jobs.n_jobs == 1
    tcfg = get_branch(modality).section(cfg).train
    digest = file_digest(checkpoint) if checkpoint.is_file() else ""  # else the scorer says it is missing
    loader_workers = 0  # the job workers (joblib gives each a share of the cores) load their own samples
    if one_process:
        cores = plan_cores(tcfg, device)
        apply_threads(cores.threads)
        loader_workers = cores.loader_workers
    scorer = PerWorker(Scorer, (cfg, modality, checkpoint, digest, device, loader_workers))
    here = scorer.get()  # checks the checkpoint against the store before any job; reused in this process
    store = here.store
    everything = np.arange(len(store))
    per_job = SINGLE_JOB_SAMPLES if one_process else POOL_JOB_BATCHES * tcfg.batch_size
    chunks = [everything[i : i + per_job] for i in range(0, len(everything), per_job)]
    logits = np.zeros((len(store), store.num_classes), dtype=np.float32)
    for position, part in run_jobs(
        score_samples, [(chunk, scorer) for chunk in chunks], backend="loky" if one_process else cfg.jobs.backend,
        n_jobs=1 if one_process else cfg.jobs.n_jobs, title=f"scores {modality}", unit="samples",
        sizes=[len(c) for c in chunks], console=console,
    ):
        logits[chunks[position]] = part
    return ScoreTable(
        ids=[row["id"] for row in store.index],
        splits=[row["split"] for row in store.index],
        labels=np.array([row["label"] for row in store.index], dtype=np.int64),
        logits=logits,
        modality=modality,
        checkpoint_digest=here.digest,
        pipeline_digest=cfg.digest(),
        class_names=list(store.class_names),
        groups=[row["group"] for row in store.index],
        group_kind=store.group_kind,
    )


@dataclass
class Scorer:
    """A branch's best checkpoint over the crop store, built once per worker process."""

    cfg: Pipeline
    modality: str
    checkpoint: Path
    digest: str  # the checkpoint the driver read: a worker refuses another one
    device: str
    loader_workers: int
    store: object = field(init=False)
    model: torch.nn.Module = field(init=False)

    def __post_init__(self) -> None:
        self.store = open_crops(self.cfg.paths.crops)
        check_store_feeds(get_branch(self.modality), self.store, self.cfg.branches)
        state = load_checkpoint(self.checkpoint, required=("model", "modality", "num_classes"))
        if file_digest(self.checkpoint) != self.digest:
            raise DataError(self.checkpoint, "was replaced while the scores were computed; rerun `mmfc stage scores`")
        if state["modality"] != self.modality:
            raise DataError(self.checkpoint, f"holds a {state['modality']!r} model, not {self.modality!r}")
        if state["num_classes"] != self.store.num_classes:
            raise DataError(
                self.checkpoint, f"trained for {state['num_classes']} classes but the crop store has {self.store.num_classes}"
            )
        self.model = get_branch(self.modality).build_model(self.cfg, self.store.num_classes, self.store.layout)
        load_weights(self.model, state["model"], self.checkpoint)
        self.model.to(self.device)

    def logits(self, indices: np.ndarray) -> np.ndarray:
        """Logits of the store samples `indices`, averaged over cfg.scores.clips evenly spaced
        clips. -> float32 [N, K]"""
        return branch_logits(self.cfg, self.modality, self.model, self.store, indices, torch.device(self.device),
                             self.loader_workers)


def score_samples(indices: np.ndarray, scorer: PerWorker[Scorer]) -> np.ndarray:
    """One job: the logits of some store samples. -> float32 [N, K]"""
    return scorer.get().logits(indices)
