"""Image views of one record: the global view, region crops and local crops, with their boxes.

Every view is taken from one decoded image with a single `Image.resize(size, box=...)` call, which
crops and resizes together. Boxes are (x1, y1, x2, y2); they are in pixels of the stored image until
`normalise_box` maps them to [0, 1] of the global view. Views are uint8 arrays of shape (S, S, 3);
`to_normalised_tensor` turns a stack of them into model input.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]

REGION_TEMPLATE = "a satellite image of {category}"

# Pillow reduces by whole factors before resampling when the source is this many times larger than
# the output, which makes large crops cheap at a negligible cost in quality.
REDUCING_GAP = 3.0


@dataclass(frozen=True)
class Decoded:
    """A decoded RGB image and the factors (x, y) from stored-image pixels to its pixels."""

    image: Image.Image
    scale: tuple[float, float]


def open_image(data: bytes) -> Image.Image:
    """Open image bytes without decoding the pixels (the size is read from the header)."""
    return Image.open(io.BytesIO(data))


def decode(image: Image.Image, min_source_side: float | None, output_size: int) -> Decoded:
    """Decode `image` as RGB, at reduced JPEG resolution when no view needs the full one.

    `min_source_side` is the shortest side, in stored pixels, of any view that will be taken from
    the image. When it is at least twice `output_size`, JPEG's DCT scaling (`Image.draft`) decodes
    at 1/2, 1/4 or 1/8 of the size while every view still has at least `output_size` pixels.
    """
    width, height = image.size
    if image.format == "JPEG" and min_source_side is not None and min_source_side >= 2 * output_size:
        factor = output_size / min_source_side
        image.draft("RGB", (math.ceil(width * factor), math.ceil(height * factor)))
    rgb = image.convert("RGB")
    return Decoded(rgb, (rgb.size[0] / width, rgb.size[1] / height))


def global_rect(width: int, height: int, mode: str) -> Box:
    """Return the part of the stored image that the global view shows.

    `squash` shows the whole image stretched to a square; `center_crop` shows the centred square whose
    side is the shorter image side (the same view as resizing the shorter side and cropping the centre).
    """
    if mode == "squash":
        return (0.0, 0.0, float(width), float(height))
    side = float(min(width, height))
    left = (width - side) / 2
    top = (height - side) / 2
    return (left, top, left + side, top + side)


def normalise_box(box: Box, rect: Box) -> Box:
    """Map a box in stored pixels to [0, 1] coordinates of the view of `rect`, clipped to [0, 1]."""
    left, top, right, bottom = rect
    width = right - left
    height = bottom - top
    x1 = min(max((box[0] - left) / width, 0.0), 1.0)
    y1 = min(max((box[1] - top) / height, 0.0), 1.0)
    x2 = min(max((box[2] - left) / width, 0.0), 1.0)
    y2 = min(max((box[3] - top) / height, 0.0), 1.0)
    return (x1, y1, x2, y2)


def render(decoded: Decoded, box: Box, size: int) -> np.ndarray:
    """Crop `box` (stored pixels) from the decoded image and resize it to (size, size, 3) uint8."""
    sx, sy = decoded.scale
    width, height = decoded.image.size
    scaled = (
        min(max(box[0] * sx, 0.0), width),
        min(max(box[1] * sy, 0.0), height),
        min(max(box[2] * sx, 0.0), width),
        min(max(box[3] * sy, 0.0), height),
    )
    view = decoded.image.resize((size, size), Image.Resampling.BICUBIC, box=scaled, reducing_gap=REDUCING_GAP)
    return np.asarray(view, dtype=np.uint8)


def select_regions(
    regions: Sequence[dict[str, Any]],
    rect: Box,
    min_size: int,
    max_size: int,
    max_regions: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Return at most `max_regions` regions, in a random order, whose box area is in range.

    A region qualifies when its area in stored pixels lies in [min_size², max_size²] and its box
    overlaps the global view `rect` (it can fall outside a centre crop).
    """
    kept = []
    for region in regions:
        x1, y1, x2, y2 = (float(v) for v in region["bbox"])
        area = (x2 - x1) * (y2 - y1)
        if not min_size**2 <= area <= max_size**2:
            continue
        if x2 <= rect[0] or x1 >= rect[2] or y2 <= rect[1] or y1 >= rect[3]:
            continue
        kept.append(region)
    order = rng.permutation(len(kept))
    return [kept[i] for i in order[:max_regions]]


def region_text(region: dict[str, Any], use_caption: bool) -> tuple[str, int]:
    """Return the text and label of a region.

    The label is the region's `category_id` for the category prompt, or -1 when the region's own
    caption (one that differs from the prompt) is used, so that multi-positive losses leave it out.
    """
    prompt = REGION_TEMPLATE.format(category=region["category"])
    caption = region.get("caption") or ""
    if use_caption and caption and caption != prompt:
        return caption, -1
    return prompt, int(region["category_id"])


def grid_shape(count: int) -> tuple[int, int]:
    """Return (rows, columns) of a grid with `count` cells, as close to square as possible."""
    rows = max(r for r in range(1, int(math.isqrt(count)) + 1) if count % r == 0)
    return rows, count // rows


def local_boxes(
    rect: Box,
    count: int,
    mode: str,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: np.random.Generator,
) -> list[Box]:
    """Return `count` boxes inside the global view `rect`, in stored pixels.

    `random` draws each box as a random resized crop does: an area fraction of `rect` uniform in
    `scale` and an aspect ratio (width / height) log-uniform in `ratio`, redrawn up to 10 times when it
    does not fit and then clamped to `rect`. `grid` cuts `rect` into a regular grid of `count` cells.
    """
    left, top, right, bottom = rect
    width = right - left
    height = bottom - top

    if mode == "grid":
        rows, columns = grid_shape(count)
        cell_w = width / columns
        cell_h = height / rows
        return [
            (left + c * cell_w, top + r * cell_h, left + (c + 1) * cell_w, top + (r + 1) * cell_h)
            for r in range(rows)
            for c in range(columns)
        ]

    boxes = []
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(count):
        for _attempt in range(10):
            area = width * height * rng.uniform(*scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            box_w = math.sqrt(area * aspect)
            box_h = math.sqrt(area / aspect)
            if box_w <= width and box_h <= height:
                break
        box_w = min(box_w, width)
        box_h = min(box_h, height)
        x1 = left + rng.uniform(0, width - box_w)
        y1 = top + rng.uniform(0, height - box_h)
        boxes.append((x1, y1, x1 + box_w, y1 + box_h))
    return boxes


def shortest_side(boxes: Sequence[Box]) -> float:
    """Return the shortest side over `boxes`, in their units."""
    return min(min(b[2] - b[0], b[3] - b[1]) for b in boxes)


def to_normalised_tensor(views: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Turn uint8 views (..., S, S, 3) into float tensors (..., 3, S, S) normalised with mean and std."""
    tensor = torch.from_numpy(views).movedim(-1, -3).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return tensor.sub_(mean_t).div_(std_t)
