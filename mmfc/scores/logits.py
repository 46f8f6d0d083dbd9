"""A branch's logits of stored samples, as stage 3 computes them: the branch's evaluation
dataset (mmfc.branches) over a crop store, averaged over `scores.clips` evenly spaced clips.

Stage 3 runs it over the crop store; `mmfc predict` over the clips it cropped in memory
(mmfc.crops.store.MemoryCrops), so both score a clip by the same sampling and normalisation.
"""

from __future__ import annotations

import numpy as np
import torch

from mmfc.branches import get_branch
from mmfc.config import Pipeline
from mmfc.cores import loader_worker_init
from mmfc.train.loop import amp_enabled, predict


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
