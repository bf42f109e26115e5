"""Export a dataset folder to the reference trainer's JSON layout plus an image folder.

`OUT/<split>.json` lists the records of each split, and `OUT/images/<image_id>.<ext>` contains each
record's image bytes exactly as stored in the shard. `global_filepath` is relative to OUT, so OUT is the image
root to give the reference trainer. Our record and region fields are written beside the reference keys
(never inside `bbox`), so `import-release` restores the records unchanged.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mgrs.interop.layout import InteropError, iter_rows, template_caption

logger = logging.getLogger(__name__)

IMAGE_FOLDER = "images"
MAGIC_SUFFIXES = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"))


@dataclass
class ExportSummary:
    """Counts of an export: JSON files, items per split, segments, segments with `cap`, and image bytes."""

    files: list[str] = field(default_factory=list)
    items: dict[str, int] = field(default_factory=dict)
    segments: int = 0
    segments_with_cap: int = 0
    images_bytes: int = 0


def export_farslip(dataset: Path | str, out: Path, overwrite: bool = False) -> ExportSummary:
    """Write `out/<split>.json` and `out/images/` from the shards of `dataset` (a folder or an hf:// path).

    Raises InteropError when a category name has two ids (or an id two names), because the reference
    trainer groups positives by `category_id` across the whole file, or when `out` already holds an
    export and `overwrite` is off.
    """
    out = Path(out)
    _check_out(out, overwrite)
    _check_category_ids(dataset)

    summary = ExportSummary()
    items_by_split: dict[str, list[dict[str, Any]]] = {}
    for row in iter_rows(dataset):
        item = _item(row, out, summary)
        items_by_split.setdefault(row["split"], []).append(item)

    for split, items in sorted(items_by_split.items()):
        path = out / f"{split}.json"
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(items, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
        temporary.replace(path)
        summary.files.append(path.name)
        summary.items[split] = len(items)
        logger.info("wrote %s (%d items)", path, len(items))
    return summary


def _check_out(out: Path, overwrite: bool) -> None:
    existing = sorted(out.glob("*.json")) if out.is_dir() else []
    if existing and not overwrite:
        raise InteropError(f"{out} already contains {existing[0].name}; pass --overwrite to replace the export, or choose an empty --out folder")
    out.mkdir(parents=True, exist_ok=True)


def _check_category_ids(dataset: Path) -> None:
    ids_by_name: dict[str, int] = {}
    names_by_id: dict[int, str] = {}
    for row in iter_rows(dataset, batch_size=1024, columns=["image_id", "regions"]):
        for region in row["regions"] or []:
            name, category_id = region["category"], region["category_id"]
            if ids_by_name.setdefault(name, category_id) != category_id:
                raise InteropError(
                    f"category {name!r} has ids {ids_by_name[name]} and {category_id} (record {row['image_id']}); the reference "
                    "trainer needs one id space, so build every part of the dataset with the same taxonomy and --granularity"
                )
            if names_by_id.setdefault(category_id, name) != name:
                raise InteropError(
                    f"category_id {category_id} names both {names_by_id[category_id]!r} and {name!r} (record {row['image_id']}); "
                    "build every part of the dataset with the same taxonomy and --granularity"
                )


def _item(row: dict[str, Any], out: Path, summary: ExportSummary) -> dict[str, Any]:
    image_bytes = row["image"]["bytes"]
    relative = _image_file(row["image_id"], image_bytes)
    target = out / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(image_bytes)
    summary.images_bytes += len(image_bytes)

    width, height = row["width"], row["height"]
    item: dict[str, Any] = {
        "global_filepath": relative,
        "brief_caption": row["short_caption"],
        "detailed_caption": row["long_caption"],
        "segment": [_segment(region, width, height, summary) for region in row["regions"] or []],
    }
    for name in ("image_id", "source", "source_image", "source_sha256"):
        item[name] = row[name]
    item["image_path"] = row["image"]["path"]
    for name in ("tile", "width", "height", "gsd", "caption_source", "split", "license"):
        item[name] = row[name]
    item["extra"] = json.loads(row["extra"]) if row["extra"] else {}
    return item


def _segment(region: dict[str, Any], width: int, height: int, summary: ExportSummary) -> dict[str, Any]:
    x1, y1, x2, y2 = region["bbox"]
    # The reference trainer unpacks these six values by position: keep exactly this key order.
    segment: dict[str, Any] = {
        "bbox": {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "W": width, "H": height},
        "category": region["category"],
        "category_id": region["category_id"],
    }
    if region["caption"] != template_caption(region["category"]):
        segment["cap"] = region["caption"]
        summary.segments_with_cap += 1
    for name in ("polygon", "source_category", "difficult", "visible_fraction"):
        segment[name] = region[name]
    summary.segments += 1
    return segment


def _image_file(image_id: str, image_bytes: bytes) -> str:
    """Return `images/<image_id><suffix>`, with the suffix taken from the image bytes."""
    parts = PurePosixPath(image_id).parts
    if not parts or any(part in ("", ".", "..") for part in parts) or image_id.startswith("/"):
        raise InteropError(f"image_id {image_id!r} cannot be a file path; ids written by `mgrs build` never contain '..' or a leading '/'")
    suffix = next((s for magic, s in MAGIC_SUFFIXES if image_bytes.startswith(magic)), None)
    if suffix is None:
        suffix = ".webp" if image_bytes[:4] == b"RIFF" and image_bytes[8:12] == b"WEBP" else ".img"
    return f"{IMAGE_FOLDER}/{image_id}{suffix}"
