"""Merging the regions of duplicate scenes: boxes of one category that overlap enough are one object."""

from __future__ import annotations

import numpy as np

Box = tuple[float, float, float, float]


def box_iou(a: Box, b: Box) -> float:
    """Return the intersection over union of two x1, y1, x2, y2 boxes (0 when either has no area)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the (A, B) IoU matrix of boxes `a` (A, 4) and `b` (B, 4) in x1, y1, x2, y2 order."""
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    intersection = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def duplicate_boxes(kept: list[tuple[Box, int]], added: list[tuple[Box, int]], min_iou: float) -> set[int]:
    """Return the indices of `added` boxes that repeat a `kept` box: same category, IoU above `min_iou`.

    Each entry is (box, category id). Pairs are matched one to one, highest IoU first, so two nearby
    objects of a copy never both collapse onto one kept object.
    """
    pairs = []
    for category in {category for _, category in added}:
        added_indices = [i for i, (_, c) in enumerate(added) if c == category]
        kept_indices = [i for i, (_, c) in enumerate(kept) if c == category]
        if not kept_indices:
            continue
        ious = iou_matrix(np.array([added[i][0] for i in added_indices]), np.array([kept[i][0] for i in kept_indices]))
        for row, column in zip(*np.nonzero(ious > min_iou)):
            pairs.append((-float(ious[row, column]), added_indices[row], kept_indices[column]))

    pairs.sort()
    used_kept: set[int] = set()
    duplicates: set[int] = set()
    for _, added_index, kept_index in pairs:
        if added_index in duplicates or kept_index in used_kept:
            continue
        duplicates.add(added_index)
        used_kept.add(kept_index)
    return duplicates
