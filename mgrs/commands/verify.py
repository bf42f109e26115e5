"""`mgrs verify-source`: check a raw source download against its manifest."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

logger = logging.getLogger(__name__)

console = Console()
error_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("verify-source")(verify_source_command)


def verify_source_command(
    name: str = typer.Argument(..., help="Source name, as in manifests/sources/NAME.yaml (for example dota or fair1m)."),
    path: Path = typer.Argument(..., help="Folder the source download was unpacked to."),
    manifests: Optional[Path] = typer.Option(None, "--manifests", help="Folder of source manifests (default: manifests/sources)."),
) -> None:
    """Check that the format's adapter reads a raw download, and compare it with the manifest.

    Exits 1 when the adapter rejects the layout or finds no image, or when a verified count or checksum
    differs. A split absent from a partial download is only a warning.
    """
    from mgrs.verify import ManifestError, verify_source

    try:
        result = verify_source(name, path, manifests)
    except (ManifestError, FileNotFoundError) as error:
        error_console.print(f"[red]error:[/red] {escape(str(error))}", markup=True, highlight=False)
        raise typer.Exit(2)

    manifest = result.manifest
    console.print(f"{manifest.get('title', name)} {manifest.get('version', '')}".strip() + f" in {path}", highlight=False)
    for check in result.checks:
        label = {None: "[green]ok[/green]", "warning": "[yellow]warning[/yellow]", "error": "[red]problem[/red]"}[check.severity]
        console.print(f"  {label} {escape(check.message)}", markup=True, highlight=False)
    if result.problems:
        error_console.print(f"{len(result.problems)} problems: the build cannot read this folder as {name}, or it differs from the manifest.")
        raise typer.Exit(1)
    console.print(f"{path}: readable as {name}, no problems ({len(result.warnings)} warnings).", highlight=False)
