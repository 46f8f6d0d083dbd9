"""The pose estimator on the real clips of ../shared/realdata, against their references.

Each clip is estimated once per test session (module fixtures), with models whose face and hand
model runs are counted per clip. The tests check what must hold with every release of OpenCV and
LiteRT: the person found and kept on one track, the joints on the person's limbs, the close-up
well above BlazePose without its face and hand path. Issue 11's goals (15 px, PCK 80%) are
bench/bench_poses.py's (docs/benchmarks.md, section 4), not asserted here: a release of OpenCV
moved the close-up's PCK by most of a point, and a test a point from its goal would fail on it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mmfc.data.decoding import probe_video, read_frames
import pose_accuracy as accuracy
from mmfc.poses.video_poses import PoseTracks, estimate_poses
from mmfc.poses.frame_poses import BlazePose

pytestmark = pytest.mark.slow  # the pose estimator on the real clips: `make test-fast` leaves it out

PART_RUNS: dict[str, int] = {}  # clip -> face and hand model runs while estimating it


@pytest.fixture(scope="module")
def models(pose_models: Path) -> BlazePose:
    """The models, every face and hand model run counted in PART_RUNS["now"]."""
    models = BlazePose(pose_models)
    PART_RUNS["now"] = 0
    for interpreter in (models.face.detector, models.face.mesh, models.hand.recrop, models.hand.hand):
        def counted(invoke=interpreter.invoke):
            PART_RUNS["now"] += 1
            invoke()

        interpreter.invoke = counted
    return models


def estimate(clip: str, video: Path, layout: str, models: BlazePose, models_dir: Path) -> PoseTracks:
    before = PART_RUNS["now"]
    tracks = estimate_poses(video, models_dir, 2, layout, models=models)
    PART_RUNS[clip] = PART_RUNS["now"] - before
    return tracks


@pytest.fixture(scope="module")
def ntu_tracks(realdata: Path, pose_models: Path, models: BlazePose) -> PoseTracks:
    return estimate("ntu", accuracy.ntu_video(realdata), "ntu25", models, pose_models)


@pytest.fixture(scope="module")
def ucf_tracks(realdata: Path, pose_models: Path, models: BlazePose) -> PoseTracks:
    return estimate("ucf", realdata / "videos" / accuracy.UCF_CLIP, "coco17", models, pose_models)


@pytest.fixture(scope="module")
def hug_tracks(realdata: Path, pose_models: Path, models: BlazePose) -> PoseTracks:
    return estimate("hug", realdata / "videos" / accuracy.HUG_CLIP, "ntu25", models, pose_models)


def test_ntu_clip_against_kinect(ntu_tracks: PoseTracks, realdata: Path):
    pixels, frames = accuracy.ntu_reference(realdata)
    assert ntu_tracks.keypoint.shape == (1, 103, 25, 2) and ntu_tracks.frame_size == (1920, 1080)
    assert ntu_tracks.frames_with_person() == 103
    score = ntu_tracks.keypoint_score[0]
    error = accuracy.median_limb_error(ntu_tracks.keypoint[0], score, pixels, frames)
    # On the limbs of a person 400 px tall; the goal, 15 px, is bench_poses's.
    assert error <= 20.0, f"median limb error {error:.1f} px"
    # Kinect's sides are BlazePose's opposite ones: swapping them back must be much worse.
    kinect_mirror = [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 20, 23, 24, 21, 22]
    assert accuracy.median_limb_error(ntu_tracks.keypoint[0][:, kinect_mirror], score, pixels, frames) > 3 * error
    world = ntu_tracks.keypoint_3d[0]
    height = np.linalg.norm(world[:, 3] - (world[:, 14] + world[:, 18]) / 2, axis=-1)  # head to ankles
    assert 1.2 < np.median(height) < 2.0  # metres: a standing adult
    # A person 400 px tall in 1080p is seen well enough by the landmark model: no part model runs.
    assert PART_RUNS["ntu"] == 0


def test_ucf_clip_against_hrnet(ucf_tracks: PoseTracks, realdata: Path):
    reference, score = accuracy.ucf_reference(realdata)
    assert ucf_tracks.frame_size == (320, 240) and ucf_tracks.total_frames == 164
    assert ucf_tracks.num_persons == 1 and ucf_tracks.frames_with_person() == 164
    estimate = ucf_tracks.keypoint[0, : len(reference)]
    # The person box is the box of the confidently annotated joints (the strictest reading, see
    # accuracy.PCK_BOXES). BlazePose alone scores far lower here: a face close-up, its body
    # region six times the frame; the face and hand models lift it to the goal, 80%, which is
    # bench_poses's to measure. Well above BlazePose alone is what must hold.
    value = accuracy.pck(estimate, reference, score, box="confident")
    assert value >= 0.70, f"PCK@0.1 {value:.3f}"
    assert accuracy.pck(estimate, reference, score, box="all") >= value  # the larger box is kinder
    # The face and hand models ran on nearly every frame: a face model run and a hand model run
    # each, and more for the re-crops.
    assert PART_RUNS["ucf"] >= 2 * 164
    # Legs below the frame are not in the video: their scores are 0, never a guess off-frame.
    off = (ucf_tracks.keypoint[..., 1] >= 240) | (ucf_tracks.keypoint[..., 1] < 0)
    assert off.any() and (ucf_tracks.keypoint_score[off] == 0).all()


def test_hugging_clip_two_tracks_without_swaps(hug_tracks: PoseTracks):
    assert hug_tracks.num_persons == 2 and hug_tracks.total_frames == 72
    assert accuracy.frames_with_persons(hug_tracks.keypoint_score, 2) >= 0.9 * 72
    assert accuracy.identity_swaps(hug_tracks.keypoint, hug_tracks.keypoint_score) == 0
    # The two tracks are two people: their centres stay apart, the right one right.
    centres = accuracy.track_centres(hug_tracks.keypoint, hug_tracks.keypoint_score)
    assert np.nanmin(np.linalg.norm(centres[0] - centres[1], axis=-1)) > 50
    both = ~np.isnan(centres[:, :, 0]).any(axis=0)
    right = np.argmax(np.nanmean(centres[:, :, 0], axis=1))
    assert (centres[right, both, 0] > centres[1 - right, both, 0]).all()
    # In the embrace (from frame 50) the leaning person's head stays his: left of the other's.
    # Before both kept their regions while their heads were close, his region turned onto the
    # other person and his head was drawn on the other's from frame 60 on.
    head = hug_tracks.keypoint[:, 50:, 3, 0]  # NTU-25 joint 4, the head
    seen = (hug_tracks.keypoint_score[:, 50:, 3] > 0).all(axis=0)
    assert seen.sum() >= 20 and (head[right, seen] > head[1 - right, seen]).all()
    assert PART_RUNS["hug"] == 0


def test_identity_swaps_counts_an_exchange(hug_tracks: PoseTracks):
    keypoint, score = hug_tracks.keypoint.copy(), hug_tracks.keypoint_score.copy()
    keypoint[:, 30:], score[:, 30:] = keypoint[::-1, 30:], score[::-1, 30:]
    assert accuracy.identity_swaps(keypoint, score) == 1


def test_rgb_frames_give_what_the_video_file_gives(realdata: Path, pose_models: Path, models: BlazePose,
                                                  ucf_tracks: PoseTracks):
    video = realdata / "videos" / accuracy.UCF_CLIP
    frames = read_frames(video, range(20))  # RGB; the face and hand models run on them too
    from_frames = estimate_poses(frames, pose_models, 2, "coco17", models=models, fps=probe_video(video).fps)
    np.testing.assert_allclose(from_frames.keypoint, ucf_tracks.keypoint[:, :20], atol=1e-3)


def test_a_person_gone_for_some_frames_comes_back_on_the_same_track(realdata: Path, pose_models: Path,
                                                                    models: BlazePose):
    frames = read_frames(accuracy.ntu_video(realdata), range(30))
    frames = np.stack([cv2.resize(f, (480, 270), interpolation=cv2.INTER_AREA) for f in frames])
    frames[10:15] = 128  # five empty frames: nobody there
    tracks = estimate_poses(frames, pose_models, 2, "coco17", models=models)
    seen = (tracks.keypoint_score > 0).any(axis=-1)  # [M, T]
    assert tracks.num_persons == 1
    assert seen[0, :10].all() and not seen[0, 10:15].any() and seen[0, 15:].all()


def test_a_close_up_stays_one_person_on_one_track(realdata: Path, pose_models: Path, models: BlazePose):
    """Frames that differ by one grey level in a few pixels (as two OpenCV releases' warps do)
    once let the detector find the close-up's person again as a newcomer beside themselves,
    and the second track then took the person over: NEW_FACE."""
    video = realdata / "videos" / accuracy.UCF_CLIP
    info = probe_video(video)
    frames = accuracy.nudged(read_frames(video, range(info.frames)), seed=1)
    tracks = estimate_poses(frames, pose_models, 2, "coco17", models=models, fps=info.fps)
    seen = (tracks.keypoint_score > 0).any(axis=-1)  # [M, T]
    assert tracks.num_persons == 1 and seen[0].all()
    # The person kept scores near the goal over seeds (bench_poses), far above what a second
    # track taking them over scored.
    reference, score = accuracy.ucf_reference(realdata)
    assert accuracy.pck(tracks.keypoint[0, : len(reference)], reference, score) >= 0.70
