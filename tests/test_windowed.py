"""Windowed reading of scenes above the pixel limit: same pixels as a whole decode, bounded memory, build options.

Scenes count as huge here because each call lowers `max_pixels`; no test writes a large image, and
Pillow's global limit is never touched.
"""

from __future__ import annotations

import json
import struct
import tracemalloc
import zlib

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from PIL import Image

from mgrs.build import build
from mgrs.geometry import tile_windows
from mgrs.imaging import ImageReadError, load_rgb, load_scene, read_size
from mgrs.recipe import BuildConfig, ImageConfig, SourceSpec, TilingConfig
from mgrs.windowed import WindowedScene, percentiles_from_histogram

HEIGHT, WIDTH = 150, 97
WINDOWS = [(0, 0, 40, 40), (30, 20, 40, 40), (57, 110, 40, 40), (0, 100, 97, 50), (10, 5, 40, 40)]


def pattern(rng: np.random.Generator) -> np.ndarray:
    smooth = (np.add.outer(np.arange(HEIGHT), np.arange(WIDTH)) % 256).astype(np.uint8)
    return np.stack([smooth, smooth[::-1], rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)], axis=-1)


def write_cases(folder, rng) -> list:
    rgb = pattern(rng)
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(rgb).convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(rgb[:, :, 0]).save(folder / "grey.png")
    Image.fromarray(rgb).convert("P").save(folder / "palette.png")
    Image.fromarray(rgb[:, :, 0] > 100).save(folder / "bilevel.png")
    Image.fromarray(rng.integers(0, 4000, (HEIGHT, WIDTH), dtype=np.uint16)).save(folder / "grey16.png")
    Image.fromarray(rgb).save(folder / "rgb.bmp")
    Image.fromarray(rgb).save(folder / "rgb.tif")
    tifffile.imwrite(folder / "bands4.tif", rng.integers(0, 4000, (HEIGHT, WIDTH, 4), dtype=np.uint16), tile=(32, 32), compression="zlib")
    tifffile.imwrite(folder / "rgb16.tif", rng.integers(0, 4000, (HEIGHT, WIDTH, 3), dtype=np.uint16), rowsperstrip=16)
    tifffile.imwrite(folder / "grey16.tif", rng.integers(0, 4000, (HEIGHT, WIDTH), dtype=np.uint16))
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("windowed")
    return folder, write_cases(folder, np.random.default_rng(11))


def test_windows_equal_whole_decode(cases):
    folder, names = cases
    for name in names:
        whole = load_rgb(folder / name)
        scene = load_scene(folder / name, max_pixels=1000, huge="tile")
        assert isinstance(scene, WindowedScene), name
        for x, y, width, height in WINDOWS:
            expected = np.asarray(whole.image.crop((x, y, x + width, y + height)))
            assert np.array_equal(np.asarray(scene.crop((x, y, width, height))), expected), (name, x, y)
        scene.close()


def test_stretch_computed_once_and_equal(cases):
    folder, _ = cases
    for name in ("grey16.png", "bands4.tif", "rgb16.tif", "grey16.tif"):
        whole = load_rgb(folder / name).facts["stretch"]
        windowed = load_scene(folder / name, max_pixels=1000, huge="tile").facts["stretch"]
        assert (windowed["low"], windowed["high"]) == (whole["low"], whole["high"]), name
        assert windowed["method"] == "histogram of every pixel"


def test_histogram_percentiles_match_numpy():
    rng = np.random.default_rng(5)
    for size in (1, 2, 7, 1000, 12345):
        values = rng.integers(0, 300, size)
        counts = np.bincount(values, minlength=300)
        assert percentiles_from_histogram(counts, 0) == tuple(float(v) for v in np.percentile(values, (2.0, 98.0)))


def test_skip_mode_and_unsupported_formats(tmp_path, cases):
    folder, _ = cases
    with pytest.raises(ImageReadError, match="images.huge: tile") as error:
        load_scene(folder / "rgb.png", max_pixels=1000, huge="skip")
    assert error.value.reason == "image_too_large"

    Image.fromarray(pattern(np.random.default_rng(0))).save(tmp_path / "scene.jpg")
    with pytest.raises(ImageReadError, match="neither PNG, TIFF nor BMP"):
        load_scene(tmp_path / "scene.jpg", max_pixels=1000, huge="tile")
    # Pillow cannot write interlaced PNGs, so the header is written by hand; the probe reads no pixel.
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 1)
    chunks = [(b"IHDR", header), (b"IDAT", zlib.compress(b"")), (b"IEND", b"")]
    data = b"\x89PNG\r\n\x1a\n" + b"".join(struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d)) for k, d in chunks)
    (tmp_path / "interlaced.png").write_bytes(data)
    with pytest.raises(ImageReadError, match="interlaced"):
        read_size(tmp_path / "interlaced.png", max_pixels=1000, huge="tile")
    assert read_size(folder / "rgb.png", max_pixels=1000, huge="tile") == (WIDTH, HEIGHT)


def test_global_pixel_limit_untouched(cases):
    folder, _ = cases
    before = Image.MAX_IMAGE_PIXELS
    load_scene(folder / "rgb.png", max_pixels=10, huge="tile").crop((0, 0, 10, 10))
    assert Image.MAX_IMAGE_PIXELS == before


def test_memory_bounded_by_band(tmp_path):
    side = 1600
    ramp = (np.arange(side) % 251).astype(np.uint8)
    array = np.broadcast_to(ramp[None, :, None], (side, side, 3)).copy()
    Image.fromarray(array).save(tmp_path / "scene.png", compress_level=1)
    full_bytes = array.nbytes
    del array

    tracemalloc.start()
    scene = load_scene(tmp_path / "scene.png", max_pixels=100_000, huge="tile")
    for window in tile_windows(side, side, 100, 20):
        scene.crop(window)
    scene.close()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # One band is 100 rows of 1600 RGB pixels (0.48 MB); the reader holds about two bands and a strip.
    assert peak < full_bytes / 3


def write_dota(root, rng) -> None:
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    values = rng.integers(0, 4000, (200, 300), dtype=np.uint16)
    Image.fromarray(values).save(root / "images" / "P0001.png")
    (root / "labelTxt" / "P0001.txt").write_text("10 10 60 10 60 50 10 50 plane 0\n150 120 190 120 190 160 150 160 ship 0\n")


def shard_rows(out) -> dict:
    return {row["image_id"]: row for shard in sorted((out / "data").glob("*.parquet")) for row in pq.read_table(shard).to_pylist()}


def test_build_windowed_equals_whole(tmp_path):
    write_dota(tmp_path / "dota", np.random.default_rng(3))
    sources = [SourceSpec("dota", str(tmp_path / "dota"))]
    tiling = TilingConfig(size=100, overlap=20)
    build(BuildConfig(sources=sources, tiling=tiling), tmp_path / "whole")
    build(BuildConfig(sources=sources, tiling=tiling, images=ImageConfig(max_pixels=20_000)), tmp_path / "tiles")

    whole, tiles = shard_rows(tmp_path / "whole"), shard_rows(tmp_path / "tiles")
    assert sorted(whole) == sorted(tiles)
    assert len(whole) == 12
    for image_id, row in whole.items():
        assert tiles[image_id]["image"]["bytes"] == row["image"]["bytes"], image_id
        assert tiles[image_id]["regions"] == row["regions"], image_id
        stretch = json.loads(tiles[image_id]["extra"])["stretch"]
        assert (stretch["low"], stretch["high"]) == tuple(json.loads(row["extra"])["stretch"][k] for k in ("low", "high"))
        assert json.loads(tiles[image_id]["extra"])["windowed"] is True


def test_build_skip_mode_counts(tmp_path):
    write_dota(tmp_path / "dota", np.random.default_rng(3))
    (tmp_path / "dota" / "images" / "P0002.png").write_bytes((tmp_path / "dota" / "images" / "P0001.png").read_bytes())
    Image.new("RGB", (50, 50)).save(tmp_path / "dota" / "images" / "P0003.png")
    config = BuildConfig(
        sources=[SourceSpec("dota", str(tmp_path / "dota"))],
        tiling=TilingConfig(size=100, overlap=20),
        images=ImageConfig(max_pixels=20_000, huge="skip"),
    )
    result = build(config, tmp_path / "out")
    assert sorted(shard_rows(tmp_path / "out")) == ["dota/P0003"]
    assert "image_too_large" in json.dumps(result.report)
