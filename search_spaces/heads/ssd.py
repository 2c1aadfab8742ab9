"""SSD anchors, box coding and the multibox loss, for training the SSDLite head.

Anchors follow the TF Object Detection API's ``ssd_anchor_generator`` (which the paper's
SSDLite models use): scales spaced linearly from ``min_scale`` to ``max_scale`` over the feature
maps, boxes of aspect ratio 1, 2, 1/2, 3, 1/3 plus one of the geometric mean of this and the next
scale; a map with 3 boxes is the "reduced lowest layer" (scale 0.1 at ratio 1, and ratios 2, 1/2).
Boxes are (cx, cy, w, h) relative to the image. Box regression targets use SSD's variances
(0.1, 0.2), i.e. TF's scale factors (10, 10, 5, 5).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

VARIANCES = (0.1, 0.2)


def _boxes_per_location(index: int, count: int, scales: list[float]) -> list[tuple[float, float]]:
    """(width, height) of the boxes at every location of feature map ``index``."""
    scale, next_scale = scales[index], scales[index + 1]
    if index == 0 and count == 3:
        shapes = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
    else:
        shapes = [(scale, 1.0), (scale, 2.0), (scale, 0.5), (scale, 3.0), (scale, 1 / 3),
                  (math.sqrt(scale * next_scale), 1.0)]
        if count < 6:  # fewer boxes: keep the interpolated scale second, then the ratios in order
            shapes = [shapes[0], shapes[5], *shapes[1:5]][:count]
    return [(s * math.sqrt(r), s / math.sqrt(r)) for s, r in shapes]


def default_boxes(sizes: Sequence[tuple[int, int]], anchors: Sequence[int], min_scale: float = 0.2,
                  max_scale: float = 0.95) -> torch.Tensor:
    """All anchors (N x 4, cx cy w h in [0, 1]) in the head's order: map, row, column, box."""
    if len(sizes) != len(anchors):
        raise ValueError(f"anchors: {len(anchors)} entries for {len(sizes)} feature maps")
    m = len(sizes)
    scales = [min_scale + (max_scale - min_scale) * k / max(m - 1, 1) for k in range(m)] + [1.0]
    out = []
    for index, ((h, w), count) in enumerate(zip(sizes, anchors)):
        shapes = torch.tensor(_boxes_per_location(index, count, scales))  # count x 2
        cy = (torch.arange(h, dtype=torch.float32) + 0.5) / h
        cx = (torch.arange(w, dtype=torch.float32) + 0.5) / w
        centers = torch.stack(torch.meshgrid(cx, cy, indexing="xy"), -1).reshape(-1, 1, 2)  # (h*w) x 1 x 2
        boxes = torch.cat([centers.expand(-1, count, 2), shapes.expand(h * w, count, 2)], -1)
        out.append(boxes.reshape(-1, 4))
    return torch.cat(out)


def to_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x0, y0, x1, y1)."""
    return torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], -1)


def to_centers(boxes: torch.Tensor) -> torch.Tensor:
    """(x0, y0, x1, y1) -> (cx, cy, w, h)."""
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix of corner boxes a (N x 4) and b (M x 4)."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def encode(matched: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Regression targets of center boxes ``matched`` against ``anchors`` (both N x 4)."""
    xy = (matched[:, :2] - anchors[:, :2]) / (VARIANCES[0] * anchors[:, 2:])
    wh = torch.log(matched[:, 2:] / anchors[:, 2:]) / VARIANCES[1]
    return torch.cat([xy, wh], 1)


def decode(deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`encode`: center boxes from regression outputs."""
    xy = anchors[..., :2] + deltas[..., :2] * VARIANCES[0] * anchors[..., 2:]
    wh = anchors[..., 2:] * torch.exp(deltas[..., 2:] * VARIANCES[1])
    return torch.cat([xy, wh], -1)


def match(anchors: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
          iou_threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per anchor: its class (0 = background) and its ground-truth box (center form).

    An anchor takes the ground truth it overlaps most if the IoU reaches ``iou_threshold``;
    every ground truth also takes its best anchor, so none goes unmatched.
    """
    if boxes.numel() == 0:
        return torch.zeros(len(anchors), dtype=torch.long), torch.zeros_like(anchors)
    iou = box_iou(to_corners(anchors), boxes)  # anchors x gt
    best_iou, best_gt = iou.max(1)
    best_anchor = iou.argmax(0)
    best_gt[best_anchor] = torch.arange(len(boxes))
    best_iou[best_anchor] = 1.0
    classes = labels[best_gt].clone()
    classes[best_iou < iou_threshold] = 0
    return classes, to_centers(boxes[best_gt])


def multibox_loss(class_logits: torch.Tensor, box_regression: torch.Tensor, anchors: torch.Tensor,
                  targets: Sequence[tuple[torch.Tensor, torch.Tensor]], neg_pos_ratio: int = 3) -> torch.Tensor:
    """SSD's loss: smooth-L1 on matched anchors + cross-entropy with hard negative mining.

    ``targets``: per image, (boxes N x 4 in corner form relative to the image, labels N >= 1).
    Negatives are the background anchors with the highest loss, ``neg_pos_ratio`` per positive;
    both terms are divided by the number of positives.
    """
    classes, matched = zip(*(match(anchors, boxes, labels) for boxes, labels in targets))
    classes = torch.stack(classes)
    positive = classes > 0
    num_positive = positive.sum().clamp(min=1)
    box_targets = torch.stack([encode(m, anchors) for m in matched])
    box_loss = F.smooth_l1_loss(box_regression[positive], box_targets[positive], reduction="sum")
    ce = F.cross_entropy(class_logits.flatten(0, 1), classes.flatten(), reduction="none").view_as(classes)
    background = ce.detach().masked_fill(positive, -math.inf)
    keep = positive.sum(1, keepdim=True) * neg_pos_ratio
    rank = background.argsort(1, descending=True).argsort(1)
    negative = rank < keep
    class_loss = ce[positive | negative].sum()
    return (box_loss + class_loss) / num_positive
