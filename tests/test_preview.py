from dataclasses import replace

import pytest
from conftest_shards import make_records, uniform_image, write_dataset
from PIL import Image, ImageFont

from mgrs.preview import (
    CAPTION_LINES,
    LINE_HEIGHT,
    PADDING,
    PALETTE,
    category_colours,
    wrap_text,
    write_preview,
)
from mgrs.schema import Region

GREY = (128, 128, 128)


def ship(bbox, polygon=None) -> Region:
    return Region(bbox=bbox, category="ship", category_id=1, source_category="ship",
                  caption="a satellite image of ship", visible_fraction=1.0, polygon=polygon)


def one_record_dataset(tmp_path, width, height, regions, caption="A grey test scene."):
    record = make_records({"train": 1}, seed=0)["train"][0]
    record = replace(record, width=width, height=height, image_bytes=uniform_image(width, height, GREY),
                     regions=regions, short_caption=caption)
    return write_dataset(tmp_path / "ds", records={"train": [record]})


def test_sheet_size(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 7, "validation": 3}, seed=1, shards_per_split=2, row_group_size=2)

    out = write_preview(root, tmp_path / "sheet.png", count=6, columns=4, thumb_size=100)

    cell_width = 100 + 2 * PADDING
    cell_height = 100 + 3 * PADDING + CAPTION_LINES * LINE_HEIGHT
    with Image.open(out) as sheet:
        assert sheet.size == (4 * cell_width, 2 * cell_height)


def test_count_larger_than_dataset(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 3}, seed=1)

    out = write_preview(root, tmp_path / "sheet.png", count=16, columns=4, thumb_size=64)

    with Image.open(out) as sheet:
        assert sheet.size == (3 * (64 + 2 * PADDING), 64 + 3 * PADDING + CAPTION_LINES * LINE_HEIGHT)


def test_box_edge_has_category_colour(tmp_path):
    root = one_record_dataset(tmp_path, 100, 100, [ship((20, 30, 80, 90))])
    colour = category_colours(["ship"])["ship"]

    out = write_preview(root, tmp_path / "sheet.png", count=1, thumb_size=100)

    with Image.open(out) as sheet:
        assert sheet.getpixel((PADDING + 20, PADDING + 60)) == colour  # left edge
        assert sheet.getpixel((PADDING + 79, PADDING + 60)) == colour  # right edge, drawn inward
        assert sheet.getpixel((PADDING + 50, PADDING + 89)) == colour  # bottom edge
        assert sheet.getpixel((PADDING + 50, PADDING + 60)) == GREY  # inside the box
        assert sheet.getpixel((PADDING + 10, PADDING + 95)) == GREY  # outside the box


def test_box_scaled_with_thumbnail(tmp_path):
    root = one_record_dataset(tmp_path, 400, 200, [ship((40, 100, 200, 180))])
    colour = category_colours(["ship"])["ship"]

    out = write_preview(root, tmp_path / "sheet.png", count=1, thumb_size=100)

    # Scale 0.25: the box becomes (10, 25, 50, 45) in a 100 x 50 thumbnail.
    with Image.open(out) as sheet:
        assert sheet.getpixel((PADDING + 10, PADDING + 38)) == colour
        assert sheet.getpixel((PADDING + 30, PADDING + 44)) == colour
        assert sheet.getpixel((PADDING + 30, PADDING + 35)) == GREY
        assert sheet.getpixel((PADDING + 60, PADDING + 38)) == GREY
        assert sheet.getpixel((PADDING + 30, PADDING + 60)) == (255, 255, 255)  # below the thumbnail


def test_polygon_drawn_instead_of_box(tmp_path):
    diamond = [50, 10, 90, 50, 50, 90, 10, 50]
    root = one_record_dataset(tmp_path, 100, 100, [ship((10, 10, 90, 90), polygon=diamond)])
    colour = category_colours(["ship"])["ship"]

    out = write_preview(root, tmp_path / "sheet.png", count=1, thumb_size=100)

    with Image.open(out) as sheet:
        assert sheet.getpixel((PADDING + 70, PADDING + 70)) == colour  # on the lower-right side
        assert sheet.getpixel((PADDING + 89, PADDING + 89)) == GREY  # box corner, not drawn


def test_categories_get_distinct_colours():
    colours = category_colours(["ship", "plane", "ship", "harbor"])

    assert colours == {"harbor": PALETTE[0], "plane": PALETTE[1], "ship": PALETTE[2]}


def test_seeded_sample_is_reproducible(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 12}, seed=4, shards_per_split=3, row_group_size=2)

    first = write_preview(root, tmp_path / "a.png", count=4, seed=3, thumb_size=48)
    second = write_preview(root, tmp_path / "b.png", count=4, seed=3, thumb_size=48)
    other = write_preview(root, tmp_path / "c.png", count=4, seed=None, thumb_size=48)

    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_split_filter(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 5, "test": 2}, seed=4)

    out = write_preview(root, tmp_path / "sheet.png", count=16, columns=8, thumb_size=32, split="test")

    with Image.open(out) as sheet:
        assert sheet.width == 2 * (32 + 2 * PADDING)


def test_undecodable_image_gets_placeholder(tmp_path):
    record = make_records({"train": 1}, seed=0)["train"][0]
    record = replace(record, image_bytes=b"not an image")
    root = write_dataset(tmp_path / "ds", records={"train": [record]})

    out = write_preview(root, tmp_path / "sheet.png", count=1, thumb_size=64)

    assert out.exists()


def test_missing_shards(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Parquet shards"):
        write_preview(tmp_path, tmp_path / "sheet.png")


def test_invalid_count(tmp_path):
    with pytest.raises(ValueError, match="count must be at least 1"):
        write_preview(tmp_path, tmp_path / "sheet.png", count=0)


def test_wrap_text_limits_lines_and_width():
    font = ImageFont.load_default(size=12)
    text = " ".join(["harbour"] * 40) + " " + "x" * 200

    lines = wrap_text(text, 100, font, max_lines=3)

    assert len(lines) == 3
    assert lines[-1].endswith("…")
    assert all(font.getlength(line) <= 100 for line in lines)


def test_wrap_text_cuts_single_long_word():
    font = ImageFont.load_default(size=12)

    lines = wrap_text("x" * 200, 50, font)

    assert len(lines) == 1
    assert lines[0].endswith("…")
    assert font.getlength(lines[0]) <= 50
