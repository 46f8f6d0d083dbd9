"""A branch's logits of stored samples, as stage 3 computes them: the branch's evaluation
dataset (mmfc.branches) over a crop store, averaged over `scores.clips` evenly spaced clips.

Stage 3 runs it over the crop store (`score_rows`), as the out-of-fold stage does with each
fold's network; `mmfc predict` over the clips it cropped in memory (mmfc.crops.store.MemoryCrops),
so all of them score a clip by the same sampling and normalisation.

`score_rows` is embarrassingly parallel over samples. On CPU the samples go out in jobs
(mmfc.jobs, the pipeline's [jobs] backend: one worker per core here, or a Ray or Dask cluster),
each worker loading the model once; on CUDA one process is right, since the GPU already batches
the samples and several processes would only share it, so the jobs run in this process, with the
training section's loader workers decoding the crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from mmfc.branches import check_store_feeds, get_branch
from mmfc.config import Pipeline
from mmfc.cores import apply_threads, loader_worker_init, plan_cores
from mmfc.crops.store import open_crops
from mmfc.errors import DataError
from mmfc.jobs import PerWorker, run_jobs
from mmfc.scores.format import ScoreTable
from mmfc.train.checkpoint import file_digest, load_checkpoint, load_weights
from mmfc.train.loop import amp_enabled, predict

# Samples per job: in a pool, a few batches (jobs spread evenly over the workers and the progress
# bar moves); in one process, many (each job starts its loader workers anew).
POOL_JOB_BATCHES = 8
SINGLE_JOB_SAMPLES = 4096


@torch.no_grad()
def branch_logits(cfg: Pipeline, modality: str, model: torch.nn.Module, store, indices, device: torch.device,
                  loader_workers: int = 0) -> np.ndarray:
    """Logits of the store samples `indices`, averaged over cfg.scores.clips evenly spaced clips
    (the network in eval mode on `device`). -> float32 [N, K]"""
    branch, clips = get_branch(modality), cfg.scores.clips
    tcfg = branch.section(cfg).train
    total = None
    row_of = {int(i): row for row, i in enumerate(indices)}
    for clip in range(clips):
        dataset = branch.build_dataset(cfg, store, [int(i) for i in indices], train=False, clip=clip, num_clips=clips)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=tcfg.batch_size, shuffle=False, num_workers=loader_workers,
            worker_init_fn=loader_worker_init,
            generator=torch.Generator().manual_seed(0),
        )
        got, _, logits = predict(model, loader, device, amp_enabled(tcfg, device))
        if total is None:
            total = np.zeros((len(indices), logits.shape[1]), dtype=np.float64)
        total[[row_of[int(i)] for i in got]] += logits
    return (total / clips).astype(np.float32)


def score_rows(cfg: Pipeline, modality: str, checkpoint: Path, rows: np.ndarray | None,
               console: Console) -> ScoreTable:
    """The scores of the crop store's rows `rows` (None: every row) by the network of `checkpoint`
    (a `modality` checkpoint), computed in jobs, stamped with the checkpoint's sha256 and the
    pipeline digest, each row's group copied from the crop index."""
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
    rows = np.arange(len(store)) if rows is None else np.asarray(rows, dtype=np.int64)
    per_job = SINGLE_JOB_SAMPLES if one_process else POOL_JOB_BATCHES * tcfg.batch_size
    chunks = [np.arange(i, min(i + per_job, len(rows))) for i in range(0, len(rows), per_job)]
    logits = np.zeros((len(rows), store.num_classes), dtype=np.float32)
    for position, part in run_jobs(
        score_samples, [(rows[chunk], scorer) for chunk in chunks],
        backend="loky" if one_process else cfg.jobs.backend, n_jobs=1 if one_process else cfg.jobs.n_jobs,
        title=f"scores {modality}", unit="samples", sizes=[len(c) for c in chunks], console=console,
    ):
        logits[chunks[position]] = part
    index = [store.index[i] for i in rows]
    return ScoreTable(
        ids=[row["id"] for row in index],
        splits=[row["split"] for row in index],
        labels=np.array([row["label"] for row in index], dtype=np.int64),
        logits=logits,
        modality=modality,
        checkpoint_digest=here.digest,
        pipeline_digest=cfg.digest(),
        class_names=list(store.class_names),
        groups=[row["group"] for row in index],
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
