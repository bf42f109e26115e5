"""Import the released MGRS-200k (a JSON list plus an image folder) into our shards, losing nothing.

Each item becomes one record and each segment one region. Reference keys map to record columns:
`brief_caption` to `short_caption`, `detailed_caption` or else `global_caption` to `long_caption`, and
`cap` to the region caption. The record fields that `export-farslip` writes beside them are restored
as they were. Every other key is kept in the record's `extra`: item keys under `release_fields`, segment
keys under `release_segment_fields` (by region index). A segment whose `cap` equals the default template
is listed in `extra.template_cap_segments`, because the region caption alone cannot tell it apart from a
segment without `cap`. Items that cannot become a record are counted skips with the reason. When no
item becomes a record, the import writes nothing and raises InteropError listing the first reasons.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from mgrs import __version__
from mgrs.card import write_card
from mgrs.imaging import ImageReadError, encode, keeps_original_bytes, load_rgb, sha256_file
from mgrs.interop.layout import (
    ITEM_KEYS,
    RECORD_FIELDS,
    REGION_FIELDS,
    SEGMENT_KEYS,
    InteropError,
    bbox_values,
    load_items,
    release_files,
    resolve_image,
    template_caption,
)
from mgrs.plan import shard_name
from mgrs.recipe import BuildConfig
from mgrs.report import Tally
from mgrs.schema import Record, Region, Tile
from mgrs.shards import state_dir, write_json_atomic, write_shard
from mgrs.sources.base import ANNOTATION, IMAGE, Skip
from mgrs.taxonomy import load_taxonomy

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "mgrs-200k"
REPORT_FILE = "build-report.json"
# Bytes of a Parquet row group; the Hub's dataset viewer rejects row groups above about 300 MB.
ROW_GROUP_BYTES = 100_000_000


@dataclass
class ImportOptions:
    """Defaults for what the release does not state, and the output layout."""

    source: str = DEFAULT_SOURCE
    split: str = "train"
    license: str = "see the MGRS-200k dataset card"
    images: Path | None = None
    rows_per_shard: int = 1000
    overwrite: bool = False


@dataclass
class _Pending:
    """An item whose id and split are known; its image is read only when its shard is written."""

    image_id: str
    split: str
    item: dict[str, Any]
    file: str
    root: Path
    # (index of the JSON file, index of the item in it), the order in which problems are listed.
    position: tuple[int, int]


def import_release(path: Path, out: Path, options: ImportOptions | None = None) -> dict[str, Any]:
    """Convert the release at `path` (a JSON file, or a folder of them) into shards in `out`; return the report."""
    options = options or ImportOptions()
    if options.rows_per_shard <= 0:
        raise InteropError(f"--rows-per-shard is {options.rows_per_shard}; use a positive number of records")
    out = Path(out)
    files = release_files(path)
    tally = Tally()
    problems = _Problems(files)
    pending = _collect(files, options, tally, problems)
    if not pending:
        raise InteropError(problems.nothing_imported(path))
    was_empty = not out.exists() or not any(out.iterdir())
    _check_out(out, options.overwrite)

    shards = []
    by_split: dict[str, list[_Pending]] = {}
    for entry in pending:
        by_split.setdefault(entry.split, []).append(entry)
    for split, entries in sorted(by_split.items()):
        entries.sort(key=lambda entry: entry.image_id)
        count = max(1, -(-len(entries) // options.rows_per_shard))
        for index in range(count):
            chunk = entries[index * options.rows_per_shard : (index + 1) * options.rows_per_shard]
            rows = [row for entry in chunk if (row := _row(entry, options, tally, problems)) is not None]
            name = shard_name(split, index, count)
            stats = write_shard(out, name, rows, ROW_GROUP_BYTES)
            shards.append({key: stats[key] for key in ("file", "rows", "regions", "bytes", "sha256")})
            logger.info("wrote %s (%d records)", name, stats["rows"])

    if not any(shard["rows"] for shard in shards):
        _remove_output(out, shards, was_empty)
        raise InteropError(problems.nothing_imported(path))

    config = BuildConfig(name=f"{options.source} (imported)")
    report = _report(path, options, tally, shards)
    write_json_atomic(out / REPORT_FILE, report)
    write_card(out, config, report, load_taxonomy())
    return report


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InteropError(f"{out} is not empty; pass --overwrite to replace its shards, or choose an empty --out folder")
    if overwrite:
        for shard in sorted((out / "data").glob("*.parquet")):
            shard.unlink()
    out.mkdir(parents=True, exist_ok=True)


class _Problems:
    """Skip reasons of items, listed in input order by the error raised when no item can be imported."""

    # Reasons quoted in that error; the rest are counted as "and N more".
    MAX_LISTED = 5

    def __init__(self, files: list[Path]):
        self.files = files
        self.items = 0
        self.entries: list[tuple[tuple[int, int], str]] = []

    def skip(self, tally: Tally, skip: Skip, position: tuple[int, int]) -> None:
        """Count an item that did not become a record, and log it at DEBUG."""
        tally.skip(skip)
        label = skip.file.split(" ", 1)[1] if len(self.files) == 1 else skip.file
        self.entries.append((position, f"{label}: {skip.detail}"))
        logger.debug("skipped %s (%s): %s", skip.file, skip.reason, skip.detail)

    def nothing_imported(self, path: Path) -> str:
        """Return the error message for a release of which no item became a record."""
        where = self.files[0].name if len(self.files) == 1 else f"the {len(self.files)} JSON files of {path}"
        if not self.items:
            return f"{where} contains no items; give a JSON list of items with global_filepath and segment"
        entries = [text for _, text in sorted(self.entries)]
        listed = "; ".join(entries[: self.MAX_LISTED])
        if len(entries) > self.MAX_LISTED:
            listed += f"; and {len(entries) - self.MAX_LISTED} more"
        count = "the 1 item" if self.items == 1 else f"the {self.items} items"
        return f"none of {count} in {where} could be imported: {listed}"


def _collect(files: list[Path], options: ImportOptions, tally: Tally, problems: _Problems) -> list[_Pending]:
    pending: list[_Pending] = []
    seen: set[str] = set()
    for file_index, file in enumerate(files):
        root = Path(options.images) if options.images is not None else file.parent
        for number, item in enumerate(load_items(file)):
            problems.items += 1
            where = f"{file.name} item {number}"
            position = (file_index, number)
            problem = _item_problem(item)
            if problem is not None:
                problems.skip(tally, Skip(problem[0], where, problem[1], IMAGE), position)
                continue
            image_id = item["image_id"] if isinstance(item.get("image_id"), str) else _release_id(options.source, item["global_filepath"])
            if image_id in seen:
                problems.skip(tally, Skip("duplicate_image_id", where, f"image_id {image_id} is already used by an earlier item", IMAGE), position)
                continue
            seen.add(image_id)
            split = item["split"] if isinstance(item.get("split"), str) and item["split"] else options.split
            pending.append(_Pending(image_id, split, item, where, root, position))
    return pending


def _item_problem(item: Any) -> tuple[str, str] | None:
    """Return the skip reason and detail of an item that cannot name its image, or None."""
    if not isinstance(item, dict):
        return "invalid_item", f"not a JSON object but {_json_kind(item)}"
    if "global_filepath" not in item:
        return "missing_global_filepath", "global_filepath is missing"
    if not isinstance(item["global_filepath"], str) or not item["global_filepath"]:
        return "missing_global_filepath", f"global_filepath is {item['global_filepath']!r}, not a path string"
    return None


def _json_kind(value: Any) -> str:
    """Return the JSON name of a decoded value with its article, such as "an array"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else f"a {type(value).__name__}"


def _remove_output(out: Path, shards: list[dict[str, Any]], was_empty: bool) -> None:
    """Delete what an import in which no item became a record wrote, so that a rerun needs no --overwrite."""
    if was_empty:
        for folder in (out / "data", state_dir(out)):
            shutil.rmtree(folder, ignore_errors=True)
        return
    for shard in shards:
        (out / shard["file"]).unlink(missing_ok=True)


def _release_id(source: str, global_filepath: str) -> str:
    """Return `SOURCE/<global_filepath without suffix>`, the id of a release item without our image_id."""
    return f"{source}/{PurePosixPath(global_filepath).with_suffix('').as_posix()}"


def _row(entry: _Pending, options: ImportOptions, tally: Tally, problems: _Problems) -> dict[str, Any] | None:
    item = entry.item
    image_path = resolve_image(entry.root, item["global_filepath"])
    if image_path is None:
        problems.skip(tally, Skip("image_outside_root", entry.file, f"global_filepath {item['global_filepath']!r} leaves {entry.root}", IMAGE), entry.position)
        return None
    try:
        loaded = load_rgb(image_path)
    except ImageReadError as error:
        problems.skip(tally, Skip(error.reason, entry.file, str(error), IMAGE), entry.position)
        return None

    tally.images_read += 1
    extra = dict(item["extra"]) if isinstance(item.get("extra"), dict) else {}
    if keeps_original_bytes(loaded):
        image_bytes = image_path.read_bytes()
    else:
        image_bytes = encode(loaded.image, "png")
        extra.update(loaded.facts)
        extra["reencoded"] = f"converted from {loaded.original_mode} {loaded.format}"
    width, height = loaded.image.size

    release_fields = {key: value for key, value in item.items() if key not in ITEM_KEYS and key not in RECORD_FIELDS}
    if "extra" in item and not isinstance(item["extra"], dict):
        release_fields["extra"] = item["extra"]
    long_caption = item.get("detailed_caption")
    if not isinstance(long_caption, str) and isinstance(item.get("global_caption"), str):
        long_caption = item["global_caption"]
        release_fields.pop("global_caption")
        extra["long_caption_key"] = "global_caption"

    regions = _regions(item.get("segment"), entry, extra, tally)
    if release_fields:
        extra["release_fields"] = release_fields

    record = Record(
        image_bytes=image_bytes,
        image_path=item["image_path"] if "image_path" in item else item["global_filepath"],
        image_id=entry.image_id,
        source=_text(item, "source", options.source),
        source_image=_text(item, "source_image", item["global_filepath"]),
        source_sha256=_text(item, "source_sha256", "") or sha256_file(image_path),
        tile=_tile(item.get("tile"), width, height),
        width=width,
        height=height,
        gsd=item["gsd"] if isinstance(item.get("gsd"), (int, float)) else None,
        split=entry.split,
        license=_text(item, "license", options.license),
        regions=regions,
        short_caption=_text(item, "brief_caption", ""),
        long_caption=long_caption if isinstance(long_caption, str) else "",
        caption_source=_text(item, "caption_source", f"{options.source}-release"),
        extra=extra,
    )
    tally.records[entry.split] += 1
    tally.records_by_source[record.source] += 1
    tally.regions += len(regions)
    tally.regions_by_source[record.source] += len(regions)
    return record.to_row()


def _regions(segments: Any, entry: _Pending, extra: dict[str, Any], tally: Tally) -> list[Region]:
    if segments is None:
        return []
    if not isinstance(segments, list):
        extra.setdefault("release_fields", {})["segment"] = segments
        tally.skip(Skip("invalid_segment_list", entry.file, f"segment is a {type(segments).__name__}, not a list"))
        return []

    regions: list[Region] = []
    unknown: dict[str, Any] = {}
    invalid: dict[str, Any] = {}
    template_caps: list[int] = []
    for index, segment in enumerate(segments):
        tally.annotations_read += 1
        region = _region(segment)
        if region is None:
            invalid[str(index)] = segment
            tally.skip(Skip("invalid_segment", entry.file, f"segment {index} needs a bbox of 4 or 6 numbers, a category and an integer category_id"))
            continue
        tally.annotations_placed += 1
        fields = {key: value for key, value in segment.items() if key not in SEGMENT_KEYS and key not in REGION_FIELDS}
        if isinstance(segment.get("bbox"), dict) and list(segment["bbox"]) != ["x1", "y1", "x2", "y2", "W", "H"]:
            fields["bbox_keys"] = list(segment["bbox"])
        if fields:
            unknown[str(len(regions))] = fields
        if segment.get("cap") == template_caption(region.category):
            template_caps.append(len(regions))
        regions.append(region)

    if unknown:
        extra["release_segment_fields"] = unknown
    if invalid:
        extra["release_invalid_segments"] = invalid
    if template_caps:
        extra["template_cap_segments"] = template_caps
    return regions


def _region(segment: Any) -> Region | None:
    if not isinstance(segment, dict):
        return None
    values = bbox_values(segment.get("bbox"))
    category = segment.get("category")
    category_id = segment.get("category_id")
    if values is None or not isinstance(category, str) or not isinstance(category_id, int) or isinstance(category_id, bool):
        return None
    caption = segment["cap"] if isinstance(segment.get("cap"), str) else template_caption(category)
    fraction = segment.get("visible_fraction")
    return Region(
        bbox=tuple(values[:4]),
        category=category,
        category_id=category_id,
        source_category=segment["source_category"] if isinstance(segment.get("source_category"), str) else category,
        caption=caption,
        visible_fraction=float(fraction) if isinstance(fraction, (int, float)) else 1.0,
        polygon=segment.get("polygon") if isinstance(segment.get("polygon"), list) else None,
        difficult=segment.get("difficult") if isinstance(segment.get("difficult"), int) else None,
    )


def _text(item: dict[str, Any], key: str, default: str) -> str:
    value = item.get(key)
    return value if isinstance(value, str) else default


def _tile(value: Any, width: int, height: int) -> Tile:
    keys = ("x", "y", "width", "height")
    if isinstance(value, dict) and all(isinstance(value.get(key), int) for key in keys):
        return Tile(*(value[key] for key in keys))
    return Tile(0, 0, width, height)


def _report(path: Path, options: ImportOptions, tally: Tally, shards: list[dict[str, Any]]) -> dict[str, Any]:
    from mgrs.provenance import library_versions

    settings = {"source": options.source, "split": options.split, "license": options.license, "rows_per_shard": options.rows_per_shard}
    report = {
        "tool": f"mgrs {__version__}",
        "recipe": f"import-release {Path(path).name}",
        "config_fingerprint": hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16],
        "inputs": [{"format": "mgrs-release-json", "file": Path(path).name}],
        "settings": settings,
        "library_versions": library_versions(),
        "shards": shards,
    }
    report.update(tally.to_dict())
    if tally.skipped.get(ANNOTATION) or tally.skipped.get(IMAGE):
        logger.warning("some release items or segments were skipped; see `skipped` in %s", REPORT_FILE)
    return report
