"""Compare a rebuild with the released dataset: images matched by perceptual hash, then regions by box IoU.

Either side may be a dataset folder (`data/*.parquet`) or the JSON layout with its images. Images are
paired one to one: identical decoded pixels first, then the smallest pHash distance up to
`max_distance`. Within a pair, regions are paired one to one by box IoU (highest first, at least
`min_iou`), after scaling the release's boxes to our image size when the two sizes differ. Categories
are compared by their taxonomy name at the chosen level, so `small-vehicle` and `small vehicle` agree.
"""

from __future__ import annotations

import io
import logging
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mgrs.dedup import HashIndex, ImagePrint, fingerprint_pixels
from mgrs.imaging import ImageReadError, load_rgb
from mgrs.interop.layout import bbox_values, is_dataset_folder, iter_rows, load_items, release_files, resolve_image
from mgrs.merge import iou_matrix
from mgrs.taxonomy import Taxonomy, load_taxonomy

logger = logging.getLogger(__name__)

# Boxes whose IoU is at least this are reported as identical.
SAME_BOX_IOU = 1.0 - 1e-6


@dataclass
class Side:
    """The comparable content of one record: its id, hashes, boxes, categories and captions."""

    image_id: str
    print: ImagePrint
    boxes: list[tuple[float, float, float, float]]
    categories: list[str]
    short_caption: str
    long_caption: str


@dataclass
class ReconcileOptions:
    max_distance: int = 1
    min_iou: float = 0.5
    granularity: str = "fine"
    # Entries kept in each example list of the report; counts always cover everything.
    max_examples: int = 20


@dataclass
class _Stats:
    iou: list[float] = field(default_factory=list)
    imperfect: list[dict[str, Any]] = field(default_factory=list)
    category_changes: list[dict[str, Any]] = field(default_factory=list)
    confusion: Counter = field(default_factory=Counter)
    only_ours: list[dict[str, Any]] = field(default_factory=list)
    only_release: list[dict[str, Any]] = field(default_factory=list)
    regions_ours: int = 0
    regions_release: int = 0
    caption_pairs: list[tuple[int, int, int, int]] = field(default_factory=list)


def reconcile(ours: Path, release: Path, options: ReconcileOptions | None = None) -> dict[str, Any]:
    """Return the comparison of two datasets as a JSON-ready dict (see docs/interop.md for its keys)."""
    options = options or ReconcileOptions()
    taxonomy = load_taxonomy()
    ours_records, ours_unreadable = load_side(Path(ours))
    release_records, release_unreadable = load_side(Path(release))
    pairs = match_images(ours_records, release_records, options.max_distance)

    stats = _Stats()
    for ours_record, release_record, _ in pairs:
        _compare_regions(ours_record, release_record, options, taxonomy, stats)

    matched_ours = {id(pair[0]) for pair in pairs}
    matched_release = {id(pair[1]) for pair in pairs}
    extra = sorted(record.image_id for record in ours_records if id(record) not in matched_ours)
    missing = sorted(record.image_id for record in release_records if id(record) not in matched_release)
    return _summary(ours_records, release_records, pairs, extra, missing, stats, options, ours_unreadable, release_unreadable)


def load_side(path: Path) -> tuple[list[Side], list[str]]:
    """Read a dataset folder or a release JSON into `Side`s; return them and the ids whose image failed to decode."""
    if is_dataset_folder(path):
        return _load_shards(path)
    return _load_release(path)


def _load_shards(path: Path) -> tuple[list[Side], list[str]]:
    records, unreadable = [], []
    for row in iter_rows(path):
        try:
            with Image.open(io.BytesIO(row["image"]["bytes"])) as image:
                fingerprint = fingerprint_pixels(image.convert("RGB"))
        except (OSError, ValueError) as error:
            logger.warning("cannot decode the image of %s: %s", row["image_id"], error)
            unreadable.append(row["image_id"])
            continue
        regions = row["regions"] or []
        records.append(
            Side(
                image_id=row["image_id"],
                print=fingerprint,
                boxes=[tuple(region["bbox"]) for region in regions],
                categories=[region["category"] for region in regions],
                short_caption=row["short_caption"] or "",
                long_caption=row["long_caption"] or "",
            )
        )
    return records, unreadable


def _load_release(path: Path) -> tuple[list[Side], list[str]]:
    records, unreadable = [], []
    for file in release_files(path):
        for number, item in enumerate(load_items(file)):
            if not isinstance(item, dict) or not isinstance(item.get("global_filepath"), str):
                unreadable.append(f"{file.name} item {number}")
                continue
            name = item.get("image_id") if isinstance(item.get("image_id"), str) else item["global_filepath"]
            image_path = resolve_image(file.parent, item["global_filepath"])
            try:
                if image_path is None:
                    raise ImageReadError("image_outside_root", item["global_filepath"])
                fingerprint = fingerprint_pixels(load_rgb(image_path).image)
            except ImageReadError as error:
                logger.warning("cannot read the image of %s: %s", name, error)
                unreadable.append(name)
                continue
            boxes, categories = [], []
            for segment in item.get("segment") or []:
                values = bbox_values(segment.get("bbox")) if isinstance(segment, dict) else None
                if values is None or not isinstance(segment.get("category"), str):
                    continue
                boxes.append(tuple(values[:4]))
                categories.append(segment["category"])
            long_caption = item.get("detailed_caption") if isinstance(item.get("detailed_caption"), str) else item.get("global_caption")
            records.append(
                Side(name, fingerprint, boxes, categories, item.get("brief_caption") or "", long_caption if isinstance(long_caption, str) else "")
            )
    return records, unreadable


def match_images(ours: list[Side], release: list[Side], max_distance: int) -> list[tuple[Side, Side, int]]:
    """Pair records one to one: identical pixels first, then the smallest pHash distance, then by id."""
    index = HashIndex(max_distance)
    by_pixels: dict[str, list[Side]] = {}
    for record in release:
        index.add(record.print.phash, record)
        by_pixels.setdefault(record.print.pixel_sha256, []).append(record)

    candidates = []
    for record in ours:
        exact = by_pixels.get(record.print.pixel_sha256, [])
        exact_ids = {id(other) for other in exact}
        for other in exact:
            candidates.append((0, 0, record.image_id, other.image_id, record, other))
        for distance, other in index.near(record.print.phash):
            if id(other) not in exact_ids:
                candidates.append((1, distance, record.image_id, other.image_id, record, other))

    candidates.sort(key=lambda c: c[:4])
    pairs, used_ours, used_release = [], set(), set()
    for _, distance, _, _, record, other in candidates:
        if id(record) in used_ours or id(other) in used_release:
            continue
        used_ours.add(id(record))
        used_release.add(id(other))
        pairs.append((record, other, distance))
    pairs.sort(key=lambda pair: pair[0].image_id)
    return pairs


def _compare_regions(ours: Side, release: Side, options: ReconcileOptions, taxonomy: Taxonomy, stats: _Stats) -> None:
    stats.regions_ours += len(ours.boxes)
    stats.regions_release += len(release.boxes)
    stats.caption_pairs.append(
        (_words(ours.short_caption), _words(release.short_caption), _words(ours.long_caption), _words(release.long_caption))
    )

    release_boxes = _scaled(release.boxes, release.print, ours.print)
    pairs = _pair_boxes(ours.boxes, release_boxes, options.min_iou)
    paired_ours = {i for i, _, _ in pairs}
    paired_release = {j for _, j, _ in pairs}
    for i, j, iou in pairs:
        stats.iou.append(iou)
        if iou < SAME_BOX_IOU:
            stats.imperfect.append(
                {"image_id": ours.image_id, "release_id": release.image_id, "region": i, "iou": round(iou, 4),
                 "ours": list(ours.boxes[i]), "release": list(release.boxes[j])}
            )
        ours_name = _category_key(ours.categories[i], taxonomy, options.granularity)
        release_name = _category_key(release.categories[j], taxonomy, options.granularity)
        if ours_name != release_name:
            stats.confusion[(ours.categories[i], release.categories[j])] += 1
            stats.category_changes.append(
                {"image_id": ours.image_id, "release_id": release.image_id, "region": i,
                 "ours": ours.categories[i], "release": release.categories[j]}
            )
    for i in sorted(set(range(len(ours.boxes))) - paired_ours):
        stats.only_ours.append({"image_id": ours.image_id, "region": i, "category": ours.categories[i], "bbox": list(ours.boxes[i])})
    for j in sorted(set(range(len(release.boxes))) - paired_release):
        stats.only_release.append({"image_id": release.image_id, "region": j, "category": release.categories[j], "bbox": list(release.boxes[j])})


def _scaled(boxes, release_print: ImagePrint, ours_print: ImagePrint):
    if (release_print.width, release_print.height) == (ours_print.width, ours_print.height):
        return boxes
    sx = ours_print.width / release_print.width
    sy = ours_print.height / release_print.height
    return [(x1 * sx, y1 * sy, x2 * sx, y2 * sy) for x1, y1, x2, y2 in boxes]


def _pair_boxes(ours, release, min_iou: float) -> list[tuple[int, int, float]]:
    if not ours or not release:
        return []
    ious = iou_matrix(np.array(ours, dtype=np.float64), np.array(release, dtype=np.float64))
    order = sorted(((-ious[i, j], i, j) for i, j in zip(*np.nonzero(ious >= min_iou))))
    pairs, used_ours, used_release = [], set(), set()
    for negative, i, j in order:
        if i in used_ours or j in used_release:
            continue
        used_ours.add(i)
        used_release.add(j)
        pairs.append((int(i), int(j), float(-negative)))
    return pairs


def _category_key(name: str, taxonomy: Taxonomy, granularity: str) -> str:
    category = taxonomy.resolve(name, granularity)
    if category is not None:
        return category.name
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def _words(text: str) -> int:
    return len(text.split())


def _summary(ours, release, pairs, extra, missing, stats: _Stats, options, ours_unreadable, release_unreadable) -> dict[str, Any]:
    limit = options.max_examples
    matched_regions = len(stats.iou)
    category_agree = matched_regions - len(stats.category_changes)
    summary: dict[str, Any] = {
        "images": {
            "ours": len(ours),
            "release": len(release),
            "matched": len(pairs),
            "matched_identical_pixels": sum(1 for pair in pairs if pair[0].print.pixel_sha256 == pair[1].print.pixel_sha256),
            "extra": len(extra),
            "missing": len(missing),
            "unreadable_ours": len(ours_unreadable),
            "unreadable_release": len(release_unreadable),
        },
        "regions": {
            "ours": stats.regions_ours,
            "release": stats.regions_release,
            "matched": matched_regions,
            "only_ours": len(stats.only_ours),
            "only_release": len(stats.only_release),
            "iou_threshold": options.min_iou,
            "iou_mean": _round(statistics.fmean(stats.iou)) if stats.iou else None,
            "iou_median": _round(statistics.median(stats.iou)) if stats.iou else None,
            "iou_min": _round(min(stats.iou)) if stats.iou else None,
            "boxes_not_identical": len(stats.imperfect),
        },
        "categories": {
            "granularity": options.granularity,
            "agree": category_agree,
            "disagree": len(stats.category_changes),
            "agreement": _round(category_agree / matched_regions) if matched_regions else None,
            "confusion": [
                {"ours": ours_name, "release": release_name, "count": count}
                for (ours_name, release_name), count in sorted(stats.confusion.items(), key=lambda item: (-item[1], item[0]))[:limit]
            ],
        },
        "captions": _caption_summary(stats.caption_pairs),
        "examples": {
            "extra": extra[:limit],
            "missing": missing[:limit],
            "boxes_not_identical": stats.imperfect[:limit],
            "category_changes": stats.category_changes[:limit],
            "regions_only_ours": stats.only_ours[:limit],
            "regions_only_release": stats.only_release[:limit],
            "unreadable": (ours_unreadable + release_unreadable)[:limit],
        },
    }
    summary["perfect"] = (
        not extra and not missing and not ours_unreadable and not release_unreadable
        and not stats.only_ours and not stats.only_release and not stats.imperfect and not stats.category_changes
        and summary["captions"]["pairs_with_length_difference"] == 0
    )
    return summary


def _caption_summary(pairs: list[tuple[int, int, int, int]]) -> dict[str, Any]:
    result: dict[str, Any] = {"unit": "words"}
    for name, (a, b) in (("short", (0, 1)), ("long", (2, 3))):
        ours = [pair[a] for pair in pairs]
        release = [pair[b] for pair in pairs]
        differences = [x - y for x, y in zip(ours, release)]
        result[name] = {
            "ours_mean": _round(statistics.fmean(ours)) if ours else None,
            "release_mean": _round(statistics.fmean(release)) if release else None,
            "mean_difference": _round(statistics.fmean(differences)) if differences else None,
            "mean_absolute_difference": _round(statistics.fmean(abs(d) for d in differences)) if differences else None,
        }
    differing = sum(1 for pair in pairs if pair[0] != pair[1] or pair[2] != pair[3])
    result["pairs_with_length_difference"] = differing
    return result


def _round(value: float) -> float:
    return round(float(value), 4)
