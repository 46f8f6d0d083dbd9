"""Branches declared by the pipeline: loading, the per-stream settings merged over [skel], each
refusal as one ConfigError, the table of branches, `--modality` and `mmfc branches`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmfc.branches import BRANCHES, declared_branch, supported_branches
from mmfc.cli import app
from mmfc.config import ConfigError, load_pipeline, pipeline_from_dict
from mmfc.data.layouts import KINECT20
from mmfc.errors import DataError
from mmfc.train.checkpoint import trained_settings

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
STREAMS = ["joint", "bone", "joint_motion", "bone_motion"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def test_the_default_branches_and_the_declared_ones():
    assert load_pipeline(PIPELINES / "synth.toml").branches == ["rgb", "skel"]
    # A source that never has videos trains the skeleton branch alone unless told otherwise.
    assert load_pipeline(None, ["data.source=penn_action", "data.val_by=group", "data.layout=penn13"]).branches == ["skel"]
    assert load_pipeline(None, ["data.source=pose_pickle"]).branches == ["skel"]
    assert load_pipeline(None, ["data.source=pose_pickle", "data.video_root=/videos"]).branches == ["rgb", "skel"]
    assert load_pipeline(PIPELINES / "nw-ucla.toml").branches == STREAMS
    assert load_pipeline(PIPELINES / "penn-action.toml").branches == STREAMS


def test_each_stream_takes_skel_s_settings_and_its_own_overrides(tmp_path: Path):
    cfg = load_pipeline(write(tmp_path, """
branches = ["rgb", "joint", "bone", "bone_motion"]
[skel.model]
base_channels = 24
num_frames = 40
[skel.train]
epochs = 20
[bone.train]
epochs = 40
[bone_motion.model]
base_channels = 32
"""), ["joint.train.lr=0.02"])
    assert [cfg.joint.model.stream, cfg.bone.model.stream, cfg.bone_motion.model.stream] == ["joint", "bone", "bone_motion"]
    assert (cfg.joint.train.epochs, cfg.bone.train.epochs, cfg.bone_motion.train.epochs) == (20, 40, 20)
    assert (cfg.joint.model.base_channels, cfg.bone.model.base_channels, cfg.bone_motion.model.base_channels) == (24, 24, 32)
    assert cfg.joint.model.num_frames == cfg.bone_motion.model.num_frames == 40
    assert (cfg.joint.train.lr, cfg.bone.train.lr) == (0.02, cfg.skel.train.lr)
    # A partial [skel.train] or [bone.train] keeps the skeleton training defaults (batch 32, lr
    # 0.1), not those of a training section in general (16, 0.01).
    assert cfg.skel.train.batch_size == cfg.bone.train.batch_size == 32 and cfg.bone.train.lr == 0.1
    # Each stream's own settings are its training digest: changing bone retrains bone alone.
    other = load_pipeline(write(tmp_path, (tmp_path / "p.toml").read_text().replace("epochs = 40", "epochs = 41")),
                          ["joint.train.lr=0.02"])
    assert other.digest("bone") != cfg.digest("bone") and other.digest("joint") == cfg.digest("joint")
    for name in cfg.branches:
        assert declared_branch(cfg, name).section(cfg) is getattr(cfg, name)


def test_a_stream_checkpoint_s_settings_rebuild_its_section(tmp_path: Path):
    """A checkpoint carries its branch's section whole (train/checkpoint.py): read back beside
    the branches that declare it, it is the same section."""

    class Store:
        config = {"size": 8}

    cfg = load_pipeline(None, ['branches=["joint", "bone"]', "bone.train.epochs=7", "skel.model.base_channels=12"])
    settings = trained_settings(cfg, "bone", Store())
    rebuilt = pipeline_from_dict({**settings, "branches": ["bone"]}, "a checkpoint")
    assert rebuilt.bone == cfg.bone and rebuilt.bone.train.epochs == 7 and rebuilt.bone.model.base_channels == 12


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ('branches = ["rgb", "bonez"]', [], "branches must be one of 'rgb', 'skel', 'joint', 'bone', 'joint_motion', "
                                           "'bone_motion'; got 'bonez'"),
        ('branches = ["joint", "bone", "joint"]', [], "branches: 'joint' is declared twice"),
        ('branches = []', [], "branches: declare at least one branch"),
        ('branches = ["skel", "bone"]', [], "branches: 'skel' is the one skeleton branch of skel.model.stream"),
        ('branches = ["rgb", "joint"]\n[bone.train]\nepochs = 3', [],
         "[bone] sets the bone stream's own settings, but branches = ['rgb', 'joint'] does not declare it"),
        ("", ["joint.train.epochs=3"], "[joint] sets the joint stream's own settings, but branches = ['rgb', 'skel']"),
        ('branches = ["bone"]\n[bone.model]\nstream = "joint"', [],
         "bone.model.stream = 'joint': the bone branch is the bone stream"),
        ('branches = ["joint"]\n[joint.train]\nepochz = 3', [], "unknown key 'joint.train.epochz'"),
        ('branches = ["rgb", "joint"]\n[data]\nsource = "pose_pickle"', [],
         "branches: 'rgb' learns from video frames, but a pose pickle without data.video_root has no videos; declare "
         "the skeleton branches alone, e.g. branches = ['joint']"),
        ('branches = ["joint", "bone"]', ["fusion.method=pyskl_1_1_1"],
         "fusion.method = 'pyskl_1_1_1' is no candidate for the branches ['joint', 'bone']: give \"auto\" or one of "
         "joint_alone, bone_alone, pyskl_1_1, pyskl_2_1, pyskl_1_2, global"),
        ('branches = ["joint", "bone", "joint_motion"]', ["fusion.method=ctrgcn"], "fusion.method = 'ctrgcn' is no "
                                                                                 "candidate"),
    ],
)
def test_a_bad_declaration_is_one_config_error(tmp_path: Path, text: str, overrides: list[str], message: str):
    with pytest.raises(ConfigError) as caught:
        load_pipeline(write(tmp_path, text), overrides)
    assert message in str(caught.value) and str(tmp_path / "p.toml") in str(caught.value)


@pytest.mark.parametrize("pipeline", ["nw-ucla.toml", "penn-action.toml"])
def test_rgb_on_a_source_without_videos_is_refused(pipeline: str):
    with pytest.raises(ConfigError, match=r"branches: 'rgb' learns from video frames, but the \w+ source holds "
                                          "skeletons only"):
        load_pipeline(PIPELINES / pipeline, ['branches=["rgb", "skel"]'])


def test_the_four_streams_have_ctr_gcn_s_recipe_and_any_candidate_may_be_named():
    cfg = load_pipeline(PIPELINES / "nw-ucla.toml", ["fusion.method=ctrgcn"])
    assert cfg.fusion.method == "ctrgcn"
    assert load_pipeline(PIPELINES / "nw-ucla.toml", ["fusion.method=pyskl_1_1_1_1"]).fusion.method == "pyskl_1_1_1_1"


def test_the_table_has_every_branch_a_pipeline_may_declare():
    assert list(BRANCHES) == ["rgb", "skel", *STREAMS]
    assert [b for b, branch in BRANCHES.items() if branch.needs_video] == ["rgb"]
    cfg = load_pipeline(PIPELINES / "nw-ucla.toml")
    assert {BRANCHES[name].input_shape(cfg, KINECT20) for name in STREAMS} == {(3, 52, 20, 1)}
    assert [BRANCHES[name].describe(cfg, KINECT20)["model"] for name in STREAMS] == [f"CTR-GCN {s}" for s in STREAMS]


def test_an_undeclared_modality_is_refused_with_the_declared_ones():
    cfg = load_pipeline(PIPELINES / "nw-ucla.toml")
    with pytest.raises(ConfigError, match=r"--modality skel: the pipeline declares the branches \['joint', 'bone', "
                                          r"'joint_motion', 'bone_motion'\], not 'skel'; add 'skel' to `branches`"):
        declared_branch(cfg, "skel")
    with pytest.raises(ConfigError, match=r"not 'rgb' \(the nw_ucla source holds skeletons only, and 'rgb' learns "
                                          "from video frames\\)"):
        declared_branch(cfg, "rgb")
    result = CliRunner().invoke(app, ["stage", "train", "-p", str(PIPELINES / "nw-ucla.toml"), "--modality", "skel"])
    assert result.exit_code == 2 and "error: --modality skel: the pipeline declares" in result.output
    assert "Traceback" not in result.output


def test_supported_branches_leave_the_video_branch_out_of_data_without_videos():
    cfg = load_pipeline(None, ['branches=["rgb", "joint", "bone"]'])
    assert supported_branches(cfg, True, "store") == (["rgb", "joint", "bone"], {})
    kept, left_out = supported_branches(cfg, False, "store")
    assert kept == ["joint", "bone"] and list(left_out) == ["rgb"]
    assert left_out["rgb"].startswith("not supported: it learns from video frames")
    only_rgb = load_pipeline(None, ['branches=["rgb"]'])
    with pytest.raises(DataError, match="store: the data supports none of the declared branches"):
        supported_branches(only_rgb, False, "store")


def test_mmfc_branches_prints_what_the_data_supports(tmp_path: Path, realdata: Path):
    runner = CliRunner()
    result = runner.invoke(app, ["branches", "-p", str(PIPELINES / "nw-ucla.toml"),
                                 "--set", f"data.root={realdata / 'nw_ucla'}"])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == STREAMS
    # An NTU download without nturgb+d_rgb/: RGB is declared and left out, and stderr says why.
    root = tmp_path / "ntu" / "nturgb+d_skeletons"
    root.mkdir(parents=True)
    for path in sorted((realdata / "ntu_skeleton").glob("*.skeleton")):
        (root / path.name).symlink_to(path)
    pipeline = write(tmp_path, f'branches = ["rgb", "joint", "bone"]\n[data]\nroot = "{root.parent}"\nnum_classes = 60\n')
    result = runner.invoke(app, ["branches", "-p", str(pipeline)])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["joint", "bone"]
    assert "note: branch rgb left out" in result.stderr and "no sample of the data has a video" in result.stderr
    # Data not there yet (make demo generates it): every declared branch, with a note.
    result = runner.invoke(app, ["branches", "-p", str(pipeline), "--set", f"data.root={tmp_path / 'absent'}"])
    assert result.exit_code == 0 and result.stdout.split() == ["rgb", "joint", "bone"]
    assert "cannot be read yet" in result.stderr
    result = runner.invoke(app, ["branches", "-p", str(pipeline), "--set", 'branches=["rgb"]'])
    assert result.exit_code == 2 and "the data supports none of the declared branches ['rgb']" in result.output


def test_info_and_cost_list_every_declared_branch():
    runner = CliRunner()
    sets = ["--set", 'branches=["rgb", "joint", "bone", "joint_motion", "bone_motion"]']
    result = runner.invoke(app, ["cost", "-p", str(PIPELINES / "synth.toml"), "--json", *sets])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert list(report["configured"]) == ["rgb", *STREAMS]
    assert report["ensemble"]["branches"] == ["rgb", *STREAMS]
    assert report["ensemble"]["gmacs"] == pytest.approx(sum(row["gmacs"] for row in report["configured"].values()))
    # The four streams read the same input; the motion streams add a subtraction, no multiply-adds.
    assert len({round(report["configured"][s]["gmacs"], 6) for s in STREAMS}) == 1
    table = runner.invoke(app, ["cost", "-p", str(PIPELINES / "synth.toml"), *sets])
    assert table.exit_code == 0 and "ensemble (5" in table.output
