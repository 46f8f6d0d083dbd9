"""Video probing and sequential frame reading on the real clips."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mmfc.data.decoding import probe_video, read_frames, scale_pixels
from mmfc.errors import DataError

NTU_CLIP = "videos/S001C001P001R001A001_rgb.avi"
UCF_CLIP = "videos/ucf101_v_ApplyEyeMakeup_g01_c01.avi"


def test_probe(realdata: Path):
    ntu = probe_video(realdata / NTU_CLIP)
    assert (ntu.frames, ntu.width, ntu.height) == (103, 1920, 1080)
    assert ntu.fps == pytest.approx(30.0)
    ucf = probe_video(realdata / UCF_CLIP)
    assert (ucf.width, ucf.height) == (320, 240)
    assert ucf.fps == pytest.approx(25.0)


def test_read_frames_order_duplicates_and_rgb(realdata: Path):
    path = realdata / UCF_CLIP
    frames = read_frames(path, [40, 3, 40, 0])
    assert frames.shape == (4, 240, 320, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[0], frames[2])
    assert not np.array_equal(frames[0], frames[1])
    capture = cv2.VideoCapture(str(path))
    ok, bgr = capture.read()
    capture.release()
    assert ok
    np.testing.assert_array_equal(frames[3], bgr[..., ::-1])


def test_ntu_clip_has_103_frames(realdata: Path):
    frames = read_frames(realdata / NTU_CLIP, [0, 102, 103, 150])
    assert frames.shape == (4, 1080, 1920, 3)
    # 102 is the last frame; indices past the end get it too.
    np.testing.assert_array_equal(frames[1], frames[2])
    np.testing.assert_array_equal(frames[1], frames[3])
    assert not np.array_equal(frames[0], frames[1])


def test_missing_and_undecodable_files(tmp_path: Path):
    with pytest.raises(DataError, match="nope.mp4: no such video file"):
        probe_video(tmp_path / "nope.mp4")
    with pytest.raises(DataError, match="nope.mp4: no such video file"):
        read_frames(tmp_path / "nope.mp4", [0])
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"RIFF" + bytes(2000))
    with pytest.raises(DataError, match="junk.avi: cannot open video"):
        read_frames(junk, [0])


def test_truncated_video_clamps_to_what_decodes(tmp_path: Path, realdata: Path):
    data = (realdata / UCF_CLIP).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 4 // 10])
    # The header still promises every frame; decoding stops early.
    assert probe_video(cut).frames == 164
    frames = read_frames(cut, [0, 150, 163])
    full = read_frames(realdata / UCF_CLIP, [0, 150])
    np.testing.assert_array_equal(frames[0], full[0])
    np.testing.assert_array_equal(frames[1], frames[2])  # both the last decoded frame
    assert not np.array_equal(frames[1], full[1])


def test_bad_indices(realdata: Path):
    with pytest.raises(DataError, match="negative frame index -1"):
        read_frames(realdata / UCF_CLIP, [-1, 2])
    with pytest.raises(DataError, match="no frame indices"):
        read_frames(realdata / UCF_CLIP, [])


def test_scale_pixels():
    pixels = np.array([[[340.0, 256.0], [170.0, 0.0]]])
    scaled = scale_pixels(pixels, (340, 256), (320, 240))
    np.testing.assert_allclose(scaled, [[[320.0, 240.0], [160.0, 0.0]]], rtol=1e-6)
    assert scaled.dtype == np.float32
