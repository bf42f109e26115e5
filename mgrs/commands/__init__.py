"""Extra `mgrs` commands, one module each; every module defines `register(app)`.

`mgrs.cli` calls `register_all` at import time, so a new command needs only a new module here.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer


def register_all(app: typer.Typer) -> None:
    """Import every module of this package in name order and let it add its commands to `app`."""
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(app)
