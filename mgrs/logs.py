"""Logging set-up for the command-line entry points; library modules only create loggers."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler


def setup_logging(verbose: int = 0, quiet: bool = False, console: Console | None = None) -> None:
    """Send log records to stderr through rich: WARNING when quiet, INFO by default, DEBUG with -v."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = RichHandler(console=console or Console(stderr=True), show_path=False, markup=False, rich_tracebacks=False)
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]", handlers=[handler], force=True)
    # Third-party libraries stay at WARNING unless the user asks for DEBUG.
    for name in ("datasets", "huggingface_hub", "fsspec", "urllib3", "httpx", "httpx2", "PIL"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
