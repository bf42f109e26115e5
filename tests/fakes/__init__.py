"""Seeded generators of tiny fake datasets in each source's real on-disk layout.

Each `make_<source>(root, seed)` writes its files under `root` and returns a dict that describes what
it wrote, so tests can check exact numbers. The same seed writes the same bytes: images are encoded
with fixed settings and no timestamps, and every random value comes from `numpy.random.default_rng(seed)`.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

PNG_COMPRESS_LEVEL = 6
JPEG_QUALITY = 90


def encode_png(array: np.ndarray) -> bytes:
    """Encode an array as PNG bytes: uint8 (H, W), (H, W, 3) or (H, W, 4), or uint16 (H, W) as 16-bit grey."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def encode_image(array: np.ndarray, suffix: str) -> bytes:
    """Encode an 8-bit array in the format its file suffix names (.png, .jpg, .tif)."""
    if suffix == ".png":
        return encode_png(array)
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    if suffix in (".jpg", ".jpeg"):
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    elif suffix in (".tif", ".tiff"):
        image.save(buffer, format="TIFF")
    else:
        raise ValueError(f"no encoder for suffix {suffix!r}; use .png, .jpg or .tif")
    return buffer.getvalue()


def noise(rng: np.random.Generator, height: int, width: int, channels: int = 3, dtype=np.uint8) -> np.ndarray:
    """Return a random image array of shape (H, W, C), or (H, W) when `channels` is 1."""
    high = np.iinfo(dtype).max
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, high, size=shape, endpoint=True, dtype=dtype)


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def tree_digest(root: Path) -> dict[str, str]:
    """Map every file under `root` (relative POSIX path) to the sha256 of its bytes."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
