"""The MGRS record: one row per image, or per tile of a large scene.

The `datasets` features defined here are the single source of the Parquet schema. Their Arrow schema
carries the `huggingface` metadata key, so `datasets.load_dataset(DIR)` restores the `Image` feature
and the region structs without any code of this project.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
from datasets import Features, Image, List, Value

SCHEMA_VERSION = 1

TILE_FEATURES = {
    "x": Value("int32"),
    "y": Value("int32"),
    "width": Value("int32"),
    "height": Value("int32"),
}

REGION_FEATURES = {
    "bbox": List(Value("float32"), length=4),
    "polygon": List(Value("float32")),
    "category": Value("string"),
    "category_id": Value("int32"),
    "source_category": Value("string"),
    "caption": Value("string"),
    "difficult": Value("int8"),
    "visible_fraction": Value("float32"),
}

FEATURES = Features(
    {
        "image": Image(),
        "image_id": Value("string"),
        "source": Value("string"),
        "source_image": Value("string"),
        "source_sha256": Value("string"),
        "tile": TILE_FEATURES,
        "width": Value("int32"),
        "height": Value("int32"),
        "gsd": Value("float32"),
        "short_caption": Value("string"),
        "long_caption": Value("string"),
        "caption_source": Value("string"),
        "regions": List(REGION_FEATURES),
        "split": Value("string"),
        "license": Value("string"),
        "extra": Value("string"),
    }
)

COLUMNS = list(FEATURES)


def arrow_schema() -> pa.Schema:
    """Return the Arrow schema of a shard, with the `huggingface` metadata key set."""
    return FEATURES.arrow_schema


@dataclass
class Region:
    """One object in a record, in pixel coordinates of the record's image."""

    bbox: tuple[float, float, float, float]
    category: str
    category_id: int
    source_category: str
    caption: str
    visible_fraction: float
    polygon: list[float] | None = None
    difficult: int | None = None


@dataclass
class Tile:
    """Window of the raw image that a record covers, in raw-image pixels."""

    x: int
    y: int
    width: int
    height: int


@dataclass
class Record:
    """One row of a shard, before its image bytes are wrapped in the `Image` struct."""

    image_bytes: bytes
    image_path: str | None
    image_id: str
    source: str
    source_image: str
    source_sha256: str
    tile: Tile
    width: int
    height: int
    gsd: float | None
    split: str
    license: str
    regions: list[Region] = field(default_factory=list)
    short_caption: str = ""
    long_caption: str = ""
    caption_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """Return the row as `datasets` and pyarrow expect it."""
        return {
            "image": {"bytes": self.image_bytes, "path": self.image_path},
            "image_id": self.image_id,
            "source": self.source,
            "source_image": self.source_image,
            "source_sha256": self.source_sha256,
            "tile": asdict(self.tile),
            "width": self.width,
            "height": self.height,
            "gsd": self.gsd,
            "short_caption": self.short_caption,
            "long_caption": self.long_caption,
            "caption_source": self.caption_source,
            "regions": [region_to_row(region) for region in self.regions],
            "split": self.split,
            "license": self.license,
            "extra": json.dumps(self.extra, sort_keys=True),
        }


def region_to_row(region: Region) -> dict[str, Any]:
    """Return a region as the struct stored in the `regions` column."""
    return {
        "bbox": [float(v) for v in region.bbox],
        "polygon": None if region.polygon is None else [float(v) for v in region.polygon],
        "category": region.category,
        "category_id": int(region.category_id),
        "source_category": region.source_category,
        "caption": region.caption,
        "difficult": region.difficult,
        "visible_fraction": float(region.visible_fraction),
    }


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Build an Arrow table with the shard schema from row dictionaries."""
    return pa.Table.from_pylist(rows, schema=arrow_schema())
