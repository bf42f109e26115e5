"""`mgrs export-farslip`: write a dataset in the reference FarSLIP trainer's JSON layout."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

logger = logging.getLogger(__name__)

console = Console()
error_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("export-farslip")(export_farslip_command)


def export_farslip_command(
    dataset: str = typer.Argument(..., help="Dataset folder (the one that contains data/) or hf://datasets/OWNER/NAME[@REV]."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for <split>.json and images/; give it to the trainer as the image root."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an export that is already in --out."),
) -> None:
    """Write <split>.json files and an image folder that the reference FarSLIP trainer reads unmodified."""
    from mgrs.interop.export_farslip import export_farslip
    from mgrs.interop.layout import InteropError

    try:
        summary = export_farslip(dataset, out, overwrite=overwrite)
    except (InteropError, OSError) as error:
        error_console.print(f"[red]error:[/red] {escape(str(error))}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    items = ", ".join(f"{split} {count}" for split, count in summary.items.items())
    console.print(
        f"Wrote {out}: {', '.join(summary.files)} ({items} items, {summary.segments} segments, "
        f"{summary.segments_with_cap} with their own cap) and {summary.images_bytes / 1e6:.1f} MB of images."
    )
