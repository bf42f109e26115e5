"""Seeded shard folders and tar files for the trainer tests.

Parquet folders come from `conftest_shards` (the MGRS layout `DIR/data/<split>-NNNNN-of-NNNNN.parquet`);
this module adds larger images, so that regions pass the trainer's size filter, and WebDataset tar
shards in the RS5M layout (`KEY.img_content` image bytes, `KEY.caption` text).
"""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

from PIL import Image

from conftest_shards import encode_png, make_caption, make_records, write_dataset


def write_region_shards(
    root: Path,
    train_rows: int = 12,
    shards: int = 3,
    seed: int = 0,
    validation_rows: int = 0,
    size_range: tuple[int, int] = (64, 128),
    row_group_size: int | None = None,
) -> Path:
    """Write a seeded MGRS folder with `shards` train shards (and one validation shard) and return it."""
    splits = {"train": train_rows}
    if validation_rows:
        splits["validation"] = validation_rows
    records = make_records(splits, seed=seed, size_range=size_range)

    written = write_dataset(root, records={"train": records["train"]}, shards_per_split=shards, row_group_size=row_group_size)
    if validation_rows:
        write_dataset(root, records={"validation": records["validation"]}, shards_per_split=1, card=False, report=False)
    return written


def write_tar(path: Path, samples: int, seed: int = 0, image_format: str = "JPEG") -> Path:
    """Write a WebDataset tar of `samples` seeded images and captions and return its path."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for index in range(samples):
            key = f"{seed:03d}{index:06d}"
            colour = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
            image = Image.new("RGB", (rng.randint(64, 160), rng.randint(64, 160)), colour)
            if image_format == "PNG":
                data = encode_png(image)
            else:
                buffer = io.BytesIO()
                image.save(buffer, format=image_format, quality=90)
                data = buffer.getvalue()
            _add_member(archive, f"{key}.img_content", data)
            _add_member(archive, f"{key}.caption", make_caption(rng, 5, 12).encode("utf-8"))
    return path


def _add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    archive.addfile(info, io.BytesIO(data))
