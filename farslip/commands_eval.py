"""The `farslip eval` commands: classify, retrieve, segment, regions and suite.

Each command loads the model the same way (`--model` is a run folder, checkpoint, weights file or
open_clip architecture), calls the library in `farslip.evaluate`, and writes NAME.json and NAME.md
into `--out`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

eval_app = typer.Typer(help="Evaluate checkpoints: classification, retrieval, segmentation, region classification.", no_args_is_help=True)

logger = logging.getLogger(__name__)

MODEL_HELP = "Run folder, checkpoint folder, weights file (.safetensors/.pt) or open_clip ARCH[:TAG], e.g. ViT-B-16:openai."
ARCH_HELP = "Architecture of a weights file without stored config, e.g. ViT-B-16 or ViT-B-16-long248-quickgelu."


def _setup(verbose: bool, model: str, arch: Optional[str], device: str, dense: Optional[str] = None):
    from farslip.cli import configure_logging
    from farslip.evaluate.loading import load_model, resolve_device

    configure_logging(verbose)
    try:
        target = resolve_device(device)
        loaded = load_model(model, arch=arch, device=device, dense=dense)
    except (ValueError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error)) from error
    return loaded, target


def _finish(out: Path, name: str, result: dict) -> None:
    headline = result["headline"]
    typer.echo(f"{name}: {headline} = {100 * result['metrics'][headline]:.2f}; wrote {out / (name + '.json')} and {out / (name + '.md')}")


def _run(runner, model, out: Path, name: str, device, batch_size: int, **options) -> dict:
    try:
        return runner(model, out, name, device, batch_size, **options)
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error


@eval_app.command()
def classify(
    data: Path = typer.Argument(..., help="Folder with one folder per class, or a CSV with filepath and label columns."),
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    classnames: Optional[Path] = typer.Option(None, "--classnames", help="Class-name file: one class per line, synonyms after commas."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder that relative CSV paths start from (default: the CSV's folder)."),
    image_key: str = typer.Option("filepath", "--image-key", help="CSV column with image paths."),
    label_key: str = typer.Option("label", "--label-key", help="CSV column with labels (class index or name)."),
    templates: list[str] = typer.Option(["satellite"], "--templates", help="Template set (satellite, openai, region), template file, or a template with {} (repeatable)."),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per forward pass."),
    out: Path = typer.Option(Path("eval-out"), "--out", help="Output folder."),
    name: Optional[str] = typer.Option(None, "--name", help="Base name of the output files (default: the data's name)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log DEBUG messages."),
) -> None:
    """Zero-shot scene classification: top-1/top-5, per-class accuracy and a confusion-matrix picture."""
    from farslip.evaluate.suite import run_classify

    loaded, target = _setup(verbose, model, arch, device)
    name = name or f"classify-{data.stem}"
    result = _run(run_classify, loaded, out, name, target, batch_size, data=str(data), classnames=str(classnames) if classnames else None,
                  images=str(images) if images else None, image_key=image_key, label_key=label_key, templates=_template_spec(templates))
    _finish(out, name, result)


def _template_spec(values: list[str]):
    """Return one set name or file as a string, or literal templates as a list."""
    if len(values) == 1 and "{}" not in values[0]:
        return values[0]
    return list(values)


@eval_app.command()
def retrieve(
    data: Path = typer.Argument(..., help="CSV (filepath, caption; one row per caption) or caption JSON (RSICD layout)."),
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder that relative image paths start from (default: the data file's folder)."),
    split: str = typer.Option("test", "--split", help="Split of a caption JSON to evaluate."),
    image_key: str = typer.Option("filepath", "--image-key", help="CSV column with image paths."),
    caption_key: str = typer.Option("caption", "--caption-key", help="CSV column with captions."),
    prefix: str = typer.Option("a satellite image. ", "--prefix", help="Text put before every caption."),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images or captions per forward pass."),
    out: Path = typer.Option(Path("eval-out"), "--out", help="Output folder."),
    name: Optional[str] = typer.Option(None, "--name", help="Base name of the output files (default: the data's name)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log DEBUG messages."),
) -> None:
    """Image-text retrieval: R@1, R@5, R@10 in both directions and their mean."""
    from farslip.evaluate.suite import run_retrieve

    loaded, target = _setup(verbose, model, arch, device)
    name = name or f"retrieve-{data.stem}"
    result = _run(run_retrieve, loaded, out, name, target, batch_size, data=str(data), images=str(images) if images else None,
                  split=split, image_key=image_key, caption_key=caption_key, prefix=prefix)
    _finish(out, name, result)


@eval_app.command()
def segment(
    data: Path = typer.Argument(..., help="Dataset root folder, laid out as SegEarth-OV prepares it."),
    dataset: str = typer.Option(..., "--dataset", help="openearthmap, loveda, potsdam, vaihingen, udd5, vdd, uavid, isaid, or a YAML file."),
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    images: Optional[str] = typer.Option(None, "--images", help="Image sub-folder of the root (default: the dataset's, e.g. img_dir/val)."),
    masks: Optional[str] = typer.Option(None, "--masks", help="Mask sub-folder of the root (default: the dataset's, e.g. ann_dir/val)."),
    pictures: int = typer.Option(4, "--pictures", min=0, help="Save prediction-beside-ground-truth pictures of the first N images."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N images."),
    dense: Optional[str] = typer.Option(None, "--dense", help="Dense-token mode: farslip or maskclip (default: the model's)."),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Sliding windows per forward pass."),
    out: Path = typer.Option(Path("eval-out"), "--out", help="Output folder."),
    name: Optional[str] = typer.Option(None, "--name", help="Base name of the output files (default: segment-DATASET)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log DEBUG messages."),
) -> None:
    """Open-vocabulary segmentation from dense tokens: mIoU, per-class IoU and pictures."""
    from farslip.evaluate.suite import run_segment

    loaded, target = _setup(verbose, model, arch, device, dense)
    name = name or f"segment-{Path(dataset).stem}"
    result = _run(run_segment, loaded, out, name, target, batch_size, data=str(data), dataset=dataset, images=images, masks=masks,
                  pictures=pictures, limit=limit)
    _finish(out, name, result)


@eval_app.command()
def regions(
    data: str = typer.Argument(..., help="MGRS dataset folder (data/<split>-*.parquet) or hf://datasets/OWNER/NAME."),
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    split: str = typer.Option("validation", "--split", help="Split to evaluate."),
    categories: Optional[Path] = typer.Option(None, "--categories", help="File with one category per line (default: the categories in the split)."),
    templates: list[str] = typer.Option(["region"], "--templates", help="Template set, template file, or a template with {} (repeatable)."),
    min_size: float = typer.Option(0.0, "--min-size", min=0.0, help="Leave out regions whose box area is below this side squared, in pixels."),
    max_size: Optional[float] = typer.Option(None, "--max-size", min=1.0, help="Leave out regions whose box area is above this side squared, in pixels."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N regions."),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Region crops per forward pass."),
    out: Path = typer.Option(Path("eval-out"), "--out", help="Output folder."),
    name: Optional[str] = typer.Option(None, "--name", help="Base name of the output files (default: regions-SPLIT)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log DEBUG messages."),
) -> None:
    """Region classification on MGRS shards: each region crop against every category prompt."""
    from farslip.evaluate.suite import run_regions

    loaded, target = _setup(verbose, model, arch, device)
    name = name or f"regions-{split}"
    result = _run(run_regions, loaded, out, name, target, batch_size, data=data, split=split, categories=str(categories) if categories else None,
                  templates=_template_spec(templates), min_size=min_size, max_size=max_size, limit=limit)
    _finish(out, name, result)


@eval_app.command()
def suite(
    config: Path = typer.Option(..., "--config", "-c", exists=True, dir_okay=False, help="Suite YAML file, e.g. configs/eval/suite-example.yaml."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP + " Overrides the file's model."),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (default: the file's, else auto)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Batch size of every task (default: the file's, else 64)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Folder that relative paths in the file start from (default: the current folder)."),
    out: Path = typer.Option(Path("eval-out"), "--out", help="Output folder."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log DEBUG messages."),
) -> None:
    """Run the evaluations listed in a YAML file and write summary.json and summary.md."""
    from farslip.evaluate.suite import read_suite, run_suite

    try:
        settings = read_suite(config, root)
    except (ValueError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error), param_hint="--config") from error
    spec = model or settings.get("model")
    if not spec:
        raise typer.BadParameter("no model given; pass --model or set 'model' in the suite file", param_hint="--model")
    loaded, target = _setup(verbose, str(spec), arch or settings.get("arch"), device or settings.get("device", "auto"))
    size = batch_size or int(settings.get("batch_size", 64))
    try:
        rows = run_suite(loaded, settings, out, target, size)
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    for row in rows:
        typer.echo(f"{row['name']} ({row['task']}): {row['metric']} = {100 * row['value']:.2f}")
    typer.echo(f"wrote {out / 'summary.json'} and {out / 'summary.md'}")
