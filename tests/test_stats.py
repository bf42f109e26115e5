import statistics
from collections import Counter
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest_shards import make_records, uniform_image, write_dataset
from rich.console import Console
from rich.table import Table

from mgrs.schema import Region
from mgrs.stats import compute_stats, render_stats


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A two-source, three-split dataset with several shards and row groups, and its records."""
    records = make_records(
        {"train": 11, "validation": 4, "test": 3}, seed=7, sources=("dota-v1.0", "dior"), size_range=(40, 300)
    )
    root = write_dataset(tmp_path_factory.mktemp("stats") / "ds", records=records, shards_per_split=2, row_group_size=2)
    return root, [record for split in records.values() for record in split]


def words(text: str) -> int:
    return len(text.split())


def test_totals(built):
    root, records = built

    stats = compute_stats(root)

    assert stats["records"] == len(records)
    assert stats["regions"] == sum(len(record.regions) for record in records)
    assert stats["records_without_regions"] == sum(1 for record in records if not record.regions)
    assert stats["records_without_regions"] > 0


@pytest.mark.parametrize("key", ["source", "split"])
def test_records_and_regions_per_group(built, key):
    root, records = built
    expected_records = Counter(getattr(record, key) for record in records)
    expected_regions = Counter()
    for record in records:
        expected_regions[getattr(record, key)] += len(record.regions)

    rows = compute_stats(root)[f"by_{key}"]

    assert {row[key]: row["records"] for row in rows} == dict(expected_records)
    assert {row[key]: row["regions"] for row in rows} == dict(expected_regions)
    assert len(rows) > 1


def test_regions_per_category(built):
    root, records = built
    expected = Counter((region.category, region.category_id) for record in records for region in record.regions)

    rows = compute_stats(root)["by_category"]

    assert {(row["category"], row["category_id"]): row["regions"] for row in rows} == dict(expected)
    assert [row["regions"] for row in rows] == sorted((row["regions"] for row in rows), reverse=True)


def test_regions_per_record(built):
    root, records = built
    counts = [len(record.regions) for record in records]

    summary = compute_stats(root)["regions_per_record"]

    assert summary["min"] == min(counts)
    assert summary["max"] == max(counts)
    assert summary["mean"] == pytest.approx(statistics.mean(counts))
    assert summary["median"] == pytest.approx(statistics.median(counts))


@pytest.mark.parametrize("caption", ["short", "long"])
def test_caption_words(built, caption):
    root, records = built
    counts = [words(getattr(record, f"{caption}_caption")) for record in records]

    summary = compute_stats(root)["caption_words"][caption]

    assert summary["min"] == min(counts)
    assert summary["max"] == max(counts)
    assert summary["mean"] == pytest.approx(statistics.mean(counts))


def test_size_filter_matches_python(built):
    root, records = built
    areas = [
        (float(np.float32(x2)) - float(np.float32(x1))) * (float(np.float32(y2)) - float(np.float32(y1)))
        for record in records
        for x1, y1, x2, y2 in (region.bbox for region in record.regions)
    ]
    inside = sum(1 for area in areas if 64**2 <= area <= 1024**2)

    result = compute_stats(root)["size_filter"]

    assert result["regions"] == inside
    assert 0 < inside < len(areas)
    assert result["share"] == pytest.approx(inside / len(areas))


def box(x1, y1, x2, y2) -> Region:
    return Region(bbox=(x1, y1, x2, y2), category="ship", category_id=1, source_category="ship",
                  caption="a satellite image of ship", visible_fraction=1.0)


def test_size_filter_boundaries(tmp_path):
    regions = [
        box(0, 0, 64, 64),  # exactly 64², kept
        box(0, 0, 63, 65),  # 4095 px², dropped
        box(0, 0, 1024, 1024),  # exactly 1024², kept
        box(0, 0, 1024, 1025),  # above 1024², dropped
        box(10.5, 10.5, 74.5, 74.5),  # 64² with fractional corners, kept
        box(0, 0, 2, 2),  # tiny, dropped
    ]
    record = make_records({"train": 1}, seed=0)["train"][0]
    record = replace(record, width=1100, height=1100, image_bytes=uniform_image(1100, 1100), regions=regions)
    root = write_dataset(tmp_path / "ds", records={"train": [record]})

    result = compute_stats(root)["size_filter"]

    assert result["regions"] == 3
    assert result["share"] == pytest.approx(0.5)


def test_size_filter_custom_limits(built):
    root, _ = built

    result = compute_stats(root, min_area=0, max_area=float("inf"))["size_filter"]

    assert result["share"] == 1.0


def test_caption_words_ignore_extra_whitespace(tmp_path):
    record = make_records({"train": 1}, seed=0)["train"][0]
    record = replace(record, short_caption="  two\twords \n", long_caption="one")
    root = write_dataset(tmp_path / "ds", records={"train": [record]})

    words_by_caption = compute_stats(root)["caption_words"]

    assert words_by_caption["short"]["max"] == 2
    assert words_by_caption["long"]["max"] == 1


def test_dataset_without_regions(tmp_path):
    records = make_records({"train": 3}, seed=0)
    for record in records["train"]:
        record.regions = []
    root = write_dataset(tmp_path / "ds", records=records)

    stats = compute_stats(root)

    assert stats["regions"] == 0
    assert stats["records_without_regions"] == 3
    assert stats["by_category"] == []
    assert stats["size_filter"]["share"] is None
    assert stats["regions_per_record"]["max"] == 0


def test_stats_never_need_image_column(built, tmp_path):
    """Shards stripped of the image column give the same statistics, so no query reads it."""
    root, _ = built
    copy = tmp_path / "copy"
    (copy / "data").mkdir(parents=True)
    for shard in (root / "data").glob("*.parquet"):
        pq.write_table(pq.read_table(shard).drop_columns(["image"]), copy / "data" / shard.name)

    assert compute_stats(copy) == compute_stats(root)


def test_quote_in_path(tmp_path, built):
    root, _ = built
    odd = tmp_path / "it's [a] *folder*"
    write_dataset(odd, {"train": 2}, seed=0)

    assert compute_stats(odd)["records"] == 2


def test_missing_shards(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Parquet shards"):
        compute_stats(tmp_path)


def test_render_stats_tables(built):
    root, _ = built
    stats = compute_stats(root)

    tables = render_stats(stats)

    assert all(isinstance(table, Table) for table in tables)
    console = Console(record=True, width=120)
    for table in tables:
        console.print(table)
    text = console.export_text()
    assert "dota-v1.0" in text
    assert "validation" in text
    assert stats["by_category"][0]["category"] in text
    assert f"{stats['size_filter']['regions']:,}" in text
