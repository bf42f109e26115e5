"""Result writers: JSON results, Markdown tables and pictures (confusion matrix, segmentation).

NaN values (a class without samples, an IoU with an empty union) are written as JSON `null` and as
`n/a` in tables.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

MAX_LABEL_CHARS = 24


def _clean(value: Any) -> Any:
    """Replace NaN and infinity with None, recursively, so that the JSON is standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return value


def write_json(path: str | Path, result: dict[str, Any]) -> Path:
    """Write `result` as indented JSON and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(result), indent=2) + "\n", encoding="utf-8")
    return path


def format_value(value: Any) -> str:
    """Format a table cell: floats as percentages with two decimals when in [0, 1], NaN as n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{100 * value:.2f}" if 0.0 <= value <= 1.0 else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return a Markdown table with a header row."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_value(value) for value in row) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(path: str | Path, title: str, sections: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]], note: str = "") -> Path:
    """Write a Markdown file with a title, an optional note and one table per (heading, columns, rows)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}\n"]
    if note:
        parts.append(note.rstrip() + "\n")
    for heading, columns, rows in sections:
        if heading:
            parts.append(f"## {heading}\n")
        parts.append(markdown_table(columns, rows))
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def confusion_picture(confusion: np.ndarray, class_names: Sequence[str], path: str | Path, cell: int = 16) -> Path:
    """Draw a (C, C) confusion matrix as a PNG: rows are true classes, columns predicted classes.

    Each row is normalised by its total, so the shade shows per-class recall (white 0, dark blue 1).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    count = confusion.shape[0]
    totals = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)

    font = ImageFont.load_default()
    labels = [name[:MAX_LABEL_CHARS] for name in class_names]
    margin = 8 + 6 * max((len(label) for label in labels), default=1)
    side = margin + count * cell + 8
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)

    for row in range(count):
        for column in range(count):
            shade = int(255 * (1.0 - shares[row, column]))
            x = margin + column * cell
            y = margin + row * cell
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(shade, shade, 255), outline=(220, 220, 220))
    for index, label in enumerate(labels):
        draw.text((2, margin + index * cell + 2), label, fill="black", font=font)
        draw.text((margin + index * cell + 2, 2), str(index), fill="black", font=font)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def side_by_side(pictures: Sequence[Image.Image], path: str | Path, titles: Sequence[str] = (), max_height: int = 512) -> Path:
    """Save the pictures next to each other, scaled to a common height of at most `max_height`."""
    height = min(max_height, max(picture.height for picture in pictures))
    scaled = [picture.resize((max(1, round(picture.width * height / picture.height)), height), Image.NEAREST) for picture in pictures]
    title_height = 14 if titles else 0
    canvas = Image.new("RGB", (sum(p.width for p in scaled) + 4 * (len(scaled) - 1), height + title_height), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for index, picture in enumerate(scaled):
        canvas.paste(picture.convert("RGB"), (x, title_height))
        if index < len(titles):
            draw.text((x + 2, 1), titles[index], fill="black", font=ImageFont.load_default())
        x += picture.width + 4
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
