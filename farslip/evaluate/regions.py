"""Region classification on MGRS shards: the fine-grained metric that needs no other dataset.

Each region's box is cropped from its record's image and resized to the model's input square (the
same view as the training crops), encoded to its pooled embedding, and compared with the prompt
`a satellite image of {category}` of every category. The categories are those found in the
evaluated split unless a list is given. Accuracy is reported overall and per category.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from tqdm import tqdm

from farslip import views
from farslip.evaluate import metrics
from farslip.evaluate.images import normalise
from farslip.evaluate.prompts import REGION_TEMPLATES, text_embeddings
from farslip.evaluate.report import confusion_picture, write_json, write_markdown

logger = logging.getLogger(__name__)


@dataclass
class RegionSet:
    """Region boxes with their record's image bytes and category names."""

    images: list[bytes]
    boxes: list[tuple[float, float, float, float]]
    image_index: list[int]
    categories: list[str]


def read_regions(path: str, split: str, min_size: float = 0.0, max_size: float | None = None, limit: int | None = None) -> RegionSet:
    """Read the regions of `split` from MGRS shards, keeping boxes whose area lies in [min_size², max_size²]."""
    from farslip.data import find_files

    fs, files, _ = find_files(path, split, "parquet")
    regions = RegionSet([], [], [], [])
    dropped = 0
    for name in files:
        with fs.open(name, "rb") as handle:
            table = pq.read_table(handle, columns=["image", "regions"])
        for row in table.to_pylist():
            kept = []
            for region in row["regions"] or []:
                x1, y1, x2, y2 = (float(value) for value in region["bbox"])
                area = (x2 - x1) * (y2 - y1)
                if x2 <= x1 or y2 <= y1 or area < min_size**2 or (max_size is not None and area > max_size**2):
                    dropped += 1
                    continue
                kept.append(((x1, y1, x2, y2), region["category"]))
            if not kept:
                continue
            regions.images.append(row["image"]["bytes"])
            for box, category in kept:
                regions.boxes.append(box)
                regions.image_index.append(len(regions.images) - 1)
                regions.categories.append(category)
                if limit is not None and len(regions.boxes) >= limit:
                    logger.info("stopped reading at --limit %d regions", limit)
                    return regions
    if dropped:
        logger.info("left out %d regions outside the size range or with an empty box", dropped)
    if not regions.boxes:
        raise ValueError(f"split {split!r} of {path} has no region in the size range; check the split name and --min-size / --max-size")
    return regions


@torch.no_grad()
def encode_regions(model, regions: RegionSet, device: torch.device, batch_size: int) -> torch.Tensor:
    """Return (R, D) normalised pooled embeddings of the region crops."""
    size = model.image_size
    decoded_cache: dict[int, views.Decoded] = {}
    features = []
    with tqdm(total=len(regions.boxes), desc="regions", unit="region", disable=None, leave=False) as progress:
        for start in range(0, len(regions.boxes), batch_size):
            crops = []
            for index in range(start, min(start + batch_size, len(regions.boxes))):
                image_index = regions.image_index[index]
                if image_index not in decoded_cache:
                    # Regions of one record are consecutive, so one decoded image is kept at a time.
                    decoded_cache = {image_index: views.decode(views.open_image(regions.images[image_index]), None, size)}
                crops.append(views.render(decoded_cache[image_index], regions.boxes[index], size))
            batch = normalise(np.stack(crops), model.mean, model.std).to(device)
            features.append(F.normalize(model.encode_image(batch).float(), dim=-1).cpu())
            progress.update(len(crops))
    return torch.cat(features)


def evaluate_regions(
    model,
    regions: RegionSet,
    categories: Sequence[str] | None = None,
    templates: Sequence[str] = REGION_TEMPLATES,
    device: torch.device = torch.device("cpu"),
    batch_size: int = 64,
) -> dict:
    """Return overall and per-category accuracy of region crops against all category prompts."""
    categories = list(categories) if categories else sorted(set(regions.categories))
    lookup = {name: index for index, name in enumerate(categories)}
    unknown = sorted(set(regions.categories) - set(lookup))
    if unknown:
        raise ValueError(f"regions have categories {unknown[:5]} that the category list lacks; add them or leave the list out")

    features = encode_regions(model, regions, device, batch_size)
    prompts = text_embeddings(model, categories, list(templates), device).cpu()
    scores = features @ prompts.T  # (R, C)
    labels = torch.tensor([lookup[name] for name in regions.categories])
    accuracy = metrics.topk_accuracy(scores, labels, (1, 5))
    confusion = metrics.confusion_matrix(labels, metrics.predictions(scores), len(categories))
    per_class = metrics.per_class_accuracy(confusion)
    counts = confusion.sum(dim=1).tolist()

    return {
        "task": "regions",
        "metrics": {
            "accuracy": accuracy[1],
            "top5_accuracy": accuracy[5],
            "mean_class_accuracy": metrics.nanmean(per_class),
            "regions": len(regions.boxes),
            "categories": len(categories),
        },
        "headline": "accuracy",
        "templates": list(templates),
        "classes": categories,
        "per_class": {name: {"accuracy": acc, "regions": n} for name, acc, n in zip(categories, per_class, counts)},
        "confusion": confusion.tolist(),
    }


def write_regions(result: dict, out_dir: str | Path, name: str) -> list[Path]:
    """Write NAME.json, NAME.md and NAME-confusion.png and return their paths."""
    out_dir = Path(out_dir)
    summary = list(result["metrics"].items())
    per_class = [(cls, entry["regions"], entry["accuracy"]) for cls, entry in result["per_class"].items()]
    return [
        write_json(out_dir / f"{name}.json", result),
        write_markdown(
            out_dir / f"{name}.md",
            f"Region classification: {name}",
            [("Summary", ["metric", "value"], summary), ("Per category", ["category", "regions", "accuracy"], per_class)],
            note="Accuracies in percent; a category without regions shows n/a and is left out of the mean class accuracy.",
        ),
        confusion_picture(result["confusion"], result["classes"], out_dir / f"{name}-confusion.png"),
    ]
