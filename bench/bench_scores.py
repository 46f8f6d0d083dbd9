"""Stage 3 over several skeleton streams: each scored on its own, as stage 3 runs (one pass over
the crop store per stream: `mmfc stage scores --modality <stream>`, mmfc/scores/logits.py:
branch_logits), against all of them in one pass (each batch of stored skeletons read and
prepared once, then fed to every stream's network: the streams read the same input and derive
their stream inside the network); and the reading alone, the most one pass can save.

Real data: a crop store of NW-UCLA sequences (stage 1 on the real JSON files), the streams at
pipelines/nw-ucla.toml's sizes with random weights (scoring costs the same whatever the weights).

    .venv/bin/python bench/bench_scores.py                       # 400 sequences, 4 streams, 1 thread
    .venv/bin/python bench/bench_scores.py --samples 200 --repeats 4
    .venv/bin/python bench/bench_scores.py --device cuda --samples 1484
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmfc.branches import BRANCHES
from mmfc.config import load_pipeline
from mmfc.crops.stage import run_crops
from mmfc.crops.store import open_crops
from mmfc.scores.logits import branch_logits

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "nw_ucla"
STREAMS = ["joint", "bone", "joint_motion", "bone_motion"]


def build_store(root: Path, data: Path, samples: int, threads: int):
    (root / "ucla" / "all_sqe").mkdir(parents=True)
    for path in sorted((data / "all_sqe").glob("*.json"))[:samples]:
        shutil.copy(path, root / "ucla" / "all_sqe")
    cfg = load_pipeline(Path(__file__).resolve().parents[1] / "pipelines" / "nw-ucla.toml", [
        f"workdir={json.dumps(str(root / 'run'))}", f"data.root={json.dumps(str(root / 'ucla'))}",
        f"jobs.n_jobs={threads}", f"branches={json.dumps(STREAMS)}",
    ])
    run_crops(cfg)
    return cfg


@torch.no_grad()
def one_pass(cfg, models: dict[str, torch.nn.Module], store, indices: list[int], device: torch.device
             ) -> dict[str, np.ndarray]:
    """Every stream's logits, each batch of the (shared) evaluation input read once."""
    first = next(iter(models))
    dataset = BRANCHES[first].build_dataset(cfg, store, indices, False, 0, 1)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BRANCHES[first].section(cfg).train.batch_size)
    out: dict[str, list[np.ndarray]] = {name: [] for name in models}
    for x, _, _ in loader:
        x = x.to(device)
        for name, model in models.items():
            out[name].append(model(x).float().cpu().numpy())
    return {name: np.concatenate(parts) for name, parts in out.items()}


def read_only(cfg, store, indices: list[int]) -> int:
    dataset = BRANCHES[STREAMS[0]].build_dataset(cfg, store, indices, False, 0, 1)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BRANCHES[STREAMS[0]].section(cfg).train.batch_size)
    return sum(len(x) for x, _, _ in loader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REALDATA, help="NW-UCLA folder holding all_sqe/")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="torch device of the networks, e.g. cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_store(Path(tmp), args.data, args.samples, args.threads)
        store = open_crops(cfg.paths.crops)
        indices = list(range(len(store)))
        # The one-pass shortcut holds only where the streams read the same input.
        inputs = {json.dumps(BRANCHES[s].section(cfg).input.__dict__, sort_keys=True) for s in STREAMS}
        assert len(inputs) == 1, "the streams' input settings differ: no shared pass"
        torch.manual_seed(0)
        device = torch.device(args.device)
        models = {s: BRANCHES[s].build_model(cfg, store.num_classes, store.layout).eval().to(device) for s in STREAMS}
        m = cfg.joint.model
        print(f"NW-UCLA crop store: {len(store)} sequences; {len(STREAMS)} streams, CTR-GCN width {m.base_channels}, "
              f"{m.num_frames} frames, batch {cfg.joint.train.batch_size}; {args.threads} torch thread(s), "
              f"loader in process, networks on {device}")
        # Wall time, and this process's CPU time: on a machine shared with other jobs the first
        # swings with their load, the second far less.
        times: dict[str, list[tuple[float, float]]] = {"one by one": [], "one pass": [], "reading only": []}

        def timed(name: str, work):
            wall, cpu = time.perf_counter(), time.process_time()
            result = work()
            times.setdefault(name, []).append((time.perf_counter() - wall, time.process_time() - cpu))
            return result

        timed("warm-up", lambda: one_pass(cfg, models, store, indices[:64], device))
        del times["warm-up"]
        for repeat in range(args.repeats):
            # Turn about, so that neither way always runs on the caches the other left.
            for way in (("one by one", "one pass") if repeat % 2 == 0 else ("one pass", "one by one")):
                if way == "one by one":
                    separate = timed(way, lambda: {
                        s: branch_logits(cfg, s, models[s], store, indices, device) for s in STREAMS})
                else:
                    shared = timed(way, lambda: one_pass(cfg, models, store, indices, device))
            timed("reading only", lambda: read_only(cfg, store, indices))
        worst = max(float(np.abs(separate[s] - shared[s]).max()) for s in STREAMS)
        median = {name: [statistics.median(v[k] for v in values) for k in (0, 1)] for name, values in times.items()}
        for name, (wall, cpu) in median.items():
            print(f"{name:13} wall {wall:6.2f} s, CPU {cpu:6.2f} s (medians; wall of each run "
                  f"{', '.join(f'{v[0]:.2f}' for v in times[name])})")
        for k, kind in enumerate(("wall", "CPU")):
            ratio = median["one by one"][k] / median["one pass"][k]
            share = median["reading only"][k] / (median["one by one"][k] / len(STREAMS))
            print(f"{kind}: one by one / one pass {ratio:.2f}x; reading the store is {share:.1%} of scoring one "
                  f"stream, so one pass saves at most {(len(STREAMS) - 1) * share / len(STREAMS):.1%}")
        print(f"largest logit difference between the two ways: {worst:.1e}")

if __name__ == "__main__":
    main()
