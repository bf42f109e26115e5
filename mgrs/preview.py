"""Contact sheet of a built MGRS dataset: thumbnails with region outlines, labels and captions.

Records are a seeded sample over all shards (or the first records when `seed` is None), shown in
dataset order. Only the sampled row groups are read, and only the columns the sheet draws.
"""

from __future__ import annotations

import io
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from mgrs.hub_paths import HubPath, dataset_path, parquet_source

logger = logging.getLogger(__name__)

THUMB_SIZE = 256
PADDING = 8
FONT_SIZE = 12
LINE_HEIGHT = FONT_SIZE + 4
CAPTION_LINES = 3
BOX_WIDTH = 2
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)
# Twenty well-separated colours; categories on one sheet get them in sorted name order, then cycle.
PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
]
COLUMNS = ["image", "image_id", "width", "height", "short_caption", "regions"]


@dataclass(frozen=True)
class _Position:
    shard: Path | HubPath
    row_group: int
    row: int


def cell_size(thumb_size: int = THUMB_SIZE) -> tuple[int, int]:
    """Return (width, height) in pixels of one sheet cell: padding, thumbnail, caption lines, padding."""
    return thumb_size + 2 * PADDING, thumb_size + 3 * PADDING + CAPTION_LINES * LINE_HEIGHT


def sheet_size(count: int, columns: int, thumb_size: int = THUMB_SIZE) -> tuple[int, int]:
    """Return (width, height) of a sheet of `count` cells in `columns` columns."""
    width, height = cell_size(thumb_size)
    return min(count, columns) * width, math.ceil(count / columns) * height


def category_colours(categories: list[str]) -> dict[str, tuple[int, int, int]]:
    """Map each category to a palette colour, in sorted name order."""
    return {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(sorted(set(categories)))}


def write_preview(
    path: str | Path,
    out_png: str | Path,
    count: int = 16,
    seed: int | None = 0,
    columns: int = 4,
    thumb_size: int = THUMB_SIZE,
    split: str | None = None,
) -> Path:
    """Draw a contact sheet of `count` records of the dataset folder `path` and save it as `out_png`.

    `seed` picks a reproducible random sample; `seed=None` takes the first records in shard order.
    `split` limits the sample to one split. Each thumbnail fits in `thumb_size` px square and shows
    every region (polygon outline when present, else the box) in its category's colour, one label per
    category, and the short caption under it. Returns the path written. Raises FileNotFoundError when
    the folder contains no shards and ValueError for a non-positive `count`, `columns` or `thumb_size`.
    """
    for name, value in (("count", count), ("columns", columns), ("thumb_size", thumb_size)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")

    positions = _pick_rows(dataset_path(path), count, seed, split)
    records = _read_rows(positions)
    colours = category_colours([_category(r) for record in records for r in _drawable(record)])
    font = ImageFont.load_default(size=FONT_SIZE)

    sheet = Image.new("RGB", sheet_size(len(records), columns, thumb_size), BACKGROUND)
    cell_width, cell_height = cell_size(thumb_size)
    for index, record in enumerate(records):
        left = (index % columns) * cell_width + PADDING
        top = (index // columns) * cell_height + PADDING
        sheet.paste(_thumbnail(record, thumb_size, colours, font), (left, top))
        _draw_caption(ImageDraw.Draw(sheet), record["short_caption"] or "", left, top + thumb_size + PADDING,
                      thumb_size, font)

    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    logger.info("Wrote a contact sheet of %d records to %s", len(records), out)
    return out


def _pick_rows(root: Path | HubPath, count: int, seed: int | None, split: str | None) -> list[_Position]:
    """Choose rows from the row counts in the Parquet footers, without reading any data."""
    pattern = f"{split}-*.parquet" if split else "*.parquet"
    shards = sorted((root / "data").glob(pattern))
    if not shards:
        raise FileNotFoundError(f"no Parquet shards matching {root / 'data' / pattern}; pass a dataset folder built by mgrs")

    groups = []
    for shard in shards:
        metadata = pq.read_metadata(parquet_source(shard))
        groups.extend((shard, group, metadata.row_group(group).num_rows) for group in range(metadata.num_row_groups))
    total = sum(rows for _, _, rows in groups)
    if total == 0:
        raise FileNotFoundError(f"the shards in {root / 'data'} hold no rows")

    if seed is None:
        chosen = list(range(min(count, total)))
    else:
        chosen = sorted(random.Random(seed).sample(range(total), min(count, total)))

    positions = []
    start = 0
    remaining = iter(chosen)
    target = next(remaining, None)
    for shard, group, rows in groups:
        while target is not None and target < start + rows:
            positions.append(_Position(shard, group, target - start))
            target = next(remaining, None)
        start += rows
    return positions


def _read_rows(positions: list[_Position]) -> list[dict[str, Any]]:
    records = []
    current = None
    table = None
    for position in positions:
        if current != (position.shard, position.row_group):
            current = (position.shard, position.row_group)
            table = pq.ParquetFile(parquet_source(position.shard)).read_row_group(position.row_group, columns=COLUMNS)
        records.append(table.slice(position.row, 1).to_pylist()[0])
    return records


def _thumbnail(
    record: dict[str, Any], thumb_size: int, colours: dict[str, tuple[int, int, int]], font: ImageFont.ImageFont
) -> Image.Image:
    """Return the record's image scaled to fit `thumb_size`, with its regions drawn on it."""
    data = (record["image"] or {}).get("bytes")
    try:
        image = Image.open(io.BytesIO(data or b""))
        width, height = image.size
        image.draft("RGB", (thumb_size, thumb_size))
        image = image.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        logger.warning("Image of %s failed to decode (%s); drawing a placeholder", record["image_id"], error)
        placeholder = Image.new("RGB", (thumb_size, thumb_size), (200, 200, 200))
        ImageDraw.Draw(placeholder).text((PADDING, PADDING), "image failed to decode", fill=TEXT_COLOUR, font=font)
        return placeholder

    # Box coordinates are pixels of the full image; draft() may already have shrunk the decoded one.
    scale = min(thumb_size / width, thumb_size / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    thumbnail = image.resize(size, Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(thumbnail)

    labelled: dict[str, tuple[float, float]] = {}
    regions = sorted(_drawable(record), key=_box_area, reverse=True)
    for region in regions:
        colour = colours[_category(region)]
        polygon = region["polygon"]
        if polygon and len(polygon) >= 6:
            points = [(x * scale, y * scale) for x, y in zip(polygon[::2], polygon[1::2])]
            draw.line(points + points[:1], fill=colour, width=BOX_WIDTH)
        else:
            x1, y1, x2, y2 = (value * scale for value in region["bbox"])
            draw.rectangle((x1, y1, x2, y2), outline=colour, width=BOX_WIDTH)
        labelled.setdefault(_category(region), (region["bbox"][0] * scale, region["bbox"][1] * scale))

    # One label per category, at the top-left corner of its largest box, drawn last so boxes stay under it.
    placed: list[tuple[float, float, float, float]] = []
    for category, (x, y) in labelled.items():
        placed.append(_draw_label(draw, category, x, y, colours[category], size, font, placed))
    return thumbnail


def _draw_label(
    draw: ImageDraw.ImageDraw, text: str, x: float, y: float, colour: tuple[int, int, int],
    size: tuple[int, int], font: ImageFont.ImageFont, placed: list[tuple[float, float, float, float]],
) -> tuple[float, float, float, float]:
    """Draw `text` on a `colour` background near (x, y) and return the label's rectangle.

    The label goes above the box when there is room, else just inside it, and moves down past labels
    already `placed` while it stays inside the thumbnail.
    """
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    text_width, text_height = right - left + 4, bottom - top + 4
    label_y = y - text_height if y - text_height >= 0 else y
    label_x = min(max(0, x), max(0, size[0] - text_width))
    label_y = min(max(0, label_y), max(0, size[1] - text_height))
    while label_y + 2 * text_height <= size[1] and any(
        _overlaps((label_x, label_y, label_x + text_width, label_y + text_height), other) for other in placed
    ):
        label_y += text_height

    rectangle = (label_x, label_y, label_x + text_width, label_y + text_height)
    draw.rectangle(rectangle, fill=colour)
    brightness = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    text_colour = (0, 0, 0) if brightness > 140 else (255, 255, 255)
    draw.text((label_x + 2 - left, label_y + 2 - top), text, fill=text_colour, font=font)
    return rectangle


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _draw_caption(
    draw: ImageDraw.ImageDraw, caption: str, left: int, top: int, width: int, font: ImageFont.ImageFont
) -> None:
    for number, line in enumerate(wrap_text(caption, width, font)):
        draw.text((left, top + number * LINE_HEIGHT), line, fill=TEXT_COLOUR, font=font)


def wrap_text(text: str, width: float, font: ImageFont.ImageFont, max_lines: int = CAPTION_LINES) -> list[str]:
    """Wrap `text` into at most `max_lines` lines no wider than `width` px; cut text ends with '…'."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)

    truncated = len(lines) > max_lines
    lines = lines[:max_lines]
    for number, line in enumerate(lines):
        # A single word wider than the cell, or the last kept line of a cut text, is shortened.
        cut = truncated and number == len(lines) - 1
        if cut or font.getlength(line) > width:
            while line and font.getlength(line + "…") > width:
                line = line[:-1]
            lines[number] = line.rstrip() + "…"
    return lines


def _drawable(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the regions that have a box; a region without one cannot be drawn or labelled."""
    return [region for region in record["regions"] or [] if region["bbox"] is not None]


def _category(region: dict[str, Any]) -> str:
    return region["category"] or "unknown"


def _box_area(region: dict[str, Any]) -> float:
    x1, y1, x2, y2 = region["bbox"]
    return (x2 - x1) * (y2 - y1)
