"""Writing Parquet shards: atomically, deterministically, with row groups the Hub's viewer accepts.

A shard is written to a temporary file outside `data/` and renamed into place when complete. Its stats
file (`.mgrs-build/shards/<name>.json`) is written after the rename, so a shard with stats is complete
and an interrupted build can resume without rewriting it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mgrs.imaging import sha256_file
from mgrs.schema import rows_to_table

STATE_DIR = ".mgrs-build"


def state_dir(out: Path) -> Path:
    return out / STATE_DIR


def stats_path(out: Path, shard_name: str) -> Path:
    return state_dir(out) / "shards" / (Path(shard_name).stem + ".json")


def row_group_rows(rows: list[dict[str, Any]], target_bytes: int) -> int:
    """Return the rows per row group that keeps a row group near `target_bytes` of image data."""
    if not rows:
        return 1
    image_bytes = sum(len(row["image"]["bytes"]) for row in rows)
    average = max(1, image_bytes // len(rows))
    return max(1, target_bytes // average)


def write_shard(out: Path, shard_name: str, rows: list[dict[str, Any]], target_row_group_bytes: int) -> dict[str, Any]:
    """Write rows (already sorted by image_id) to `out/shard_name` atomically; return the shard's stats."""
    final = out / shard_name
    temporary = state_dir(out) / "tmp" / Path(shard_name).name
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary.parent.mkdir(parents=True, exist_ok=True)

    table = rows_to_table(rows)
    pq.write_table(
        table,
        temporary,
        row_group_size=row_group_rows(rows, target_row_group_bytes),
        compression="zstd",
        write_page_index=True,
        write_statistics=["image_id", "source", "split"],
    )
    os.replace(temporary, final)
    return {
        "file": shard_name,
        "rows": len(rows),
        "regions": sum(len(row["regions"]) for row in rows),
        "bytes": final.stat().st_size,
        "sha256": sha256_file(final),
    }


def write_stats(out: Path, shard_name: str, stats: dict[str, Any]) -> None:
    """Write a shard's stats file, atomically, after the shard itself is in place."""
    path = stats_path(out, shard_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, stats)


def read_stats(out: Path, shard_name: str) -> dict[str, Any] | None:
    """Return the stats of a completed shard, or None when the shard or its stats are missing."""
    path = stats_path(out, shard_name)
    if not path.is_file() or not (out / shard_name).is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write_json_atomic(path: Path, data: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)
