"""bench/bench_real.py's adapter of the official CTR-GCN code: a wrong checkout is one clear
message before anything trains; a real checkout loads unchanged, at the width asked for, with
mmfc's parameter count. (Its figures are docs/benchmarks.md's, "16. Real recordings"; nothing is timed here.)"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "bench_real.py"
CHECKOUT = REPO.parent / "peers" / "CTR-GCN"


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_real", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_real", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def fake_checkout(root: Path, model_source: str) -> Path:
    bench = bench_module()
    for name in bench.CHECKOUT_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    (root / "model" / "ctrgcn.py").write_text(model_source)
    return root


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "nowhere", "nowhere: no such folder; give --ctrgcn the folder of an unpacked Uason-Chen/CTR-GCN"),
    (lambda tmp: tmp, "not a CTR-GCN checkout, model/ctrgcn.py is missing"),
    (lambda tmp: fake_checkout(tmp, "base_channel = 48\n"), "the line 'base_channel = 64' occurs 0 times, not once"),
    (lambda tmp: fake_checkout(tmp, "base_channel = 64\nbase_channel = 64\n"), "occurs 2 times"),
])
def test_a_wrong_checkout_is_refused_with_one_message(tmp_path: Path, make, message):
    bench = bench_module()
    path = make(tmp_path)
    with pytest.raises(bench.CheckoutError, match=message) as caught:
        bench.CtrGcnCheckout.at(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)
    # The command line says it in one line, before training anything, with no traceback.
    result = subprocess.run([sys.executable, str(BENCH), "--parts", "side-by-side", "--ctrgcn", str(path),
                             "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"bench_real: {caught.value}"]
    assert not (tmp_path / "out").exists()


def test_the_official_code_loads_from_a_checkout_at_the_width_asked(tmp_path: Path):
    if not CHECKOUT.is_dir():
        pytest.skip(f"no CTR-GCN checkout at {CHECKOUT} (an unpacked Uason-Chen/CTR-GCN at e13d758)")
    # A copy, so that the test sees whatever loading would write into a checkout.
    checkout = shutil.copytree(CHECKOUT, tmp_path / "CTR-GCN", ignore=shutil.ignore_patterns("__pycache__", "data"))
    before = sorted(p.relative_to(checkout) for p in checkout.rglob("*"))
    script = f"""
import sys, torch
sys.path.insert(0, {str(REPO)!r})
sys.argv = ["bench_real"]
import importlib.util
spec = importlib.util.spec_from_file_location("bench_real", {str(BENCH)!r})
bench = sys.modules["bench_real"] = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
Model, Feeder = bench.CtrGcnCheckout.at({str(checkout)!r}).load()
from mmfc.data.layouts import get_layout
from mmfc.models.ctrgcn import SkelNet
theirs = Model(num_class=10, num_point=20, num_person=1, graph="graph.ucla.Graph", graph_args={{"labeling_mode": "spatial"}})
ours = SkelNet(get_layout("kinect20"), "joint", 3, 16, 1, 10, 0.0)
count = lambda net: sum(p.numel() for p in net.parameters())
print(tuple(theirs(torch.zeros(2, 3, 52, 20, 1)).shape), count(theirs), count(ours), Feeder.__module__)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "CTRGCN_BASE_CHANNEL": "16"})
    assert result.returncode == 0, result.stderr[-3000:]
    shape, theirs, ours, feeder = result.stdout.split("\n")[-2].rsplit(" ", 3)
    assert shape == "(2, 10)" and feeder == "feeders.feeder_ucla"
    # The same network: CTR-GCN at width 16 has exactly mmfc's parameters (at 64: 1,426,892 each;
    # below 16 they part, CTR-GCN giving a block of 8 input channels 1 relation channel, mmfc 8).
    assert int(theirs) == int(ours) < 200_000
    assert sorted(p.relative_to(checkout) for p in checkout.rglob("*")) == before
