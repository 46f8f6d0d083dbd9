"""Pipeline files: every one loads; unknown keys, wrong types and overrides are handled."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmfc.config import ConfigError, Pipeline, load_pipeline, valid_keys

PIPELINES = sorted((Path(__file__).parents[1] / "pipelines").glob("*.toml"))


def test_there_are_pipelines():
    expected = {"ntu60-xsub", "ntu60-xview", "ntu120-xsub", "ntu120-xset", "finegym99", "synth"}
    assert {p.stem for p in PIPELINES} >= expected


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
def test_every_pipeline_loads(path: Path):
    cfg = load_pipeline(path)
    assert isinstance(cfg, Pipeline)
    assert cfg.name == path.stem
    assert cfg.data.source in ("ntu", "pose_pickle")
    assert cfg.data.layout in ("ntu25", "coco17")
    assert cfg.data.protocol in ("xsub", "xview", "xset")


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
    with pytest.raises(ConfigError, match="unknown key 'dta'; valid keys here: name, workdir, .*data, crops"):
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
