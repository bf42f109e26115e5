"""Training data: shard readers, the per-sample views and the batches the trainer consumes.

Shape letters: B batch, R regions (`max_regions`), K local views, S image size, L text tokens.

MGRS Parquet shards and WebDataset tar shards are both read through fsspec, so a local folder and `hf://datasets/OWNER/NAME` (huggingface_hub's
`HfFileSystem`) take the same code path. A reader lists its blocks (Parquet row groups, or runs of
`TAR_BLOCK_SAMPLES` samples of a tar shard) and returns rows of a block as dictionaries with the keys
`image` (bytes), `captions` (dict field -> text), `regions` (list of region dicts, empty for
caption-only data) and `key` (a readable id for error messages).
"""

from __future__ import annotations

import logging
import posixpath
import tarfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol

import fsspec
import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from farslip import sampling, views

logger = logging.getLogger(__name__)

TAR_BLOCK_SAMPLES = 256

# WebDataset field names, in order of preference. RS5M stores image bytes under `img_content` and
# the text under `caption`; the other names are the usual WebDataset extensions.
TAR_IMAGE_FIELDS = ("img_content", "jpg", "jpeg", "png", "webp")
TAR_TEXT_FIELDS = ("caption", "txt")

CAPTION_FIELDS = ("long_caption", "short_caption")

# Open file handles kept per reader (per DataLoader worker).
MAX_OPEN_FILES = 8


class ShardError(ValueError):
    """Shards are missing or unreadable."""


@dataclass(frozen=True)
class Block:
    """A unit of reading: `rows` rows of shard `shard`, stored as `part` of it."""

    shard: int
    part: int
    rows: int


class ShardReader(Protocol):
    path: str
    files: list[str]
    blocks: list[Block]

    def read_rows(self, block: int, offsets: list[int]) -> list[dict[str, Any]]: ...


def find_files(path: str, split: str, data_format: str) -> tuple[fsspec.AbstractFileSystem, list[str], str]:
    """Return the filesystem, the sorted shard files of `split` under `path`, and the format found.

    `data_format` is `parquet`, `webdataset` or `auto` (tar files present means WebDataset). Parquet
    shards are looked for as `data/<split>-*.parquet` (the Hub layout), then `<split>-*.parquet`.
    """
    fs, root = fsspec.core.url_to_fs(path)
    root = root.rstrip("/")

    if data_format in ("auto", "webdataset"):
        tars = [root] if root.endswith(".tar") else sorted(fs.glob(f"{root}/*.tar"))
        if tars:
            return fs, tars, "webdataset"
        if data_format == "webdataset":
            raise ShardError(f"data.path {path!r} contains no .tar shards; point data.path at the folder of the tar files.")

    if root.endswith(".parquet"):
        return fs, [root], "parquet"
    # Several splits read as one, as `datasets` writes them: "train+trainval".
    files = []
    for part in split.split("+"):
        files.extend(_split_files(fs, root, path, part.strip()))
    return fs, sorted(files), "parquet"


def _split_files(fs: fsspec.AbstractFileSystem, root: str, path: str, split: str) -> list[str]:
    for pattern in (f"{root}/data/{split}-*.parquet", f"{root}/{split}-*.parquet"):
        files = sorted(fs.glob(pattern))
        if files:
            return files
    raise ShardError(
        f"no Parquet shards of split {split!r} under data.path {path!r} (looked for "
        f"data/{split}-NNNNN-of-NNNNN.parquet); check data.path and the split name."
    )


def open_reader(path: str, split: str, data_format: str, columns: list[str]) -> ShardReader:
    """Open the shards of `split` under `path` with the reader of their format."""
    fs, files, found = find_files(path, split, data_format)
    if found == "webdataset":
        return TarReader(fs, path, files)
    return ParquetReader(fs, path, files, columns)


class _OpenFiles:
    """A small LRU of open file objects, created lazily so that readers pickle into workers."""

    def __init__(self, fs: fsspec.AbstractFileSystem):
        self.fs = fs
        self.handles: OrderedDict[str, Any] = OrderedDict()

    def get(self, name: str) -> Any:
        if name in self.handles:
            self.handles.move_to_end(name)
            return self.handles[name]
        handle = self.fs.open(name, "rb")
        self.handles[name] = handle
        while len(self.handles) > MAX_OPEN_FILES:
            _, old = self.handles.popitem(last=False)
            old.close()
        return handle

    def __getstate__(self) -> dict[str, Any]:
        return {"fs": self.fs, "handles": OrderedDict()}


class ParquetReader:
    """Rows of MGRS Parquet shards, read one row group at a time."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, files: list[str], columns: list[str]):
        self.path = path
        self.files = files
        self.columns = columns
        self.open_files = _OpenFiles(fs)
        self.blocks = []
        for shard, name in enumerate(files):
            with fs.open(name, "rb") as handle:
                metadata = pq.ParquetFile(handle).metadata
            missing = [c for c in columns if c not in metadata.schema.to_arrow_schema().names]
            if missing:
                raise ShardError(
                    f"shard {name} of data.path {path!r} lacks the columns {missing}; "
                    "rebuild it with `mgrs build` or check data.path."
                )
            for group in range(metadata.num_row_groups):
                self.blocks.append(Block(shard, group, metadata.row_group(group).num_rows))

    def read_rows(self, block: int, offsets: list[int]) -> list[dict[str, Any]]:
        ref = self.blocks[block]
        name = self.files[ref.shard]
        table = pq.ParquetFile(self.open_files.get(name)).read_row_group(ref.part, columns=self.columns)
        rows = []
        for offset, row in zip(offsets, table.take(offsets).to_pylist()):
            image = row.get("image") or {}
            if not image.get("bytes"):
                raise ShardError(f"row {offset} of row group {ref.part} in {name} has no image bytes.")
            rows.append(
                {
                    "key": f"{posixpath.basename(name)}:{ref.part}:{offset}",
                    "image": image["bytes"],
                    "captions": {field: row.get(field) or "" for field in CAPTION_FIELDS if field in row},
                    "regions": row.get("regions") or [],
                }
            )
        return rows


@dataclass(frozen=True)
class _TarSample:
    key: str
    image: tuple[int, int]
    text: tuple[int, int] | None


class TarReader:
    """Samples of WebDataset tar shards, indexed once by member offsets.

    A sample is the group of members that share a key (the member name up to the first dot of its
    base name). Samples without an image member are skipped and counted in the log.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, files: list[str]):
        self.path = path
        self.files = files
        self.open_files = _OpenFiles(fs)
        self.samples: list[list[_TarSample]] = []
        self.blocks = []
        for shard, name in enumerate(files):
            with fs.open(name, "rb") as handle:
                samples = index_tar(handle, name)
            self.samples.append(samples)
            for part, start in enumerate(range(0, len(samples), TAR_BLOCK_SAMPLES)):
                self.blocks.append(Block(shard, part, min(TAR_BLOCK_SAMPLES, len(samples) - start)))

    def read_rows(self, block: int, offsets: list[int]) -> list[dict[str, Any]]:
        ref = self.blocks[block]
        handle = self.open_files.get(self.files[ref.shard])
        rows = []
        for offset in offsets:
            sample = self.samples[ref.shard][ref.part * TAR_BLOCK_SAMPLES + offset]
            text = "" if sample.text is None else _read_range(handle, sample.text).decode("utf-8").strip()
            rows.append(
                {
                    "key": sample.key,
                    "image": _read_range(handle, sample.image),
                    "captions": {"caption": text},
                    "regions": [],
                }
            )
        return rows


def _read_range(handle: Any, span: tuple[int, int]) -> bytes:
    handle.seek(span[0])
    return handle.read(span[1])


def index_tar(handle: Any, name: str) -> list[_TarSample]:
    """Return the samples of a tar file in member order, with (offset, size) of their fields."""
    fields: OrderedDict[str, dict[str, tuple[int, int]]] = OrderedDict()
    with tarfile.open(fileobj=handle, mode="r:") as archive:
        for member in archive:
            if not member.isfile():
                continue
            directory, base = posixpath.split(member.name)
            if "." not in base or base.startswith("."):
                continue
            stem, extension = base.split(".", 1)
            key = posixpath.join(directory, stem)
            fields.setdefault(key, {})[extension.lower()] = (member.offset_data, member.size)

    samples = []
    skipped = 0
    for key, found in fields.items():
        image = next((found[f] for f in TAR_IMAGE_FIELDS if f in found), None)
        text = next((found[f] for f in TAR_TEXT_FIELDS if f in found), None)
        if image is None:
            skipped += 1
            continue
        samples.append(_TarSample(key, image, text))
    if skipped:
        logger.warning("%s: skipped %d samples without an image member (%s)", name, skipped, "/".join(TAR_IMAGE_FIELDS))
    return samples


@dataclass
class DataConfig:
    """Location of the training records and the options that turn them into samples."""

    # A local shard folder, one shard file, or hf://datasets/OWNER/NAME.
    path: str = ""
    format: Literal["auto", "parquet", "webdataset"] = "auto"
    split: str = "train"
    # Global caption of Parquet records; WebDataset shards always use their `caption` member.
    caption_field: Literal["long_caption", "short_caption"] = "long_caption"
    # Per rank.
    batch_size: int = 40
    num_workers: int = 4
    # Blocks (Parquet row groups) whose rows are shuffled together; memory per worker grows with it.
    shuffle_blocks: int = 4
    global_view: Literal["squash", "center_crop"] = "squash"
    # Regions per image (0: caption-only data, as in stage 1).
    max_regions: int = 4
    # Region box area limits, as sides of a square in stored-image pixels.
    min_size: int = 64
    max_size: int = 1024
    # `category`: "a satellite image of {category}"; `caption`: the region's own caption (label -1).
    region_text: Literal["category", "caption"] = "category"
    local_views: int = 0
    local_mode: Literal["random", "grid"] = "random"
    # Area fraction and aspect-ratio range of random local views.
    local_scale: tuple[float, float] = (0.3, 0.7)
    local_ratio: tuple[float, float] = (0.75, 4 / 3)
    jpeg_draft: bool = True

    def columns(self) -> list[str]:
        """Return the Parquet columns that samples need."""
        columns = ["image", *CAPTION_FIELDS]
        if self.max_regions > 0:
            columns.append("regions")
        return columns


@dataclass(frozen=True)
class ViewSettings:
    """Model input settings: image size S, normalisation and a tokenizer (list[str] -> (n, L))."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    tokenize: Callable[[list[str]], torch.Tensor] = field(repr=False)


def make_sample(row: dict[str, Any], cfg: DataConfig, settings: ViewSettings, rng: np.random.Generator) -> dict[str, Any]:
    """Decode one row once and return its views (uint8, (S, S, 3) each), texts, labels and boxes."""
    size = settings.image_size
    image = views.open_image(row["image"])
    width, height = image.size
    rect = views.global_rect(width, height, cfg.global_view)

    regions = []
    if cfg.max_regions > 0:
        regions = views.select_regions(row["regions"], rect, cfg.min_size, cfg.max_size, cfg.max_regions, rng)
    local = []
    if cfg.local_views > 0:
        local = views.local_boxes(rect, cfg.local_views, cfg.local_mode, cfg.local_scale, cfg.local_ratio, rng)

    all_boxes = [rect, *(tuple(float(v) for v in r["bbox"]) for r in regions), *local]
    decoded = views.decode(image, views.shortest_side(all_boxes) if cfg.jpeg_draft else None, size)

    sample: dict[str, Any] = {"image": views.render(decoded, rect, size), "caption": pick_caption(row, cfg)}
    if cfg.max_regions > 0:
        region_boxes = [tuple(float(v) for v in r["bbox"]) for r in regions]
        texts = [views.region_text(r, cfg.region_text == "caption") for r in regions]
        sample["region_images"] = [views.render(decoded, box, size) for box in region_boxes]
        sample["region_boxes"] = [views.normalise_box(box, rect) for box in region_boxes]
        sample["region_texts"] = [text for text, _ in texts]
        sample["region_labels"] = [label for _, label in texts]
    if cfg.local_views > 0:
        sample["local_images"] = [views.render(decoded, box, size) for box in local]
        sample["local_boxes"] = [views.normalise_box(box, rect) for box in local]
    return sample


def pick_caption(row: dict[str, Any], cfg: DataConfig) -> str:
    """Return the configured caption, falling back to the other caption field when it is empty."""
    captions = row["captions"]
    if "caption" in captions:
        return captions["caption"]
    text = captions.get(cfg.caption_field) or ""
    if text:
        return text
    other = "short_caption" if cfg.caption_field == "long_caption" else "long_caption"
    logger.debug("row %s has no %s; using its %s", row["key"], cfg.caption_field, other)
    return captions.get(other) or ""


def collate(samples: list[dict[str, Any]], indices: list[int], cfg: DataConfig, settings: ViewSettings) -> dict[str, torch.Tensor]:
    """Stack samples into the fixed-shape batch dictionary the objectives read.

    Keys: `image` (B, 3, S, S), `caption_tokens` (B, L), `index` (B,); with regions
    `region_images` (B, R, 3, S, S), `region_tokens` (B, R, L), `region_labels` (B, R),
    `region_boxes` (B, R, 4), `region_valid` (B, R); with local views `local_images`
    (B, K, 3, S, S), `local_boxes` (B, K, 4), `local_valid` (B, K). Padded regions have zero images,
    boxes and tokens, label -1 and valid False.
    """
    size = settings.image_size
    batch = {
        "image": views.to_normalised_tensor(np.stack([s["image"] for s in samples]), settings.mean, settings.std),
        "caption_tokens": settings.tokenize([s["caption"] for s in samples]),
        "index": torch.tensor(indices, dtype=torch.long),
    }

    if cfg.max_regions > 0:
        count, slots = len(samples), cfg.max_regions
        images = np.zeros((count, slots, size, size, 3), dtype=np.uint8)
        boxes = torch.zeros(count, slots, 4)
        labels = torch.full((count, slots), -1, dtype=torch.long)
        valid = torch.zeros(count, slots, dtype=torch.bool)
        texts, places = [], []
        for i, sample in enumerate(samples):
            for j, crop in enumerate(sample["region_images"]):
                images[i, j] = crop
                boxes[i, j] = torch.tensor(sample["region_boxes"][j])
                labels[i, j] = sample["region_labels"][j]
                valid[i, j] = True
                texts.append(sample["region_texts"][j])
                places.append((i, j))

        context = batch["caption_tokens"].shape[1]
        tokens = torch.zeros(count, slots, context, dtype=torch.long)
        if texts:
            encoded = settings.tokenize(texts)
            for (i, j), row in zip(places, encoded):
                tokens[i, j] = row
        batch["region_images"] = views.to_normalised_tensor(images, settings.mean, settings.std)
        batch["region_tokens"] = tokens
        batch["region_labels"] = labels
        batch["region_boxes"] = boxes
        batch["region_valid"] = valid
        # Padding slots must stay exactly zero after normalisation.
        batch["region_images"][~valid] = 0.0

    if cfg.local_views > 0:
        local = np.stack([np.stack(s["local_images"]) for s in samples])
        batch["local_images"] = views.to_normalised_tensor(local, settings.mean, settings.std)
        batch["local_boxes"] = torch.tensor([s["local_boxes"] for s in samples], dtype=torch.float32)
        batch["local_valid"] = torch.ones(len(samples), cfg.local_views, dtype=torch.bool)
    return batch


class RecordStream(IterableDataset):
    """Batches of one rank, in the seeded order of the current epoch (see `farslip.sampling`).

    Each DataLoader worker reads its own contiguous part of the epoch order and yields whole
    batches, so the DataLoader must use `batch_size=None` and `num_workers=cfg.num_workers`
    (`make_loader` does both). `set_position(epoch, step)` chooses where the next iteration starts;
    a resumed run passes the step it stopped at, and the skipped rows are never read.

    With `ordered=True` (evaluation) the rows come in file order, nothing is dropped and the last
    batch may be short.
    """

    def __init__(
        self,
        cfg: DataConfig,
        settings: ViewSettings,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        split: str | None = None,
        ordered: bool = False,
    ):
        super().__init__()
        if not cfg.path:
            raise ValueError("data.path is empty; set it in the config, with --data PATH, or --set data.path=PATH.")
        self.cfg = cfg
        self.settings = settings
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.split = split or cfg.split
        self.ordered = ordered
        self.reader = open_reader(cfg.path, self.split, cfg.format, cfg.columns())
        self.block_rows = [block.rows for block in self.reader.blocks]
        self.block_starts = np.concatenate([[0], np.cumsum(self.block_rows, dtype=np.int64)])
        self.num_rows = int(self.block_starts[-1])
        what = f"split {self.split!r} of {cfg.path}"
        if ordered:
            if self.num_rows == 0:
                raise sampling.DataLayoutError(f"{what} has no rows.")
            self.layout = None
        else:
            self.layout = sampling.make_layout(self.num_rows, world_size, cfg.num_workers, cfg.batch_size, what)
        self.epoch = 0
        self.start_step = 0

    def set_position(self, epoch: int, step: int = 0) -> None:
        """Start the next iteration at `step` (batches of this rank) of `epoch`."""
        self.epoch = epoch
        self.start_step = step

    def __len__(self) -> int:
        if self.layout is None:
            return -(-self.num_rows // self.cfg.batch_size)
        return self.layout.steps_per_epoch

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        first, stop = self._worker_range(worker, workers)
        if first >= stop:
            return

        batch_size = self.cfg.batch_size
        row_ids = self._order()[first:stop]
        block_of = np.searchsorted(self.block_starts, row_ids, side="right") - 1
        blocks, reversed_first = np.unique(block_of[::-1], return_index=True)
        last_batch = {int(b): (len(row_ids) - 1 - i) // batch_size for b, i in zip(blocks, reversed_first)}

        cache: dict[int, dict[int, dict[str, Any]]] = {}
        for n, at in enumerate(range(0, len(row_ids), batch_size)):
            ids = row_ids[at : at + batch_size]
            for block in np.unique(block_of[at : at + batch_size]).tolist():
                if block not in cache:
                    cache[block] = self._read_block(block, row_ids[at:][block_of[at:] == block])

            samples = []
            indices = list(range(first + at, first + at + len(ids)))
            for index, row_id in zip(indices, ids.tolist()):
                block = int(np.searchsorted(self.block_starts, row_id, side="right") - 1)
                row = cache[block][row_id - int(self.block_starts[block])]
                rng = np.random.default_rng([self.seed, self.epoch, index])
                samples.append(make_sample(row, self.cfg, self.settings, rng))

            for block in [b for b in cache if last_batch[b] == n]:
                del cache[block]
            yield collate(samples, indices, self.cfg, self.settings)

    def _order(self) -> np.ndarray:
        if self.ordered:
            return np.arange(self.num_rows, dtype=np.int64)
        return sampling.epoch_order(self.block_rows, self.seed, self.epoch, self.cfg.shuffle_blocks)

    def _worker_range(self, worker: int, workers: int) -> tuple[int, int]:
        """Return the [first, stop) epoch-order positions this worker yields, in batches from `first`."""
        batch_size = self.cfg.batch_size
        if self.layout is None:
            batches = -(-self.num_rows // batch_size)
            per_worker = -(-batches // workers)
            return min(worker * per_worker * batch_size, self.num_rows), min((worker + 1) * per_worker * batch_size, self.num_rows)

        if workers != self.layout.workers:
            raise RuntimeError(
                f"RecordStream was planned for {self.layout.workers} workers but runs in {workers}; "
                "build the DataLoader with make_loader()."
            )
        # The DataLoader requests the first batch from worker 0, so the worker that yields step `start_step` must be
        # worker 0 of this iteration: real workers are rotated onto the slots they stand for.
        logical = (worker + self.start_step) % workers
        start, stop = sampling.slot_range(self.layout, self.layout.slot(self.rank, logical))
        skip = sampling.consumed_batches(self.start_step, logical, workers)
        return start + skip * batch_size, stop

    def _read_block(self, block: int, row_ids: np.ndarray) -> dict[int, dict[str, Any]]:
        """Read the rows of `block` among `row_ids` (flat ids), keyed by their offset in the block."""
        offsets = sorted({int(r) - int(self.block_starts[block]) for r in row_ids.tolist()})
        return dict(zip(offsets, self.reader.read_rows(block, offsets)))


def make_loader(dataset: RecordStream, pin_memory: bool = False) -> DataLoader:
    """Return the DataLoader that yields the dataset's batches in step order."""
    workers = dataset.cfg.num_workers
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=2 if workers > 0 else None,
        persistent_workers=False,
    )
