"""TIFF files that Pillow cannot read faithfully, read with tifffile.

Pillow (checked with 13.0) cannot open multi-band 16-bit TIFFs, and it opens 3-band 16-bit TIFFs as
8-bit RGB by keeping only the high byte, which leaves 10- or 12-bit satellite data nearly black.
`mgrs.imaging` hands such files to this module: a TIFF whose first page has more than one sample per
pixel and samples wider than 8 bits, or a sample count other than 1, 3 or 4.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
PILLOW_SAMPLE_COUNTS = (1, 3, 4)


def _first_page_layout(path: Path) -> tuple[tuple[int, int], int, np.dtype] | None:
    """Return ((width, height), samples per pixel, dtype) of the first page, or None when not a TIFF."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages.first
            return (int(page.imagewidth), int(page.imagelength)), int(page.samplesperpixel), np.dtype(page.dtype)
    except (tifffile.TiffFileError, OSError, ValueError, TypeError, IndexError):
        return None


def needs_tifffile(path: Path) -> bool:
    """Whether `path` is a TIFF that must be read with tifffile instead of Pillow."""
    if path.suffix.lower() not in TIFF_SUFFIXES or not path.is_file():
        return False
    layout = _first_page_layout(path)
    if layout is None:
        return False
    _, samples, dtype = layout
    return (samples > 1 and dtype.itemsize > 1) or samples not in PILLOW_SAMPLE_COUNTS


def tiff_size(path: Path) -> tuple[int, int]:
    """Return (width, height) of the first page; raise ValueError when the file is not a readable TIFF."""
    layout = _first_page_layout(path)
    if layout is None:
        raise ValueError(f"{path.name} is not a readable TIFF")
    return layout[0]


def read_tiff_bands(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read the first page as an (H, W) or (H, W, 3) array and describe what was kept.

    With three or more bands the first three are kept as red, green and blue; with two, the first is
    kept as grey.
    """
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages.first
        values = page.asarray()
        axes = page.axes
    facts: dict[str, Any] = {"tiff_reader": "tifffile", "dtype": str(values.dtype)}
    if values.ndim == 3:
        # Interleaved pages have axes "YXS", (H, W, C); planar ones "SYX", (C, H, W).
        if axes.startswith("S"):
            values = np.moveaxis(values, 0, -1)
        bands = values.shape[-1]
        facts["bands"] = bands
        # NOTE: TIFFs do not record which band is red. The first three bands are taken as red, green
        # and blue, which is wrong for files that store blue first.
        values = values[..., :3] if bands >= 3 else values[..., 0]
        facts["bands_used"] = [0, 1, 2] if bands >= 3 else [0]
    return values, facts


def read_size_with_tifffile(path: Path, max_pixels: int) -> tuple[int, int]:
    """Return (width, height), raising `ImageReadError` like `mgrs.imaging.read_size`."""
    from mgrs.imaging import ImageReadError

    try:
        width, height = tiff_size(path)
    except ValueError as error:
        raise ImageReadError("unreadable_image", f"cannot open {path.name}: {error}") from error
    if width * height > max_pixels:
        raise ImageReadError(
            "image_too_large",
            f"{path.name} has {width}x{height} = {width * height} pixels, above the limit of {max_pixels}; "
            "raise max_pixels in the recipe to read it",
        )
    return width, height


def load_rgb_with_tifffile(path: Path, max_pixels: int):
    """Decode a TIFF with tifffile into a `mgrs.imaging.LoadedImage`, stretching wide samples to 8 bit."""
    from PIL import Image

    from mgrs.imaging import STRETCH_PERCENTILES, ImageReadError, LoadedImage, _stretch_to_8bit

    read_size_with_tifffile(path, max_pixels)
    try:
        values, facts = read_tiff_bands(path)
    except (OSError, ValueError) as error:
        raise ImageReadError("unreadable_image", f"cannot decode {path.name}: {error}") from error

    original_mode = f"{values.dtype}x{facts.get('bands', 1)}"
    if values.dtype == np.uint8:
        rgb = Image.fromarray(values).convert("RGB")
    else:
        rgb, low, high = _stretch_to_8bit(values)
        facts["stretch"] = {"from_mode": original_mode, "percentiles": list(STRETCH_PERCENTILES), "low": low, "high": high}
    facts["converted_from"] = original_mode
    return LoadedImage(rgb, "TIFF", original_mode, converted=True, facts=facts)
