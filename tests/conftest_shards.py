"""Write small, valid MGRS dataset folders from seeded synthetic records.

A folder written here has the layout of a real build. Its shards are
`data/<split>-NNNNN-of-NNNNN.parquet` with the shard schema of `mgrs.schema`. Its `README.md` card
lists the configs and the split sizes in YAML, and `build-report.json` gives the row and region count
of each shard. The same seed gives the same bytes.

Typical use::

    records = make_records({"train": 6, "validation": 2}, seed=1)
    records["train"][0].regions[0].bbox = (5.0, 5.0, 1.0, 9.0)   # break one thing
    root = write_dataset(tmp_path / "ds", records=records)

or simply `write_dataset(tmp_path / "ds", {"train": 5}, seed=0)`.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml
from PIL import Image, ImageDraw

from mgrs.schema import FEATURES, Record, Region, Tile, rows_to_table

# (category, category_id) pairs used by the synthetic regions.
CATEGORIES = [("plane", 0), ("ship", 1), ("storage-tank", 2), ("small-vehicle", 3), ("harbor", 4)]

WORDS = ["aerial", "view", "of", "a", "busy", "port", "with", "several", "boats", "near", "the", "dock",
         "and", "some", "parked", "cars", "beside", "large", "white", "tanks"]


def shard_name(split: str, index: int, count: int) -> str:
    """Return the Hub shard file name, e.g. `train-00000-of-00002.parquet`."""
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def uniform_image(width: int, height: int, colour: tuple[int, int, int] = (128, 128, 128)) -> bytes:
    """Return the PNG bytes of a single-colour RGB image."""
    return encode_png(Image.new("RGB", (width, height), colour))


def make_caption(rng: random.Random, min_words: int, max_words: int) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))]
    return " ".join(words).capitalize() + "."


def make_region(rng: random.Random, width: int, height: int) -> Region:
    """Return a region with an integer box inside a `width` x `height` image.

    About half of the regions carry a polygon (a diamond inscribed in the box), the rest are
    horizontal boxes with a null polygon.
    """
    box_width = rng.randint(2, width - 1)
    box_height = rng.randint(2, height - 1)
    x1 = rng.randint(0, width - box_width)
    y1 = rng.randint(0, height - box_height)
    x2 = x1 + box_width
    y2 = y1 + box_height

    polygon = None
    if rng.random() < 0.5:
        cx = (x1 + x2) / 2
        cy = (y1 + y2) / 2
        polygon = [cx, float(y1), float(x2), cy, cx, float(y2), float(x1), cy]

    category, category_id = rng.choice(CATEGORIES)
    return Region(
        bbox=(float(x1), float(y1), float(x2), float(y2)),
        category=category,
        category_id=category_id,
        source_category=category.replace("-", " "),
        caption=f"a satellite image of {category}",
        visible_fraction=rng.choice([1.0, 1.0, 0.75, 0.5]),
        polygon=polygon,
        difficult=rng.choice([None, 0, 1]),
    )


def make_record(
    rng: random.Random,
    split: str,
    index: int,
    max_regions: int = 4,
    size_range: tuple[int, int] = (48, 160),
    source: str = "synthetic",
) -> Record:
    """Return one record with a seeded image size, 0 to `max_regions` regions and captions.

    The image is a flat background with the region boxes painted in, encoded as PNG.
    """
    width = rng.randint(*size_range)
    height = rng.randint(*size_range)
    regions = [make_region(rng, width, height) for _ in range(rng.randint(0, max_regions))]

    image = Image.new("RGB", (width, height), (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)))
    draw = ImageDraw.Draw(image)
    for region in regions:
        draw.rectangle(region.bbox, fill=(rng.randint(0, 255), 40, 40))

    image_id = f"{source}-{split}-{index:05d}"
    return Record(
        image_bytes=encode_png(image),
        image_path=None,
        image_id=image_id,
        source=source,
        source_image=f"images/{split}/{index:05d}.png",
        source_sha256=f"{rng.getrandbits(256):064x}",
        tile=Tile(x=0, y=0, width=width, height=height),
        width=width,
        height=height,
        gsd=rng.choice([None, 0.5, 1.0]),
        split=split,
        license="CC-BY-4.0",
        regions=regions,
        short_caption=make_caption(rng, 3, 10),
        long_caption=make_caption(rng, 15, 40),
        caption_source="template-v1",
        extra={"index": index},
    )


def make_records(
    records_per_split: dict[str, int] | None = None,
    seed: int = 0,
    sources: tuple[str, ...] = ("synthetic",),
    **record_options: Any,
) -> dict[str, list[Record]]:
    """Return seeded records per split; record `i` of a split comes from `sources[i % len(sources)]`."""
    records_per_split = {"train": 5} if records_per_split is None else records_per_split
    rng = random.Random(seed)
    records: dict[str, list[Record]] = {}
    for split, count in records_per_split.items():
        records[split] = [
            make_record(rng, split, index, source=sources[index % len(sources)], **record_options)
            for index in range(count)
        ]
    return records


def write_dataset(
    directory: str | Path,
    records_per_split: dict[str, int] | None = None,
    seed: int = 0,
    *,
    records: dict[str, list[Record]] | None = None,
    shards_per_split: int = 1,
    row_group_size: int | None = None,
    card: bool = True,
    report: bool = True,
    sort: bool = True,
) -> Path:
    """Write a dataset folder and return its path.

    `records` (split -> records) replaces the seeded records of `records_per_split` and `seed`. Each
    split is cut into `shards_per_split` shards of near-equal size (a shard may be empty when a split
    has fewer records than shards). `sort=False` keeps the given row order instead of sorting by
    `image_id`, to build broken datasets.
    """
    root = Path(directory)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    if records is None:
        records = make_records(records_per_split, seed=seed)

    shard_entries = []
    split_sizes = {}
    for split, split_records in records.items():
        ordered = sorted(split_records, key=lambda record: record.image_id) if sort else list(split_records)
        split_sizes[split] = (len(ordered), 0)
        for index in range(shards_per_split):
            start = index * len(ordered) // shards_per_split
            stop = (index + 1) * len(ordered) // shards_per_split
            chunk = ordered[start:stop]
            name = shard_name(split, index, shards_per_split)
            table = rows_to_table([record.to_row() for record in chunk])
            pq.write_table(table, data / name, row_group_size=row_group_size)
            shard_entries.append(
                {"file": f"data/{name}", "rows": len(chunk), "regions": sum(len(r.regions) for r in chunk)}
            )
            rows, num_bytes = split_sizes[split]
            split_sizes[split] = (rows, num_bytes + (data / name).stat().st_size)

    if card:
        write_card(root, split_sizes)
    if report:
        write_report(root, shard_entries)
    return root


def write_card(root: Path, split_sizes: dict[str, tuple[int, int]]) -> Path:
    """Write `README.md` with the `configs` and `dataset_info` YAML; sizes are (num_examples, num_bytes)."""
    front_matter = {
        "license": "cc-by-4.0",
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*"} for split in split_sizes],
            }
        ],
        "dataset_info": {
            "features": FEATURES._to_yaml_list(),
            "splits": [
                {"name": split, "num_examples": rows, "num_bytes": num_bytes}
                for split, (rows, num_bytes) in split_sizes.items()
            ],
        },
    }
    text = "---\n" + yaml.safe_dump(front_matter, sort_keys=False) + "---\n\n# Synthetic MGRS test data\n"
    path = root / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def write_report(root: Path, shard_entries: list[dict[str, Any]]) -> Path:
    """Write `build-report.json` with per-split record counts and per-shard rows and regions."""
    records: dict[str, int] = {}
    for entry in shard_entries:
        split = Path(entry["file"]).name.split("-")[0]
        records[split] = records.get(split, 0) + entry["rows"]
    report = {
        "records": records,
        "regions": sum(entry["regions"] for entry in shard_entries),
        "skips": {},
        "shards": shard_entries,
    }
    path = root / "build-report.json"
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return path
