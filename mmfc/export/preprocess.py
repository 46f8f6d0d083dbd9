"""Turn a clip's keypoints (and frames) into the inputs of every graph of an mmfc export, with
numpy, and OpenCV for the frames.

    import json
    import numpy as np
    from preprocess import graph_inputs, read_frames, frames_to_read

    settings = json.load(open("manifest.json"))["preprocess"]
    wanted = frames_to_read(settings, video_frames)      # the video frames the RGB crop uses
    frames = read_frames("clip.mp4", wanted)             # uint8 RGB [F, H, W, 3]
    inputs = graph_inputs(settings, keypoints, scores, frames, video_frames)
    # inputs["rgb"] feeds rgb.onnx, inputs["joint"] joint.onnx, ...: one array per graph, by its
    # branch (manifest: branches), each with a batch axis of 1

    inputs = graph_inputs(settings, keypoints, scores)   # an export of skeleton branches alone

`keypoints` [M, T, V, C] are the people's joints in the run's layout (manifest: poses), one row
per frame of the clip (T = video_frames unless `frame_indices` says which video frame each row
is), 0 where a joint or person is missing, with `scores` [M, T, V] (0: missing). The RGB crop is
planned on their first two coordinates, image pixels of the frames (or of `keypoint_size`,
rescaled); a run trained on 3D joints (Kinect) takes the 3D ones as `keypoints` and the image
ones as `pixels`. Every skeleton graph takes the same normalised joints (each network derives
its stream, bones or motion, itself), sampled by its own settings. An export without an RGB
graph needs no frames, and no OpenCV: it is imported only to read and crop frames.

`mmfc export` copies this file into every export folder. It is stage 1's crop (the crop plan
of mmfc/crops/box.py, its frame sampling and its JPEG round trip), stage 1's normalised skeleton
(mmfc/crops/skeleton.py) and the evaluation sampling of the branches' datasets
(mmfc/train/datasets.py), written out so a consumer needs nothing from mmfc; mmfc's tests check
that it gives the inputs mmfc gives, bit for bit, and the graphs' logits from a real clip.
"""

from __future__ import annotations

import numpy as np


def frames_to_read(settings: dict, video_frames: int) -> np.ndarray:
    """The video frames stage 1 stores of a clip of `video_frames` frames: the centre of each of
    crop.num_frames equal segments. [F] int64"""
    count = settings["crop"]["num_frames"]
    return np.floor((np.arange(count) + 0.5) * video_frames / count).astype(np.int64)


def read_frames(path: str, indices) -> np.ndarray:
    """The frames at `indices` of a video, decoded in order by OpenCV as mmfc decodes them;
    an index past the last frame that decodes gets that last frame. uint8 RGB [N, H, W, 3]"""
    import cv2

    indices = np.asarray(indices, dtype=np.int64)
    wanted, decoded = set(indices.tolist()), {}
    capture = cv2.VideoCapture(str(path))
    try:
        for number in range(int(indices.max()) + 1):
            if not capture.grab():
                break
            if number in wanted:
                ok, image = capture.retrieve()
                if not ok:
                    break
                decoded[number] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()
    if not decoded:
        raise ValueError(f"{path}: no frame could be decoded")
    available = np.array(sorted(decoded))
    nearest = available[np.clip(np.searchsorted(available, indices, side="right") - 1, 0, None)]
    return np.stack([decoded[int(t)] for t in nearest])


def graph_inputs(settings: dict, keypoints: np.ndarray, scores: np.ndarray, frames: np.ndarray | None = None,
                 video_frames: int | None = None, pixels: np.ndarray | None = None,
                 frame_indices: np.ndarray | None = None, total_frames: int | None = None,
                 keypoint_size: tuple[int, int] | None = None, clip: int = 0) -> dict[str, np.ndarray]:
    """Every graph's input for one clip, by branch (settings["branches"]), each [1, ...] float32.

    keypoints [M, T, V, C] and scores [M, T, V] as the module's docstring says; frames: uint8
    RGB [F, H, W, 3], the frames `frames_to_read` names of the video's `video_frames` (needed by
    an RGB graph alone); pixels [M, T, V, 2]: the image coordinates the crop is planned on
    (default: keypoints' first two); frame_indices [T]: the video frame of each keypoint row
    (default 0..T-1); total_frames: the frames the keypoints' clock counts (default T);
    keypoint_size: (width, height) of the image the pixels are in (default the frames'); clip:
    which of settings["clips"] evenly spaced clips (mmfc averages the logits of all of them)."""
    keypoints = np.asarray(keypoints, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    branches = settings["branches"]
    inputs, crops, joints = {}, None, None
    for name, branch in branches.items():
        if branch["kind"] == "rgb":
            if crops is None:
                if frames is None or video_frames is None:
                    raise ValueError(f"the {name} graph takes the clip's frames: give frames and video_frames")
                pixels = keypoints[..., :2] if pixels is None else np.asarray(pixels, dtype=np.float32)
                indices = np.arange(keypoints.shape[1]) if frame_indices is None else np.asarray(frame_indices)
                crops = crop_frames(settings, frames, video_frames, pixels, scores, indices.astype(np.int64),
                                    keypoints.shape[1] if total_frames is None else total_frames,
                                    keypoint_size or (frames.shape[2], frames.shape[1]))
            inputs[name] = rgb_clip(settings, branch, crops, clip)[None]
        else:
            if joints is None:
                joints = normalize_skeleton(settings, keypoints, scores)
            inputs[name] = skeleton_clip(settings, branch, joints, clip)[None]
    return inputs


# ---------------------------------------------------------------------------------------------
# The RGB crop (stage 1) and the RGB graph's input (OpenCV)


def crop_frames(settings: dict, frames: np.ndarray, video_frames: int, pixels: np.ndarray, scores: np.ndarray,
                frame_indices: np.ndarray, total_frames: int, keypoint_size: tuple[int, int]) -> np.ndarray:
    """Stage 1's square crops of the frames `frames_to_read` names, JPEG-coded and decoded as its
    store keeps them. -> uint8 RGB [F, S, S, 3]"""
    crop = settings["crop"]
    if pixels.shape[1] == 0:
        raise ValueError("no keypoint frame: the crop is planned on the people's keypoints")
    if video_frames <= 0:
        raise ValueError("the video has no frames")
    if len(frames) != crop["num_frames"]:
        raise ValueError(f"{len(frames)} frames given; the crop takes the {crop['num_frames']} that frames_to_read names")
    frame_size = (frames.shape[2], frames.shape[1])
    scale = np.array([frame_size[0] / keypoint_size[0], frame_size[1] / keypoint_size[1]], dtype=np.float32)
    people = crop["max_bodies"]
    pixels, scores = pixels[:people] * scale, scores[:people]
    stored = frames_to_read(settings, video_frames)
    at = np.round(stored * total_frames / max(video_frames, 1)).astype(np.int64)
    nearest = np.abs(frame_indices[None, :] - at[:, None]).argmin(axis=1)
    boxes = plan_boxes(crop, pixels, scores, nearest, frame_size)
    size = crop["size"]
    columns = np.round(np.linspace(0, size, boxes.shape[1] + 1)).astype(int)
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for f, frame in enumerate(frames):
        for panel in range(boxes.shape[1]):
            c0, c1 = columns[panel], columns[panel + 1]
            out[f, :, c0:c1] = _cut(frame, boxes[f, panel], c1 - c0, size)
    return np.stack([_jpeg(frame, crop["jpeg_quality"]) for frame in out])


def plan_boxes(crop: dict, pixels: np.ndarray, scores: np.ndarray, nearest: np.ndarray,
               frame_size: tuple[int, int]) -> np.ndarray:
    """The box (x0, y0, x1, y1) of every panel at every stored frame, in frame pixels, by
    crop.mode: "clip" one box, "frame" per-frame boxes smoothed, "person" one box per person
    side by side, "none" the whole frame. -> [F, P, 4]"""
    mode, count = crop["mode"], len(nearest)
    if mode == "none":
        return np.tile(_whole(frame_size), (count, 1, 1))
    if mode == "clip":
        return np.tile(_clip_box(pixels, scores, frame_size, crop, crop["hw_ratio"]), (count, 1, 1))
    if mode == "frame":
        return _frame_boxes(pixels, scores, frame_size, crop)[nearest][:, None, :]
    if mode == "person":
        keep = _kept(pixels, scores)
        seen = [m for m in range(pixels.shape[0]) if keep[m].any()]
        if not seen:
            return np.tile(_whole(frame_size), (count, 1, 1))
        # Panels are size/P wide and size tall, so a box P times taller than wide keeps its shape.
        boxes = [_clip_box(pixels[m : m + 1], scores[m : m + 1], frame_size, crop, crop["hw_ratio"] * len(seen))
                 for m in seen]
        return np.tile(np.stack(boxes), (count, 1, 1))
    raise ValueError(f"unknown crop mode {mode!r}")


def _kept(pixels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Joints that locate a person: finite, not at (0, 0), with a score above 0."""
    finite = np.isfinite(pixels).all(axis=-1)
    at_origin = (np.nan_to_num(pixels) == 0).all(axis=-1)
    return finite & ~at_origin & (np.nan_to_num(scores) > 0)


def _whole(frame_size: tuple[int, int]) -> np.ndarray:
    return np.array([0.0, 0.0, float(frame_size[0]), float(frame_size[1])])


def _extent(pixels: np.ndarray, keep: np.ndarray) -> np.ndarray | None:
    points = pixels[keep]
    if len(points) == 0:
        return None
    return np.array([points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()], dtype=np.float64)


def _expand(raw: np.ndarray | None, frame_size: tuple[int, int], crop: dict, hw_ratio: float) -> np.ndarray:
    """A box too small is the whole frame; else padded, grown to the ratio, clipped unless padding
    outside the frame is allowed."""
    width, height = frame_size
    if raw is None or raw[2] - raw[0] < crop["min_box"] or raw[3] - raw[1] < crop["min_box"]:
        return _whole(frame_size)
    cx, cy = (raw[0] + raw[2]) / 2, (raw[1] + raw[3]) / 2
    half_w = (raw[2] - raw[0]) / 2 * (1 + crop["padding"])
    half_h = (raw[3] - raw[1]) / 2 * (1 + crop["padding"])
    if hw_ratio > 0:
        half_h = max(hw_ratio * half_w, half_h)
        half_w = max(half_h / hw_ratio, half_w)
    box = np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h])
    if not crop["allow_pad"]:
        box = np.clip(box, 0, [width, height, width, height])
    return box


def _clip_box(pixels: np.ndarray, scores: np.ndarray, frame_size: tuple[int, int], crop: dict,
              hw_ratio: float) -> np.ndarray:
    return _expand(_extent(pixels, _kept(pixels, scores)), frame_size, crop, hw_ratio)


def _frame_boxes(pixels: np.ndarray, scores: np.ndarray, frame_size: tuple[int, int], crop: dict) -> np.ndarray:
    """Per keypoint frame, the box of that frame's joints (the nearest frame's where it has none),
    its centre and half-size smoothed exponentially over time. [T, 4]"""
    keep = _kept(pixels, scores)
    count = pixels.shape[1]
    raw = [_extent(pixels[:, t], keep[:, t]) for t in range(count)]
    seen = np.array([t for t, r in enumerate(raw) if r is not None])
    if len(seen) == 0:
        return np.tile(_whole(frame_size), (count, 1))
    filled = np.stack([raw[seen[np.abs(seen - t).argmin()]] for t in range(count)])
    centre_size = np.concatenate([(filled[:, :2] + filled[:, 2:]) / 2, (filled[:, 2:] - filled[:, :2]) / 2], 1)
    state, smooth = centre_size[0].copy(), crop["smooth"]
    for t in range(count):
        state = smooth * state + (1 - smooth) * centre_size[t]
        centre_size[t] = state
    smoothed = np.concatenate([centre_size[:, :2] - centre_size[:, 2:], centre_size[:, :2] + centre_size[:, 2:]], 1)
    return np.stack([_expand(b, frame_size, crop, crop["hw_ratio"]) for b in smoothed])


def _cut(frame: np.ndarray, box: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """`box` of the frame (zeros outside it), resized: area averaging when shrinking, bilinear
    when growing."""
    import cv2

    height, width = frame.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if ix0 == x0 and iy0 == y0 and ix1 == x1 and iy1 == y1:
        region = frame[y0:y1, x0:x1]
    else:
        region = np.zeros((y1 - y0, x1 - x0, 3), dtype=frame.dtype)
        if ix1 > ix0 and iy1 > iy0:
            region[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = frame[iy0:iy1, ix0:ix1]
    shrinking = region.shape[1] > out_w or region.shape[0] > out_h
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(region), (out_w, out_h), interpolation=interpolation)


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    """The frame as stage 1's store gives it back: one JPEG at the run's quality, decoded."""
    import cv2

    ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _segment_indices(length: int, segments: int, clip: int, clips: int) -> np.ndarray:
    """One index per equal segment of range(length), at (clip + 0.5) / clips into each."""
    offsets = np.full(segments, (clip + 0.5) / clips)
    return np.minimum(((np.arange(segments) + offsets) * (length / segments)).astype(np.int64), length - 1)


def rgb_clip(settings: dict, rgb: dict, crops: np.ndarray, clip: int = 0) -> np.ndarray:
    """An RGB graph's input of one clip, by its settings `rgb` (of settings["branches"]): `segments`
    of the stored crops, their centre square of `input_size` (resized to it when smaller),
    normalised. float32 [T, 3, s, s]"""
    import cv2

    size = rgb["input_size"]
    picked = crops[_segment_indices(len(crops), rgb["segments"], clip, settings["clips"])]
    height, width = picked.shape[1:3]
    h, w = min(size, height), min(size, width)
    y0, x0 = (height - h) // 2, (width - w) // 2
    region = picked[:, y0 : y0 + h, x0 : x0 + w]
    if (h, w) != (size, size):
        region = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in region])
    x = region.astype(np.float32) / 255.0
    x = (x - np.array(rgb["mean"], dtype=np.float32)) / np.array(rgb["std"], dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# ---------------------------------------------------------------------------------------------
# The normalised skeleton (stage 1) and the skeleton graphs' inputs


def normalize_skeleton(settings: dict, keypoints: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Stage 1's skeleton sequence: missing joints 0, every joint moved so the centre joint of the
    first frame with a body is the origin, 3D bodies optionally turned upright, the frames with a
    body resampled uniformly to skeleton.frames, or (skeleton.pad) kept as they are and zero-padded
    to it. float32 [C, frames, V, max_bodies]"""
    skeleton = settings["skeleton"]
    count, people = skeleton["frames"], skeleton["max_bodies"]
    present = (np.isfinite(keypoints).all(axis=-1) & (np.nan_to_num(keypoints) != 0).any(axis=-1)
               & (np.nan_to_num(scores) > 0))
    points = np.where(present[..., None], np.nan_to_num(keypoints), 0).astype(np.float64)
    points, present = points[:people], present[:people]
    channels, joints = points.shape[3], points.shape[2]
    out = np.zeros((channels, count, joints, people), dtype=np.float32)
    with_body = np.flatnonzero(present.any(axis=(0, 2)))
    if len(with_body) == 0:
        return out
    points, present = points[:, with_body], present[:, with_body]
    points = points - _origin(points, present, skeleton["center"])
    if skeleton["align"] and channels == 3 and skeleton["align_axes"] is not None:
        points = points @ _upright(points, present, skeleton["align_axes"]).T
    points = np.where(present[..., None], points, 0)
    kept = points.shape[1]
    if not (skeleton["pad"] and kept <= count):
        points = points[:, np.round(np.linspace(0, kept - 1, count)).astype(np.int64)]
    out[:, : points.shape[1], :, : points.shape[0]] = points.transpose(3, 1, 2, 0)
    return out


def _origin(points: np.ndarray, present: np.ndarray, center: int) -> np.ndarray:
    """The centre joint of the first frame where it is seen (the first person first); else the
    mean of the first frame's joints."""
    for t in range(points.shape[1]):
        for m in range(points.shape[0]):
            if present[m, t, center]:
                return points[m, t, center]
    return points[:, 0][present[:, 0]].mean(axis=0)


def _upright(points: np.ndarray, present: np.ndarray, axes) -> np.ndarray:
    """The rotation taking the first person's first-frame spine to +z and its left -> right
    shoulder line to +x; none where those joints are missing or degenerate. [3, 3]"""
    (base, spine), (right, left) = axes
    first = points[0, 0]
    if not present[0, 0, [base, spine, right, left]].all():
        return np.eye(3)
    z, x = first[spine] - first[base], first[right] - first[left]
    if np.linalg.norm(z) < 1e-6 or np.linalg.norm(x) < 1e-6:
        return np.eye(3)
    z = z / np.linalg.norm(z)
    x = x - z * (x @ z)
    if np.linalg.norm(x) < 1e-6:
        return np.eye(3)
    x = x / np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def skeleton_clip(settings: dict, skeleton: dict, joints: np.ndarray, clip: int = 0) -> np.ndarray:
    """A skeleton graph's input of one clip, by its settings `skeleton` (of settings["branches"]):
    the first `num_persons` bodies (zeros where fewer) of the normalised sequence (up to its last
    frame with a body when stage 1 padded it), min-max normalised onto [-1, 1] where `normalize`
    says so, then `num_frames` frames: the centres of equal segments ("segments"), or evenly
    spaced from the first frame to the last ("random_choice", whose test-time sampling that is).
    float32 [C, T, V, M]"""
    persons, count = skeleton["num_persons"], skeleton["num_frames"]
    if settings["skeleton"]["pad"]:
        has_body = np.flatnonzero((joints != 0).any(axis=(0, 2, 3)))
        joints = joints[:, : int(has_body[-1]) + 1 if len(has_body) else joints.shape[1]]
    if joints.shape[3] >= persons:
        joints = joints[..., :persons]
    else:
        joints = np.concatenate([joints, np.zeros(joints.shape[:3] + (persons - joints.shape[3],), joints.dtype)], 3)
    if skeleton["normalize"] == "minmax":
        joints = _minmax(joints)
    length = joints.shape[1]
    if skeleton["sampling"] == "segments":
        picked = _segment_indices(length, count, clip, settings["clips"])
    else:
        step = (length - 1) / max(count - 1, 1)
        positions = np.linspace(0, length - 1, count) + step * clip / settings["clips"]
        picked = np.minimum(positions.astype(np.int64), length - 1)
    return np.ascontiguousarray(joints[:, picked], dtype=np.float32)


def _minmax(x: np.ndarray) -> np.ndarray:
    """Each coordinate mapped linearly onto [-1, 1] over every joint of every (frame, person) with
    a body; the rest stays 0, and so does a coordinate that never varies. [C, T, V, M]"""
    body = (x != 0).any(axis=(0, 2))  # [T, M]
    if not body.any():
        return x
    values = x.transpose(1, 3, 0, 2)[body]  # [bodies, C, V]
    low = values.min(axis=(0, 2)).astype(np.float64)
    span = values.max(axis=(0, 2)) - low
    scaled = np.divide(x - low[:, None, None, None], span[:, None, None, None], out=np.full(x.shape, 0.5),
                       where=span[:, None, None, None] > 0) * 2 - 1
    return np.where(body[None, :, None, :], scaled, 0).astype(np.float32)
