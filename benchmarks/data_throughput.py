"""Measure training-sample throughput of one data worker next to the bare decode rate of the same bytes.

Writes seeded JPEG records (with regions) as MGRS Parquet shards into a temporary folder, then times,
in this single process:

- decode: `Image.open(bytes).convert("RGB")` of every stored image (full resolution);
- stage 2: `RecordStream` batches with the global view and `--regions` region crops;
- stage 1: `RecordStream` batches with the global view and `--local-views` random local views.

Usage: python benchmarks/data_throughput.py [--rows 256] [--image-size 512] [--size 224]
"""

from __future__ import annotations

import argparse
import io
import platform
import random
import tempfile
import time
from pathlib import Path

import open_clip
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from farslip.data import DataConfig, RecordStream, ViewSettings, make_loader
from mgrs.schema import Record, Region, Tile, rows_to_table


def make_record(rng: random.Random, index: int, side: int) -> Record:
    """Return a JPEG record of `side` x `side` pixels with 3 to 8 painted regions of 64 to 256 px."""
    image = Image.new("RGB", (side, side), (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)))
    draw = ImageDraw.Draw(image)
    regions = []
    for _ in range(rng.randint(3, 8)):
        width, height = rng.randint(64, 256), rng.randint(64, 256)
        x, y = rng.randint(0, side - width), rng.randint(0, side - height)
        draw.rectangle((x, y, x + width, y + height), fill=(rng.randint(0, 255), 60, 60))
        regions.append(Region((x, y, x + width, y + height), "ship", 1, "ship", "", 1.0))
    # Noise keeps the JPEG from being trivially small.
    for _ in range(400):
        px, py = rng.randrange(side), rng.randrange(side)
        draw.point((px, py), fill=(rng.randint(0, 255),) * 3)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return Record(
        image_bytes=buffer.getvalue(), image_path=None, image_id=f"bench-{index:06d}", source="bench",
        source_image=f"{index}.jpg", source_sha256="0" * 64, tile=Tile(0, 0, side, side), width=side, height=side,
        gsd=None, split="train", license="CC0-1.0", regions=regions, short_caption="boats in a harbour",
        long_caption="An aerial view of several boats moored in a harbour next to a long pier.",
    )


def write_shards(root: Path, rows: int, side: int, shards: int = 2) -> list[bytes]:
    rng = random.Random(0)
    records = [make_record(rng, i, side) for i in range(rows)]
    (root / "data").mkdir(parents=True)
    for shard in range(shards):
        part = records[shard * rows // shards : (shard + 1) * rows // shards]
        table = rows_to_table([r.to_row() for r in part])
        pq.write_table(table, root / "data" / f"train-{shard:05d}-of-{shards:05d}.parquet")
    return [r.image_bytes for r in records]


def time_decode(images: list[bytes]) -> float:
    started = time.perf_counter()
    for data in images:
        Image.open(io.BytesIO(data)).convert("RGB")
    return len(images) / (time.perf_counter() - started)


def time_stream(cfg: DataConfig, settings: ViewSettings) -> float:
    stream = RecordStream(cfg, settings, seed=0)
    started = time.perf_counter()
    count = sum(len(batch["index"]) for batch in make_loader(stream))
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256, help="records to generate")
    parser.add_argument("--image-size", type=int, default=512, help="side of the stored JPEG images, px")
    parser.add_argument("--size", type=int, default=224, help="model image size S, px")
    parser.add_argument("--regions", type=int, default=4, help="max regions per stage-2 sample")
    parser.add_argument("--local-views", type=int, default=4, help="local views per stage-1 sample")
    args = parser.parse_args()

    settings = ViewSettings(args.size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), open_clip.get_tokenizer("ViT-B-16"))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "shards"
        images = write_shards(root, args.rows, args.image_size)
        base = dict(path=str(root), batch_size=16, num_workers=0, global_view="center_crop")
        results = {
            "bare decode (full resolution)": time_decode(images),
            f"stage 2: global view + up to {args.regions} regions": time_stream(DataConfig(**base, max_regions=args.regions), settings),
            f"stage 1: global view + {args.local_views} local views": time_stream(
                DataConfig(**base, max_regions=0, local_views=args.local_views), settings
            ),
            f"stage 1, jpeg_draft off": time_stream(DataConfig(**base, max_regions=0, local_views=args.local_views, jpeg_draft=False), settings),
        }

    print(f"{args.rows} JPEG records of {args.image_size}x{args.image_size} px, S={args.size}, one process "
          f"({platform.processor() or platform.machine()}, Python {platform.python_version()})")
    print("| what | samples/s per worker |")
    print("|---|---|")
    for name, rate in results.items():
        print(f"| {name} | {rate:.0f} |")


if __name__ == "__main__":
    main()
