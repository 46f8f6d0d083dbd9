"""Stage 3: per-class logits of every stored sample (all splits) from the best checkpoint.

Writes <workdir>/scores/<modality>.parquet in the ScoreTable format of mmfc.scores.format,
stamped with the sha256 of best.pt and the pipeline digest so later stages can tell which
weights and configuration produced it.
"""

from __future__ import annotations

import numpy as np
import torch

from mmfc.branches import Branch, get_branch
from mmfc.config import Pipeline
from mmfc.crops.store import open_crops
from mmfc.errors import DataError
from mmfc.scores.format import ScoreTable, write_scores
from mmfc.train.checkpoint import file_digest, load_checkpoint
from mmfc.train.loop import amp_enabled, predict


def run_scores(cfg: Pipeline, modality: str) -> None:
    branch = get_branch(modality)
    checkpoint = cfg.paths.train(modality) / "best.pt"
    state = load_checkpoint(checkpoint, required=("model", "modality", "num_classes"))
    store = open_crops(cfg.paths.crops)
    if state["modality"] != modality:
        raise DataError(checkpoint, f"holds a {state['modality']!r} model, not {modality!r}")
    if state["num_classes"] != store.num_classes:
        raise DataError(
            checkpoint, f"trained for {state['num_classes']} classes but the crop store has {store.num_classes}"
        )

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = branch.build_model(cfg, store.num_classes, store.layout)
    model.load_state_dict(state["model"])
    model.to(device)
    logits = score_store(cfg, branch, store, model, device)
    table = ScoreTable(
        ids=[row["id"] for row in store.index],
        splits=[row["split"] for row in store.index],
        labels=np.array([row["label"] for row in store.index], dtype=np.int64),
        logits=logits,
        modality=modality,
        checkpoint_digest=file_digest(checkpoint),
        pipeline_digest=cfg.digest(),
        class_names=list(store.class_names),
    )
    write_scores(cfg.paths.scores / f"{modality}.parquet", table)


@torch.no_grad()
def score_store(cfg: Pipeline, branch: Branch, store, model: torch.nn.Module, device: torch.device) -> np.ndarray:
    """Logits of every sample in store order, averaged over cfg.scores.clips evenly spaced clips. -> float32 [N, K]"""
    tcfg = branch.section(cfg).train
    everything = list(range(len(store)))
    total = np.zeros((len(store), store.num_classes), dtype=np.float64)
    for clip in range(cfg.scores.clips):
        dataset = branch.build_dataset(cfg, store, everything, train=False, clip=clip, num_clips=cfg.scores.clips)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=tcfg.batch_size, shuffle=False, num_workers=tcfg.num_workers,
            generator=torch.Generator().manual_seed(0),
        )
        indices, _, logits = predict(model, loader, device, amp_enabled(tcfg, device))
        total[indices] += logits
    return (total / cfg.scores.clips).astype(np.float32)
