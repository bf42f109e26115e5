"""The build: plan, convert scenes in worker processes, write shards in order, then the card and report.

Shards are written in plan order as soon as every scene that feeds them is converted, so memory keeps
about one shard of rows. Results come back in scene order (`Pool.imap`), so the output does not depend on
the number of workers. A folder that already contains the same plan resumes: finished shards (those with a
stats file) are kept and their scenes are not converted again.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from mgrs import __version__
from mgrs.card import write_card
from mgrs.captions import make_captioner, make_worker_captioner, runs_in_workers
from mgrs.captions.openai import CaptioningReport
from mgrs.captions.quality import dataset_quality
from mgrs.convert import SceneConverter, SceneResult
from mgrs.plan import Plan, PlannedScene, ShardPlan, make_plan, make_sources, shard_name
from mgrs.recaption import no_model_captions, recaption_rows
from mgrs.recipe import BuildConfig
from mgrs.report import Tally
from mgrs.shards import read_stats, state_dir, stats_path, write_json_atomic, write_shard, write_stats
from mgrs.sources.base import IMAGE, Skip, get_source
from mgrs.taxonomy import load_taxonomy

logger = logging.getLogger(__name__)

REPORT_FILE = "build-report.json"
# Skip reasons of files that are not images, left out of the skip rate.
NOT_IMAGE_REASONS = {"unsupported_file"}
# Image skips after which the record is still written (without regions).
RECORD_KEPT_REASONS = {"missing_mask", "mask_size_mismatch"}
PLAN_FILE = "plan.json"


class BuildError(RuntimeError):
    """A build that cannot continue. The message states the cause and the fix."""


@dataclass
class BuildResult:
    out: Path
    plan: Plan
    report: dict[str, Any]
    shards_written: list[str] = field(default_factory=list)
    shards_kept: list[str] = field(default_factory=list)


ProgressHook = Callable[[str, int], None]


def build(
    config: BuildConfig,
    out: Path,
    workers: int = 1,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: ProgressHook | None = None,
) -> BuildResult:
    """Build a dataset folder from the configured sources.

    `progress(event, n)` is called with ("total", number of scenes) once and ("advance", 1) per scene.
    Raises BuildError when nothing could be read, when `out` contains another build and `overwrite` is
    off, or when more than `max_skip_rate` of the images were skipped or a server captioner gave no
    record model captions (both after writing the report).
    """
    config.validate()
    out = Path(out)
    taxonomy = load_taxonomy(config.categories.taxonomy)
    plan = make_plan(config, workers=workers)
    logger.info(
        "planned %d scenes into %d records in %d shards (about %.1f MB of source images)",
        len(plan.scenes),
        sum(len(s.image_ids) for s in plan.scenes),
        len(plan.shards),
        plan.estimated_bytes / 1e6,
    )
    if not plan.scenes and not dry_run:
        raise BuildError(_nothing_read_message(config, plan))
    _check_skip_rate(config, len(plan.scenes), plan.tally, "while planning")
    if dry_run:
        return BuildResult(out, plan, _report(config, plan, plan.tally, [], ""))

    fingerprint = plan.fingerprint(config.fingerprint())
    _prepare_folder(out, fingerprint, overwrite)
    done = {shard.name: stats for shard in plan.shards if (stats := read_stats(out, shard.name)) and stats.get("fingerprint") == fingerprint}
    if done:
        logger.info("resuming: %d of %d shards are already complete", len(done), len(plan.shards))

    # A server captioner runs here, in the main process, on each shard's rows before the shard is written.
    row_captioner = None if runs_in_workers(config.captioner) else make_captioner(config.captioner)
    try:
        written = _write_missing_shards(config, plan, out, fingerprint, done, taxonomy, workers, progress, row_captioner)
    finally:
        if row_captioner is not None:
            row_captioner.close()
    _remove_stale_shards(out, plan)

    tally = Tally()
    tally.add(plan.tally)
    all_stats = []
    for shard in plan.shards:
        stats = read_stats(out, shard.name)
        tally.add(Tally.from_dict(stats["tally"]))
        all_stats.append((shard, stats))
    shard_stats = _drop_empty_shards(out, all_stats)

    report = _report(config, plan, tally, shard_stats, fingerprint)
    if not runs_in_workers(config.captioner):
        captioning = CaptioningReport()
        for _, stats in all_stats:
            captioning.add(CaptioningReport.from_dict(stats.get("captioning") or {}))
        report["captioning"] = captioning.to_dict()
    report["caption_quality"] = dataset_quality(out, [entry["file"] for entry in shard_stats], taxonomy)
    write_json_atomic(out / REPORT_FILE, report)
    write_card(out, config, report, taxonomy)
    if not shard_stats:
        raise BuildError(f"no records were written: every record was skipped; see the skip reasons in {out / REPORT_FILE}")
    # Images that failed while converting are in `images_read` and among the skips, so the base is
    # the planned scenes.
    _check_skip_rate(config, len(plan.scenes), tally, "in the build", plan_skips=plan.tally)
    _check_model_captions(config, out, report, [stats for shard, stats in all_stats if shard.name in written])
    return BuildResult(out, plan, report, shards_written=written, shards_kept=sorted(done))


def _check_model_captions(config: BuildConfig, out: Path, report: dict, written_stats: list[dict]) -> None:
    """Raise BuildError when a server captioner gave model captions to no record of this run or of the dataset."""
    if runs_in_workers(config.captioner):
        return
    this_run = CaptioningReport()
    for stats in written_stats:
        this_run.add(CaptioningReport.from_dict(stats.get("captioning") or {}))
    whole = CaptioningReport.from_dict(report["captioning"])
    message = no_model_captions(config.captioner, this_run, out) or no_model_captions(config.captioner, whole, out)
    if message is not None:
        raise BuildError(message)


def _write_missing_shards(config, plan, out, fingerprint, done, taxonomy, workers, progress, row_captioner) -> list[str]:
    shard_of = {image_id: shard.name for shard in plan.shards for image_id in shard.image_ids}
    pending_shards = [shard for shard in plan.shards if shard.name not in done]
    needed = [scene for scene in plan.scenes if any(shard_of[i] not in done for i in scene.image_ids)]

    # A shard is ready when every scene feeding it has been converted.
    waiting: dict[str, int] = {shard.name: 0 for shard in pending_shards}
    for scene in needed:
        for name in {shard_of[i] for i in scene.image_ids}:
            if name in waiting:
                waiting[name] += 1
    tallies = {shard.name: Tally() for shard in pending_shards}
    rows: dict[str, dict[str, Any]] = {}
    written: list[str] = []

    if progress:
        progress("total", len(needed))
    queue = list(pending_shards)
    for scene, result in zip(needed, _convert_all(config, needed, taxonomy, workers)):
        owner = shard_of[scene.image_ids[0]]
        if owner in tallies:
            tallies[owner].add(result.tally)
        for image_id, row in result.rows.items():
            if shard_of[image_id] in waiting:
                rows[image_id] = row
        for name in {shard_of[i] for i in scene.image_ids}:
            if name in waiting:
                waiting[name] -= 1
        while queue and waiting[queue[0].name] == 0:
            shard = queue.pop(0)
            _finish_shard(out, shard, rows, tallies[shard.name], fingerprint, config, row_captioner)
            written.append(shard.name)
        if progress:
            progress("advance", 1)

    for shard in queue:  # shards that no remaining scene feeds, such as those emptied by skip_empty
        _finish_shard(out, shard, rows, tallies[shard.name], fingerprint, config, row_captioner)
        written.append(shard.name)
    return written


def _finish_shard(out: Path, shard: ShardPlan, rows: dict, tally: Tally, fingerprint: str, config: BuildConfig, row_captioner=None) -> None:
    shard_rows = [rows.pop(image_id) for image_id in shard.image_ids if image_id in rows]
    captioning = recaption_rows(row_captioner, shard_rows) if row_captioner is not None else None
    stats = write_shard(out, shard.name, shard_rows, config.output.target_row_group_bytes)
    stats["fingerprint"] = fingerprint
    stats["tally"] = tally.to_dict()
    if captioning is not None:
        stats["captioning"] = captioning.to_dict()
    write_stats(out, shard.name, stats)
    logger.info("wrote %s (%d records, %d regions)", shard.name, stats["rows"], stats["regions"])


def _convert_all(config: BuildConfig, scenes: list[PlannedScene], taxonomy, workers: int) -> Iterator[SceneResult]:
    if workers <= 1 or len(scenes) <= 1:
        converter = _make_converter(config, taxonomy)
        for scene in scenes:
            yield _convert_safely(converter, scene)
        return

    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(config,)) as pool:
        yield from pool.imap(_convert_in_worker, scenes, chunksize=1)


_worker_converter: SceneConverter | None = None


def _init_worker(config: BuildConfig) -> None:
    global _worker_converter
    _worker_converter = _make_converter(config, load_taxonomy(config.categories.taxonomy))


def _convert_in_worker(scene: PlannedScene) -> SceneResult:
    return _convert_safely(_worker_converter, scene)


def _convert_safely(converter: SceneConverter, scene: PlannedScene) -> SceneResult:
    """Convert a scene; an unexpected error becomes a counted skip of the image instead of a crash."""
    try:
        return converter.convert(scene)
    except Exception as error:  # noqa: BLE001 (one bad scene must not stop a long build)
        logger.warning("converting %s failed: %s: %s", scene.ref.image, type(error).__name__, error)
        result = SceneResult()
        result.tally.skip(Skip("conversion_failed", scene.ref.image, f"{type(error).__name__}: {error}", IMAGE))
        return result


def _make_converter(config: BuildConfig, taxonomy) -> SceneConverter:
    return SceneConverter(config, make_sources(config), taxonomy, make_worker_captioner(config.captioner))


def _prepare_folder(out: Path, fingerprint: str, overwrite: bool) -> None:
    plan_file = state_dir(out) / PLAN_FILE
    has_files = out.exists() and any(out.iterdir())
    if has_files:
        previous = None
        if plan_file.is_file():
            previous = json.loads(plan_file.read_text(encoding="utf-8")).get("fingerprint")
        if previous != fingerprint or overwrite:
            if not overwrite:
                raise BuildError(
                    f"{out} already contains other files or another build; pass --overwrite to replace it, "
                    "or choose an empty --out folder"
                )
            logger.warning("replacing the build in %s", out)
            for name in ("data", ".mgrs-build"):
                shutil.rmtree(out / name, ignore_errors=True)
            for name in ("README.md", REPORT_FILE):
                (out / name).unlink(missing_ok=True)

    state_dir(out).mkdir(parents=True, exist_ok=True)
    write_json_atomic(plan_file, {"fingerprint": fingerprint, "tool": f"mgrs {__version__}"})


def _drop_empty_shards(out: Path, all_stats: list[tuple[ShardPlan, dict]]) -> list[dict]:
    """Delete shards without rows and renumber the rest of their split; return the final shard stats.

    Only `--skip-empty` leaves a planned shard without rows. `datasets` cannot read a Parquet file
    without row groups, so such a shard is removed and the other shards of its split get new names.
    A later run of the same build writes the planned names again, then renumbers them the same way.
    """
    keys = ("file", "rows", "regions", "bytes", "sha256")
    by_split: dict[str, list[tuple[ShardPlan, dict]]] = {}
    for shard, stats in all_stats:
        by_split.setdefault(shard.split, []).append((shard, stats))

    final = []
    for split, entries in by_split.items():
        kept = [(shard, stats) for shard, stats in entries if stats["rows"] > 0]
        if len(kept) == len(entries):
            final.extend({key: stats[key] for key in keys} for _, stats in entries)
            continue
        for shard, stats in entries:
            if stats["rows"] == 0:
                logger.warning("removing %s: every record of it was skipped", shard.name)
                (out / shard.name).unlink(missing_ok=True)
                stats_path(out, shard.name).unlink(missing_ok=True)
        for index, (shard, stats) in enumerate(kept):
            name = shard_name(split, index, len(kept))
            os.replace(out / shard.name, out / name)
            stats_path(out, shard.name).unlink(missing_ok=True)
            final.append({**{key: stats[key] for key in keys}, "file": name})
    return sorted(final, key=lambda stats: stats["file"])


def _remove_stale_shards(out: Path, plan: Plan) -> None:
    planned = {shard.name for shard in plan.shards}
    for path in sorted((out / "data").glob("*.parquet")):
        name = f"data/{path.name}"
        if name not in planned:
            logger.warning("removing stale shard %s from an earlier build", name)
            path.unlink()
            (state_dir(out) / "shards" / (path.stem + ".json")).unlink(missing_ok=True)


def _report(config: BuildConfig, plan: Plan, tally: Tally, shards: list[dict], fingerprint: str) -> dict[str, Any]:
    from mgrs.provenance import library_versions

    report = {
        "tool": f"mgrs {__version__}",
        "recipe": config.name,
        "config_fingerprint": config.fingerprint(),
        "build_fingerprint": fingerprint,
        "inputs": [{"format": s.format, "version": s.version, "source": get_source(s.format, s.version).name} for s in config.sources],
        "settings": _public_settings(config),
        "planned": {
            "scenes": len(plan.scenes),
            "records": sum(len(s.image_ids) for s in plan.scenes),
            "shards": len(plan.shards),
            "estimated_source_bytes": plan.estimated_bytes,
            # Inputs skipped while pairing files, before any scene was converted.
            "skipped": {unit: dict(sorted(c.items())) for unit, c in sorted(plan.tally.skipped.items())},
        },
        # Removed duplicate scenes with the copies they matched, and near copies of another size kept.
        "dedup": plan.dedup,
        "library_versions": library_versions(),
        "shards": shards,
    }
    report.update(tally.to_dict())
    return report


def _public_settings(config: BuildConfig) -> dict[str, Any]:
    settings = config.to_dict()
    settings.pop("sources")  # absolute paths of the builder's machine stay out of published files
    settings["captioner"].pop("cache")
    return settings


def _check_skip_rate(config: BuildConfig, scenes: int, tally: Tally, when: str, plan_skips: Tally | None = None) -> None:
    """Raise BuildError when the share of skipped images is above `max_skip_rate`.

    The share is skipped images over all images: the planned scenes plus the images skipped while
    planning. Files that are not images at all (`unsupported_file`) do not count, and neither do image
    skips that still leave a record (`missing_mask`, `mask_size_mismatch`).
    """
    if config.max_skip_rate is None:
        return
    skipped = _counted_image_skips(tally)
    planned_skips = _counted_image_skips(plan_skips if plan_skips is not None else tally)
    total = scenes + planned_skips
    if total == 0:
        return
    rate = skipped / total
    if rate > config.max_skip_rate:
        where = (
            "run with --dry-run to list the skip reasons; nothing was written"
            if when == "while planning"
            else f"the output is left in place for inspection and the skip reasons are in {REPORT_FILE}"
        )
        raise BuildError(
            f"{skipped} of {total} images ({rate:.1%}) were skipped {when}, above max_skip_rate "
            f"{config.max_skip_rate:.1%}; {where}"
        )


def _counted_image_skips(tally: Tally) -> int:
    return sum(
        count for reason, count in tally.skipped.get(IMAGE, {}).items()
        if reason not in NOT_IMAGE_REASONS and reason not in RECORD_KEPT_REASONS
    )


def _nothing_read_message(config: BuildConfig, plan: Plan) -> str:
    lines = ["nothing could be read from the sources:"]
    for spec in config.sources:
        lines.append(f"  {spec.format}: {spec.path}")
    skipped = plan.tally.skipped.get(IMAGE, {})
    if skipped:
        lines.append("image skips: " + ", ".join(f"{reason} {count}" for reason, count in sorted(skipped.items())))
    lines.append("check that each path is the folder the dataset was unpacked to (see the README's source layouts)")
    return "\n".join(lines)
