"""Zero-shot scene classification over an image folder (one folder per class) or a CSV.

Layouts, as SkyScript prepares AID, EuroSAT, fMoW, MillionAID, PatternNet, NWPU-RESISC45 and RSICB:

- image folder: `ROOT/<class>/**/<image>` with one folder per class;
- CSV: a header with `filepath` and `label` columns (names configurable). A label is a class index
  into the class-name file or a class name. Relative paths are resolved against `images_root`, or
  else the CSV's folder.

The class-name file has one class per line, synonyms separated by commas, and the best synonym wins.
Folder names and text labels match class names after lower-casing and turning `_` and `-` into spaces.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from farslip.evaluate import metrics
from farslip.evaluate.images import encode_views, open_rgb, resize_center_crop
from farslip.evaluate.prompts import SATELLITE_TEMPLATES, best_synonym, flatten_classes, read_class_names, text_embeddings
from farslip.evaluate.report import confusion_picture, write_json, write_markdown

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}


@dataclass
class ClassificationData:
    """Image paths, their class indices and the class names (synonyms per class)."""

    images: list[Path]
    labels: list[int]
    classes: list[list[str]]


def normalise_name(name: str) -> str:
    """Lower-case a class name and turn `_` and `-` into single spaces."""
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def _class_lookup(classes: list[list[str]]) -> dict[str, int]:
    lookup = {}
    for index, synonyms in enumerate(classes):
        for name in synonyms:
            lookup.setdefault(normalise_name(name), index)
    return lookup


def read_folder(root: Path, classes: list[list[str]] | None) -> ClassificationData:
    """Read an image-folder dataset; without `classes` the folder names are the class names."""
    folders = sorted(path for path in root.iterdir() if path.is_dir())
    if not folders:
        raise ValueError(f"dataset folder {root} has no class folders; expected ROOT/<class>/<image> or a CSV file")
    if classes is None:
        classes = [[normalise_name(folder.name)] for folder in folders]
    lookup = _class_lookup(classes)

    images, labels, unmatched = [], [], []
    for folder in folders:
        index = lookup.get(normalise_name(folder.name))
        if index is None:
            unmatched.append(folder.name)
            continue
        files = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
        images.extend(files)
        labels.extend([index] * len(files))
    if unmatched:
        raise ValueError(
            f"class folders {unmatched[:5]} in {root} match no line of the class-name file; add them to the file "
            "(synonyms after commas) or rename the folders"
        )
    return ClassificationData(images, labels, classes)


def read_csv(path: Path, classes: list[list[str]] | None, images_root: Path | None, image_key: str, label_key: str) -> ClassificationData:
    """Read a CSV dataset with an image-path column and a label column (class index or name)."""
    root = images_root or path.parent
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"CSV {path} has no rows")
    for key in (image_key, label_key):
        if key not in rows[0]:
            raise ValueError(f"CSV {path} has no column {key!r} (columns: {', '.join(rows[0])}); set the column name option")

    raw_labels = [row[label_key].strip() for row in rows]
    numeric = all(label.lstrip("-").isdigit() for label in raw_labels)
    if classes is None:
        if numeric:
            raise ValueError(f"CSV {path} has integer labels; give the class-name file that they index")
        classes = [[name] for name in sorted({normalise_name(label) for label in raw_labels})]
    lookup = _class_lookup(classes)

    images, labels = [], []
    for line, (row, label) in enumerate(zip(rows, raw_labels), start=2):
        index = int(label) if numeric else lookup.get(normalise_name(label))
        if index is None or not 0 <= index < len(classes):
            raise ValueError(f"CSV {path} line {line}: label {label!r} is not one of the {len(classes)} classes of the class-name file")
        image = Path(row[image_key])
        images.append(image if image.is_absolute() else root / image)
        labels.append(index)
    return ClassificationData(images, labels, classes)


def read_dataset(
    data: str | Path,
    classnames: str | Path | None = None,
    images_root: str | Path | None = None,
    image_key: str = "filepath",
    label_key: str = "label",
) -> ClassificationData:
    """Read a classification dataset from an image folder or a CSV file."""
    data = Path(data)
    classes = read_class_names(classnames) if classnames else None
    if data.is_dir():
        dataset = read_folder(data, classes)
    elif data.is_file():
        dataset = read_csv(data, classes, Path(images_root) if images_root else None, image_key, label_key)
    else:
        raise FileNotFoundError(f"classification data {data} not found; give a folder with one folder per class or a CSV file")
    if not dataset.images:
        raise ValueError(f"classification data {data} contains no images (suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")
    return dataset


def evaluate_classification(
    model,
    dataset: ClassificationData,
    templates=SATELLITE_TEMPLATES,
    device: torch.device = torch.device("cpu"),
    batch_size: int = 64,
    ks=(1, 5),
) -> dict:
    """Return top-k accuracy, per-class accuracy and the confusion matrix of zero-shot classification."""
    size = model.image_size
    features = encode_views(model, dataset.images, lambda path: resize_center_crop(open_rgb(path), size), device, batch_size, "classify")

    names, query_class = flatten_classes(dataset.classes)
    prompts = text_embeddings(model, names, list(templates), device).cpu()
    scores = best_synonym(features @ prompts.T, query_class, len(dataset.classes))  # (M, C)

    labels = torch.tensor(dataset.labels, dtype=torch.long)
    accuracy = metrics.topk_accuracy(scores, labels, ks)
    predicted = metrics.predictions(scores)
    confusion = metrics.confusion_matrix(labels, predicted, len(dataset.classes))
    class_names = [synonyms[0] for synonyms in dataset.classes]
    per_class = metrics.per_class_accuracy(confusion)
    counts = confusion.sum(dim=1).tolist()

    return {
        "task": "classify",
        "metrics": {f"top{k}_accuracy": value for k, value in accuracy.items()} | {"images": len(dataset.images)},
        "headline": "top1_accuracy",
        "templates": list(templates),
        "classes": class_names,
        "per_class": {name: {"accuracy": acc, "images": n} for name, acc, n in zip(class_names, per_class, counts)},
        "confusion": confusion.tolist(),
    }


def write_classification(result: dict, out_dir: str | Path, name: str) -> list[Path]:
    """Write NAME.json, NAME.md and NAME-confusion.png and return their paths."""
    out_dir = Path(out_dir)
    summary = [(key, value) for key, value in result["metrics"].items()]
    per_class = [(cls, entry["images"], entry["accuracy"]) for cls, entry in result["per_class"].items()]
    return [
        write_json(out_dir / f"{name}.json", result),
        write_markdown(
            out_dir / f"{name}.md",
            f"Zero-shot classification: {name}",
            [("Summary", ["metric", "value"], summary), ("Per class", ["class", "images", "accuracy"], per_class)],
            note="Accuracies in percent. Ties count for the lower class index.",
        ),
        confusion_picture(result["confusion"], result["classes"], out_dir / f"{name}-confusion.png"),
    ]
