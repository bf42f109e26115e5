"""Tests of atomic, deterministic Parquet shard writing and shard stats in `mgrs.shards`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import Features, Image as ImageFeature
from PIL import Image

from mgrs import shards
from mgrs.imaging import sha256_file
from mgrs.schema import Record, Region, Tile
from mgrs.shards import read_stats, row_group_rows, stats_path, write_json_atomic, write_shard, write_stats

SHARD = "data/train-00000-of-00001.parquet"


def png_bytes(rng: np.random.Generator, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_rows(count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        region = Region(
            bbox=(1.0, 2.0, 5.0, 6.0),
            category="ship",
            category_id=14,
            source_category="ship",
            caption="a ship",
            visible_fraction=1.0,
            polygon=[1.0, 2.0, 5.0, 2.0, 5.0, 6.0, 1.0, 6.0],
            difficult=0,
        )
        record = Record(
            image_bytes=png_bytes(rng),
            image_path=None,
            image_id=f"dota/P{index:04d}",
            source="dota",
            source_image=f"images/P{index:04d}.png",
            source_sha256="0" * 64,
            tile=Tile(0, 0, 8, 8),
            width=8,
            height=8,
            gsd=None,
            split="train",
            license="academic use only",
            regions=[region] * (index % 3),
            short_caption="An aerial image.",
            extra={"index": index},
        )
        rows.append(record.to_row())
    return rows


# row_group_rows -----------------------------------------------------------------------------------


def test_row_group_rows_empty():
    assert row_group_rows([], 1000) == 1


@pytest.mark.parametrize(
    ("sizes", "target", "expected"),
    [
        ([100, 100, 100], 1000, 10),
        ([100, 300], 1000, 5),
        ([5000], 1000, 1),
        ([0, 0], 1000, 1000),
        ([100], 0, 1),
    ],
)
def test_row_group_rows(sizes, target, expected):
    rows = [{"image": {"bytes": b"x" * size}} for size in sizes]

    assert row_group_rows(rows, target) == expected


# write_shard --------------------------------------------------------------------------------------


def test_write_shard_stats(tmp_path):
    rows = make_rows(5)

    stats = write_shard(tmp_path, SHARD, rows, 10_000_000)

    final = tmp_path / SHARD
    assert final.is_file()
    assert stats["file"] == SHARD
    assert stats["rows"] == 5
    assert stats["regions"] == 0 + 1 + 2 + 0 + 1
    assert stats["bytes"] == final.stat().st_size
    assert stats["sha256"] == sha256_file(final)
    assert pq.read_table(final).column("image_id").to_pylist() == [row["image_id"] for row in rows]


def test_write_shard_atomic_rename(tmp_path, monkeypatch):
    real_write_table = pq.write_table
    seen = {}

    def watching_write_table(table, where, **options):
        real_write_table(table, where, **options)
        seen["temporary"] = Path(where)
        seen["data_files"] = sorted(p.name for p in (tmp_path / "data").iterdir())

    monkeypatch.setattr(shards.pq, "write_table", watching_write_table)

    write_shard(tmp_path, SHARD, make_rows(2), 10_000_000)

    temporary = seen["temporary"]
    assert seen["data_files"] == []
    assert (tmp_path / "data") not in temporary.parents
    assert tmp_path / shards.STATE_DIR in temporary.parents
    assert not temporary.exists()
    assert (tmp_path / SHARD).is_file()


def test_write_shard_failure_no_file(tmp_path, monkeypatch):
    def failing_write_table(table, where, **options):
        Path(where).write_bytes(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(shards.pq, "write_table", failing_write_table)

    with pytest.raises(OSError):
        write_shard(tmp_path, SHARD, make_rows(2), 10_000_000)

    assert list((tmp_path / "data").iterdir()) == []
    assert read_stats(tmp_path, SHARD) is None


def test_write_shard_replaces_old_shard(tmp_path):
    write_shard(tmp_path, SHARD, make_rows(4, seed=1), 10_000_000)

    stats = write_shard(tmp_path, SHARD, make_rows(2, seed=2), 10_000_000)

    assert pq.read_table(tmp_path / SHARD).num_rows == 2
    assert stats["rows"] == 2


def test_write_shard_huggingface_metadata(tmp_path):
    write_shard(tmp_path, SHARD, make_rows(2), 10_000_000)

    schema = pq.read_schema(tmp_path / SHARD)
    metadata = json.loads(schema.metadata[b"huggingface"])
    features = Features.from_arrow_schema(schema)

    assert metadata["info"]["features"]["image"]["_type"] == "Image"
    assert isinstance(features["image"], ImageFeature)
    assert "regions" in features


def test_write_shard_row_groups(tmp_path):
    rows = make_rows(7)
    average = sum(len(row["image"]["bytes"]) for row in rows) // len(rows)

    write_shard(tmp_path, SHARD, rows, average * 3)

    metadata = pq.ParquetFile(tmp_path / SHARD).metadata
    assert metadata.num_row_groups == 3
    assert [metadata.row_group(i).num_rows for i in range(3)] == [3, 3, 1]


def test_write_shard_byte_identical(tmp_path):
    first = write_shard(tmp_path / "a", SHARD, make_rows(6, seed=4), 10_000_000)
    second = write_shard(tmp_path / "b", SHARD, make_rows(6, seed=4), 10_000_000)

    assert (tmp_path / "a" / SHARD).read_bytes() == (tmp_path / "b" / SHARD).read_bytes()
    assert first["sha256"] == second["sha256"]


def test_write_shard_other_rows_differ(tmp_path):
    first = write_shard(tmp_path / "a", SHARD, make_rows(6, seed=4), 10_000_000)
    second = write_shard(tmp_path / "b", SHARD, make_rows(6, seed=5), 10_000_000)

    assert first["sha256"] != second["sha256"]


def test_write_shard_round_trip_values(tmp_path):
    rows = make_rows(3)

    write_shard(tmp_path, SHARD, rows, 10_000_000)
    stored = pq.read_table(tmp_path / SHARD).to_pylist()

    assert [row["image"]["bytes"] for row in stored] == [row["image"]["bytes"] for row in rows]
    assert stored[1]["regions"][0]["bbox"] == [1.0, 2.0, 5.0, 6.0]
    assert stored[1]["regions"][0]["category_id"] == 14
    assert stored[0]["gsd"] is None
    assert json.loads(stored[2]["extra"]) == {"index": 2}


# Stats files --------------------------------------------------------------------------------------


def test_stats_path():
    assert stats_path(Path("/out"), SHARD) == Path("/out/.mgrs-build/shards/train-00000-of-00001.json")


def test_read_stats_after_write(tmp_path):
    stats = write_shard(tmp_path, SHARD, make_rows(2), 10_000_000)

    write_stats(tmp_path, SHARD, stats)

    assert read_stats(tmp_path, SHARD) == stats


def test_read_stats_missing_stats(tmp_path):
    write_shard(tmp_path, SHARD, make_rows(2), 10_000_000)

    assert read_stats(tmp_path, SHARD) is None


def test_read_stats_missing_shard(tmp_path):
    stats = write_shard(tmp_path, SHARD, make_rows(2), 10_000_000)
    write_stats(tmp_path, SHARD, stats)

    (tmp_path / SHARD).unlink()

    assert read_stats(tmp_path, SHARD) is None


def test_read_stats_corrupt_json(tmp_path):
    write_shard(tmp_path, SHARD, make_rows(2), 10_000_000)
    path = stats_path(tmp_path, SHARD)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"rows": 2', encoding="utf-8")

    assert read_stats(tmp_path, SHARD) is None


def test_read_stats_empty_folder(tmp_path):
    assert read_stats(tmp_path, SHARD) is None


def test_write_json_atomic(tmp_path):
    path = tmp_path / "report.json"

    write_json_atomic(path, {"b": 1, "a": [1, 2]})

    assert json.loads(path.read_text(encoding="utf-8")) == {"a": [1, 2], "b": 1}
    assert path.read_text(encoding="utf-8").endswith("\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
