"""How the pose stage is measured against real references (tests/test_poses_real.py and
bench/bench_poses.py, which imports it from tests/):
pixel error against Kinect's colour joints, PCK against 2D keypoints of another estimator, and
whether tracks keep their people from frame to frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmfc.data.ntu import load_skeleton
from mmfc.data.pose_pickle import read_pose_pickle
from mmfc.poses.video_poses import PoseTracks

# NTU-25 limb joints (0-based): shoulders, elbows, wrists, hips, knees, ankles.
NTU_LIMBS = tuple(j - 1 for j in (5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19))


def median_limb_error(keypoint: np.ndarray, score: np.ndarray, reference: np.ndarray, frames: np.ndarray) -> float:
    """Median pixel distance over the 12 NTU limb joints of the frames where the estimate found
    the person. keypoint [T, 25, 2], score [T, 25] (estimate), reference [F, 25, 2] on video
    frames `frames` [F]."""
    found = (score[frames] > 0).any(axis=1)
    error = np.linalg.norm(keypoint[frames][:, NTU_LIMBS] - reference[:, NTU_LIMBS], axis=-1)
    return float(np.median(error[found]))


# The person box of PCK on the UCF clip. The reference is HRNet's, run top-down on a person
# detector's box that the pickle does not keep. "confident": the box of the confidently
# annotated joints on each frame, the joints scored; in this face close-up that is the face
# and a wrist, smaller than the visible person, so the strictest reading (the one the goal is
# tested on). "all": the box of all 17 reference joints, the unconfident ones included; a
# top-down estimator puts every joint inside its crop of the detector's box, so this box
# approximates the person box HRNet worked from.
PCK_BOXES = ("confident", "all")


def pck(keypoint: np.ndarray, reference: np.ndarray, reference_score: np.ndarray,
        min_score: float = 0.5, fraction: float = 0.1, box: str = "confident") -> float:
    """Share of the confidently annotated joints (reference score >= min_score) estimated within
    `fraction` of the person box diagonal on each frame, the box being one of PCK_BOXES.
    keypoint, reference [T, V, 2], reference_score [T, V]; a frame with no estimate counts as
    misses."""
    if box not in PCK_BOXES:
        raise ValueError(f"unknown PCK box {box!r}; known: {', '.join(PCK_BOXES)}")
    hits = total = 0
    for t in range(len(reference)):
        confident = reference_score[t] >= min_score
        if confident.sum() < 2:
            continue
        points = reference[t][confident]
        boxed = points if box == "confident" else reference[t]
        diagonal = np.linalg.norm(boxed.max(axis=0) - boxed.min(axis=0))
        error = np.linalg.norm(keypoint[t][confident] - points, axis=-1)
        hits += int((error <= fraction * diagonal).sum())
        total += int(confident.sum())
    return hits / max(total, 1)


def nudged(frames: np.ndarray, seed: int, share: float = 0.001) -> np.ndarray:
    """Frames [T, H, W, 3] uint8 with `share` of their values one grey level up or down, frame
    by frame from one seed: differences as small as two OpenCV releases' warps, to see how far
    tracking carries them."""
    rng = np.random.default_rng(seed)
    out = frames.astype(np.int16)
    for frame in out:
        frame += (rng.random(frame.shape) < share) * rng.choice(np.array([-1, 1], np.int16), frame.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def track_centres(keypoint: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per person and frame, the mean of its seen joints; NaN where it is not seen.
    keypoint [M, T, V, 2], score [M, T, V] -> [M, T, 2]"""
    seen = score > 0
    count = seen.sum(axis=-1, keepdims=True)
    total = (keypoint * seen[..., None]).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def identity_swaps(keypoint: np.ndarray, score: np.ndarray) -> int:
    """Neighbouring frames, both with two people, where exchanging the two tracks would make
    both move less: the frames where the tracks swapped who they follow."""
    centres = track_centres(keypoint[:2], score[:2])  # [2, T, 2]
    swaps = 0
    for t in range(centres.shape[1] - 1):
        a, b = centres[:, t], centres[:, t + 1]
        if np.isnan(a).any() or np.isnan(b).any():
            continue
        kept = np.linalg.norm(a - b, axis=1).sum()
        exchanged = np.linalg.norm(a - b[::-1], axis=1).sum()
        swaps += int(exchanged < kept)
    return swaps


def frames_with_persons(score: np.ndarray, count: int) -> int:
    """Frames on which at least `count` tracks see their person. score [M, T, V]"""
    return int(((score > 0).any(axis=-1).sum(axis=0) >= count).sum())


# ---------------------------------------------------------------------------------------------
# The real references in ../shared/realdata (see its README.txt)

NTU_CLIP = "S001C001P001R001A001"  # one person, 103 frames, with its Kinect .skeleton
UCF_CLIP = "ucf101_v_ApplyEyeMakeup_g01_c01.avi"  # HRNet COCO-17 keypoints in a pose pickle
UCF_REFERENCE = "paddlevideo_example_UCF101_skeleton.pkl"
HUG_CLIP = "ntu_sample_A055_hugging.avi"  # two people hugging, 72 frames, no reference


def ntu_video(realdata: Path) -> Path:
    return realdata / "videos" / f"{NTU_CLIP}_rgb.avi"


def ntu_reference(realdata: Path) -> tuple[np.ndarray, np.ndarray]:
    """Kinect's colour joints of the NTU clip: pixels [F, 25, 2] (1920x1080) on video frames [F]."""
    skeleton, _ = load_skeleton(realdata / "ntu_skeleton" / f"{NTU_CLIP}.skeleton")
    return skeleton.pixels[0], skeleton.frame_indices


def ucf_reference(realdata: Path) -> tuple[np.ndarray, np.ndarray]:
    """The UCF clip's HRNet keypoints [T, 17, 2] in the video's 320x240 pixels, and scores [T, 17].

    The pickle's coordinates are in 340x256 frames; its person 0 is the real one."""
    annotation = read_pose_pickle(realdata / "pose_pkl" / UCF_REFERENCE).annotations[0]
    scale = np.array([320 / 340, 240 / 256], dtype=np.float32)
    keypoint = np.asarray(annotation["keypoint"][0], dtype=np.float32) * scale
    return keypoint, np.asarray(annotation["keypoint_score"][0], dtype=np.float32)


def real_clip_figures(ntu: PoseTracks, ucf: PoseTracks, hug: PoseTracks, realdata: Path) -> dict:
    """Issue 11's accuracy figures from the three clips' tracks (ntu and hug in ntu25, ucf in coco17)."""
    pixels, frames = ntu_reference(realdata)
    reference, score = ucf_reference(realdata)
    return {
        "ntu_frames_found": ntu.frames_with_person(),
        "ntu_frames": ntu.total_frames,
        "ntu_median_limb_error_px": median_limb_error(ntu.keypoint[0], ntu.keypoint_score[0], pixels, frames),
        "ucf_pck": pck(ucf.keypoint[0, : len(reference)], reference, score, box="confident"),
        "ucf_pck_all_joints_box": pck(ucf.keypoint[0, : len(reference)], reference, score, box="all"),
        "hug_frames_two_tracks": frames_with_persons(hug.keypoint_score, 2),
        "hug_frames": hug.total_frames,
        "hug_identity_swaps": identity_swaps(hug.keypoint, hug.keypoint_score),
    }
