"""The BlazePose person detector's outputs, decoded: SSD anchors, boxes and keypoints, and
weighted non-maximum suppression. Mirrors MediaPipe's pose_detection graph
(SsdAnchorsCalculator, TensorsToDetectionsCalculator, NonMaxSuppressionCalculator).

The detector sees the whole frame letterboxed into 224x224. For each of 2254 anchors it outputs
a score logit and 12 numbers: a box (x, y, w, h; the face box) and four keypoints (x, y): 0 the
mid-hip centre, 1 a point whose distance from it gives the size and rotation of the full body,
2 the mid-shoulder centre, 3 the same for the upper body. Coordinates are in input pixels,
relative to the anchor centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT_SIZE = 224
# SsdAnchorsCalculator options of the pose detector: 5 layers with these strides, scales from
# 0.1484375 to 0.75, one aspect ratio (1.0) plus the interpolated scale, fixed anchor size.
STRIDES = (8, 16, 32, 32, 32)
ANCHORS_PER_LAYER = 2  # aspect ratio 1.0 and the interpolated scale between layers
MIN_SCORE = 0.5
SCORE_CLIP = 100.0
NMS_IOU = 0.3


def ssd_anchors(input_size: int = INPUT_SIZE, strides=STRIDES, offset: float = 0.5) -> np.ndarray:
    """Anchor centres in [0, 1] input coordinates, in the model's output order. -> [N, 2] (x, y)

    Consecutive layers with the same stride share one feature map, their anchors interleaved
    per cell; with a fixed anchor size (w = h = 1) only the centres matter.
    """
    centres = []
    layer = 0
    while layer < len(strides):
        same = 1
        while layer + same < len(strides) and strides[layer + same] == strides[layer]:
            same += 1
        cells = int(np.ceil(input_size / strides[layer]))
        y, x = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(x + offset) / cells, (y + offset) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, same * ANCHORS_PER_LAYER, axis=1).reshape(-1, 2))
        layer += same
    return np.concatenate(centres).astype(np.float32)


@dataclass
class Detections:
    """Person detections in [0, 1] coordinates of the detector input (letterbox still on)."""

    boxes: np.ndarray  # [N, 4] x0, y0, x1, y1
    keypoints: np.ndarray  # [N, 4, 2] x, y
    scores: np.ndarray  # [N]

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, index) -> Detections:
        return Detections(self.boxes[index], self.keypoints[index], self.scores[index])


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray,
           min_score: float = MIN_SCORE, input_size: int = INPUT_SIZE) -> Detections:
    """raw_boxes [N, 4 + 2K] (a box, then K keypoints), raw_scores [N] (logits), anchors [N, 2]
    -> the detections above min_score. The face detector (mmfc/poses/face.py) has the same
    layout with K = 6."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    keep = scores >= min_score
    raw, centre = raw_boxes[keep] / input_size, anchors[keep]
    xy = raw[:, 0:2] + centre
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([xy - half, xy + half], axis=1)
    keypoints = raw[:, 4:].reshape(len(raw), (raw.shape[1] - 4) // 2, 2) + centre[:, None]
    # A box of negative size is a model glitch; MediaPipe drops those too.
    valid = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    return Detections(boxes[valid], keypoints[valid], scores[keep][valid])


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one box [4] with many [N, 4] (x0, y0, x1, y1)."""
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[2], others[:, 2])
    y1 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(det: Detections, iou_threshold: float = NMS_IOU) -> Detections:
    """Weighted non-maximum suppression: the best remaining detection absorbs every detection
    overlapping it by more than the threshold; its box and keypoints become their
    score-weighted mean, its score stays its own. Best first."""
    order = np.argsort(-det.scores, kind="stable")
    boxes, keypoints, scores = [], [], []
    while len(order):
        best = order[0]
        overlap = box_iou(det.boxes[best], det.boxes[order]) > iou_threshold
        overlap[0] = True
        group = order[overlap]
        weights = det.scores[group] / det.scores[group].sum()
        boxes.append(weights @ det.boxes[group])
        keypoints.append(np.tensordot(weights, det.keypoints[group], axes=1))
        scores.append(det.scores[best])
        order = order[~overlap]
    if not scores:
        return det
    return Detections(np.array(boxes, np.float32), np.array(keypoints, np.float32), np.array(scores, np.float32))


def letterbox(frame_size: tuple[int, int], input_size: int = INPUT_SIZE) -> tuple[float, float, float]:
    """How a (width, height) frame fits the square input keeping its aspect ratio.
    -> (scale, pad_x, pad_y): input pixel = frame pixel * scale + pad."""
    width, height = frame_size
    scale = min(input_size / width, input_size / height)
    return scale, (input_size - width * scale) / 2, (input_size - height * scale) / 2


def to_frame_pixels(det: Detections, frame_size: tuple[int, int], input_size: int = INPUT_SIZE) -> Detections:
    """Detections from [0, 1] letterboxed input coordinates to frame pixels."""
    scale, pad_x, pad_y = letterbox(frame_size, input_size)
    offset = np.array([pad_x, pad_y], np.float32)

    def back(xy: np.ndarray) -> np.ndarray:
        return (xy * input_size - offset) / scale

    boxes = back(det.boxes.reshape(-1, 2, 2)).reshape(-1, 4)
    return Detections(boxes, back(det.keypoints), det.scores)
