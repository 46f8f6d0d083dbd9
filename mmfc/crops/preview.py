"""A contact sheet to check stage 1 by eye: source frames with the box and skeleton drawn,
beside the stored crops with the crop-coordinate keypoints drawn on them.

One row per sample, four of its stored frames; left the source (decoded again), right what the
shards hold. Boxes are green, skeleton bones yellow (first person) and cyan (second). A store
without video draws the same on grey: left the frame the skeleton was recorded in with its box,
right the box's keypoints as the store holds them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mmfc import atomic
from mmfc.crops import store
from mmfc.crops.box import kept_joints
from mmfc.crops.crop import CropJob, prepare_sample
from mmfc.data.sample import Sample
from mmfc.data.decoding import read_frames

TILE = 180  # height of every tile in pixels
SHOWN = 4  # frames per sample
TITLE = 22
NO_VIDEO_GREY = 64  # the background of a sample without video
PERSON_COLOURS = ((255, 220, 0), (0, 220, 255), (255, 0, 255), (0, 255, 0))  # RGB


def draw_skeleton(image: np.ndarray, joints: np.ndarray, kept: np.ndarray, bones, colour) -> None:
    """joints [V, 2] in image pixels; draws bones between kept joints, and the joints."""
    for child, parent in bones:
        if kept[child] and kept[parent]:
            a = tuple(int(v) for v in joints[child])
            b = tuple(int(v) for v in joints[parent])
            cv2.line(image, a, b, colour, 1, cv2.LINE_AA)
    for v in np.flatnonzero(kept):
        cv2.circle(image, tuple(int(c) for c in joints[v]), 2, colour, -1, cv2.LINE_AA)


def source_tile(frame: np.ndarray, boxes: np.ndarray, pixels: np.ndarray, kept: np.ndarray, bones) -> np.ndarray:
    """frame [H,W,3], boxes [P,4], pixels [M,V,2] in frame pixels -> [TILE, w, 3]"""
    scale = TILE / frame.shape[0]
    tile = cv2.resize(frame, (round(frame.shape[1] * scale), TILE), interpolation=cv2.INTER_AREA)
    for box in boxes * scale:
        cv2.rectangle(tile, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), (0, 255, 0), 2)
    for m in range(pixels.shape[0]):
        draw_skeleton(tile, pixels[m] * scale, kept[m], bones, PERSON_COLOURS[m % len(PERSON_COLOURS)])
    return tile


def crop_tile(crop: np.ndarray, keypoints: np.ndarray, bones) -> np.ndarray:
    """crop [S,S,3], keypoints [M,V,2] in [0,1] (0 = missing) -> [TILE, TILE, 3]"""
    tile = cv2.resize(crop, (TILE, TILE), interpolation=cv2.INTER_AREA)
    for m in range(keypoints.shape[0]):
        kept = (keypoints[m] != 0).any(axis=-1)
        draw_skeleton(tile, keypoints[m] * TILE, kept, bones, PERSON_COLOURS[m % len(PERSON_COLOURS)])
    return tile


def sample_row(crops: store.CropStore, i: int, source, sample: Sample, job: CropJob) -> np.ndarray:
    bones = crops.layout.bones
    skel = source.load_skeleton(sample)
    prepared = prepare_sample(skel, sample, job, decoded=crops.index[i]["video_frames"])  # as stage 1 planned it
    picks = np.linspace(0, len(prepared.stored) - 1, SHOWN).round().astype(int)
    if crops.has_video:
        frames = read_frames(sample.video_path, prepared.stored[picks])
        stored_rgb = crops.rgb(i, picks)
    else:
        size = crops.config["size"]
        frames = np.full((SHOWN, prepared.video.height, prepared.video.width, 3), NO_VIDEO_GREY, dtype=np.uint8)
        stored_rgb = np.full((SHOWN, size, size, 3), NO_VIDEO_GREY, dtype=np.uint8)
    stored_kp = crops.keypoints(i)
    tiles = []
    for k, f in enumerate(picks):
        t = prepared.stored_t[f]
        pixels = prepared.pixels[:, t]
        kept = kept_joints(pixels, prepared.score[:, t]) & prepared.present[f]
        tiles.append(source_tile(frames[k], prepared.plan.boxes[f], pixels, kept, bones))
    gap = np.full((TILE, 8, 3), 255, dtype=np.uint8)
    tiles.append(gap)
    for k, f in enumerate(picks):
        tiles.append(crop_tile(stored_rgb[k], stored_kp[:, f], bones))
    row = np.concatenate(tiles, axis=1)
    title = np.full((TITLE, row.shape[1], 3), 255, dtype=np.uint8)
    r = crops.index[i]
    shown = "frames" if crops.has_video else "skeleton frames (no video)"
    text = f"{r['id']}  label {r['label']} ({crops.class_names[r['label']]})  {r['split']}  {shown} {picks.tolist()}"
    cv2.putText(title, text, (4, TITLE - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([title, row], axis=0)


def write_preview(crops_dir: Path, source, samples_by_id: dict[str, Sample], job: CropJob, count: int) -> Path:
    """Write <crops_dir>/preview.png with `count` stored samples spread over the index."""
    crops = store.open_crops(crops_dir)
    chosen = np.unique(np.linspace(0, len(crops) - 1, min(count, len(crops))).round().astype(int))
    rows = [sample_row(crops, int(i), source, samples_by_id[crops.index[i]["id"]], job) for i in chosen]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    sheet = np.concatenate(rows, axis=0)
    path = crops_dir / "preview.png"
    ok, data = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding of the preview failed")
    atomic.write_bytes(path, data.tobytes())
    return path
