"""Image reading and encoding: every stored image is 8-bit RGB.

Pillow's decompression-bomb limit is a global; this module never raises it. Each open checks the
pixel count against the caller's `max_pixels` instead, so tests can lower the limit per call.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from mgrs.tiff import load_rgb_with_tifffile, needs_tifffile, read_size_with_tifffile
from mgrs.windowed import STRETCH_PERCENTILES, WindowedReadError, WindowedScene, probe

DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
# What happens to an image above `max_pixels`: read it tile by tile (`tile`) or skip it (`skip`).
HUGE_MODES = ("tile", "skip")
# Pixel limit of `read_header_size`, which reads sizes only.
NO_PIXEL_LIMIT = 2**62
KEEP_FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}


class ImageReadError(Exception):
    """An image that cannot be used; `reason` is the skip reason of the build report."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass
class LoadedImage:
    """A decoded 8-bit RGB image and what was done to get it."""

    image: Image.Image
    format: str | None
    original_mode: str
    converted: bool
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def crop(self, window: tuple[int, int, int, int]) -> Image.Image:
        """Return the window (x, y, width, height); the image itself when the window covers all of it."""
        x, y, width, height = window
        if (x, y, width, height) == (0, 0, *self.image.size):
            return self.image
        return self.image.crop((x, y, x + width, y + height))

    def close(self) -> None:
        """Release nothing; present so that callers treat it like `WindowedScene`."""


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_size(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, huge: str = "skip") -> tuple[int, int]:
    """Return (width, height) from the image header without decoding the pixels.

    An image above `max_pixels` raises `ImageReadError("image_too_large")` unless `huge` is `tile`
    and the file can be read in windows (PNG, TIFF, BMP; see `mgrs.windowed`).
    """
    try:
        if needs_tifffile(path):
            return read_size_with_tifffile(path, max_pixels)
        with _open(path, max_pixels) as image:
            return image.size
    except ImageReadError as error:
        if error.reason != "image_too_large" or huge != "tile":
            raise
    try:
        width, height, _ = probe(path)
    except WindowedReadError as error:
        raise ImageReadError(error.reason, str(error)) from error
    return width, height


def read_header_size(path: Path) -> tuple[int, int]:
    """Return (width, height) from the header whatever the pixel count; raises `ImageReadError`."""
    return read_size(path, NO_PIXEL_LIMIT, huge="tile")


def load_scene(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, huge: str = "skip") -> LoadedImage | WindowedScene:
    """Decode an image whole with `load_rgb`, or open it for windowed reading when it is above `max_pixels` and `huge` is `tile`.

    Both results have `size`, `crop(window)`, `close()`, `format`, `original_mode`, `converted` and `facts`.
    """
    try:
        return load_rgb(path, max_pixels)
    except ImageReadError as error:
        if error.reason != "image_too_large" or huge != "tile":
            raise
    try:
        return WindowedScene(path)
    except WindowedReadError as error:
        raise ImageReadError(error.reason, str(error)) from error


def load_rgb(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode an image fully and convert it to 8-bit RGB.

    Grayscale and palette images are expanded, the alpha channel of RGBA images is dropped, and
    16-bit or float images are stretched linearly between the 2nd and 98th percentiles; `facts`
    records each conversion. EXIF orientation is recorded but not applied, because remote-sensing
    annotations refer to the stored pixels. Raises `ImageReadError` for unreadable or truncated files.
    TIFFs that Pillow misreads (multi-band with 16-bit samples) are read with tifffile.
    """
    if needs_tifffile(path):
        return load_rgb_with_tifffile(path, max_pixels)
    with _open(path, max_pixels) as image:
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageReadError("unreadable_image", f"cannot decode {path.name}: {error}") from error

        facts: dict[str, Any] = {}
        orientation = image.getexif().get(0x0112)
        if orientation is not None and orientation != 1:
            facts["exif_orientation"] = int(orientation)
        original_mode = image.mode
        image_format = image.format

        if image.mode == "RGB":
            rgb = image.copy()
        elif image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            rgb, low, high = _stretch_to_8bit(np.asarray(image))
            facts["stretch"] = {"from_mode": original_mode, "percentiles": list(STRETCH_PERCENTILES), "low": low, "high": high}
        else:
            # Palette and grayscale PNGs can mark a transparent colour in `info` in place of an alpha band.
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                facts["dropped_alpha"] = True
            rgb = image.convert("RGB")

    if original_mode != "RGB":
        facts["converted_from"] = original_mode
    return LoadedImage(rgb, image_format, original_mode, converted=original_mode != "RGB", facts=facts)


def keeps_original_bytes(loaded: LoadedImage) -> bool:
    """Return whether the raw file can be stored as it is: 8-bit RGB in PNG, JPEG or WebP."""
    return not loaded.converted and loaded.format in KEEP_FORMATS


def encode(image: Image.Image, encoding: str, jpeg_quality: int = 95) -> bytes:
    """Encode an RGB image as PNG or JPEG bytes, deterministically."""
    buffer = io.BytesIO()
    if encoding == "png":
        image.save(buffer, format="PNG", compress_level=6)
    elif encoding == "jpeg":
        image.save(buffer, format="JPEG", quality=jpeg_quality, subsampling=0)
    elif encoding == "webp":
        image.save(buffer, format="WEBP", quality=jpeg_quality, method=4)
    else:
        raise ValueError(f"unknown image encoding {encoding!r}; use png, jpeg or webp")
    return buffer.getvalue()


def _open(path: Path, max_pixels: int) -> Image.Image:
    if not path.is_file():
        raise ImageReadError("missing_image", f"image file {path.name} not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ImageReadError("image_too_large", f"{path.name}: {error}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError("unreadable_image", f"cannot open {path.name}: {error}") from error

    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageReadError(
            "image_too_large",
            f"{path.name} has {width}x{height} = {width * height} pixels, above the limit of {max_pixels}; "
            "set images.huge: tile in the recipe to read it tile by tile, or raise images.max_pixels",
        )
    return image


def _stretch_to_8bit(values: np.ndarray) -> tuple[Image.Image, float, float]:
    values = values.astype(np.float64)
    if values.ndim == 3:
        flat = values.reshape(-1, values.shape[-1])
    else:
        flat = values.reshape(-1, 1)
    low, high = np.percentile(flat, STRETCH_PERCENTILES)
    scale = 255.0 / (high - low) if high > low else 0.0
    scaled = np.clip((values - low) * scale, 0, 255).round().astype(np.uint8)
    image = Image.fromarray(scaled)
    return image.convert("RGB"), float(low), float(high)


# Truncated files must fail loudly so they are counted, never padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
