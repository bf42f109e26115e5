"""Tests of image decoding to 8-bit RGB, error reasons and encoding in `mgrs.imaging`."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mgrs.imaging import (
    STRETCH_PERCENTILES,
    ImageReadError,
    encode,
    keeps_original_bytes,
    load_rgb,
    read_size,
    sha256_file,
)

WIDTH, HEIGHT = 24, 16


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def rgb_noise(rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), "RGB")


def test_rgb_png_kept(tmp_path, rng):
    original = rgb_noise(rng)
    path = save(original, tmp_path / "scene.png")

    loaded = load_rgb(path)

    assert loaded.image.mode == "RGB"
    assert loaded.format == "PNG"
    assert loaded.original_mode == "RGB"
    assert loaded.converted is False
    assert loaded.facts == {}
    assert keeps_original_bytes(loaded)
    assert np.array_equal(np.asarray(loaded.image), np.asarray(original))


def test_rgb_jpeg_kept(tmp_path, rng):
    path = save(rgb_noise(rng), tmp_path / "scene.jpg", quality=90)

    loaded = load_rgb(path)

    assert loaded.format == "JPEG"
    assert keeps_original_bytes(loaded)


def test_rgb_tiff_not_kept(tmp_path, rng):
    path = save(rgb_noise(rng), tmp_path / "scene.tif")

    loaded = load_rgb(path)

    assert loaded.format == "TIFF"
    assert loaded.converted is False
    assert not keeps_original_bytes(loaded)


def test_grayscale_expanded(tmp_path, rng):
    gray = rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
    path = save(Image.fromarray(gray, "L"), tmp_path / "gray.png")

    loaded = load_rgb(path)
    pixels = np.asarray(loaded.image)

    assert loaded.image.mode == "RGB"
    assert loaded.original_mode == "L"
    assert loaded.converted is True
    assert loaded.facts["converted_from"] == "L"
    assert not keeps_original_bytes(loaded)
    for channel in range(3):
        assert np.array_equal(pixels[..., channel], gray)


def test_rgba_drops_alpha(tmp_path, rng):
    rgba = rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8)
    path = save(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png")

    loaded = load_rgb(path)

    assert loaded.image.mode == "RGB"
    assert loaded.facts["dropped_alpha"] is True
    assert loaded.facts["converted_from"] == "RGBA"
    assert np.array_equal(np.asarray(loaded.image), rgba[..., :3])
    assert not keeps_original_bytes(loaded)


def test_palette_expanded(tmp_path, rng):
    indices = rng.integers(0, 4, (HEIGHT, WIDTH), dtype=np.uint8)
    image = Image.fromarray(indices, "L").convert("P")
    colours = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0]
    image.putpalette(colours + [0] * (768 - len(colours)))
    path = save(image, tmp_path / "palette.png")

    loaded = load_rgb(path)
    pixels = np.asarray(loaded.image)
    palette = np.array(colours, dtype=np.uint8).reshape(-1, 3)

    assert loaded.original_mode == "P"
    assert loaded.image.mode == "RGB"
    assert loaded.facts["converted_from"] == "P"
    assert "dropped_alpha" not in loaded.facts
    assert np.array_equal(pixels, palette[indices])


def test_palette_transparency_recorded(tmp_path):
    image = Image.new("P", (WIDTH, HEIGHT), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    path = save(image, tmp_path / "transparent.png", transparency=0)

    loaded = load_rgb(path)

    assert loaded.image.mode == "RGB"
    assert loaded.facts["dropped_alpha"] is True
    assert loaded.facts["converted_from"] == "P"


def test_16bit_stretched(tmp_path, rng):
    values = rng.integers(1000, 5000, (HEIGHT, WIDTH), dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "deep.png")

    loaded = load_rgb(path)
    pixels = np.asarray(loaded.image)
    low, high = np.percentile(values.astype(np.float64), STRETCH_PERCENTILES)
    stretch = loaded.facts["stretch"]

    assert loaded.original_mode == "I;16"
    assert loaded.image.mode == "RGB"
    assert loaded.converted is True
    assert stretch["from_mode"] == loaded.original_mode
    assert stretch["percentiles"] == [2.0, 98.0]
    assert stretch["low"] == pytest.approx(low)
    assert stretch["high"] == pytest.approx(high)
    assert pixels.dtype == np.uint8
    assert pixels.min() == 0
    assert pixels.max() == 255
    assert np.array_equal(pixels[..., 0], pixels[..., 2])
    assert not keeps_original_bytes(loaded)


def test_16bit_constant_is_black(tmp_path):
    values = np.full((HEIGHT, WIDTH), 3000, dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "flat.png")

    loaded = load_rgb(path)

    assert np.asarray(loaded.image).max() == 0
    assert loaded.facts["stretch"]["low"] == loaded.facts["stretch"]["high"]


def test_float_tiff_stretched(tmp_path, rng):
    values = rng.normal(0.0, 1.0, (HEIGHT, WIDTH)).astype(np.float32)
    path = save(Image.fromarray(values, "F"), tmp_path / "float.tif")

    loaded = load_rgb(path)

    assert loaded.original_mode == "F"
    assert loaded.image.mode == "RGB"
    assert loaded.facts["stretch"]["from_mode"] == "F"


def test_garbage_bytes_unreadable(tmp_path, rng):
    path = tmp_path / "noise.png"
    path.write_bytes(rng.integers(0, 256, 512, dtype=np.uint8).tobytes())

    with pytest.raises(ImageReadError) as caught:
        load_rgb(path)

    assert caught.value.reason == "unreadable_image"
    assert "noise.png" in str(caught.value)


def test_empty_file_unreadable(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")

    with pytest.raises(ImageReadError) as caught:
        read_size(path)

    assert caught.value.reason == "unreadable_image"


def test_truncated_png_unreadable(tmp_path, rng):
    full = io.BytesIO()
    rgb_noise(rng).save(full, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(full.getvalue()[: len(full.getvalue()) // 2])

    # The header is intact, so the size can still be read.
    assert read_size(path) == (WIDTH, HEIGHT)
    with pytest.raises(ImageReadError) as caught:
        load_rgb(path)

    assert caught.value.reason == "unreadable_image"


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError) as caught:
        load_rgb(tmp_path / "absent.png")

    assert caught.value.reason == "missing_image"


def test_directory_is_missing_image(tmp_path):
    folder = tmp_path / "folder.png"
    folder.mkdir()

    with pytest.raises(ImageReadError) as caught:
        read_size(folder)

    assert caught.value.reason == "missing_image"


def test_max_pixels_limit(tmp_path, rng):
    path = save(rgb_noise(rng), tmp_path / "scene.png")
    global_limit = Image.MAX_IMAGE_PIXELS

    with pytest.raises(ImageReadError) as caught:
        load_rgb(path, max_pixels=WIDTH * HEIGHT - 1)

    assert caught.value.reason == "image_too_large"
    assert "max_pixels" in str(caught.value)
    assert Image.MAX_IMAGE_PIXELS == global_limit
    assert load_rgb(path, max_pixels=WIDTH * HEIGHT).image.size == (WIDTH, HEIGHT)


def test_max_pixels_limit_on_read_size(tmp_path, rng):
    path = save(rgb_noise(rng), tmp_path / "scene.png")

    with pytest.raises(ImageReadError) as caught:
        read_size(path, max_pixels=10)

    assert caught.value.reason == "image_too_large"


def test_jpeg_bytes_with_png_name(tmp_path, rng):
    path = tmp_path / "mislabelled.png"
    rgb_noise(rng).save(path, format="JPEG", quality=90)

    loaded = load_rgb(path)

    assert loaded.format == "JPEG"
    assert loaded.image.mode == "RGB"
    assert keeps_original_bytes(loaded)


def test_exif_orientation_recorded_not_applied(tmp_path, rng):
    image = Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(image, tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)

    loaded = load_rgb(path)

    assert loaded.facts["exif_orientation"] == 6
    assert loaded.image.size == (WIDTH, HEIGHT)
    assert loaded.converted is False


def test_exif_orientation_one_not_recorded(tmp_path, rng):
    exif = Image.Exif()
    exif[0x0112] = 1
    path = save(rgb_noise(rng), tmp_path / "upright.jpg", exif=exif.tobytes())

    loaded = load_rgb(path)

    assert "exif_orientation" not in loaded.facts


@pytest.mark.parametrize("encoding", ["png", "jpeg", "webp"])
def test_encode_deterministic(rng, encoding):
    image = rgb_noise(rng)

    first = encode(image, encoding)
    second = encode(image, encoding)

    assert first == second
    assert Image.open(io.BytesIO(first)).size == (WIDTH, HEIGHT)


def test_encode_png_lossless(rng):
    image = rgb_noise(rng)

    decoded = Image.open(io.BytesIO(encode(image, "png")))

    assert decoded.format == "PNG"
    assert np.array_equal(np.asarray(decoded), np.asarray(image))


def test_encode_unknown():
    with pytest.raises(ValueError) as caught:
        encode(Image.new("RGB", (2, 2)), "gif")

    assert "gif" in str(caught.value)


def test_sha256_file(tmp_path):
    path = tmp_path / "bytes.bin"
    path.write_bytes(b"abc")

    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_file(path, chunk_size=1) == sha256_file(path)
