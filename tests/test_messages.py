"""What a user reads when something is wrong: one message naming the file and the key, with
every character of paths and values kept (rich would read "[x]" as markup and drop it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from mmfc.cli import app
from mmfc.config import ConfigError, load_pipeline
from mmfc.errors import DataError
from mmfc.jobs import print_failures


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_a_folder_or_a_binary_file_as_pipeline_is_one_message(runner: CliRunner, tmp_path: Path):
    with pytest.raises(ConfigError, match=f"{tmp_path}: a folder, not a pipeline file"):
        load_pipeline(tmp_path)
    binary = tmp_path / "weights.toml"
    binary.write_bytes(b"name = 'x'\n\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"weights.toml: not a text pipeline file \(byte 11 is not UTF-8"):
        load_pipeline(binary)
    for path in (tmp_path, binary):
        result = runner.invoke(app, ["info", "--pipeline", str(path)])
        assert result.exit_code == 2 and result.output.startswith("error: ") and "Traceback" not in result.output


def test_a_value_where_a_section_belongs_names_the_key(runner: CliRunner, tmp_path: Path):
    pipeline = tmp_path / "p.toml"
    pipeline.write_text("data = 3\n")
    with pytest.raises(ConfigError, match=r"p.toml: 'data' must be a table \(a \[data\] section\), not 3"):
        load_pipeline(pipeline)
    result = runner.invoke(app, ["info", "--pipeline", str(pipeline)])
    assert result.exit_code == 2 and "'data' must be a table (a [data] section), not 3" in result.output


def test_square_brackets_in_paths_survive_the_cli_and_the_failures_table(runner: CliRunner, tmp_path: Path):
    folder = tmp_path / "take [2] [bold]"
    folder.mkdir()
    result = runner.invoke(app, ["info", "--pipeline", str(folder / "missing.toml")])
    assert result.exit_code == 2 and f"{folder / 'missing.toml'}: no such pipeline file" in result.output
    console = Console(record=True, width=400)
    print_failures(console, [{"id": "clip [1]", "file": str(folder / "a.avi"), "reason": "cannot open [red]"}],
                   "1 failed [x]", "failures.parquet")
    text = console.export_text()
    assert "clip [1]" in text and str(folder / "a.avi") in text and "cannot open [red]" in text and "1 failed [x]" in text


def test_our_warnings_print_as_one_line_with_the_path_whole(capsys):
    from mmfc import cli
    from mmfc.train.checkpoint import UnverifiedCheckpoint

    message = "runs/take [2]/train/rgb/best.pt: no best.pt.sha256 beside it (written by an older mmfc); loaded unverified"
    cli._show_warning(UnverifiedCheckpoint(message), UnverifiedCheckpoint, "checkpoint.py", 1)
    assert capsys.readouterr().err == f"warning: {message}\n"


class _DamagedStore(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise DataError("crops/shards/ab12.zarr", "damaged shard store: rgb/c/0/0/0/0/0 is missing")


def test_a_data_error_in_a_loader_worker_comes_out_as_itself():
    # torch re-raises a worker's exception as its type built from the worker's traceback text.
    loader = torch.utils.data.DataLoader(_DamagedStore(), batch_size=1, num_workers=1)
    with pytest.raises(DataError) as caught:
        next(iter(loader))
    assert str(caught.value) == "crops/shards/ab12.zarr: damaged shard store: rgb/c/0/0/0/0/0 is missing"
    assert caught.value.path == "crops/shards/ab12.zarr"


def test_a_broken_video_is_one_line_without_ffmpegs_own_complaints(tmp_path: Path):
    # FFmpeg writes to the process's stderr itself, past Python: only a child process shows it.
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    result = subprocess.run([sys.executable, "-m", "mmfc", "inspect", str(broken)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {broken}: cannot open video (unknown container or codec)"]
