"""A contact sheet to check stage 0 by eye: frames of some videos with every tracked person's
skeleton drawn, one colour per track (the same colour is the same index m on every frame), so a
swap of identities or a skeleton on the wrong person shows at a glance.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mmfc import atomic
from mmfc.data.layouts import get_layout
from mmfc.data.decoding import read_frames

TILE = 200  # height of every tile in pixels
SHOWN = 5  # frames per video
TITLE = 22
TRACK_COLOURS = ((255, 200, 0), (0, 200, 255), (255, 60, 200), (60, 255, 60), (255, 90, 60), (160, 120, 255))  # RGB


def track_colour(m: int) -> tuple[int, int, int]:
    return TRACK_COLOURS[m % len(TRACK_COLOURS)]


def frame_tile(frame: np.ndarray, keypoint: np.ndarray, score: np.ndarray, bones) -> np.ndarray:
    """frame [H, W, 3] RGB; keypoint [M, V, 2] in its pixels, score [M, V] -> [TILE, w, 3]"""
    scale = TILE / frame.shape[0]
    tile = cv2.resize(frame, (max(round(frame.shape[1] * scale), 1), TILE), interpolation=cv2.INTER_AREA)
    for m in range(keypoint.shape[0]):
        seen = score[m] > 0
        points = keypoint[m] * scale
        colour = track_colour(m)
        for child, parent in bones:
            if seen[child] and seen[parent]:
                cv2.line(tile, tuple(map(int, points[child])), tuple(map(int, points[parent])), colour, 2, cv2.LINE_AA)
        for v in np.flatnonzero(seen):
            cv2.circle(tile, tuple(map(int, points[v])), 2, colour, -1, cv2.LINE_AA)
        if seen.any():
            top = points[seen][np.argmin(points[seen][:, 1])]
            cv2.putText(tile, str(m), (int(top[0]) - 4, max(int(top[1]) - 6, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return tile


def video_row(annotation: dict, video: Path, layout: str, label: str) -> np.ndarray:
    keypoint, score = annotation["keypoint"], annotation["keypoint_score"]  # [M, T, V, 2], [M, T, V]
    frames = keypoint.shape[1]
    picks = np.linspace(0, frames - 1, min(SHOWN, frames)).round().astype(int)
    images = read_frames(video, picks)
    bones = get_layout(layout).bones
    gap = np.full((TILE, 6, 3), 255, dtype=np.uint8)
    tiles = []
    for k, t in enumerate(picks):
        tiles += [frame_tile(images[k], keypoint[:, t], score[:, t], bones), gap]
    row = np.concatenate(tiles[:-1], axis=1)
    title = np.full((TITLE, row.shape[1], 3), 255, dtype=np.uint8)
    persons = keypoint.shape[0]
    text = f"{annotation['frame_dir']}  {label}  {persons} track{'s' * (persons != 1)}  frames {picks.tolist()}"
    cv2.putText(title, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([title, row], axis=0)


def write_preview(path: Path, rows: list[tuple[dict, Path, str]], layout: str) -> Path:
    """rows: (annotation, its video, its class name) -> one PNG, a row per video."""
    images = [video_row(annotation, video, layout, label) for annotation, video, label in rows]
    width = max(image.shape[1] for image in images)
    sheet = np.concatenate(
        [np.pad(image, ((0, 4), (0, width - image.shape[1]), (0, 0)), constant_values=255) for image in images]
    )
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("OpenCV could not encode the preview PNG")
    atomic.write_bytes(path, png.tobytes())
    return path
