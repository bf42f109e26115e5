"""Recaptioning: new global captions for the rows of shards, and a whole dataset copied with new captions.

`recaption_rows` is shared by the build (a server captioner runs in the build's main process, on each
shard's rows before the shard is written) and by `recaption_dataset`, which reads an existing dataset
and writes a new one with the same shards, rows and order, where only `short_caption`, `long_caption`
and `caption_source` change. The source folder is only read.

A recaption into a folder that holds the same recaption (same source shards, same captioner output
settings) resumes: shards that have a stats file are kept. Finished captions of an interrupted shard
come from the captioner's cache. With `overwrite`, the folder is emptied first and every shard is
written again (captions still come from the cache where it has them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mgrs import __version__
from mgrs.captions import make_captioner
from mgrs.captions.base import Captioner
from mgrs.captions.openai import CaptioningReport, OpenAICaptioner
from mgrs.captions.quality import dataset_quality
from mgrs.card import write_card
from mgrs.recipe import BuildConfig, CaptionerConfig, RecipeError, SourceSpec, config_from_dict
from mgrs.schema import Record, Region, Tile
from mgrs.shards import read_stats, state_dir, write_json_atomic, write_shard, write_stats
from mgrs.taxonomy import load_taxonomy

logger = logging.getLogger(__name__)

REPORT_FILE = "build-report.json"
STATE_FILE = "recaption.json"

ProgressCallback = Callable[[int], None]


class RecaptionError(RuntimeError):
    """A recaption that cannot run; the message names the folder or option and the fix."""


@dataclass
class RecaptionResult:
    """The written dataset: `report` covers every shard, `captioning` only the shards this run wrote."""

    out: Path
    report: dict[str, Any]
    shards_written: list[str] = field(default_factory=list)
    shards_kept: list[str] = field(default_factory=list)
    captioning: CaptioningReport = field(default_factory=CaptioningReport)


def no_model_captions(config: CaptionerConfig, run: CaptioningReport, out: Path) -> str | None:
    """Return an error message when a server captioner gave no record model captions, else None.

    `run` covers one run or a whole dataset. Records served from the cache count as model captions, so
    the message comes only when every record in `run` needed a request and fell back to template captions.
    """
    fallbacks = sum(run.fallbacks.values())
    if config.kind == "template" or run.records == 0 or fallbacks < run.records:
        return None
    reasons = ", ".join(f"{reason}: {count}" for reason, count in run.fallbacks.most_common())
    return (
        f"no record got model captions: all {run.records} records fell back to template captions because "
        f"their requests to {config.base_url} failed ({reasons}). {out} is written and valid but holds "
        f"template captions only; check that the server at {config.base_url} is running and serves "
        f"{config.model}, then run again with --overwrite"
    )


def record_from_row(row: dict[str, Any]) -> Record:
    """Return the Record of a shard row, as the captioners take it."""
    regions = [
        Region(
            bbox=tuple(region["bbox"]),
            category=region["category"],
            category_id=region["category_id"],
            source_category=region["source_category"],
            caption=region["caption"],
            visible_fraction=region["visible_fraction"],
            polygon=region["polygon"],
            difficult=region["difficult"],
        )
        for region in row["regions"] or []
    ]
    image = row["image"] or {}
    return Record(
        image_bytes=image.get("bytes") or b"",
        image_path=image.get("path"),
        image_id=row["image_id"],
        source=row["source"],
        source_image=row["source_image"],
        source_sha256=row["source_sha256"],
        tile=Tile(**row["tile"]),
        width=row["width"],
        height=row["height"],
        gsd=row["gsd"],
        split=row["split"],
        license=row["license"],
        regions=regions,
        short_caption=row["short_caption"],
        long_caption=row["long_caption"],
        caption_source=row["caption_source"],
        extra=json.loads(row["extra"]) if row.get("extra") else {},
    )


def is_exhaustive(record: Record) -> bool:
    """Return whether the record's source labels every object; the build marks the others in `extra`."""
    return record.extra.get("exhaustive_labels", True) is not False


def recaption_rows(captioner: Captioner, rows: list[dict[str, Any]], progress: ProgressCallback | None = None) -> CaptioningReport:
    """Replace the global captions and `caption_source` of shard rows in place; return the run's report."""
    records = [record_from_row(row) for row in rows]
    items = [(record, is_exhaustive(record)) for record in records]

    if isinstance(captioner, OpenAICaptioner):
        outcomes, report = captioner.caption_many(items, progress)
        for row, outcome in zip(rows, outcomes):
            row["short_caption"] = outcome.captions.short
            row["long_caption"] = outcome.captions.long
            row["caption_source"] = outcome.source
        return report

    report = CaptioningReport(records=len(rows))
    for row, (record, exhaustive) in zip(rows, items):
        captions = captioner.caption(record, exhaustive)
        row["short_caption"] = captions.short
        row["long_caption"] = captions.long
        row["caption_source"] = captioner.name
        if progress:
            progress(1)
    return report


def recaption_dataset(
    source: str | Path,
    out: str | Path,
    captioner_config: CaptionerConfig,
    overwrite: bool = False,
    progress: Callable[[str, int], None] | None = None,
    target_row_group_bytes: int | None = None,
) -> RecaptionResult:
    """Write the dataset in `source` to `out` with captions from `captioner_config`; `source` is only read.

    `progress(event, n)` gets ("total", number of records) once and ("advance", n) as records finish.
    Raises RecaptionError for a missing source, an `out` inside or equal to the source, or an `out`
    holding something else while `overwrite` is off. Without `overwrite`, a folder that contains this
    recaption resumes; with it, the folder is emptied and every shard is written again. Also raises
    RecaptionError, after writing the dataset, when a server captioner gave no record model captions.
    """
    source = Path(source).resolve()
    out = Path(out).resolve()
    try:
        captioner_config.validate()
    except RecipeError as error:
        raise RecaptionError(str(error)) from error
    shards = _source_shards(source)
    if out == source or source in out.parents or out in source.parents:
        raise RecaptionError(f"--out {out} overlaps the source dataset {source}; choose a folder outside it")

    source_report = _read_source_report(source)
    config = _source_config(source, source_report, captioner_config)
    fingerprint = _fingerprint(source, shards, captioner_config)
    _prepare_out(out, fingerprint, overwrite)

    if target_row_group_bytes is None:
        target_row_group_bytes = config.output.target_row_group_bytes
    done = {name for name in shards if (stats := read_stats(out, name)) and stats.get("fingerprint") == fingerprint}
    if done:
        logger.info("resuming: %d of %d shards are already recaptioned", len(done), len(shards))
    if progress:
        progress("total", sum(pq.ParquetFile(source / name).metadata.num_rows for name in shards))
        kept_rows = sum(read_stats(out, name)["rows"] for name in done)
        if kept_rows:
            progress("advance", kept_rows)

    written: list[str] = []
    this_run = CaptioningReport()
    captioner = make_captioner(captioner_config)
    try:
        for name in shards:
            if name in done:
                continue
            rows = pq.read_table(source / name).to_pylist()
            step = (lambda n: progress("advance", n)) if progress else None
            shard_report = recaption_rows(captioner, rows, step)
            stats = write_shard(out, name, rows, target_row_group_bytes)
            stats["fingerprint"] = fingerprint
            stats["captioning"] = shard_report.to_dict()
            write_stats(out, name, stats)
            this_run.add(shard_report)
            written.append(name)
            logger.info("recaptioned %s (%d records)", name, stats["rows"])
    finally:
        close = getattr(captioner, "close", None)
        if close:
            close()

    report = _report(out, source, source_report, config, shards, fingerprint)
    write_json_atomic(out / REPORT_FILE, report)
    write_card(out, config, report, load_taxonomy(config.categories.taxonomy))
    whole = CaptioningReport.from_dict(report["captioning"])
    message = no_model_captions(captioner_config, this_run, out) or no_model_captions(captioner_config, whole, out)
    if message is not None:
        raise RecaptionError(message)
    return RecaptionResult(out, report, shards_written=written, shards_kept=sorted(done), captioning=this_run)


def _source_shards(source: Path) -> list[str]:
    if not source.is_dir():
        raise RecaptionError(f"dataset folder {source} not found; give the folder that contains data/")
    shards = sorted(f"data/{path.name}" for path in (source / "data").glob("*.parquet"))
    if not shards:
        raise RecaptionError(f"{source} has no data/*.parquet shards; give a dataset folder written by `mgrs build`")
    return shards


def _read_source_report(source: Path) -> dict[str, Any]:
    path = source / REPORT_FILE
    if not path.is_file():
        logger.warning("%s has no %s; the new card and report carry only what the shards show", source, REPORT_FILE)
        return {}
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise RecaptionError(f"cannot read {path}: {error}; repair or remove it") from error
    return report if isinstance(report, dict) else {}


def _source_config(source: Path, report: dict[str, Any], captioner_config: CaptionerConfig) -> BuildConfig:
    """Return the source build's configuration (as far as its report records it) with the new captioner."""
    settings = dict(report.get("settings") or {})
    settings.pop("captioner", None)
    try:
        config = config_from_dict(settings, root=source, origin=f"{source / REPORT_FILE} settings")
    except (RecipeError, TypeError) as error:
        logger.warning("the settings in %s do not fit this version of mgrs (%s); using defaults for the card", source / REPORT_FILE, error)
        config = BuildConfig(name=source.name)
    config.sources = [
        SourceSpec(format=entry["format"], version=entry.get("version"), path="")
        for entry in report.get("inputs") or []
        if isinstance(entry, dict) and "format" in entry
    ]
    config.captioner = captioner_config
    return config


def _fingerprint(source: Path, shards: list[str], captioner_config: CaptionerConfig) -> str:
    digest = hashlib.sha256()
    for name in shards:
        stat = (source / name).stat()
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    digest.update(json.dumps(captioner_config.output_settings(), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _prepare_out(out: Path, fingerprint: str, overwrite: bool) -> None:
    state = state_dir(out) / STATE_FILE
    if out.exists() and any(out.iterdir()):
        previous = None
        if state.is_file():
            previous = json.loads(state.read_text(encoding="utf-8")).get("fingerprint")
        if previous != fingerprint and not overwrite:
            raise RecaptionError(f"{out} already contains other files; pass --overwrite to replace it, or choose an empty --out folder")
        if overwrite:
            logger.warning("--overwrite: deleting the contents of %s and recaptioning every shard", out)
            shutil.rmtree(out)
    state_dir(out).mkdir(parents=True, exist_ok=True)
    write_json_atomic(state, {"fingerprint": fingerprint, "tool": f"mgrs {__version__}"})


def _report(out: Path, source: Path, source_report: dict, config: BuildConfig, shards: list[str], fingerprint: str) -> dict[str, Any]:
    """Return the new build report: the source's, with new shard checksums, captioning and quality sections."""
    report = {key: value for key, value in source_report.items() if key not in ("shards", "captioning", "caption_quality")}
    captioning = CaptioningReport()
    shard_entries = []
    for name in shards:
        stats = read_stats(out, name)
        shard_entries.append({key: stats[key] for key in ("file", "rows", "regions", "bytes", "sha256")})
        captioning.add(CaptioningReport.from_dict(stats.get("captioning") or {}))

    report.setdefault("recipe", config.name)
    report.setdefault("config_fingerprint", config.fingerprint())
    report.setdefault("library_versions", {})
    report["tool"] = f"mgrs {__version__}"
    report["shards"] = shard_entries
    report["settings"] = {**(report.get("settings") or {}), "captioner": _public_captioner(config.captioner)}
    report["recaptioned_from"] = {"dataset": source.name, "fingerprint": fingerprint}
    report["captioning"] = captioning.to_dict()
    report["caption_quality"] = dataset_quality(out, shards, load_taxonomy(config.categories.taxonomy))
    _fill_counts(report, out, shards)
    return report


def _public_captioner(config: CaptionerConfig) -> dict[str, Any]:
    settings = {key: value for key, value in vars(config).items() if key != "cache"}
    return settings


def _fill_counts(report: dict[str, Any], out: Path, shards: list[str]) -> None:
    """Fill the record and region counts the card shows when the source had no report."""
    counted = ("records", "regions", "records_by_source", "regions_by_source")
    if all(key in report for key in counted):
        report.setdefault("skipped", {})
        return
    records: dict[str, int] = {}
    by_source: dict[str, int] = {}
    regions_by_source: dict[str, int] = {}
    regions = 0
    for name in shards:
        table = pq.read_table(out / name, columns=["split", "source", "regions"])
        for row in table.to_pylist():
            count = len(row["regions"] or [])
            records[row["split"]] = records.get(row["split"], 0) + 1
            by_source[row["source"]] = by_source.get(row["source"], 0) + 1
            regions_by_source[row["source"]] = regions_by_source.get(row["source"], 0) + count
            regions += count
    report["records"] = dict(sorted(records.items()))
    report["regions"] = regions
    report["records_by_source"] = dict(sorted(by_source.items()))
    report["regions_by_source"] = dict(sorted(regions_by_source.items()))
    report.setdefault("skipped", {})
