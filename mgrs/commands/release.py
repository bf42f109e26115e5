"""`mgrs import-release` and `mgrs reconcile`: bring the released MGRS-200k in, and compare a rebuild with it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

logger = logging.getLogger(__name__)

# Exit statuses of `mgrs reconcile`, like diff(1): a perfect match, differences found, an error.
EXIT_MATCH = 0
EXIT_DIFFERENCES = 1
EXIT_ERROR = 2
# Table labels of keys whose plain spelling would be confused with another row.
MEASURE_LABELS = {
    "iou_threshold": "IoU threshold (--min-iou)",
    "iou_mean": "IoU mean (measured)",
    "iou_median": "IoU median (measured)",
    "iou_min": "IoU min (measured)",
}

console = Console()
error_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("import-release")(import_release_command)
    app.command("reconcile")(reconcile_command)


def import_release_command(
    path: Path = typer.Argument(..., help="The release's JSON file, or the folder that contains its *.json files."),
    out: Path = typer.Option(..., "--out", "-o", help="Output dataset folder."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder that global_filepath is relative to (default: the JSON's folder)."),
    source: str = typer.Option("mgrs-200k", "--source-name", help="`source` value of records whose item does not name one."),
    split: str = typer.Option("train", "--split", help="Split of items that do not name one."),
    license_text: str = typer.Option("see the MGRS-200k dataset card", "--license", help="`license` value of items that do not name one."),
    rows_per_shard: int = typer.Option(1000, "--rows-per-shard", min=1, help="Records per Parquet shard."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the shards of a non-empty --out folder."),
) -> None:
    """Convert the released MGRS-200k JSON and image folder into Parquet shards, a card and a report."""
    from mgrs.interop.import_release import ImportOptions, import_release
    from mgrs.interop.layout import InteropError

    options = ImportOptions(source=source, split=split, license=license_text, images=images, rows_per_shard=rows_per_shard, overwrite=overwrite)
    try:
        report = import_release(path, out, options)
    except (InteropError, OSError) as error:
        _fail(str(error))
    skipped = sum(sum(counts.values()) for counts in report["skipped"].values())
    console.print(
        f"Imported {out}: {sum(report['records'].values())} records and {report['regions']} regions "
        f"({skipped} items or segments skipped; see build-report.json)."
    )


def reconcile_command(
    ours: Path = typer.Argument(..., help="Our dataset folder, or a JSON export of it."),
    release: Path = typer.Argument(..., help="The release's JSON file or folder, or a dataset folder."),
    max_distance: int = typer.Option(1, "--max-distance", min=0, max=32, help="Largest pHash Hamming distance of two matching images."),
    min_iou: float = typer.Option(0.5, "--min-iou", min=0.0, max=1.0, help="Smallest box IoU of two matching regions."),
    granularity: str = typer.Option("fine", "--granularity", help="Taxonomy level at which categories are compared: fine or coarse."),
    max_examples: int = typer.Option(20, "--max-examples", min=0, help="Entries shown per list of differences."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
) -> None:
    """Match records by perceptual hash and report matched, missing and extra images, box IoU, categories and captions.

    Exits with 0 on a perfect match, 1 when differences were found and 2 on an error.
    """
    from mgrs.interop.layout import InteropError
    from mgrs.interop.reconcile import ReconcileOptions, reconcile

    if granularity not in ("fine", "coarse"):
        _fail(f"--granularity is {granularity!r}; use fine or coarse")
    options = ReconcileOptions(max_distance=max_distance, min_iou=min_iou, granularity=granularity, max_examples=max_examples)
    try:
        result = reconcile(ours, release, options)
    except (InteropError, OSError) as error:
        _fail(str(error))
    if as_json:
        console.print_json(json.dumps(result))
    else:
        for table in _tables(result):
            console.print(table)
        verdict = "[green]perfect match[/green]" if result["perfect"] else "[yellow]differences found[/yellow] (exit status 1)"
        console.print(f"Result: {verdict}")
    raise typer.Exit(EXIT_MATCH if result["perfect"] else EXIT_DIFFERENCES)


def _tables(result: dict) -> list[Table]:
    tables = []
    for title, section in (("Images", result["images"]), ("Regions", result["regions"])):
        table = Table(title=title)
        table.add_column("measure")
        table.add_column("value", justify="right")
        for key, value in section.items():
            table.add_row(MEASURE_LABELS.get(key, key.replace("_", " ")), "-" if value is None else str(value))
        tables.append(table)

    categories = result["categories"]
    table = Table(title=f"Categories ({categories['granularity']} level)")
    table.add_column("ours")
    table.add_column("release")
    table.add_column("regions", justify="right")
    table.add_row("(agree)", "", str(categories["agree"]))
    for entry in categories["confusion"]:
        table.add_row(entry["ours"], entry["release"], str(entry["count"]))
    tables.append(table)

    captions = result["captions"]
    table = Table(title="Caption lengths (words)")
    for column in ("caption", "ours mean", "release mean", "mean difference", "mean absolute difference"):
        table.add_column(column)
    for name in ("short", "long"):
        entry = captions[name]
        table.add_row(name, *("-" if entry[key] is None else str(entry[key]) for key in ("ours_mean", "release_mean", "mean_difference", "mean_absolute_difference")))
    tables.append(table)

    examples = result["examples"]
    table = Table(title="Differences (first entries; --json for all listed)")
    table.add_column("kind")
    table.add_column("detail", overflow="fold")
    for kind in ("missing", "extra", "unreadable"):
        for image_id in examples[kind]:
            table.add_row(kind, image_id)
    for entry in examples["boxes_not_identical"]:
        table.add_row("box", f"{entry['image_id']} region {entry['region']}: IoU {entry['iou']}, ours {entry['ours']}, release {entry['release']}")
    for entry in examples["category_changes"]:
        table.add_row("category", f"{entry['image_id']} region {entry['region']}: ours {entry['ours']!r}, release {entry['release']!r}")
    for kind in ("regions_only_ours", "regions_only_release"):
        for entry in examples[kind]:
            table.add_row(kind.replace("_", " "), f"{entry['image_id']} region {entry['region']}: {entry['category']} {entry['bbox']}")
    if table.row_count:
        tables.append(table)
    return tables


def _fail(message: str) -> None:
    error_console.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False)
    raise typer.Exit(EXIT_ERROR)
