"""Check a built MGRS dataset folder against the shard schema, the card and the build report.

`validate_dataset(path)` returns every problem it finds instead of stopping at the first one. It reads
the shards one row group at a time with pyarrow, so memory stays bounded by the largest row group plus
the set of image ids and the category table.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from PIL import Image, UnidentifiedImageError

from mgrs.hub_paths import dataset_path, parquet_source
from mgrs.schema import arrow_schema

logger = logging.getLogger(__name__)

SHARD_PATTERN = re.compile(r"^(?P<split>\w+(?:\.\w+)*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")
# Coordinates may exceed the image by this many pixels (float32 rounding of clipped values).
TOLERANCE_PX = 1e-3
# Rows converted to Python objects at a time inside a row group.
BATCH_ROWS = 256


@dataclass(frozen=True)
class Problem:
    """One finding: the file relative to the dataset folder, the row index within that shard and the
    row's image_id when the problem concerns a row, and a message with the value and what is wrong."""

    file: str
    message: str
    row: int | None = None
    image_id: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f" row {self.row}"
        if self.image_id is not None:
            where += f" (image_id {self.image_id!r})"
        return f"{where}: {self.message}"


@dataclass
class _ShardFacts:
    """Row and region counts of one shard, used by the card and report checks."""

    file: str
    split: str | None
    rows: int = 0
    regions: int = 0


class _DatasetState:
    """Dataset-wide facts gathered while streaming: image ids and category names and ids."""

    def __init__(self) -> None:
        self.first_seen: dict[str, str] = {}
        self.ids_by_category: dict[str, dict[int, tuple[str, str]]] = defaultdict(dict)
        self.names_by_id: dict[int, dict[str, tuple[str, str]]] = defaultdict(dict)


def validate_dataset(path: str | Path) -> list[Problem]:
    """Check the dataset folder `path` and return the problems found (an empty list when it is valid).

    The checks cover:

    - shard names and their `-of-` counts,
    - each shard's Arrow schema and `huggingface` metadata,
    - unique image ids, and rows sorted by image_id within a shard,
    - images that decode to 8-bit RGB of the stated width and height,
    - boxes, polygons and visible fractions inside their valid ranges,
    - one category_id per category name and one name per category_id,
    - non-empty short and long captions,
    - row counts against the card's `num_examples` and, when present, the build report.
    """
    root = dataset_path(path)  # a local folder, or hf://datasets/OWNER/NAME[@REV][/SUBSET] read by byte ranges
    if not root.is_dir():
        return [Problem(str(root), f"dataset folder {root} not found; pass the folder that contains data/")]

    problems: list[Problem] = []
    shards = _find_shards(root, problems)
    state = _DatasetState()
    facts = []
    for shard in shards:
        logger.info("Checking %s", shard.relative_to(root))
        facts.append(_check_shard(root, shard, state, problems))

    problems.extend(_check_categories(state))
    problems.extend(_check_card(root, facts))
    problems.extend(_check_report(root, facts))
    logger.info("Checked %d shards of %s: %d problems", len(shards), root, len(problems))
    return problems


def _find_shards(root: Path, problems: list[Problem]) -> list[Path]:
    """Return the Parquet files under data/ and record naming problems."""
    data = root / "data"
    if not data.is_dir():
        problems.append(Problem("data", f"folder {data} not found; shards belong in data/<split>-NNNNN-of-NNNNN.parquet"))
        return []
    shards = sorted(data.glob("*.parquet"))
    if not shards:
        problems.append(Problem("data", f"no .parquet files in {data}"))
        return []

    indices_by_split: dict[str, dict[int, int]] = defaultdict(dict)
    for shard in shards:
        match = SHARD_PATTERN.match(shard.name)
        if match is None:
            problems.append(Problem(
                f"data/{shard.name}",
                f"shard name {shard.name!r} does not match <split>-NNNNN-of-NNNNN.parquet (five digits each); rename it",
            ))
            continue
        indices_by_split[match["split"]][int(match["index"])] = int(match["count"])

    for split, indices in sorted(indices_by_split.items()):
        counts = sorted(set(indices.values()))
        if len(counts) > 1:
            problems.append(Problem(
                "data", f"split {split!r}: shards disagree on the total count ({counts}); all must end in the same -of- number",
            ))
            continue
        count = counts[0]
        if count != len(indices):
            problems.append(Problem(
                "data", f"split {split!r}: shard names say -of-{count:05d} but {len(indices)} shards are present",
            ))
        expected = set(range(count))
        missing = sorted(expected - set(indices))
        extra = sorted(set(indices) - expected)
        if missing:
            problems.append(Problem("data", f"split {split!r}: shard indices {missing} are missing"))
        if extra:
            problems.append(Problem("data", f"split {split!r}: shard indices {extra} are not below the count {count}"))
    return shards


def _check_shard(root: Path, shard: Path, state: _DatasetState, problems: list[Problem]) -> _ShardFacts:
    """Stream one shard by row group and check each row; return its row and region counts."""
    file = str(shard.relative_to(root))
    match = SHARD_PATTERN.match(shard.name)
    facts = _ShardFacts(file=file, split=match["split"] if match else None)
    try:
        parquet = pq.ParquetFile(parquet_source(shard))
    except (pa.ArrowException, OSError) as error:
        problems.append(Problem(file, f"failed to read the Parquet file: {error}"))
        return facts
    facts.rows = parquet.metadata.num_rows

    problems.extend(_check_schema(file, parquet.schema_arrow))
    if not _columns_match(parquet.schema_arrow):
        problems.append(Problem(file, "row checks skipped because the columns differ from the shard schema"))
        return facts

    row = 0
    previous_id: str | None = None
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group)
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            for record in batch.to_pylist():
                problems.extend(_check_row(file, row, record, facts.split, previous_id, state))
                facts.regions += len(record["regions"] or [])
                previous_id = record["image_id"]
                row += 1
    return facts


def _columns_match(schema: pa.Schema) -> bool:
    expected = arrow_schema()
    return schema.names == expected.names and all(schema.field(f.name).type.equals(f.type) for f in expected)


def _check_schema(file: str, schema: pa.Schema) -> list[Problem]:
    """Compare column names and types with the shard schema and check the `huggingface` metadata."""
    expected = arrow_schema()
    problems = []
    if schema.names != expected.names:
        missing = [name for name in expected.names if name not in schema.names]
        unexpected = [name for name in schema.names if name not in expected.names]
        problems.append(Problem(
            file,
            f"columns {schema.names} differ from the shard schema {expected.names} "
            f"(missing {missing}, unexpected {unexpected}, or a different order)",
        ))
    for field in expected:
        if field.name in schema.names and not schema.field(field.name).type.equals(field.type):
            problems.append(Problem(
                file, f"column {field.name!r} has type {schema.field(field.name).type}, expected {field.type}",
            ))

    metadata = schema.metadata or {}
    if b"huggingface" not in metadata:
        problems.append(Problem(
            file, "schema metadata lacks the 'huggingface' key, so `datasets` cannot restore the Image feature; rewrite the shard with mgrs.schema.arrow_schema()",
        ))
        return problems
    try:
        features = json.loads(metadata[b"huggingface"])["info"]["features"]
    except (ValueError, KeyError, TypeError):
        problems.append(Problem(file, "the 'huggingface' schema metadata is not JSON of the form {\"info\": {\"features\": ...}}"))
        return problems
    expected_features = json.loads(expected.metadata[b"huggingface"])["info"]["features"]
    if features != expected_features:
        problems.append(Problem(file, "the features in the 'huggingface' schema metadata differ from mgrs.schema.FEATURES"))
    return problems


def _check_row(
    file: str, row: int, record: dict[str, Any], split: str | None, previous_id: str | None, state: _DatasetState
) -> list[Problem]:
    image_id = record["image_id"]
    problems: list[Problem] = []

    def problem(message: str) -> None:
        problems.append(Problem(file, message, row=row, image_id=image_id))

    if image_id is None or image_id == "":
        problem("image_id is empty")
    elif image_id in state.first_seen:
        problem(f"image_id {image_id!r} is not unique: it also appears in {state.first_seen[image_id]}")
    else:
        state.first_seen[image_id] = file
    if previous_id is not None and image_id is not None and image_id < previous_id:
        problem(f"rows are not sorted by image_id: {image_id!r} follows {previous_id!r}")

    if split is not None and record["split"] != split:
        problem(f"split column is {record['split']!r} but the shard belongs to split {split!r}")
    for column in ("short_caption", "long_caption"):
        if not (record[column] or "").strip():
            problem(f"{column} is empty ({record[column]!r})")

    width, height = record["width"], record["height"]
    if width is None or height is None or width <= 0 or height <= 0:
        problem(f"width x height is {width} x {height}; both must be positive")
        return problems
    problems.extend(Problem(file, message, row, image_id) for message in _image_messages(record["image"], width, height))

    for number, region in enumerate(record["regions"] or []):
        for message in _region_messages(region, width, height):
            problem(f"region {number}: {message}")
        _note_category(state, region, file, image_id)
    return problems


def _image_messages(image: dict[str, Any] | None, width: int, height: int) -> list[str]:
    data = (image or {}).get("bytes")
    if not data:
        return ["image has no bytes; every record must embed its encoded image"]
    try:
        with Image.open(io.BytesIO(data)) as decoded:
            decoded.load()
            size, mode = decoded.size, decoded.mode
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        return [f"image bytes ({len(data)} bytes) failed to decode: {error}"]

    messages = []
    if size != (width, height):
        messages.append(f"image decodes to {size[0]} x {size[1]} px but width x height is {width} x {height}")
    if mode != "RGB":
        messages.append(f"image mode is {mode}; stored images must be 8-bit RGB")
    return messages


def _region_messages(region: dict[str, Any], width: int, height: int) -> list[str]:
    messages = []
    bbox = region["bbox"]
    if bbox is None or len(bbox) != 4 or any(v is None or not math.isfinite(v) for v in bbox):
        messages.append(f"bbox {bbox} is not four finite numbers")
    else:
        x1, y1, x2, y2 = bbox
        if not (x1 < x2 and y1 < y2):
            messages.append(f"bbox {_format(bbox)} does not satisfy x1 < x2 and y1 < y2")
        if not (_inside(x1, width) and _inside(x2, width) and _inside(y1, height) and _inside(y2, height)):
            messages.append(f"bbox {_format(bbox)} lies outside the {width} x {height} image")

    polygon = region["polygon"]
    if polygon is not None:
        if len(polygon) < 6 or len(polygon) % 2:
            messages.append(f"polygon has {len(polygon)} values; it needs an even number, at least 6")
        elif any(v is None or not math.isfinite(v) for v in polygon):
            messages.append(f"polygon {_format(polygon)} contains non-finite values")
        elif not all(_inside(x, width) and _inside(y, height) for x, y in zip(polygon[::2], polygon[1::2])):
            messages.append(f"polygon {_format(polygon)} lies outside the {width} x {height} image")

    fraction = region["visible_fraction"]
    if fraction is None or not (0 < fraction <= 1):
        messages.append(f"visible_fraction {fraction} is outside (0, 1]")
    if not region["category"]:
        messages.append(f"category is empty ({region['category']!r})")
    return messages


def _note_category(state: _DatasetState, region: dict[str, Any], file: str, image_id: str) -> None:
    """Remember the first place each (category, category_id) pair was seen."""
    name, category_id = region["category"], region["category_id"]
    if not name or category_id is None:
        return
    state.ids_by_category[name].setdefault(category_id, (file, image_id))
    state.names_by_id[category_id].setdefault(name, (file, image_id))


def _check_categories(state: _DatasetState) -> list[Problem]:
    problems = []
    for name, ids in sorted(state.ids_by_category.items()):
        if len(ids) > 1:
            places = "; ".join(f"id {i} first in {f} ({image_id})" for i, (f, image_id) in sorted(ids.items()))
            problems.append(Problem("data", f"category {name!r} has several category_id values: {places}"))
    for category_id, names in sorted(state.names_by_id.items()):
        if len(names) > 1:
            places = "; ".join(f"{n!r} first in {f} ({image_id})" for n, (f, image_id) in sorted(names.items()))
            problems.append(Problem("data", f"category_id {category_id} is used by several categories: {places}"))
    return problems


def _check_card(root: Path, facts: list[_ShardFacts]) -> list[Problem]:
    """Compare the card's `dataset_info.splits` and `configs` with the shards present."""
    card = root / "README.md"
    if not card.is_file():
        return [Problem("README.md", "dataset card README.md is missing; the Hub needs it to list configs and splits")]
    text = card.read_text(encoding="utf-8")
    parts = text.split("---", 2) if text.startswith("---") else []
    try:
        front = yaml.safe_load(parts[1]) if len(parts) == 3 else None
    except yaml.YAMLError as error:
        return [Problem("README.md", f"YAML front matter does not parse: {error}")]
    if not isinstance(front, dict):
        return [Problem("README.md", "README.md has no YAML front matter between '---' lines")]

    rows_by_split = _rows_by_split(facts)
    problems = []
    info = front.get("dataset_info")
    if isinstance(info, list):
        info = next((entry for entry in info if entry.get("config_name", "default") == "default"), None)
    splits = (info or {}).get("splits")
    if not isinstance(splits, list):
        problems.append(Problem("README.md", "dataset_info.splits is missing from the card's YAML"))
        splits = []
    card_rows = {entry.get("name"): entry.get("num_examples") for entry in splits if isinstance(entry, dict)}
    for split in sorted(set(card_rows) | set(rows_by_split)):
        if split not in rows_by_split:
            problems.append(Problem("README.md", f"card lists split {split!r} but data/ has no shards for it"))
        elif split not in card_rows:
            problems.append(Problem("README.md", f"split {split!r} has shards but is missing from dataset_info.splits"))
        elif card_rows[split] != rows_by_split[split]:
            problems.append(Problem(
                "README.md", f"split {split!r}: num_examples is {card_rows[split]} but the shards hold {rows_by_split[split]} rows",
            ))

    configs = front.get("configs") or []
    default = next((c for c in configs if isinstance(c, dict) and c.get("config_name") == "default"), None)
    if default is None:
        problems.append(Problem("README.md", "configs has no entry with config_name: default"))
    else:
        listed = {entry.get("split") for entry in default.get("data_files") or [] if isinstance(entry, dict)}
        for split in sorted(set(rows_by_split) - listed):
            problems.append(Problem("README.md", f"split {split!r} is missing from the default config's data_files"))
    return problems


def _check_report(root: Path, facts: list[_ShardFacts]) -> list[Problem]:
    """Compare build-report.json, when present, with the rows and regions actually stored."""
    path = root / "build-report.json"
    if not path.is_file():
        logger.info("No build-report.json in %s; skipping the report checks", root)
        return []
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        return [Problem("build-report.json", f"build report is not valid JSON: {error}")]
    if not isinstance(report, dict):
        return [Problem("build-report.json", "build report is not a JSON object")]

    problems = []
    actual = {shard.file: shard for shard in facts}
    listed = set()
    for entry in report.get("shards") or []:
        file = entry.get("file")
        listed.add(file)
        shard = actual.get(file)
        if shard is None:
            problems.append(Problem("build-report.json", f"report lists shard {file!r}, which is not in data/"))
            continue
        if entry.get("rows") != shard.rows:
            problems.append(Problem("build-report.json", f"{file}: report says {entry.get('rows')} rows, the shard holds {shard.rows}"))
        if "regions" in entry and entry["regions"] != shard.regions:
            problems.append(Problem(
                "build-report.json", f"{file}: report says {entry['regions']} regions, the shard holds {shard.regions}",
            ))
    for file in sorted(set(actual) - listed):
        problems.append(Problem("build-report.json", f"shard {file} is missing from the report's shards list"))

    records = report.get("records")
    if isinstance(records, dict):
        rows_by_split = _rows_by_split(facts)
        for split in sorted(set(records) | set(rows_by_split)):
            if records.get(split, 0) != rows_by_split.get(split, 0):
                problems.append(Problem(
                    "build-report.json",
                    f"split {split!r}: report says {records.get(split, 0)} records, the shards hold {rows_by_split.get(split, 0)}",
                ))

    if isinstance(report.get("regions"), int):
        total = sum(shard.regions for shard in facts)
        if report["regions"] != total:
            problems.append(Problem("build-report.json", f"report says {report['regions']} regions in all, the shards hold {total}"))
    return problems


def _rows_by_split(facts: list[_ShardFacts]) -> dict[str, int]:
    rows: dict[str, int] = defaultdict(int)
    for shard in facts:
        if shard.split is not None:
            rows[shard.split] += shard.rows
    return rows


def _inside(value: float, limit: int) -> bool:
    return -TOLERANCE_PX <= value <= limit + TOLERANCE_PX


def _format(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"
