"""Pipeline files: every one loads; unknown keys, wrong types and overrides are handled."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmfc import config
from mmfc.cli import app
from mmfc.config import ConfigError, Pipeline, load_pipeline, valid_keys

PIPELINES = sorted((Path(__file__).parents[1] / "pipelines").glob("*.toml"))


def test_there_are_pipelines():
    expected = {"ntu60-xsub", "ntu60-xview", "ntu120-xsub", "ntu120-xset", "finegym99", "synth", "nw-ucla", "penn-action"}
    assert {p.stem for p in PIPELINES} >= expected


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
def test_every_pipeline_loads(path: Path):
    cfg = load_pipeline(path)
    assert isinstance(cfg, Pipeline)
    assert cfg.name == path.stem
    assert cfg.data.source in typing.get_args(config.Source)
    assert cfg.data.layout in typing.get_args(config.JointLayout) + (cfg.data.declared_layout.name,)
    assert cfg.data.protocol in typing.get_args(config.Protocol)


def test_protocols_and_classes_match_the_names():
    ntu60 = load_pipeline(Path(__file__).parents[1] / "pipelines" / "ntu60-xview.toml")
    assert (ntu60.data.protocol, ntu60.data.num_classes) == ("xview", 60)
    gym = load_pipeline(Path(__file__).parents[1] / "pipelines" / "finegym99.toml")
    assert (gym.data.source, gym.data.num_classes, gym.data.val_by) == ("pose_pickle", 99, "group")


def test_unknown_key_in_file(tmp_path: Path):
    path = tmp_path / "p.toml"
    path.write_text('[data]\nroot = "x"\nrooot = "y"\n')
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    message = str(info.value)
    assert "unknown key 'data.rooot'" in message
    assert "data.root" in message and "data.val_performers" in message
    assert str(path) in message


def test_unknown_section(tmp_path: Path):
    path = tmp_path / "p.toml"
    path.write_text("[dta]\nroot = 1\n")
    with pytest.raises(ConfigError, match="unknown key 'dta'; valid keys here: name, workdir, .*data, jobs, poses, crops"):
        load_pipeline(path)


def test_unknown_key_via_set():
    with pytest.raises(ConfigError, match="unknown key 'rgb.model.blok'.*rgb.model.block"):
        load_pipeline(None, ["rgb.model.blok=tsm"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.num_classes=sixty", "data.num_classes must be an integer"),
        ("data.num_classes=1.5", "data.num_classes must be an integer"),
        ("crops.allow_pad=1", "crops.allow_pad must be true or false"),
        ("data.val_performers=3", "data.val_performers must be a list"),
        ("data.val_performers=[1, 'a']", "data.val_performers must be an integer"),
        ("crops.padding=abc", "crops.padding must be a float"),
        ("data.root.x=1", "data.root must be a str"),
        ("data.root", "expected key=value"),
    ],
)
def test_type_errors(override: str, message: str):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_pipeline(None, [override])


def test_overrides_apply_after_the_file():
    path = Path(__file__).parents[1] / "pipelines" / "ntu60-xsub.toml"
    cfg = load_pipeline(path, ["data.root=/data/x y", "data.val_performers=[1, 2]", "crops.padding=1",
                               "rgb.train.amp=false", "workdir=runs/t"])
    assert cfg.data.root == "/data/x y"
    assert cfg.data.val_performers == [1, 2]
    assert cfg.crops.padding == 1.0 and isinstance(cfg.crops.padding, float)
    assert cfg.rgb.train.amp is False
    assert cfg.workdir == "runs/t"
    assert cfg.data.num_classes == 60  # untouched keys keep the file's value


def test_override_below_a_value():
    with pytest.raises(ConfigError, match="root is a value, not a section"):
        load_pipeline(None, ["data.root=/a", "data.root.x=1"])


def test_numeric_string_override_stays_a_string():
    assert load_pipeline(None, ["data.root=2024"]).data.root == "2024"


def test_missing_and_invalid_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such pipeline file"):
        load_pipeline(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_pipeline(bad)


def test_digest_tracks_sections():
    a, b = load_pipeline(None), load_pipeline(None, ["crops.padding=0.5"])
    assert a.digest("data") == b.digest("data")
    assert a.digest("crops") != b.digest("crops") and a.digest() != b.digest()


def test_valid_keys_cover_every_section():
    keys = valid_keys()
    assert "data.root" in keys and "skel.train.lr" in keys and "fusion.cv_folds" in keys
    assert len(keys) == len(set(keys))


# ---------------------------------------------------------------------------------------------
# The whole pipeline is validated when it loads


@pytest.mark.parametrize(
    "override, message",
    [
        ("rgb.model.block=tea", "rgb.model.block must be one of 'plain', 'tsm', 'ma', 'ta', 'staa'; got 'tea'"),
        ("rgb.model.depth=101", "rgb.model.depth must be one of 18, 34, 50; got 101"),
        ("skel.model.stream=angle", "skel.model.stream must be one of 'joint', 'bone', 'joint_motion', 'bone_motion'"),
        ("rgb.ccl.kind=triplet", "rgb.ccl.kind must be one of 'frhead', 'supcon'"),
        ("skel.train.schedule=linear", "skel.train.schedule must be one of 'cosine', 'step'"),
        ("rgb.train.lr_step=batch", "rgb.train.lr_step must be one of 'iteration', 'epoch'"),
        ("crops.mode=box", "crops.mode must be one of 'clip', 'frame', 'person', 'none'"),
        ("jobs.backend=spark", "jobs.backend must be one of 'loky', 'threading'"),
        ("jobs.n_jobs=0", "jobs.n_jobs = 0: give a number of workers, or -1 for one per core"),
        ("crops.part=3/2", "crops.part = '3/2': write it as k/n with 1 <= k <= n"),
        ("crops.part=half", "crops.part = 'half': write it as k/n"),
        ("crops.min_video_fraction=1.5", "crops.min_video_fraction must be at most 1"),
        ("fusion.method=best", "fusion.method = 'best' is no candidate for the branches ['rgb', 'skel']: give "
                               "\"auto\" or one of rgb_alone, skel_alone, pyskl_1_1"),
        ("fusion.method=ctrgcn", "fusion.method = 'ctrgcn' is no candidate"),
        ("fusion.metric=top5", "fusion.metric must be one of 'top1', 'mean_class'"),
        ("data.source=csv", "data.source must be one of 'ntu', 'pose_pickle'"),
        ("data.layout=mpii16", "data.layout must be one of 'ntu25', 'coco17', 'kinect20'"),
        ("data.protocol=xsetup", "data.protocol must be one of 'xsub', 'xview', 'xset'"),
        ("crops.jpeg_quality=0", "crops.jpeg_quality must be at least 1, got 0"),
        ("crops.jpeg_quality=101", "crops.jpeg_quality must be at most 100, got 101"),
        ("crops.smooth=1", "crops.smooth must be below 1"),
        ("crops.padding=-0.5", "crops.padding must be at least 0"),
        ("crops.size=0", "crops.size must be at least 1"),
        ("rgb.train.epochs=0", "rgb.train.epochs must be at least 1"),
        ("scores.clips=0", "scores.clips must be at least 1"),
        ("fusion.grid=1", "fusion.grid must be at least 2"),
        ("fusion.cv_folds=1", "fusion.cv_folds must be at least 2"),
        ("rgb.model.fragment_width=26", "rgb.model.fragment_width applies to depth 50 only"),
        ("skel.ccl.level_weights=[0.5, 1.0]", "skel.ccl.level_weights has 2 weights for the 4 feature levels"),
        ("data.val_by=group", "data.val_by = 'group': NTU sources carve validation by 'performer'"),
    ],
)
def test_allowed_values_are_checked_when_loaded(override: str, message: str):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_pipeline(Path(__file__).parents[1] / "pipelines" / "synth.toml", [override])
    assert "synth.toml with --set overrides" in str(info.value)


def test_res2net_widths_need_room_for_four_fragments():
    fits = ["rgb.model.depth=50", "rgb.model.fragment_width=26"]
    assert load_pipeline(None, fits).rgb.model.fragment_width == 26
    with pytest.raises(ConfigError, match="fragments would be empty"):
        load_pipeline(None, [*fits, "rgb.model.base_width=2"])


def test_augmentation_settings_belong_to_their_branch():
    cfg = load_pipeline(None, ["rgb.train.color_jitter=0.4", "skel.train.rotate_degrees=5"])
    assert cfg.rgb.train.color_jitter == 0.4 and cfg.skel.train.rotate_degrees == 5.0
    for key in ("rgb.train.rotate_degrees", "rgb.train.skel_scale", "skel.train.color_jitter", "skel.train.scale_range"):
        with pytest.raises(ConfigError, match=f"unknown key '{re.escape(key)}'"):
            load_pipeline(None, [f"{key}=0.1"])


def test_mmfc_info_refuses_a_bad_choice_with_the_valid_ones():
    result = CliRunner().invoke(app, ["info", "--pipeline", "pipelines/synth.toml", "--set", "rgb.model.block=stta"])
    assert result.exit_code == 2
    assert "rgb.model.block must be one of 'plain', 'tsm', 'ma', 'ta', 'staa'; got 'stta'" in result.output


def test_every_table_of_variants_covers_its_choices():
    """Each choice is declared once in config.py; the table implementing it has exactly its names."""
    from mmfc.branches import BRANCHES
    from mmfc.data.layouts import LAYOUTS
    from mmfc.data.ntu import PROTOCOL_TRAIN_RULES
    from mmfc.data.sources import SOURCES
    from mmfc.models.ccl import LEVEL_KINDS
    from mmfc.models.resnet import BLOCK_VARIANTS, DEPTHS
    from mmfc.poses.joints import MAPPINGS

    for table, choice in [
        (SOURCES, config.Source), (PROTOCOL_TRAIN_RULES, config.Protocol), (LAYOUTS, config.JointLayout),
        (BLOCK_VARIANTS, config.RGBBlock), (DEPTHS, config.RGBDepth), (LEVEL_KINDS, config.CCLKind),
        (MAPPINGS, config.PoseLayout), (BRANCHES, config.BranchName),
    ]:
        assert list(table) == list(typing.get_args(choice))
    # A branch's name is also its section of the pipeline (training digests hash that section).
    cfg = Pipeline()
    assert all(branch.section(cfg) is getattr(cfg, name) for name, branch in BRANCHES.items())


def test_the_videos_example_documents_every_key():
    text = (Path(__file__).resolve().parents[1] / "pipelines" / "videos-example.toml").read_text()
    cfg = load_pipeline(Path(__file__).resolve().parents[1] / "pipelines" / "videos-example.toml")
    assert cfg.data.source == "videos" and cfg.data.poses == "runs/videos-example/poses/poses.pkl"
    section, documented = "", set()
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]") + "."
        elif found := re.match(r"(?:# )?([a-z_0-9]+) = ", line):
            documented.add(section + found.group(1) if section else found.group(1))
    # A stream's section holds the keys of [skel], which document them.
    streams = {key for key in valid_keys() if key.split(".")[0] in config.SKELETON_STREAMS}
    assert {key.split(".", 1)[1] for key in streams} == {key.split(".", 1)[1] for key in valid_keys() if key.startswith("skel.")}
    assert documented == set(valid_keys()) - streams


def test_videos_with_ntu25_need_2d_skeleton_input():
    with pytest.raises(ConfigError, match="set skel.model.in_channels = 2"):
        load_pipeline(None, ["data.source=videos", "data.layout=ntu25"])
    assert load_pipeline(None, ["data.source=videos", "data.layout=ntu25", "skel.model.in_channels=2"])


# ---------------------------------------------------------------------------------------------
# Which settings shape results: declared once, beside each field, and read by the one digest

# The settings that only decide how or where a run goes. A change here is a decision: it makes
# outputs made with other values current (or stale) under the new rule.
NOT_AFFECTING_RESULTS = {
    "name", "workdir", "crops_from", "data.poses", "jobs.backend", "jobs.n_jobs", "poses.models_dir",
    "crops.samples_per_shard", "crops.part", "rgb.train.threads", "rgb.train.loader_workers",
    "skel.train.threads", "skel.train.loader_workers",
    *(f"{stream}.train.{key}" for stream in config.SKELETON_STREAMS for key in ("threads", "loader_workers")),
}


def leaf_fields(cls: type = Pipeline, prefix: str = "") -> dict[str, dataclasses.Field]:
    found = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            found |= leaf_fields(hints[f.name], prefix + f.name + ".")
        else:
            found[prefix + f.name] = f
    return found


def test_every_field_declares_whether_it_affects_results():
    fields = leaf_fields()
    undeclared = [key for key, f in fields.items() if config.AFFECTS_RESULTS not in f.metadata]
    assert not undeclared, f"declare these through config.bounded or config.setting: {undeclared}"
    assert {key for key, f in fields.items() if not f.metadata[config.AFFECTS_RESULTS]} == NOT_AFFECTING_RESULTS


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, list):
        return [*value, value[-1] if value else 1]
    return value + "-changed"


@pytest.mark.parametrize("key", sorted(leaf_fields()))
def test_the_digest_follows_the_declaration_of_each_field(key: str):
    cfg = load_pipeline(None)
    before = cfg.digest()
    *sections, name = key.split(".")
    section = cfg
    for part in sections:
        section = getattr(section, part)
    setattr(section, name, _changed(getattr(section, name)))
    changes = cfg.digest() != before
    assert changes == (key not in NOT_AFFECTING_RESULTS)
    if sections:  # a section's own digest moves with it; another section's stays
        assert (cfg.digest(sections[0]) != load_pipeline(None).digest(sections[0])) == changes
        other = "fusion" if sections[0] != "fusion" else "data"
        assert cfg.digest(other) == load_pipeline(None).digest(other)


def test_result_settings_nest_sections_and_single_fields():
    cfg = load_pipeline(None, ["crops.part=1/2", "data.layout=coco17"])
    chosen = cfg.result_settings("crops", "data.layout", "rgb.train.lr")
    assert set(chosen) == {"crops", "data", "rgb"} and chosen["data"] == {"layout": "coco17"}
    assert chosen["rgb"] == {"train": {"lr": 0.01}}
    assert "part" not in chosen["crops"] and chosen["crops"]["mode"] == "clip"
    assert "threads" not in cfg.result_settings()["rgb"]["train"]


