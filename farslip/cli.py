"""The `farslip` command: `farslip train` and `farslip export`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Fine-tune open_clip CLIP models on MGRS shards with the FarSLIP objectives.", no_args_is_help=True)

logger = logging.getLogger(__name__)


def configure_logging(verbose: bool) -> None:
    """Log INFO (DEBUG with --verbose) on rank 0 and warnings only on the other ranks."""
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    if not verbose:
        # open_clip logs its model-loading steps through the root logger at INFO.
        for handler in logging.getLogger().handlers:
            handler.addFilter(lambda record: record.name != "root" or record.levelno >= logging.WARNING)


# Errors that come from the user's data, settings or machine; the CLI prints their message, not a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, RuntimeError)


def fail(error: BaseException, verbose: bool) -> None:
    """Print `error: MESSAGE` and exit with status 2; with --verbose, log the traceback first."""
    if verbose:
        logger.exception("%s", error)
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


@app.command()
def train(
    config: Path = typer.Option(..., "--config", "-c", exists=True, dir_okay=False, help="YAML recipe, e.g. configs/stage2.yaml."),
    data: Optional[str] = typer.Option(None, "--data", help="Shard folder or hf://datasets/OWNER/NAME; sets data.path."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder for checkpoints and logs; sets train.out_dir."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the latest checkpoint in the output folder."),
    overrides: list[str] = typer.Option([], "--set", help="Override one option as key.path=value, e.g. --set optim.lr=1e-5 (repeatable)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log DEBUG messages."),
) -> None:
    """Train a model from a recipe; also runs under `torchrun --nproc_per_node=N`."""
    configure_logging(verbose)
    from farslip.config import ConfigError, load_config
    from farslip.train import train as run_training

    extra = list(overrides)
    if data is not None:
        extra.append(f"data.path={data}")
    if out is not None:
        extra.append(f"train.out_dir={out}")
    try:
        cfg = load_config(config, extra)
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from error
    try:
        run_training(cfg, resume=resume)
    except KeyboardInterrupt:
        typer.echo(f"interrupted; continue from the last checkpoint with --resume (output: {cfg.train.out_dir})", err=True)
        raise typer.Exit(130)
    except USER_ERRORS as error:
        fail(error, verbose)


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., exists=True, help="Run output folder, checkpoint folder (with model.safetensors) or weights file."),
    out: Path = typer.Option(..., "--out", help="Output .safetensors file for open_clip."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log DEBUG messages."),
) -> None:
    """Write weights that open_clip.create_model_and_transforms(NAME, pretrained=FILE) loads."""
    configure_logging(verbose)
    from farslip.checkpoint import LATEST_FILE, latest_checkpoint
    from farslip.export import export_checkpoint

    # A run folder, its checkpoints folder or the `latest` pointer all mean the newest checkpoint.
    if checkpoint.name == LATEST_FILE and checkpoint.is_file():
        checkpoint = checkpoint.parent.parent
    if checkpoint.is_dir() and not (checkpoint / "model.safetensors").is_file():
        found = latest_checkpoint(checkpoint.parent if checkpoint.name == "checkpoints" else checkpoint)
        if found is None:
            typer.echo(f"error: no checkpoint found in {checkpoint}; pass a run folder or a step-NNNNNNNN folder", err=True)
            raise typer.Exit(2)
        checkpoint = found
    if out.suffix != ".safetensors" or out.is_dir():
        typer.echo(f"error: --out {out} must be a file name ending in .safetensors, such as {out.with_suffix('.safetensors').name}", err=True)
        raise typer.Exit(2)
    try:
        name = export_checkpoint(checkpoint, out)
    except USER_ERRORS as error:
        fail(error, verbose)
    config_file = out.parent / f"{name}.json"
    register = f"open_clip.add_model_config({str(config_file)!r}), then " if config_file.is_file() else ""
    if name.startswith("FarSLIP-Tiny"):
        register = "`import farslip.model` (it registers FarSLIP-Tiny), then " + register
    typer.echo(f"wrote {out}; load it with {register}open_clip.create_model_and_transforms({name!r}, pretrained={str(out)!r})")


from farslip.commands_eval import eval_app  # noqa: E402  (Typer only; the evaluation code loads lazily)

app.add_typer(eval_app, name="eval")


if __name__ == "__main__":
    app()
