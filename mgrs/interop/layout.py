"""The reference JSON layout, and readers shared by export, import and reconcile.

An item of the layout:

    {"global_filepath": "images/isaid/P0005.png",      # relative to the folder the JSON is in
     "brief_caption": "...", "detailed_caption": "...",
     "segment": [{"bbox": {"x1": .., "y1": .., "x2": .., "y2": .., "W": .., "H": ..},
                  "category": "small vehicle", "category_id": 101, "cap": "..."}]}

The reference trainer unpacks `bbox` by position (x1, y1, x2, y2, image width, image height), so the key
order is part of the format. A segment with `cap` uses that text as its region caption and is left out
of the multi-positive region loss. Without `cap`, the region text is `a satellite image of {category}`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq

from mgrs.captions.base import REGION_TEMPLATE

logger = logging.getLogger(__name__)

BBOX_KEYS = ("x1", "y1", "x2", "y2", "W", "H")
# Item and segment keys that the reference layout defines.
ITEM_KEYS = ("global_filepath", "brief_caption", "detailed_caption", "segment")
SEGMENT_KEYS = ("bbox", "category", "category_id", "cap")
# Our record fields written beside the reference keys, at item and at segment level.
RECORD_FIELDS = (
    "image_id", "source", "source_image", "source_sha256", "image_path", "tile", "width", "height", "gsd",
    "caption_source", "split", "license", "extra",
)
REGION_FIELDS = ("polygon", "source_category", "difficult", "visible_fraction")


class InteropError(ValueError):
    """Input that cannot be exported, imported or reconciled; the message names the file, the value and the fix."""


def template_caption(category: str) -> str:
    return REGION_TEMPLATE.format(category=category)


def find_shards(root: Path | str) -> list[Any]:
    """Return the Parquet shards of a dataset folder or hf:// path in name order; raises InteropError when there are none."""
    from mgrs.hub_paths import dataset_path

    shards = sorted((dataset_path(root) / "data").glob("*.parquet"))
    if not shards:
        raise InteropError(f"{root} contains no data/*.parquet shards; give a dataset folder written by `mgrs build`")
    return shards


def is_dataset_folder(path: Path) -> bool:
    return Path(path).is_dir() and any((Path(path) / "data").glob("*.parquet"))


def iter_rows(root: Path, batch_size: int = 64, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Yield every row of a dataset folder (or only `columns` of it) as a dict, without loading a whole shard."""
    from mgrs.hub_paths import parquet_source

    for shard in find_shards(root):
        parquet = pq.ParquetFile(parquet_source(shard))
        for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
            yield from batch.to_pylist()


def release_files(path: Path) -> list[Path]:
    """Return the JSON files of a release: the file itself, or every `*.json` directly inside a folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if files:
            return files
        raise InteropError(f"{path} contains no *.json file; give the release's JSON file or the folder that contains it")
    raise InteropError(f"{path} not found; give the release's JSON file or the folder that contains it")


def load_items(file: Path) -> list[Any]:
    """Read one JSON file of the layout: a list of items."""
    try:
        data = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InteropError(f"cannot read {file}: {error}") from error
    if not isinstance(data, list):
        raise InteropError(f"{file} contains a JSON {type(data).__name__}, not a list; the layout is a list of items with global_filepath and segment")
    return data


def bbox_values(bbox: Any) -> list[float] | None:
    """Return the bbox values in the order the reference trainer reads them (by position), or None when invalid.

    A dict gives its values in key order; a list is taken as it is. Four or six finite numbers are valid.
    """
    values = list(bbox.values()) if isinstance(bbox, dict) else bbox
    if not isinstance(values, list) or len(values) not in (4, 6):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return [float(v) for v in values]


def resolve_image(root: Path, relative: str) -> Path | None:
    """Return the image path of `global_filepath` under `root`, or None when it points outside `root`."""
    if Path(relative).is_absolute():
        return None
    path = (root / relative).resolve()
    try:
        path.relative_to(root.resolve())
    except ValueError:
        return None
    return path
