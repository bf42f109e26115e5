"""Summary statistics of a built MGRS dataset, computed with DuckDB SQL over its Parquet shards.

The queries select only metadata columns, so DuckDB skips the image column entirely. `compute_stats`
returns plain, JSON-serialisable data; `render_stats` turns it into rich tables for the CLI.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import duckdb
from rich.table import Table

from mgrs.hub_paths import dataset_path, register_filesystems

logger = logging.getLogger(__name__)

# The trainer's default region size filter keeps boxes whose area lies in [64², 1024²] px², inclusive.
MIN_REGION_AREA = 64**2
MAX_REGION_AREA = 1024**2

# Columns the statistics need; `image` is deliberately absent.
COLUMNS = "image_id, source, split, short_caption, long_caption, regions"

# Words are runs of non-whitespace (RE2's `\S`: anything except space, tab, newline, CR and form feed).
WORD_COUNT = "len(regexp_extract_all(coalesce({column}, ''), '\\S+'))"


def compute_stats(
    path: str | Path, min_area: float = MIN_REGION_AREA, max_area: float = MAX_REGION_AREA
) -> dict[str, Any]:
    """Compute record, region, category and caption statistics of the dataset folder `path`.

    Returns a dict with the keys `records`, `regions`, `by_source` and `by_split` (lists of
    {source|split, records, regions}), `by_category` (list of {category, category_id, regions}, most
    frequent first), `regions_per_record` and `caption_words` ({min, mean, median?, max}),
    `records_without_regions` and `size_filter` ({min_area, max_area, regions, share}: regions whose
    box area in px² lies in [min_area, max_area]; share is None when the dataset has no regions).
    Raises FileNotFoundError when `path/data` contains no Parquet shard.
    """
    root = dataset_path(path)  # a local folder, or hf://datasets/OWNER/NAME[@REV][/SUBSET]
    shards = sorted((root / "data").glob("*.parquet"))
    if not shards:
        raise FileNotFoundError(f"no Parquet shards in {root / 'data'}; pass a dataset folder built by mgrs")
    logger.info("Computing statistics of %d shards in %s", len(shards), path)

    connection = duckdb.connect()
    try:
        register_filesystems(connection, shards)  # hf:// files are read through HfFileSystem
        # An explicit file list instead of a glob, so that brackets or asterisks in the path stay literal.
        files = ", ".join(_sql_string(str(shard)) for shard in shards)
        connection.execute(f"CREATE VIEW records AS SELECT {COLUMNS} FROM read_parquet([{files}])")
        connection.execute(
            "CREATE VIEW regions AS SELECT source, split, UNNEST(regions) AS region FROM records"
        )
        return _query_stats(connection, min_area, max_area)
    finally:
        connection.close()


def _query_stats(connection: duckdb.DuckDBPyConnection, min_area: float, max_area: float) -> dict[str, Any]:
    records, regions, without_regions = connection.execute(
        "SELECT count(*), coalesce(sum(len(regions)), 0), count(*) FILTER (WHERE coalesce(len(regions), 0) = 0) "
        "FROM records"
    ).fetchone()

    stats: dict[str, Any] = {
        "records": records,
        "regions": regions,
        "records_without_regions": without_regions,
    }
    for key in ("source", "split"):
        stats[f"by_{key}"] = _rows(connection, (
            f"SELECT {key}, count(*) AS records, coalesce(sum(len(regions)), 0) AS regions "
            f"FROM records GROUP BY {key} ORDER BY {key}"
        ))

    stats["by_category"] = _rows(connection, (
        "SELECT region.category AS category, region.category_id AS category_id, count(*) AS regions "
        "FROM regions GROUP BY ALL ORDER BY regions DESC, category, category_id"
    ))

    stats["regions_per_record"] = _rows(connection, (
        "SELECT min(n) AS min, avg(n) AS mean, median(n) AS median, max(n) AS max "
        "FROM (SELECT coalesce(len(regions), 0) AS n FROM records)"
    ))[0]

    stats["caption_words"] = {}
    for caption in ("short", "long"):
        words = WORD_COUNT.format(column=f"{caption}_caption")
        stats["caption_words"][caption] = _rows(connection, (
            f"SELECT min({words}) AS min, avg({words}) AS mean, max({words}) AS max FROM records"
        ))[0]

    # Box area in double precision: the float32 product can round a boundary area across the limit.
    area = (
        "(CAST(region.bbox[3] AS DOUBLE) - CAST(region.bbox[1] AS DOUBLE)) "
        "* (CAST(region.bbox[4] AS DOUBLE) - CAST(region.bbox[2] AS DOUBLE))"
    )
    inside = connection.execute(
        f"SELECT count(*) FROM regions WHERE {area} BETWEEN ? AND ?", [float(min_area), float(max_area)]
    ).fetchone()[0]
    stats["size_filter"] = {
        "min_area": min_area,
        "max_area": max_area,
        "regions": inside,
        "share": inside / regions if regions else None,
    }
    return stats


def _rows(connection: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = connection.execute(sql)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def render_stats(stats: dict[str, Any]) -> list[Table]:
    """Return rich tables of the result of `compute_stats`, ready for `Console.print`."""
    overview = Table(title="Dataset", show_header=False)
    overview.add_column("statistic")
    overview.add_column("value", justify="right")
    overview.add_row("records", f"{stats['records']:,}")
    overview.add_row("regions", f"{stats['regions']:,}")
    overview.add_row("records without regions", f"{stats['records_without_regions']:,}")
    per_record = stats["regions_per_record"]
    overview.add_row(
        "regions per record (min / mean / median / max)",
        " / ".join(_number(per_record[key]) for key in ("min", "mean", "median", "max")),
    )
    for caption, words in stats["caption_words"].items():
        overview.add_row(
            f"{caption} caption words (min / mean / max)",
            " / ".join(_number(words[key]) for key in ("min", "mean", "max")),
        )
    size = stats["size_filter"]
    share = "–" if size["share"] is None else f"{size['share']:.1%}"
    overview.add_row(
        f"regions with box area in [{_number(size['min_area'])}, {_number(size['max_area'])}] px²",
        f"{size['regions']:,} ({share})",
    )

    tables = [overview]
    for key, title in (("source", "Per source"), ("split", "Per split")):
        table = Table(title=title)
        table.add_column(key)
        table.add_column("records", justify="right")
        table.add_column("regions", justify="right")
        for row in stats[f"by_{key}"]:
            table.add_row(str(row[key]), f"{row['records']:,}", f"{row['regions']:,}")
        tables.append(table)

    categories = Table(title="Per category")
    categories.add_column("category")
    categories.add_column("id", justify="right")
    categories.add_column("regions", justify="right")
    for row in stats["by_category"]:
        categories.add_row(str(row["category"]), str(row["category_id"]), f"{row['regions']:,}")
    tables.append(categories)
    return tables


def _number(value: float | int | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}"
    return f"{int(value):,}"
