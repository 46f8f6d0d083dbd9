"""Cropping one sample: which video frames to store, the skeleton in video pixels, the crop plan
(mmfc.crops.box), and everything stage 1 stores about the sample.

Used by stage 1 for every sample, by the preview, which redraws a stored sample's source, and by
`mmfc predict`, which crops new videos exactly as stage 1 cropped the training data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mmfc.config import CropConfig, Pipeline
from mmfc.crops.box import BoxParams, CropPlan, crop_keypoints, plan_crop, render
from mmfc.crops.skeleton import normalize_skeleton
from mmfc.crops.store import StoredSample
from mmfc.data.layouts import Layout, layout_of
from mmfc.data.sample import Sample, Skeleton
from mmfc.data.decoding import VideoInfo, probe_video, read_frames_counted, scale_pixels
from mmfc.errors import DataError


@dataclass(frozen=True)
class CropJob:
    """How every sample of a run is cropped: picklable, no live handles."""

    crops: CropConfig
    max_bodies: int
    layout: Layout
    # The joint each stored sequence is centred on: crops.center_joint, else the layout's centre.
    center: int
    # Whether the store holds video frames. A dataset of which no sample has a video (skeletons
    # only) is stored without: each sample's skeleton, and its keypoints in a box planned in the
    # frame its skeleton was recorded in.
    video: bool = True

    @classmethod
    def of(cls, cfg: Pipeline, layout: Layout | None = None, video: bool = True) -> CropJob:
        """The pipeline's job for skeletons in its layout; ConfigError when crops.center_joint is
        no joint of it. `layout`: that of a skeleton in other joints (`mmfc predict`: one the
        skeleton branch cannot read, whose crop still guides the RGB branch), centred on its own
        centre."""
        own = layout_of(cfg.data)
        if layout is not None and layout.joints != own.joints:
            return cls(cfg.crops, cfg.data.max_bodies, layout, layout.center, video)
        center = own.joint(cfg.crops.center_joint, "crops.center_joint") if cfg.crops.center_joint else own.center
        return cls(cfg.crops, cfg.data.max_bodies, own, center, video)


def stored_frame_indices(video_frames: int, count: int) -> np.ndarray:
    """`count` video frames spread evenly over the clip: the centre of each of `count` segments."""
    return np.floor((np.arange(count) + 0.5) * video_frames / count).astype(np.int64)


def nearest_skeleton_frames(
    skeleton_frames: np.ndarray, total_frames: int, stored: np.ndarray, video_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each stored video frame, the nearest skeleton frame and whether it is that very frame.

    The skeleton counts `total_frames` and the decoded video `video_frames`; they can differ by a
    few frames (NTU), so video positions are scaled onto the skeleton's clock first.
    -> (stored_t [F] indices into the skeleton sequence, present [F] bool)
    """
    at = np.round(stored * total_frames / max(video_frames, 1)).astype(np.int64)
    stored_t = np.abs(skeleton_frames[None, :] - at[:, None]).argmin(axis=1)
    return stored_t, skeleton_frames[stored_t] == at


@dataclass
class Prepared:
    """A sample's skeleton in video pixels and its crop plan, before any frame is decoded."""

    video: VideoInfo
    pixels: np.ndarray  # [M, T, V, 2] decoded-video pixels, at most max_bodies persons
    score: np.ndarray  # [M, T, V]
    stored: np.ndarray  # [F] video frame of each stored frame
    stored_t: np.ndarray  # [F] nearest skeleton frame
    present: np.ndarray  # [F] whether that skeleton frame is the stored frame itself
    plan: CropPlan


def skeleton_canvas(skel: Skeleton) -> VideoInfo:
    """What stands in for the video of a skeleton without one: the frame its pixels were
    recorded in, for as many frames as the skeleton counts."""
    width, height = skel.frame_size
    return VideoInfo(path=Path(), frames=skel.total_frames, fps=0.0, width=width, height=height)


def prepare_sample(skel: Skeleton, sample: Sample, job: CropJob, decoded: int | None = None,
                   video: VideoInfo | None = None) -> Prepared:
    """`decoded`: the frames the video really decodes, when known to be fewer than it says;
    `video`: the video's probe when the caller has it (else it is probed here; a job without
    video plans on the skeleton's own frame, skeleton_canvas)."""
    c = job.crops
    if skel.num_frames == 0:
        raise DataError(sample.skeleton_path or sample.id, "no body in any frame")
    if video is None and not job.video:
        video = skeleton_canvas(skel)
    if video is None and sample.video_path is None:
        raise DataError(sample.skeleton_path or sample.id, "no video file found for this sample (other samples of "
                                                           "the dataset have theirs, so the crop store holds video)")
    info = replace(video) if video is not None else probe_video(sample.video_path)
    if decoded is not None:
        info.frames = decoded
    if info.frames <= 0:
        raise DataError(sample.video_path, "video has no frames")
    video_size = (info.width, info.height)
    # Keypoints were recorded in the skeleton's frame size; the decoded video may be smaller.
    pixels = scale_pixels(skel.pixels[: job.max_bodies], skel.frame_size, video_size)
    score = skel.score[: job.max_bodies]
    stored = stored_frame_indices(info.frames, c.num_frames)
    stored_t, present = nearest_skeleton_frames(skel.frame_indices, skel.total_frames, stored, info.frames)
    params = BoxParams(c.padding, c.hw_ratio, c.min_box, c.allow_pad)
    plan = plan_crop(pixels, score, stored_t, video_size, c.size, c.mode, params, c.smooth)
    return Prepared(info, pixels, score, stored, stored_t, present, plan)


# (video path, frame indices, through) -> (uint8 RGB [N, H, W, 3], frames the video decodes): how
# a sample's frames are read (mmfc.data.decoding.read_frames_counted, or frames already decoded).
FrameReader = Callable[[Path, np.ndarray, int], tuple[np.ndarray, int]]


def crop_sample(source, sample: Sample, job: CropJob) -> tuple[StoredSample, dict]:
    """Everything stage 1 stores about one sample, and its index fields (with a warning when the
    video decodes fewer frames than promised, but enough). Raises DataError."""
    return crop_skeleton(source.load_skeleton(sample), sample, job)


def crop_skeleton(skel: Skeleton, sample: Sample, job: CropJob, read: FrameReader = read_frames_counted,
                  video: VideoInfo | None = None) -> tuple[StoredSample, dict]:
    """crop_sample of a skeleton in hand: `read` gives the video's frames, `video` its probe.
    Stage 1 reads each sample's frames from its file; `mmfc predict` hands in the frames of its
    one decoding pass and crops windows of a video as videos of their own."""
    p = prepare_sample(skel, sample, job, video=video)
    rgb, warning = None, ""
    if job.video:
        p, rgb, warning = _crop_frames(skel, sample, job, p, read, video)
    keypoints = np.zeros((job.max_bodies, len(p.stored), p.pixels.shape[2], 2), dtype=np.float32)
    keypoints[: p.pixels.shape[0]] = crop_keypoints(p.pixels, p.score, p.stored_t, p.present, p.plan)
    stored_sample = StoredSample(
        rgb=rgb,
        frame_indices=p.stored,
        skeleton=normalize_skeleton(skel, job.crops.skeleton_frames, job.max_bodies, job.center,
                                    job.layout.align_axes if job.crops.align else None, job.crops.pad_skeleton),
        keypoints=keypoints,
    )
    row = {
        "num_frames": len(p.stored),
        "frame_indices": p.stored.tolist(),
        "box": list(p.plan.envelope()),
        # No video: no video size to record (the box is in the skeleton's frame).
        "video_width": p.video.width if job.video else None,
        "video_height": p.video.height if job.video else None,
        "video_frames": p.video.frames if job.video else None,
        "skeleton_frames": skel.num_frames,
        "warning": warning,
    }
    return stored_sample, row


def _crop_frames(skel: Skeleton, sample: Sample, job: CropJob, p: Prepared, read: FrameReader,
                 video: VideoInfo | None) -> tuple[Prepared, np.ndarray, str]:
    """The stored crops of the sample's video, and a warning when it decodes fewer frames than
    promised, but enough. -> (the plan they were cropped by, uint8 [F, S, S, 3], warning)"""
    promised = max(p.video.frames, skel.total_frames)
    frames, decoded = read(sample.video_path, p.stored, promised)  # [F, H, W, 3]
    warning = ""
    if decoded < promised:
        says = "its skeleton has" if skel.total_frames >= p.video.frames else "its container says it has"
        counts = f"the video decodes {decoded} frames, {says} {promised}"
        if decoded < job.crops.min_video_fraction * promised:
            raise DataError(sample.video_path, f"{counts}: under crops.min_video_fraction = {job.crops.min_video_fraction} "
                                               "of them (a short or truncated video)")
        warning = f"{counts}; stored from the {decoded} frames there are"
        # Spread the stored frames over the frames that exist, not over repeats of the last one.
        p = prepare_sample(skel, sample, job, decoded=decoded, video=video)
        frames, _ = read(sample.video_path, p.stored, 0)
    return p, render(frames, p.plan), warning
