"""The `mgrs` command line: thin commands that parse options and call the library."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mgrs.logs import setup_logging

logger = logging.getLogger(__name__)

app = typer.Typer(help="Build, check and inspect multi-granularity remote-sensing (MGRS) datasets.", no_args_is_help=True)
console = Console()
error_console = Console(stderr=True)


@app.callback()
def main(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="Log more: -v for DEBUG, -vv for library DEBUG too."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log only warnings and errors."),
) -> None:
    setup_logging(verbose, quiet, error_console)


@app.command()
def build(
    pipeline: Optional[Path] = typer.Argument(None, help="Recipe YAML (for example pipelines/demo.yaml)."),
    source: list[str] = typer.Option([], "--source", "-s", help="FORMAT\\[@VERSION]:PATH of a source folder, e.g. dota@1.0:/data/DOTA; repeatable."),
    out: Path = typer.Option(..., "--out", "-o", help="Output dataset folder."),
    root: Optional[Path] = typer.Option(None, "--root", help="Folder that recipe paths are relative to (default: current folder)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes that convert scenes."),
    rows_per_shard: Optional[int] = typer.Option(None, "--rows-per-shard", min=1, help="Records per Parquet shard."),
    num_shards: Optional[int] = typer.Option(None, "--num-shards", min=1, help="Number of shards per split."),
    granularity: Optional[str] = typer.Option(None, "--granularity", help="Category level written to `category`: fine or coarse."),
    skip_empty: bool = typer.Option(False, "--skip-empty", help="Drop records without regions (counted in the report)."),
    holdout: Optional[float] = typer.Option(None, "--holdout", help="Share (0 to 1) of scenes moved to a `validation` split."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Convert only the first N scenes (in id order)."),
    max_skip_rate: Optional[float] = typer.Option(None, "--max-skip-rate", help="Fail when more than this share (0 to 1) of the images is skipped."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace another build that is already in --out."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan only: print counts and the estimated size, write nothing."),
    captioner: Optional[str] = typer.Option(None, "--captioner", help="Captioner of the global captions: template or openai."),
    caption_base_url: Optional[str] = typer.Option(None, "--caption-base-url", help="Base URL of the OpenAI-compatible server, such as http://127.0.0.1:8000/v1."),
    caption_model: Optional[str] = typer.Option(None, "--caption-model", help="Model name the captioning server serves."),
    caption_api_key_env: Optional[str] = typer.Option(None, "--caption-api-key-env", help="Environment variable that holds the server's API key."),
    caption_concurrency: Optional[int] = typer.Option(None, "--caption-concurrency", min=1, help="Captioning requests in flight at once."),
    caption_cache: Optional[Path] = typer.Option(None, "--caption-cache", help="Caption cache file (DuckDB)."),
) -> None:
    """Build a dataset from raw source folders into Parquet shards, a dataset card and a build report."""
    from mgrs.build import BuildError
    from mgrs.build import build as run_build
    from mgrs.recipe import RecipeError, SourceSpec, load_recipe

    try:
        config = load_recipe(pipeline, root=root)
        for text in source:
            spec = SourceSpec.parse(text)
            spec.path = str(Path(spec.path).expanduser().resolve())
            config.sources.append(spec)
        overrides = {"rows_per_shard": rows_per_shard, "num_shards": num_shards}
        for name, value in overrides.items():
            if value is not None:
                setattr(config.output, name, value)
        if rows_per_shard is not None and pipeline is not None:
            config.output.num_shards = None
        if num_shards is not None and pipeline is not None:
            config.output.rows_per_shard = None
        if granularity is not None:
            config.categories.granularity = granularity
        if holdout is not None:
            config.splits.holdout_fraction = holdout
        caption_options = {
            "kind": captioner,
            "base_url": caption_base_url,
            "model": caption_model,
            "api_key_env": caption_api_key_env,
            "max_concurrency": caption_concurrency,
            "cache": None if caption_cache is None else str(caption_cache),
        }
        for name, value in caption_options.items():
            if value is not None:
                setattr(config.captioner, name, value)
        config.skip_empty = config.skip_empty or skip_empty
        config.limit = limit if limit is not None else config.limit
        config.max_skip_rate = max_skip_rate if max_skip_rate is not None else config.max_skip_rate

        with _progress() as progress:
            task = progress.add_task("converting scenes", total=None)

            def hook(event: str, n: int) -> None:
                if event == "total":
                    progress.update(task, total=n)
                else:
                    progress.advance(task, n)

            result = run_build(config, out, workers=workers, overwrite=overwrite, dry_run=dry_run, progress=hook)
    except (RecipeError, BuildError, KeyError, FileNotFoundError) as error:
        _fail(str(error).strip("'\""))

    report = result.report
    if dry_run:
        planned = report["planned"]
        console.print(
            f"Dry run: {_count(planned['scenes'], 'scene')} would become {_count(planned['records'], 'record')} "
            f"in {_count(planned['shards'], 'shard')} "
            f"(source images: {planned['estimated_source_bytes'] / 1e6:.1f} MB)."
        )
        _print_skips(report)
        return
    console.print(
        f"Built {out}: {_count(sum(report['records'].values()), 'record')} and {_count(report['regions'], 'region')} "
        f"from {_count(report['images_read'], 'image')} in {_count(len(report['shards']), 'shard')} "
        f"({len(result.shards_written)} written, {len(result.shards_kept)} kept)."
    )
    _print_skips(report)


@app.command()
def validate(path: str = typer.Argument(..., help="Dataset folder (the one that contains data/), or hf://datasets/OWNER/NAME[@REV][/SUBSET].")) -> None:
    """Check a dataset folder: schema, ids, boxes, captions and row counts. Exits 1 when problems are found."""
    from mgrs.validate import validate_dataset

    problems = validate_dataset(path)
    if problems:
        for problem in problems:
            error_console.print(f"[red]problem[/red] {escape(str(problem))}", markup=True, highlight=False)
        error_console.print(f"{_count(len(problems), 'problem')} found in {path}.")
        raise typer.Exit(1)
    console.print(f"{path}: valid.")


@app.command()
def stats(
    path: str = typer.Argument(..., help="Dataset folder, or hf://datasets/OWNER/NAME[@REV][/SUBSET]."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Print statistics of a dataset folder, computed with DuckDB over its shards."""
    from mgrs.stats import compute_stats, render_stats

    try:
        result = compute_stats(path)
    except FileNotFoundError as error:
        _fail(str(error))
    if as_json:
        console.print_json(json.dumps(result))
        return
    for table in render_stats(result):
        console.print(table)


@app.command()
def preview(
    path: str = typer.Argument(..., help="Dataset folder, or hf://datasets/OWNER/NAME[@REV][/SUBSET]."),
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write."),
    count: int = typer.Option(16, "--count", "-n", min=1, help="Records to show."),
    columns: int = typer.Option(4, "--columns", min=1, help="Thumbnails per row."),
    seed: Optional[int] = typer.Option(0, "--seed", help="Seed of the random sample of records."),
    first: bool = typer.Option(False, "--first", help="Show the first records instead of a random sample."),
    split: Optional[str] = typer.Option(None, "--split", help="Show records of this split only."),
) -> None:
    """Write a contact sheet of records with their boxes, category labels and short captions."""
    from mgrs.preview import write_preview

    try:
        written = write_preview(path, out, count=count, seed=None if first else seed, columns=columns, split=split)
    except (FileNotFoundError, ValueError) as error:
        _fail(str(error))
    console.print(f"Wrote {written}.")


@app.command()
def categories(
    granularity: Optional[str] = typer.Option(None, "--granularity", help="Show only categories written at this level: fine or coarse."),
    taxonomy: Optional[Path] = typer.Option(None, "--taxonomy", help="Another categories.yaml."),
) -> None:
    """Print the category taxonomy: ids, names, levels, coarse parents and aliases."""
    from mgrs.taxonomy import GRANULARITIES, TaxonomyError, load_taxonomy

    if granularity is not None and granularity not in GRANULARITIES:
        _fail(f"--granularity is {granularity!r}; use fine or coarse")
    try:
        loaded = load_taxonomy(str(taxonomy) if taxonomy else None)
    except (FileNotFoundError, TaxonomyError) as error:
        _fail(str(error))
    table = Table(title=f"Categories ({loaded.path})")
    for column in ("id", "name", "level", "coarse parent", "aliases"):
        table.add_column(column, overflow="fold")
    for category in loaded.categories(granularity):
        aliases = ", ".join(alias for alias in category.aliases if alias != category.name)
        table.add_row(str(category.id), category.name, category.level, category.parent or "", aliases)
    console.print(table)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=error_console,
        transient=True,
    )


def _print_skips(report: dict) -> None:
    from mgrs.report import Tally, skip_table

    rows = skip_table(Tally.from_dict(report))
    if not rows:
        return
    table = Table(title="Skipped inputs (details in build-report.json)")
    for column in ("unit", "reason", "count", "example"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["unit"], row["reason"], str(row["count"]), row["examples"][0] if row["examples"] else "")
    error_console.print(table)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _fail(message: str) -> None:
    error_console.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False)
    raise typer.Exit(2)


def _register_extra_commands() -> None:
    from mgrs.commands import register_all

    register_all(app)


_register_extra_commands()
