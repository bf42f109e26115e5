"""`mgrs caption`: write a copy of a dataset with captions from another captioner."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from mgrs.recaption import RecaptionResult

logger = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command(name="caption")(caption)


def caption(
    dataset: Path = typer.Argument(..., help="Dataset folder to read (the one that contains data/); it is not changed."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the recaptioned dataset."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="Recipe YAML whose `captioner:` section gives the settings; options below override it."),
    captioner: Optional[str] = typer.Option(None, "--captioner", help="Captioner kind: template or openai."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Base URL of the OpenAI-compatible server, such as http://127.0.0.1:8000/v1."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name the server serves."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Environment variable that holds the API key (default OPENAI_API_KEY)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds one request may wait to connect, send or read."),
    max_concurrency: Optional[int] = typer.Option(None, "--max-concurrency", help="Requests in flight at once."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Sampling temperature."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampling seed sent to the server."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Maximum tokens of one reply."),
    max_retries: Optional[int] = typer.Option(None, "--max-retries", help="Retries after a failed request."),
    retry_backoff: Optional[float] = typer.Option(None, "--retry-backoff", help="Seconds before the first retry; doubles with each retry."),
    prompt_version: Optional[str] = typer.Option(None, "--prompt-version", help="Prompt template version, a file name in mgrs/captions/prompts/."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Caption cache file (DuckDB)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Delete the contents of --out and recaption every shard; without it, a rerun keeps finished shards.",
    ),
) -> None:
    """Recaption a dataset into a new folder: same rows and shards, new short and long captions.

    Exits with 2 on an error, and also when a server captioner gave no record model captions (the
    output is still written, with template captions).
    """
    from mgrs.captions.cache import CacheError
    from mgrs.captions.openai import CaptionerError
    from mgrs.captions.prompts import PromptError
    from mgrs.cli import _fail, _progress, console
    from mgrs.recaption import RecaptionError, recaption_dataset
    from mgrs.recipe import CaptionerConfig, RecipeError, load_recipe

    try:
        config = load_recipe(recipe).captioner if recipe is not None else CaptionerConfig()
        overrides = {
            "kind": captioner,
            "base_url": base_url,
            "model": model,
            "api_key_env": api_key_env,
            "timeout": timeout,
            "max_concurrency": max_concurrency,
            "temperature": temperature,
            "seed": seed,
            "max_tokens": max_tokens,
            "max_retries": max_retries,
            "retry_backoff": retry_backoff,
            "prompt_version": prompt_version,
            "cache": None if cache is None else str(cache),
        }
        for name, value in overrides.items():
            if value is not None:
                setattr(config, name, value)
        if config.kind == "openai" and not config.model:
            where = f" (or captioner.model in {recipe})" if recipe is not None else ""
            _fail(f"--model is not set; name the model the server serves, for example --model Qwen/Qwen2-VL-7B-Instruct{where}")

        with _progress() as progress:
            task = progress.add_task("captioning records", total=None)

            def hook(event: str, n: int) -> None:
                if event == "total":
                    progress.update(task, total=n)
                else:
                    progress.advance(task, n)

            result = recaption_dataset(dataset, out, config, overwrite=overwrite, progress=hook)
    except (RecipeError, RecaptionError, CaptionerError, CacheError, PromptError) as error:
        _fail(str(error))

    console.print(f"Recaptioned {dataset} into {out}: {summary(result)}")


def summary(result: RecaptionResult) -> str:
    """Return what this run did, then the totals of the whole dataset, which include kept shards."""
    from mgrs.cli import _count

    run = result.captioning
    text = (
        f"{_count(len(result.shards_written), 'shard')} written and {len(result.shards_kept)} kept from an earlier run; "
        f"this run sent {_count(run.requests, 'request')}"
    )
    if run.records:
        text += (
            f" for {_count(run.records, 'record')} ({run.cache_hits} from the cache, {run.retries} {'retry' if run.retries == 1 else 'retries'}, "
            f"{sum(run.fallbacks.values())} fell back to template captions)"
        )
    total = result.report["captioning"]
    return (
        f"{text}. Whole dataset: {_count(total['records'], 'record')}, {_count(total['requests'], 'request')}, "
        f"{_count(sum(total['fallbacks'].values()), 'fallback')}."
    )
