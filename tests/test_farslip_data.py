"""Tests of the trainer's data: sample order, rank/worker split, views, boxes, regions and tar shards."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from conftest_shards import write_dataset
from farslip import sampling, views
from farslip.data import DataConfig, RecordStream, ViewSettings, make_loader, make_sample
from farslip_shards import write_region_shards, write_tar
from mgrs.schema import Record, Region, Tile

SIZE = 32
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


@pytest.fixture(scope="module")
def settings() -> ViewSettings:
    return ViewSettings(SIZE, MEAN, STD, open_clip.get_tokenizer("ViT-B-32"))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_region_shards(tmp_path_factory.mktemp("shards") / "ds", train_rows=30, shards=3, seed=3)


def collect(stream: RecordStream) -> list[dict[str, torch.Tensor]]:
    return list(make_loader(stream))


def png_bytes(image: Image.Image, image_format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def known_record(width: int = 200, height: int = 100) -> Record:
    """An image with a red box at (50, 25)-(150, 75) on grey, plus a too-small and a too-large region."""
    image = Image.new("RGB", (width, height), (128, 128, 128))
    image.paste((255, 0, 0), (50, 25, 150, 75))
    regions = [
        Region(bbox=(50.0, 25.0, 150.0, 75.0), category="ship", category_id=1, source_category="ship", caption="a red ship", visible_fraction=1.0),
        Region(bbox=(0.0, 0.0, 4.0, 4.0), category="car", category_id=2, source_category="car", caption="", visible_fraction=1.0),
        Region(bbox=(0.0, 0.0, 200.0, 100.0), category="harbor", category_id=3, source_category="harbor", caption="", visible_fraction=1.0),
    ]
    return Record(
        image_bytes=png_bytes(image), image_path=None, image_id="known-0", source="synthetic", source_image="known.png",
        source_sha256="0" * 64, tile=Tile(0, 0, width, height), width=width, height=height, gsd=None, split="train",
        license="CC-BY-4.0", regions=regions, short_caption="red box", long_caption="a grey image with a red box",
    )


# Sample order and split ---------------------------------------------------------------------------


def test_epoch_order_seeded():
    rows = [10, 7, 13]
    first = sampling.epoch_order(rows, seed=1, epoch=0, shuffle_blocks=2)
    assert sorted(first.tolist()) == list(range(30))
    assert np.array_equal(first, sampling.epoch_order(rows, seed=1, epoch=0, shuffle_blocks=2))
    assert not np.array_equal(first, sampling.epoch_order(rows, seed=1, epoch=1, shuffle_blocks=2))
    assert not np.array_equal(first, sampling.epoch_order(rows, seed=2, epoch=0, shuffle_blocks=2))


def test_stream_order_changes_per_epoch(shards, settings):
    cfg = DataConfig(path=str(shards), batch_size=5, num_workers=0, max_regions=0)
    stream = RecordStream(cfg, settings, seed=0)
    images = []
    for epoch in (0, 1, 0):
        stream.set_position(epoch)
        images.append(torch.cat([b["image"] for b in collect(stream)]))
    assert torch.equal(images[0], images[2])
    assert not torch.equal(images[0], images[1])


@pytest.mark.parametrize("world_size,workers,batch_size", [(2, 2, 3), (3, 1, 4), (1, 2, 2)])
def test_ranks_workers_partition(shards, settings, world_size, workers, batch_size):
    cfg = DataConfig(path=str(shards), batch_size=batch_size, num_workers=workers, max_regions=0)
    seen, steps = [], []
    for rank in range(world_size):
        stream = RecordStream(cfg, settings, seed=4, rank=rank, world_size=world_size)
        stream.set_position(epoch=2)
        batches = collect(stream)
        steps.append(len(batches))
        for step, batch in enumerate(batches):
            assert batch["index"].tolist() == list(sampling.step_positions(stream.layout, rank, step))
            seen.extend(batch["index"].tolist())

    layout = stream.layout
    order = sampling.epoch_order(stream.block_rows, 4, 2, cfg.shuffle_blocks)
    row_ids = order[seen]
    assert steps == [layout.steps_per_epoch] * world_size
    assert len(set(row_ids.tolist())) == len(row_ids) == layout.rows_per_epoch
    assert 30 - layout.rows_per_epoch < world_size * layout.workers * batch_size


def test_full_partition_covers_every_row(shards, settings):
    cfg = DataConfig(path=str(shards), batch_size=3, num_workers=1, max_regions=0)
    seen = []
    for rank in range(2):
        stream = RecordStream(cfg, settings, seed=0, rank=rank, world_size=2)
        seen += [i for b in collect(stream) for i in b["index"].tolist()]
    order = sampling.epoch_order(stream.block_rows, 0, 0, cfg.shuffle_blocks)
    assert sorted(order[seen].tolist()) == list(range(30))


def test_resume_position_skips_consumed(shards, settings):
    cfg = DataConfig(path=str(shards), batch_size=2, num_workers=2, max_regions=2, min_size=8)
    stream = RecordStream(cfg, settings, seed=5)
    stream.set_position(1, 0)
    full = collect(stream)
    stream.set_position(1, 5)
    tail = collect(stream)
    assert len(tail) == len(full) - 5
    for expected, got in zip(full[5:], tail):
        assert torch.equal(expected["index"], got["index"])
        assert torch.equal(expected["image"], got["image"])
        assert torch.equal(expected["region_images"], got["region_images"])


def test_too_few_rows_error(shards, settings):
    cfg = DataConfig(path=str(shards), batch_size=8, num_workers=2, max_regions=0)
    with pytest.raises(sampling.DataLayoutError, match="data.batch_size or data.num_workers") as error:
        RecordStream(cfg, settings, seed=0, rank=0, world_size=2)
    assert "30 rows" in str(error.value)
    assert "2 ranks x 2 workers x batch size 8" in str(error.value)


def test_missing_split_error(shards, settings):
    cfg = DataConfig(path=str(shards), batch_size=2, num_workers=0)
    with pytest.raises(ValueError, match="no Parquet shards of split 'test'"):
        RecordStream(cfg, settings, seed=0, split="test")


# Views, boxes and regions -----------------------------------------------------------------------------


def test_box_transform_squash():
    rect = views.global_rect(200, 100, "squash")
    assert rect == (0.0, 0.0, 200.0, 100.0)
    assert views.normalise_box((50, 25, 150, 75), rect) == (0.25, 0.25, 0.75, 0.75)


def test_box_transform_center_crop():
    rect = views.global_rect(200, 100, "center_crop")
    assert rect == (50.0, 0.0, 150.0, 100.0)
    assert views.normalise_box((50, 25, 150, 75), rect) == (0.0, 0.25, 1.0, 0.75)
    assert views.normalise_box((0, 10, 100, 60), rect) == (0.0, 0.1, 0.5, 0.6)


@pytest.mark.parametrize("mode", ["squash", "center_crop"])
def test_global_view_matches_box(mode, settings):
    record = known_record()
    row = {"key": "k", "image": record.image_bytes, "captions": {"long_caption": "x"}, "regions": record.to_row()["regions"]}
    cfg = DataConfig(path="unused", global_view=mode, max_regions=4, min_size=8, max_size=140)
    sample = make_sample(row, cfg, settings, np.random.default_rng(0))

    x1, y1, x2, y2 = sample["region_boxes"][0]
    image = sample["image"].astype(int)  # (S, S, 3)
    inside = image[int(y1 * SIZE) + 2 : int(y2 * SIZE) - 2, int(x1 * SIZE) + 2 : int(x2 * SIZE) - 2]
    assert inside.size > 0
    assert (inside[..., 0] > 230).all()
    assert (inside[..., 1] < 25).all()
    outside_rows = np.r_[0 : int(y1 * SIZE) - 2, int(y2 * SIZE) + 2 : SIZE]
    assert (np.abs(image[outside_rows, :, 0] - 128) < 10).all()


def test_region_size_filter():
    regions = [{"bbox": box, "category": "c", "category_id": i} for i, box in enumerate([
        (0, 0, 63, 64),      # area 4032 < 64²
        (0, 0, 64, 64),      # exactly 64²
        (0, 0, 100, 100),
        (0, 0, 1024, 1024),  # exactly 1024²
        (0, 0, 1025, 1024),  # above 1024²
    ])]
    kept = views.select_regions(regions, (0, 0, 2000, 2000), 64, 1024, 10, np.random.default_rng(0))
    assert sorted(r["category_id"] for r in kept) == [1, 2, 3]
    assert len(views.select_regions(regions, (0, 0, 2000, 2000), 64, 1024, 2, np.random.default_rng(0))) == 2


def test_region_crop_and_texts(settings):
    record = known_record()
    row = {"key": "k", "image": record.image_bytes, "captions": {"long_caption": "x"}, "regions": record.to_row()["regions"]}
    cfg = DataConfig(path="unused", max_regions=4, min_size=8, max_size=140)
    sample = make_sample(row, cfg, settings, np.random.default_rng(0))
    assert sample["region_texts"] == ["a satellite image of ship"]
    assert sample["region_labels"] == [1]
    crop = sample["region_images"][0].astype(int)
    assert (crop[..., 0] > 230).all()
    assert (crop[..., 1] < 25).all()

    by_caption = make_sample(row, DataConfig(path="unused", min_size=8, max_size=140, region_text="caption"), settings, np.random.default_rng(0))
    assert by_caption["region_texts"] == ["a red ship"]
    assert by_caption["region_labels"] == [-1]


def test_region_order_changes_per_epoch():
    regions = [{"bbox": (0, 0, 100, 100), "category": "c", "category_id": i} for i in range(8)]
    orders = [
        [r["category_id"] for r in views.select_regions(regions, (0, 0, 200, 200), 64, 1024, 4, np.random.default_rng([0, epoch, 7]))]
        for epoch in (0, 1, 0)
    ]
    assert orders[0] == orders[2]
    assert orders[0] != orders[1]


def test_stage2_batch_shapes_and_masks(tmp_path, settings):
    root = write_dataset(tmp_path / "ds", records={"train": [known_record() for _ in range(4)]})
    cfg = DataConfig(path=str(root), batch_size=2, num_workers=0, max_regions=3, min_size=8, max_size=140)
    batches = collect(RecordStream(cfg, settings, seed=0))
    assert len(batches) == 2
    batch = batches[0]
    context = batch["caption_tokens"].shape[1]
    assert batch["image"].shape == (2, 3, SIZE, SIZE)
    assert batch["region_images"].shape == (2, 3, 3, SIZE, SIZE)
    assert batch["region_tokens"].shape == (2, 3, context)
    assert batch["region_boxes"].shape == (2, 3, 4)
    assert batch["region_valid"].tolist() == [[True, False, False]] * 2
    assert batch["region_labels"].tolist() == [[1, -1, -1]] * 2
    assert torch.allclose(batch["region_boxes"][:, 0], torch.tensor([0.25, 0.25, 0.75, 0.75]))
    assert (batch["region_images"][:, 1:] == 0).all()
    assert (batch["region_tokens"][:, 1:] == 0).all()
    assert (batch["region_tokens"][:, 0] != 0).any(dim=-1).all()
    red = (1.0 - MEAN[0]) / STD[0]
    # The border pixels blend with the grey outside the box (the resampling filter reaches past it).
    interior = batch["region_images"][:, 0, 0, 2:-2, 2:-2]
    assert torch.allclose(interior, torch.full_like(interior, red), atol=0.05)


def test_caption_field_option(tmp_path, settings):
    record = known_record()
    root = write_dataset(tmp_path / "ds", records={"train": [record]})
    tokenizer = settings.tokenize
    for field, text in (("long_caption", record.long_caption), ("short_caption", record.short_caption)):
        cfg = DataConfig(path=str(root), batch_size=1, num_workers=0, max_regions=0, caption_field=field)
        batch = collect(RecordStream(cfg, settings, seed=0))[0]
        assert torch.equal(batch["caption_tokens"], tokenizer([text]))


def test_local_views_grid():
    boxes = views.local_boxes((0, 0, 200, 100), 4, "grid", (0.3, 0.7), (0.75, 4 / 3), np.random.default_rng(0))
    assert boxes == [(0, 0, 100, 50), (100, 0, 200, 50), (0, 50, 100, 100), (100, 50, 200, 100)]


def test_local_views_random_ranges():
    rng = np.random.default_rng(0)
    rect = (50.0, 0.0, 150.0, 100.0)
    for box in views.local_boxes(rect, 200, "random", (0.3, 0.7), (0.75, 4 / 3), rng):
        width, height = box[2] - box[0], box[3] - box[1]
        assert 0.3 * 10000 - 1e-6 <= width * height <= 0.7 * 10000 + 1e-6
        assert 0.75 - 1e-9 <= width / height <= 4 / 3 + 1e-9
        assert rect[0] <= box[0] and box[2] <= rect[2]
        assert rect[1] <= box[1] and box[3] <= rect[3]


def test_jpeg_draft_keeps_view_size():
    image = Image.new("RGB", (800, 600), (10, 200, 30))
    opened = views.open_image(png_bytes(image, "JPEG"))
    decoded = views.decode(opened, 600, SIZE)
    assert decoded.image.size[0] < 800
    assert views.render(decoded, (0, 0, 800, 600), SIZE).shape == (SIZE, SIZE, 3)


# WebDataset tar shards ----------------------------------------------------------------------------------


def test_webdataset_tars(tmp_path, settings):
    write_tar(tmp_path / "tars" / "shard-000.tar", 9, seed=1)
    write_tar(tmp_path / "tars" / "shard-001.tar", 7, seed=2, image_format="PNG")
    cfg = DataConfig(path=str(tmp_path / "tars"), batch_size=4, num_workers=0, max_regions=0, local_views=3)
    stream = RecordStream(cfg, settings, seed=0)
    assert stream.num_rows == 16
    assert len(stream.reader.files) == 2

    batches = collect(stream)
    assert len(batches) == 4
    batch = batches[0]
    assert batch["local_images"].shape == (4, 3, 3, SIZE, SIZE)
    assert batch["local_boxes"].shape == (4, 3, 4)
    assert batch["local_valid"].all()
    assert ((batch["local_boxes"] >= 0) & (batch["local_boxes"] <= 1)).all()
    assert (batch["caption_tokens"][:, 1] != 0).all()
    assert "region_images" not in batch


def test_parquet_stage1_local_views(shards, settings):
    cfg = DataConfig(path=str(shards), batch_size=5, num_workers=0, max_regions=0, local_views=4, local_mode="grid")
    batch = collect(RecordStream(cfg, settings, seed=0))[0]
    assert batch["local_images"].shape == (5, 4, 3, SIZE, SIZE)
    expected = torch.tensor([[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5], [0, 0.5, 0.5, 1], [0.5, 0.5, 1, 1]])
    assert torch.allclose(batch["local_boxes"][0], expected)


def test_find_files_joins_splits(tmp_path):
    from farslip.data import ShardError, find_files

    root = write_dataset(tmp_path / "ds", {"train": 2, "trainval": 1})

    _, files, _ = find_files(str(root), "train+trainval", "auto")
    assert [Path(f).name for f in files] == ["train-00000-of-00001.parquet", "trainval-00000-of-00001.parquet"]
    with pytest.raises(ShardError, match="'test'"):
        find_files(str(root), "train+test", "auto")
