"""Where the pose model files come from and what happens when they are not there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mmfc.errors import DataError
from mmfc.poses import model_files
from mmfc.poses.model_files import model_paths, sha256, unpack_models


def fake_wheel(path: Path, contents: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in contents.items():
            zf.writestr(member, data)
    return path


@pytest.fixture
def fake_models(monkeypatch) -> dict[str, bytes]:
    """Small stand-ins for the model files, with their hashes in the table."""
    data = {name: f"{name} bytes".encode() for name in model_files.MODEL_FILES}
    table = {name: (member, sha256(data[name])) for name, (member, _) in model_files.MODEL_FILES.items()}
    monkeypatch.setattr(model_files, "MODEL_FILES", table)
    return data


def test_unpack_checks_hashes_and_writes_only_the_model_files(tmp_path: Path, fake_models):
    members = {model_files.MODEL_FILES[n][0]: d for n, d in fake_models.items()}
    wheel = fake_wheel(tmp_path / "mediapipe.whl", {**members, "mediapipe/other.tflite": b"x"})
    written = unpack_models(wheel, tmp_path / "models")
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(fake_models) == sorted(p.name for p in written)
    assert model_paths(tmp_path / "models")["pose_detection.tflite"].read_bytes() == b"pose_detection.tflite bytes"

    tampered = dict(members)
    tampered[model_files.MODEL_FILES["pose_landmark_full.tflite"][0]] = b"something else"
    with pytest.raises(DataError, match="sha256"):
        unpack_models(fake_wheel(tmp_path / "tampered.whl", tampered), tmp_path / "other")
    with pytest.raises(DataError, match="has no mediapipe/modules/pose_detection"):
        unpack_models(fake_wheel(tmp_path / "empty.whl", {"x": b""}), tmp_path / "other")
    (tmp_path / "broken.whl").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable wheel"):
        unpack_models(tmp_path / "broken.whl", tmp_path / "other")


def test_missing_or_altered_models_name_the_make_target(tmp_path: Path, fake_models):
    with pytest.raises(DataError, match="make setup-pose") as missing:
        model_paths(tmp_path)
    assert "pose_detection.tflite" in missing.value.path
    for name, data in fake_models.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "face_landmark.tflite").write_bytes(b"truncated")
    with pytest.raises(DataError, match="sha256 differs.*make setup-pose"):
        model_paths(tmp_path)


def test_the_real_hashes_are_the_issues(pose_models: Path):
    assert model_files.MODEL_FILES["pose_detection.tflite"][1].startswith("9ba9dd3d42efaaba")
    assert model_files.MODEL_FILES["pose_landmark_full.tflite"][1].startswith("e9a5c5cb17f736fa")
    # Holistic's face and hand models, unpacked from the same wheel.
    assert {"face_detection_short_range.tflite", "face_landmark.tflite", "hand_recrop.tflite",
            "hand_landmark_lite.tflite"} <= set(model_files.MODEL_FILES)
    assert set(model_paths(pose_models)) == set(model_files.MODEL_FILES)


def test_opening_the_models_writes_nothing_to_stderr(pose_models: Path):
    """LiteRT's delegate announcement would land in every pose worker's progress display; a
    fresh process, since it is printed once per process. Stderr works again afterwards."""
    code = (
        "import sys; from mmfc.poses.frame_poses import BlazePose; "
        f"BlazePose({str(pose_models)!r}); print('after', file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr == "after\n"
