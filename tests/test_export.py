"""`mmfc export`: each branch as an ONNX graph that onnxruntime runs to PyTorch's logits within
1e-4, and the fitted fusion as a JSON recipe that numpy applies to mmfc's own fused scores; for
every branch of a run (RGB and two streams, skeleton streams alone), with preprocess.py taking a
clip (its frames where a graph reads them) to `mmfc predict`'s logits."""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmfc.branches import get_branch
from mmfc.cli import app
from mmfc.config import load_pipeline
from mmfc.crops.store import open_crops
from mmfc.data.decoding import probe_video
from mmfc.data.layouts import get_layout
from mmfc.export import apply_fusion as packaged_apply_fusion
from mmfc.export.graphs import PARITY_TOLERANCE, export_graph, onnx_logits, parity_bound, torch_logits
from mmfc.export.recipe import fusion_recipe
from mmfc.fusion.methods import (
    AdaptiveFusion,
    FittedFusion,
    FixedRatio,
    GlobalFusion,
    LogitSum,
    PerClassFusion,
    SingleBranch,
    Temperatures,
)
from mmfc.predict.predictor import predict_skeleton, predict_video
from mmfc.scores.format import read_scores
from mmfc.run_folder import open_run

pytestmark = pytest.mark.slow  # exports trained runs: `make test-fast` leaves it out

onnx = pytest.importorskip("onnx", reason="the export extra is not installed: pip install 'mmfc[export]'")
pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install 'mmfc[export]'")

torch.set_num_threads(1)
SYNTH = "pipelines/synth.toml"
TINY = ["rgb.model.depth=18", "rgb.model.base_width=8", "rgb.model.input_size=32", "rgb.model.segments=4",
        "skel.model.base_channels=8", "skel.model.num_frames=8"]


# ---------------------------------------------------------------------------------------------
# The fusion recipe


def _rules(branches: tuple[str, ...], k: int, rng) -> dict[str, FittedFusion]:
    temperatures = Temperatures({b: float(t) for b, t in zip(branches, rng.uniform(0.5, 2, len(branches)))})
    weights = dict(zip(branches, rng.dirichlet(np.ones(len(branches))).tolist()))
    rules = {
        "rgb_alone": SingleBranch("rgb"),
        f"{branches[-1]}_alone": SingleBranch(branches[-1]),
        "pyskl_2_1": FixedRatio(dict(zip(branches, rng.integers(1, 3, len(branches)).tolist())), 1.3),
        "global": GlobalFusion(weights, 1.8),
        "adaptive": AdaptiveFusion(2.5, dict(zip(branches, rng.normal(size=len(branches)).tolist())), 1.2, 30.0),
        "per_class": PerClassFusion({b: rng.uniform(0, 2, k) for b in branches}, rng.normal(size=k), 10.0),
    }
    if "joint" in branches:
        rules["ctrgcn"] = LogitSum({"joint": 0.6, "bone": 0.6, "joint_motion": 0.4, "bone_motion": 0.4}, 0.7)
    return {name: FittedFusion(temperatures, rule) for name, rule in rules.items()}


@pytest.mark.parametrize("branches", [("rgb", "skel"), ("rgb", "joint", "bone", "joint_motion", "bone_motion")])
def test_the_recipe_applied_with_numpy_is_mmfcs_fusion_for_every_rule(branches):
    rng = np.random.default_rng(0)
    logits = {b: rng.uniform(2, 5) * rng.normal(size=(50, 7)) for b in branches}
    # One class almost impossible in every branch: the fixed ratio's probability floor.
    for z in logits.values():
        z[0, 0] = -800.0
    for method, fitted in _rules(branches, 7, rng).items():
        recipe = json.loads(json.dumps(fusion_recipe(method, fitted)))  # plain JSON, as a consumer reads it
        assert recipe["method"] == method and recipe["formula"][-1].startswith("s = ")
        assert recipe["branches"] == list(fitted.branches)
        # The consumer gives only the branches the recipe names.
        fused = packaged_apply_fusion.apply_fusion(recipe, {b: logits[b] for b in recipe["branches"]})
        np.testing.assert_allclose(fused, fitted.apply(logits), rtol=1e-12, atol=1e-12, err_msg=method)
    recipe = fusion_recipe("global", _rules(branches, 7, rng)["global"])
    with pytest.raises(ValueError, match="missing: rgb"):
        packaged_apply_fusion.apply_fusion(recipe, {b: z for b, z in logits.items() if b != "rgb"})


def test_apply_fusion_needs_nothing_but_numpy():
    tree = ast.parse(open(packaged_apply_fusion.__file__).read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__", "numpy"}


# ---------------------------------------------------------------------------------------------
# Branch graphs, on networks built directly


def _calibrated(network: torch.nn.Module, inputs: torch.Tensor) -> torch.nn.Module:
    """BN statistics of `inputs` (a fresh network's would give logits in the thousands, where a
    float32 comparison at 1e-4 says nothing), then eval mode."""
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # the plain average of what it sees
    network.train()
    with torch.no_grad():
        network(inputs)
    return network.eval()


@pytest.mark.parametrize(
    "branch, overrides, layout",
    [
        ("rgb", ["rgb.model.block=tsm"], "ntu25"),  # the temporal shift
        ("rgb", ["rgb.model.block=staa"], "ntu25"),  # motion attention and temporal aggregation
        ("skel", ["skel.model.stream=bone_motion"], "ntu25"),  # graph convolution, bones, motion
        ("skel", ["skel.model.stream=joint"], "coco17"),  # 2D keypoints
    ],
)
def test_branch_graph_runs_in_onnxruntime_to_pytorchs_logits(tmp_path, branch, overrides, layout):
    torch.manual_seed(0)
    layout = get_layout(layout)
    cfg = load_pipeline(SYNTH, [*TINY, *overrides])
    spec = get_branch(branch)
    shape = spec.input_shape(cfg, layout)
    network = _calibrated(spec.build_model(cfg, 5, layout), torch.randn(4, *shape))
    name = spec.input_spec(cfg, layout)["name"]
    path = tmp_path / f"{branch}.onnx"
    export_graph(network, shape, name, path, doc="test graph", input_doc="inputs", output_doc="logits",
                 metadata={"mmfc_branch": branch})
    assert not network.training  # the exporter restores the mode it found
    model = onnx.load(path)
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    assert graph_input.name == name and graph_output.name == "logits"
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert dims == ["batch", *shape]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph_input.doc_string == "inputs" and {p.key: p.value for p in model.metadata_props} == {"mmfc_branch": branch}

    rng = np.random.default_rng(1)
    for batch in (1, 3):  # the graph was traced at batch 2: the batch axis is dynamic
        inputs = rng.normal(size=(batch, *shape)).astype(np.float32)
        with torch.no_grad():
            ours = network(torch.from_numpy(inputs)).numpy()
        theirs = onnx_logits(path, name, inputs)
        assert theirs.shape == (batch, 5) and theirs.dtype == np.float32
        assert 0.1 < np.abs(ours).max() < 20  # logits of a trained network's size, where 1e-4 means something
        assert np.abs(theirs - ours).max() < PARITY_TOLERANCE


# ---------------------------------------------------------------------------------------------
# A trained run, end to end through the command


def _export(*args: str):
    return CliRunner().invoke(app, ["export", *args])


def _module(path):
    """A file of the export folder, imported as a consumer imports it: from the folder alone."""
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_consumer_side(run_folder, out, manifest: dict) -> None:
    """The consumer's side of an export, from the folder alone: every graph in onnxruntime on every
    sample of the run's crop store, fused by the copied apply_fusion.py with the manifest's recipe;
    held to 1e-4 at the scale of logits within +-10, without the leeway of PyTorch's own float32
    error, against PyTorch's logits and mmfc's fusion of them, and so stage 4's fused scores."""
    run = open_run(run_folder)
    consumer = _module(out / "apply_fusion.py")
    store = open_crops(run.cfg.paths.crops)
    indices = list(range(len(store)))
    onnx_out, torch_out = {}, {}
    for name, entry in manifest["branches"].items():
        dataset = get_branch(name).build_dataset(run.cfg, store, indices, False, 0, 1)
        inputs = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
        onnx_out[name] = onnx_logits(out / entry["file"], entry["input"]["name"], inputs)
        torch_out[name] = torch_logits(run.models[name], inputs)
        assert np.abs(onnx_out[name] - torch_out[name]).max() < parity_bound(torch_out[name], 0.0), name
    fused = consumer.apply_fusion(manifest["fusion"], onnx_out)
    ours = run.fusion.apply(torch_out)
    assert np.abs(fused - ours).max() < parity_bound(ours, 0.0)
    # ... and so reproduces what stage 4 wrote for these samples (log-probabilities, float32).
    stored = read_scores(run_folder / "fusion" / "fused.parquet").aligned_to([row["id"] for row in store.index])
    np.testing.assert_allclose(consumer.log_softmax(fused), stored.logits, atol=1e-4)


def check_clip(out, manifest: dict, prediction, skeleton, video=None) -> None:
    """One clip from the export folder alone: its keypoints (and, for an RGB graph, the video's
    frames) through the copied preprocess.py, every graph in onnxruntime, the fusion by the
    copied apply_fusion.py; each branch's logits and the fused scores are `mmfc predict`'s
    (`prediction`, by stages 1 to 4's code)."""
    preprocess, fusion = _module(out / "preprocess.py"), _module(out / "apply_fusion.py")
    settings = manifest["preprocess"]
    frames = video_frames = None
    if video is not None:
        video_frames = probe_video(video).frames
        frames = preprocess.read_frames(str(video), preprocess.frames_to_read(settings, video_frames))
    inputs = preprocess.graph_inputs(settings, skeleton.points, skeleton.score, frames, video_frames,
                                     pixels=skeleton.pixels, frame_indices=skeleton.frame_indices,
                                     total_frames=skeleton.total_frames, keypoint_size=skeleton.frame_size)
    assert list(inputs) == list(manifest["branches"])
    logits = {}
    for name, entry in manifest["branches"].items():
        logits[name] = onnx_logits(out / entry["file"], entry["input"]["name"], inputs[name])
        assert np.abs(logits[name] - prediction.logits[name]).max() < parity_bound(prediction.logits[name], 0.0), name
    fused = fusion.log_softmax(fusion.apply_fusion(manifest["fusion"], logits))
    assert np.abs(fused - prediction.fused).max() < parity_bound(prediction.fused, 0.0)


def test_export_of_a_trained_run_matches_pytorch_and_mmfcs_fusion(tiny_run, tmp_path):
    out = tmp_path / "export"
    result = _export("--run", str(tiny_run), "--format", "onnx", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["apply_fusion.py", "manifest.json", "preprocess.py", "rgb.onnx",
                                                     "skel.onnx"]
    manifest = json.loads((out / "manifest.json").read_text())
    summary = json.loads(result.output)
    assert summary["max_abs_diff"] == manifest["parity"]["max_abs_diff"]
    parity = manifest["parity"]
    assert all(parity["max_abs_diff"][name] < parity["bound"][name] for name in ("rgb", "skel", "fused"))
    assert all(parity["bound"][name] >= PARITY_TOLERANCE for name in ("rgb", "skel", "fused"))

    run = open_run(tiny_run)
    assert manifest["class_names"] == run.class_names and manifest["fusion"]["method"] == run.fusion_method
    rgb, skel = manifest["branches"]["rgb"], manifest["branches"]["skel"]
    assert rgb["input"]["name"] == "clips" and rgb["input"]["shape"] == ["batch", 4, 3, 32, 32]
    assert rgb["input"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert skel["input"]["name"] == "joints" and skel["input"]["shape"] == ["batch", 3, 8, 25, 2]
    assert rgb["output"] == {**rgb["output"], "name": "logits", "shape": ["batch", 3]}

    check_consumer_side(tiny_run, out, manifest)

    # A second export replaces the first whole.
    assert _export("--run", str(tiny_run), "--out", str(out), "--check", "0").exit_code == 0
    assert "parity" not in json.loads((out / "manifest.json").read_text())


def test_preprocess_in_the_export_takes_a_real_clip_to_mmfcs_logits(tiny_run, tmp_path, realdata):
    out = tmp_path / "export"
    result = _export("--run", str(tiny_run), "--out", str(out), "--check", "0")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    poses = manifest["poses"]
    assert (poses["layout"], poses["joints"], poses["coordinates"]) == ("ntu25", 25, 3) and "Kinect" in poses["source"]
    assert "must come from the same estimator (or sensor) and the same joint layout" in poses["requirement"]

    # mmfc's side: the real NTU clip and its own skeleton through `mmfc predict`'s code, which is
    # stages 1 to 4's.
    video = realdata / "videos" / "S001C001P001R001A001_rgb.avi"
    prediction, _, _, found = predict_video(open_run(tiny_run), video,
                                            realdata / "ntu_skeleton" / "S001C001P001R001A001.skeleton")
    check_clip(out, manifest, prediction, found.skeleton, video)


def test_export_errors_are_one_line_naming_the_cause(tiny_run, tmp_path, monkeypatch):
    result = _export("--run", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "no such run folder" in result.output

    unfused = tmp_path / "unfused"
    shutil.copytree(tiny_run, unfused, ignore=shutil.ignore_patterns("fusion"))
    result = _export("--run", str(unfused), "--out", str(tmp_path / "a"))
    assert result.exit_code == 2 and "no fitted fusion yet" in result.output and "mmfc stage fuse" in result.output

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    result = _export("--run", str(tiny_run), "--out", str(taken), "--check", "0")
    assert result.exit_code == 2 and "is not an mmfc export" in result.output
    assert (taken / "notes.txt").read_text() == "mine"

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    result = _export("--run", str(tiny_run), "--out", str(tmp_path / "b"))
    assert result.exit_code == 2 and "pip install 'mmfc[export]'" in result.output
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------------------------------
# Every branch of a run: RGB and two streams; skeleton branches alone


def _export_of(run_folder, out, branches: list[str]) -> dict:
    """The export of a run through the command: one graph per branch, the parity measured under
    its bound for each and fused, and the consumer's side (check_consumer_side). -> its manifest"""
    result = _export("--run", str(run_folder), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{name}.onnx" for name in branches] + ["apply_fusion.py", "manifest.json", "preprocess.py"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["version"] == 3 and list(manifest["branches"]) == branches
    parity = manifest["parity"]
    assert set(parity["max_abs_diff"]) == set(parity["bound"]) == {*branches, "fused"}
    assert all(parity["max_abs_diff"][name] < parity["bound"][name] for name in parity["bound"])
    check_consumer_side(run_folder, out, manifest)
    return manifest


def test_rgb_and_two_streams_export_one_graph_each_with_the_parity_checks(tiny_streams_run, tmp_path):
    out = tmp_path / "export"
    manifest = _export_of(tiny_streams_run, out, ["rgb", "joint", "bone"])
    assert manifest["branches"]["joint"]["input"]["name"] == manifest["branches"]["bone"]["input"]["name"] == "joints"
    assert manifest["preprocess"]["branches"]["rgb"]["kind"] == "rgb" and "crop" in manifest["preprocess"]
    # A clip of the run's test side through preprocess.py: every graph's input from the video and
    # its skeleton, to `mmfc predict`'s logits of each branch and its fused scores.
    sample_id = read_scores(tiny_streams_run / "fusion" / "fused.parquet").rows("test").ids[0]
    data = tiny_streams_run.parent / "data"
    video = data / "nturgb+d_rgb" / f"{sample_id}_rgb.avi"
    prediction, _, _, found = predict_video(open_run(tiny_streams_run), video,
                                            data / "nturgb+d_skeletons" / f"{sample_id}.skeleton")
    check_clip(out, manifest, prediction, found.skeleton, video)


def test_a_skeleton_only_run_exports_skeleton_graphs_and_a_preprocess_without_frames(ucla_run, tmp_path):
    out = tmp_path / "export"
    manifest = _export_of(ucla_run, out, ["joint", "bone"])
    settings = manifest["preprocess"]
    assert "crop" not in settings and {g["kind"] for g in settings["branches"].values()} == {"skeleton"}
    assert manifest["poses"]["layout"] == "kinect20" and "RGB crop" not in manifest["poses"]["requirement"]
    # A real NW-UCLA sequence of the test side, from its joints alone.
    sample_id = read_scores(ucla_run / "fusion" / "fused.parquet").rows("test").ids[0]
    sequence = ucla_run.parent / "ucla" / "all_sqe" / f"{sample_id}.json"
    prediction, _, found = predict_skeleton(open_run(ucla_run), sequence)
    check_clip(out, manifest, prediction, found.skeleton)


def test_an_ntu_skeleton_only_run_exports_its_one_graph(ntu_skeleton_run, realdata, tmp_path):
    out = tmp_path / "export"
    manifest = _export_of(ntu_skeleton_run, out, ["skel"])
    assert manifest["fusion"]["method"] == "skel_alone"
    path = realdata / "ntu_skeleton" / "S004C002P003R001A017.skeleton"
    prediction, _, found = predict_skeleton(open_run(ntu_skeleton_run), path)
    check_clip(out, manifest, prediction, found.skeleton)
