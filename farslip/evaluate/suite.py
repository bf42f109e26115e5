"""Run a list of evaluations from one YAML file and write one summary table.

Suite file::

    model: runs/stage2            # optional when the caller passes a model
    device: auto
    batch_size: 64
    tasks:
      - {name: regions-val, task: regions, data: my-dataset, split: validation}
      - {name: aid, task: classify, data: ${DATA}/AID, classnames: ${DATA}/aid.txt}
      - {name: rsicd, task: retrieve, data: ${DATA}/RSICD/dataset_rsicd.json, images: ${DATA}/RSICD/images}
      - {name: isaid, task: segment, dataset: isaid, data: ${DATA}/iSAID}

Environment variables in string values are expanded, and relative paths are resolved against the
suite's root (the current directory unless given). Each task writes its own result files into the
output folder, and `summary.json` / `summary.md` list the headline metric of every task.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Any

import torch
import yaml

from farslip.evaluate import classify, regions, retrieve, segment
from farslip.evaluate.prompts import resolve_templates
from farslip.evaluate.report import write_json, write_markdown
from farslip.evaluate.seg_datasets import load_dataset_config

logger = logging.getLogger(__name__)

PATH_KEYS = {"data", "classnames", "images", "categories"}


def run_classify(model, out_dir: Path, name: str, device: torch.device, batch_size: int, *, data: str, classnames: str | None = None,
                 images: str | None = None, image_key: str = "filepath", label_key: str = "label", templates: Any = "satellite") -> dict:
    """Run zero-shot classification and write its files."""
    dataset = classify.read_dataset(data, classnames, images, image_key, label_key)
    result = classify.evaluate_classification(model, dataset, resolve_templates(templates), device, batch_size)
    classify.write_classification(result, out_dir, name)
    return result


def run_retrieve(model, out_dir: Path, name: str, device: torch.device, batch_size: int, *, data: str, images: str | None = None,
                 split: str | None = "test", image_key: str = "filepath", caption_key: str = "caption", prefix: str = retrieve.DEFAULT_PREFIX) -> dict:
    """Run image-text retrieval and write its files."""
    dataset = retrieve.read_dataset(data, images, split, image_key, caption_key)
    result = retrieve.evaluate_retrieval(model, dataset, device, batch_size, prefix)
    retrieve.write_retrieval(result, out_dir, name)
    return result


def run_segment(model, out_dir: Path, name: str, device: torch.device, batch_size: int, *, data: str, dataset: str,
                images: str | None = None, masks: str | None = None, pictures: int = 4, limit: int | None = None) -> dict:
    """Run open-vocabulary segmentation and write its files and pictures."""
    config = load_dataset_config(dataset)
    pairs = segment.find_pairs(Path(data), config, images, masks)
    if limit is not None:
        pairs = pairs[:limit]
    result = segment.evaluate_segmentation(model, pairs, config, device, batch_size, out_dir / f"{name}-pictures", pictures)
    segment.write_segmentation(result, out_dir, name)
    return result


def run_regions(model, out_dir: Path, name: str, device: torch.device, batch_size: int, *, data: str, split: str = "validation",
                categories: str | None = None, templates: Any = "region", min_size: float = 0.0, max_size: float | None = None,
                limit: int | None = None) -> dict:
    """Run region classification on MGRS shards and write its files."""
    category_list = None
    if categories:
        category_list = [line.strip() for line in Path(categories).read_text(encoding="utf-8").splitlines() if line.strip()]
    region_set = regions.read_regions(data, split, min_size, max_size, limit)
    result = regions.evaluate_regions(model, region_set, category_list, resolve_templates(templates), device, batch_size)
    regions.write_regions(result, out_dir, name)
    return result


RUNNERS = {"classify": run_classify, "retrieve": run_retrieve, "segment": run_segment, "regions": run_regions}


def _expand(value: Any, root: Path, key: str) -> Any:
    if not isinstance(value, str):
        return value
    value = os.path.expandvars(value)
    if key in PATH_KEYS and "://" not in value and not Path(value).is_absolute():
        return str(root / value)
    return value


def read_suite(path: str | Path, root: str | Path | None = None) -> dict[str, Any]:
    """Read and check a suite file; return its settings with paths expanded and resolved."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"suite file {path} not found")
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    root = Path(root) if root is not None else Path.cwd()
    unknown = sorted(set(config) - {"model", "arch", "device", "batch_size", "tasks"})
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; allowed: model, arch, device, batch_size, tasks")
    tasks = config.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise ValueError(f"{path}: 'tasks' must be a non-empty list of tasks, each with 'task' and 'data'")

    names = set()
    checked = []
    for number, task in enumerate(tasks, start=1):
        kind = task.get("task") if isinstance(task, dict) else None
        if kind not in RUNNERS:
            raise ValueError(f"{path}: task {number} has task={kind!r}; choose one of {', '.join(RUNNERS)}")
        options = {key: _expand(value, root, key) for key, value in task.items() if key not in ("task", "name")}
        allowed = [p for p in inspect.signature(RUNNERS[kind]).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        extra = sorted(set(options) - {p.name for p in allowed})
        if extra:
            raise ValueError(f"{path}: task {number} ({kind}) has unknown keys {extra}; allowed: {', '.join(p.name for p in allowed)}")
        missing = [p.name for p in allowed if p.default is inspect.Parameter.empty and p.name not in options]
        if missing:
            raise ValueError(f"{path}: task {number} ({kind}) lacks {missing}")
        name = str(task.get("name") or f"{kind}-{number}")
        if name in names:
            raise ValueError(f"{path}: two tasks are named {name!r}; give each task a unique name")
        names.add(name)
        checked.append({"name": name, "task": kind, "options": options})
    config["tasks"] = checked
    return config


def run_suite(model, config: dict[str, Any], out_dir: str | Path, device: torch.device, batch_size: int = 64) -> list[dict[str, Any]]:
    """Run every task of a checked suite with `model` and write the summary; return the summary rows.

    The model is put in eval mode and its previous mode restored afterwards, so the trainer can call
    this at the end of an epoch.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    rows = []
    try:
        for task in config["tasks"]:
            logger.info("suite: running %s (%s)", task["name"], task["task"])
            result = RUNNERS[task["task"]](model, out_dir, task["name"], device, batch_size, **task["options"])
            headline = result["headline"]
            rows.append({"name": task["name"], "task": task["task"], "metric": headline, "value": result["metrics"][headline], "metrics": result["metrics"]})
    finally:
        model.train(was_training)

    write_json(out_dir / "summary.json", {"tasks": rows})
    write_markdown(
        out_dir / "summary.md",
        "Evaluation summary",
        [("", ["task", "kind", "metric", "value"], [(row["name"], row["task"], row["metric"], row["value"]) for row in rows])],
        note="Values in percent. Each task's own files hold the details.",
    )
    return rows


def evaluate_suite(model, suite_file: str | Path, out_dir: str | Path, device: str | torch.device | None = None,
                   batch_size: int | None = None, root: str | Path | None = None) -> list[dict[str, Any]]:
    """Run the suite file with an already built model (for example at the end of a training epoch).

    `device` defaults to the device of the model's parameters, `batch_size` to the file's or 64.
    """
    config = read_suite(suite_file, root)
    if device is None:
        device = next(model.parameters()).device
    return run_suite(model, config, out_dir, torch.device(device), batch_size or int(config.get("batch_size", 64)))
