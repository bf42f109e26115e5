"""The dataset card (`README.md`): YAML metadata the Hub and `datasets` read, then statistics and sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import yaml

from mgrs import __version__
from mgrs.recipe import BuildConfig
from mgrs.schema import FEATURES
from mgrs.sources.base import get_source
from mgrs.taxonomy import Taxonomy


def card_metadata(config: BuildConfig, report: dict[str, Any]) -> dict[str, Any]:
    """Return the YAML header of the card: licence, configs with data files, and dataset_info."""
    split_rows: dict[str, int] = {}
    split_bytes: dict[str, int] = {}
    for shard in report["shards"]:
        split = Path(shard["file"]).name.split("-")[0]
        split_rows[split] = split_rows.get(split, 0) + shard["rows"]
        split_bytes[split] = split_bytes.get(split, 0) + shard["bytes"]

    split_dict = datasets.SplitDict()
    for split in sorted(split_rows):
        split_dict.add(datasets.SplitInfo(split, num_bytes=split_bytes[split], num_examples=split_rows[split]))
    info = datasets.DatasetInfo(features=FEATURES, splits=split_dict)
    dataset_info = info._to_yaml_dict()
    dataset_info["download_size"] = sum(split_bytes.values())
    dataset_info["dataset_size"] = sum(split_bytes.values())

    sources = [get_source(s.format, s.version) for s in config.sources]
    licenses = sorted({source.license for source in sources})
    licence_lines = sorted({f"{source.name}: {source.license}" for source in sources})
    return {
        "license": "other",
        "license_name": "mixed-source-licences" if len(licenses) > 1 else "source-licence",
        "license_details": "; ".join(licence_lines),
        "pretty_name": config.name,
        "task_categories": ["zero-shot-image-classification", "image-to-text", "object-detection"],
        "tags": ["remote-sensing", "image-text", "region-caption", "mgrs"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*"} for split in sorted(split_rows)],
            }
        ],
        "dataset_info": dataset_info,
    }


def render_card(config: BuildConfig, report: dict[str, Any], taxonomy: Taxonomy) -> str:
    """Return the whole card: YAML front matter and a Markdown body."""
    header = yaml.safe_dump(card_metadata(config, report), sort_keys=False, allow_unicode=True)
    lines = [f"---\n{header}---", "", f"# {config.name}", ""]
    lines += [
        "Multi-granularity remote-sensing image/region-caption records built with "
        f"`mgrs {__version__}`: one row per image or tile, with a short and a long caption and one region "
        "per object (box, optional polygon, category, region text).",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'dataset = load_dataset("path/or/owner-name", split="train")',
        "```",
        "",
        "## Statistics",
        "",
        "| split | records |",
        "|---|---|",
    ]
    lines += [f"| {split} | {count} |" for split, count in report["records"].items()]
    lines += ["", f"Regions: {report['regions']}.", "", "| source | records | regions |", "|---|---|---|"]
    for source, count in report["records_by_source"].items():
        lines.append(f"| {source} | {count} | {report['regions_by_source'].get(source, 0)} |")

    dedup = report.get("dedup") or {}
    if dedup.get("removed") or dedup.get("kept_other_size"):
        lines += [
            "",
            f"Duplicate scenes removed: {len(dedup.get('removed', []))} (their regions were merged into the copies kept); "
            f"near copies of another size kept: {len(dedup.get('kept_other_size', []))}. "
            "`build-report.json` lists each with the copy it matched.",
        ]

    skipped = [(unit, reason, count) for unit, counts in report["skipped"].items() for reason, count in counts.items()]
    if skipped:
        lines += ["", "Inputs skipped (see `build-report.json` for example files):", "", "| unit | reason | count |", "|---|---|---|"]
        lines += [f"| {unit} | {reason} | {count} |" for unit, reason, count in sorted(skipped)]

    if report.get("caption_quality"):
        from mgrs.captions.quality import quality_lines

        lines += ["", "## Caption quality", ""]
        lines += quality_lines(report["caption_quality"])

    lines += ["", "## Sources", ""]
    for spec in config.sources:
        source = get_source(spec.format, spec.version)
        lines += [
            f"### {source.name}",
            "",
            f"- Homepage: {source.homepage}",
            f"- Licence: {source.license}",
            f"- Citation: {source.citation.strip()}",
            "",
        ]

    lines += [
        "## Build",
        "",
        f"- Tool: `mgrs {__version__}`, recipe `{config.name}` (settings hash `{report['config_fingerprint']}`)",
        f"- Categories: `{config.categories.granularity}` level of the taxonomy in `{Path(taxonomy.path).name}`",
        f"- Tiles: {config.tiling.size} px with {config.tiling.overlap} px overlap; a region is kept where "
        f"{config.tiling.min_visible_fraction:.0%} of it is visible",
        "- Libraries: " + ", ".join(f"{name} {version}" for name, version in report["library_versions"].items()),
        "",
    ]
    return "\n".join(lines)


def write_card(out: Path, config: BuildConfig, report: dict[str, Any], taxonomy: Taxonomy) -> Path:
    path = Path(out) / "README.md"
    path.write_text(render_card(config, report, taxonomy), encoding="utf-8")
    return path
