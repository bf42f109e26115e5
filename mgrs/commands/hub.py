"""`mgrs push` and `mgrs pull`: publish a dataset folder to the Hugging Face Hub and download it back."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
error_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    # huggingface_hub's HTTP client logs every request at INFO; mgrs logs at INFO by default.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    app.command(name="push")(push)
    app.command(name="pull")(pull)


def push(
    folder: Path = typer.Argument(..., help="Dataset folder built by `mgrs build`."),
    repo_id: str = typer.Argument(..., help="Dataset repository OWNER/NAME (created when missing)."),
    subset: Optional[str] = typer.Option(None, "--subset", help="Publish as this subset (a config of its own in NAME/); default: the default config."),
    split: Optional[str] = typer.Option(None, "--split", help="Push the shards of this split only; the card keeps the others."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to commit to (created from main when missing), or refs/pr/N to add to a pull request."),
    create_pr: bool = typer.Option(False, "--create-pr", help="Open a pull request against main instead of committing to it."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private (an existing one keeps its visibility)."),
    message: Optional[str] = typer.Option(None, "--message", "-m", help="Commit message."),
    files_per_commit: int = typer.Option(50, "--files-per-commit", min=1, help="Shards per commit of a large push."),
) -> None:
    """Publish a dataset folder to the Hub: uploads changed shards, then the merged card and the build report.

    The token comes from HF_TOKEN or `hf auth login`. An interrupted push resumes when run again.
    """
    from mgrs.hub import HubError, push as run_push

    try:
        result = run_push(
            folder, repo_id, subset=subset, split=split, revision=revision, create_pr=create_pr, private=private,
            message=message, files_per_commit=files_per_commit, progress=lambda text: error_console.print(escape(text), highlight=False),
        )
    except HubError as error:
        _fail(str(error))
    what = f"subset {result.config}" if result.config != "default" else "dataset"
    console.print(
        f"Pushed {what} to {repo_id}: {len(result.uploaded)} shards uploaded, {len(result.unchanged)} unchanged, "
        f"{len(result.deleted)} removed, in {result.commits} commits.",
        highlight=False,
    )
    if result.pr_url:
        console.print(f"Pull request: {result.pr_url} (revision {result.pr_revision})", highlight=False)
    config = f", {result.config!r}" if result.config != "default" else ""
    console.print(f'Load it with: load_dataset("{repo_id}"{config}, split="train", streaming=True)', highlight=False, markup=False)


def pull(
    repo_id: str = typer.Argument(..., help="Dataset repository OWNER/NAME."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write; files already there with the right content are kept."),
    subset: Optional[str] = typer.Option(None, "--subset", help="Download only this subset, as a dataset folder of its own."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch, tag, commit or refs/pr/N (default: main)."),
) -> None:
    """Download a published dataset (or one subset) into a folder that every mgrs command reads."""
    from mgrs.hub import HubError, pull as run_pull

    try:
        result = run_pull(repo_id, out, subset=subset, revision=revision,
                          progress=lambda text: error_console.print(escape(text), highlight=False))
    except HubError as error:
        _fail(str(error))
    console.print(
        f"Pulled {repo_id}{' subset ' + subset if subset else ''} at {result.commit[:12]} into {out}: "
        f"{len(result.downloaded)} files downloaded, {len(result.unchanged)} already there, {len(result.removed)} removed.",
        highlight=False,
    )


def _fail(message: str) -> None:
    error_console.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False)
    raise typer.Exit(2)
