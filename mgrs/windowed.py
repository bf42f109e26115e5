"""Windowed reading of scenes above the pixel limit: row bands of PNG, TIFF and BMP files.

A scene above `images.max_pixels` is never decoded whole. Its tiles are read band by band: a band is
the full image width over the rows of one row of tiles, so memory holds about one band
(width x tile height x bytes per pixel) instead of the whole image.

- PNG (non-interlaced): the compressed pixel stream is inflated with `zlib` as far as a band needs.
  Pillow then removes the PNG row filters of each strip of rows, from a small PNG that this module
  assembles in memory: the strip's filtered rows, preceded by the last row of the strip before
  (written with filter type 0), because the row filters refer to the previous row. The strip PNG is
  decoded in an 8-bit mode with the same bytes per pixel (L, LA, RGB or RGBA), so Pillow returns the
  raw bytes, which are then read in the file's own bit depth and colour type. Bands must come in
  increasing row order, or the stream starts again from the top. Interlaced PNGs and 16-bit colour
  PNGs cannot be read this way.
- TIFF (tifffile): an uncompressed contiguous file is memory-mapped; otherwise only the strips or
  tiles that overlap a band are read and decoded.
- BMP: uncompressed 24- and 32-bit files are memory-mapped.

Pixels are turned into 8-bit RGB as `mgrs.imaging.load_rgb` does for whole images. Values of more
than 8 bits are stretched between the 2nd and 98th percentiles of the whole scene, computed once per
scene. For 8- and 16-bit integers a first pass over all rows builds a histogram, which gives exactly
the percentiles `numpy.percentile` computes on the whole image; other types use every n-th row.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

# Percentiles of the linear stretch that maps values of more than 8 bits to 8 bit.
STRETCH_PERCENTILES = (2.0, 98.0)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
BMP_SIGNATURE = b"BM"
# Rows per strip PNG: small enough to keep the strip's raw copy small, large enough to keep Pillow calls few.
PNG_STRIP_ROWS = 16
READ_CHUNK_BYTES = 1 << 20
# Rows read per step of the histogram pass, and the number of values the row sample of other types aims at.
STATS_BAND_ROWS = 256
SAMPLE_VALUES = 20_000_000
# Channels of each PNG colour type, and the 8-bit colour type with a given number of bytes per pixel.
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
PNG_BYTE_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}


class WindowedReadError(Exception):
    """A scene that cannot be read in windows; `reason` is the skip reason of the build report."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def probe(path: Path) -> tuple[int, int, str]:
    """Return (width, height, kind) from the file header, kind being png, tiff or bmp.

    Raises WindowedReadError when the file is of another format or its layout cannot be read in windows.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as error:
        raise WindowedReadError("unreadable_image", f"cannot read {path.name}: {error}") from error
    if head.startswith(PNG_SIGNATURE):
        header = _png_header(path)
        return header["width"], header["height"], "png"
    if head[:4] in TIFF_SIGNATURES:
        reader = _TiffRows(path)
        try:
            return reader.width, reader.height, "tiff"
        finally:
            reader.close()
    if head.startswith(BMP_SIGNATURE):
        header = _bmp_header(path)
        return header["width"], header["height"], "bmp"
    raise WindowedReadError(
        "image_too_large",
        f"{path.name} is neither PNG, TIFF nor BMP, so it cannot be read in windows; convert it to TIFF, "
        "or set images.huge: skip",
    )


class WindowedScene:
    """A scene read band by band; `crop` returns 8-bit RGB tiles like `LoadedImage.crop` does."""

    def __init__(self, path: Path):
        self.path = path
        width, height, kind = probe(path)
        self.size = (width, height)
        self.kind = kind
        self.format = kind.upper()
        self.converted = True
        self._rows = {"png": _PngRows, "tiff": _TiffRows, "bmp": _BmpRows}[kind](path)
        self.original_mode = self._rows.mode
        self.facts: dict[str, Any] = {"windowed": True, "converted_from": self._rows.mode}
        self._band: tuple[int, int, np.ndarray] | None = None
        self._stretch: tuple[float, float] | None = None
        self._prepare_conversion()

    def crop(self, window: tuple[int, int, int, int]) -> Image.Image:
        """Return the window (x, y, width, height) as an 8-bit RGB image."""
        x, y, width, height = window
        if self._band is None or not (self._band[0] <= y and y + height <= self._band[1]):
            self._band = None  # frees the previous band before the next one is read
            self._band = (y, y + height, self._rows.read_rows(y, y + height))
        top = y - self._band[0]
        values = self._band[2][top : top + height, x : x + width]
        return self._to_rgb(values)

    def close(self) -> None:
        self._band = None
        self._rows.close()

    def _prepare_conversion(self) -> None:
        rows = self._rows
        if self.kind == "tiff":
            self.facts.update(tiff_reader="tifffile", dtype=rows.dtype.name)
        if rows.band_count > 3 or (rows.band_count == 2 and not rows.alpha):
            # The same keys as whole TIFFs read by `mgrs.tiff`; bands count from 0.
            self.facts["bands"] = rows.samples
            self.facts["bands_used"] = [0, 1, 2] if rows.band_count >= 3 else [0]
        if rows.alpha:
            self.facts["dropped_alpha"] = True
        if rows.dtype != np.uint8:
            low, high, method = scene_percentiles(rows)
            self._stretch = (low, high)
            self.facts["stretch"] = {"from_mode": rows.mode, "percentiles": list(STRETCH_PERCENTILES), "low": low, "high": high, "method": method}

    def _to_rgb(self, values: np.ndarray) -> Image.Image:
        values = _colour_bands(values, self._rows)
        if self._stretch is not None:
            values = stretch(values, *self._stretch)
        if values.ndim == 2:
            values = np.repeat(values[:, :, None], 3, axis=2)
        return Image.fromarray(np.ascontiguousarray(values), "RGB")


def stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map values linearly from [low, high] to 0..255, clipping outside; the formula `load_rgb` uses."""
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip((values.astype(np.float64) - low) * scale, 0, 255).round().astype(np.uint8)


def percentiles_from_histogram(counts: np.ndarray, offset: int) -> tuple[float, float]:
    """Return the 2nd and 98th percentiles of the values counted in `counts` (value = index + offset).

    Uses the same virtual index, (n - 1) * q, and the same interpolation as numpy's default `linear`
    method (numpy 2.x), so the result equals `numpy.percentile` over the values themselves.
    """
    total = int(counts.sum())
    cumulative = np.cumsum(counts)
    results = []
    for percentile in STRETCH_PERCENTILES:
        quantile = np.true_divide(percentile, 100)
        virtual = (total - 1) * quantile
        below = int(np.floor(virtual))
        gamma = virtual - below
        below = min(max(below, 0), total - 1)
        above = min(below + 1, total - 1)
        a = float(np.searchsorted(cumulative, below, side="right") + offset)
        b = float(np.searchsorted(cumulative, above, side="right") + offset)
        difference = b - a
        value = b - difference * (1 - gamma) if gamma >= 0.5 else a + difference * gamma
        results.append(float(value))
    return results[0], results[1]


def scene_percentiles(rows: Any) -> tuple[float, float, str]:
    """Return (low, high, method) of the stretch of a whole scene, reading it band by band once."""
    bands = _used_band_count(rows)
    if rows.dtype in (np.uint16, np.int16, np.uint8, np.int8):
        offset = int(np.iinfo(rows.dtype).min)
        counts = np.zeros(int(np.iinfo(rows.dtype).max) - offset + 1, dtype=np.int64)
        for y in range(0, rows.height, STATS_BAND_ROWS):
            values = _select_bands(rows.read_rows(y, min(y + STATS_BAND_ROWS, rows.height)), bands)
            counts += np.bincount((values.astype(np.int64) - offset).ravel(), minlength=counts.size)
        low, high = percentiles_from_histogram(counts, offset)
        return low, high, "histogram of every pixel"

    step = max(1, int(rows.width * rows.height * bands // SAMPLE_VALUES))
    sample = [_select_bands(rows.read_rows(y, y + 1), bands).astype(np.float64).ravel() for y in range(0, rows.height, step)]
    low, high = np.percentile(np.concatenate(sample), STRETCH_PERCENTILES)
    return float(low), float(high), f"every {step}th row"


def _used_band_count(rows: Any) -> int:
    if rows.band_count >= 3:
        return 3
    return 1


def _select_bands(values: np.ndarray, bands: int) -> np.ndarray:
    return values[..., :bands] if values.ndim == 3 else values


def _colour_bands(values: np.ndarray, rows: Any) -> np.ndarray:
    """Keep the colour bands: the first three of three or more, else the first (alpha and extra bands dropped)."""
    if rows.palette is not None:
        return rows.palette[values[..., 0] if values.ndim == 3 else values]
    if values.ndim == 2:
        return values
    return values[..., :3] if values.shape[2] >= 3 else values[..., 0]


# PNG


def _png_chunks(handle: BinaryIO):
    """Yield (type, data offset, length) of each chunk after the signature."""
    handle.seek(len(PNG_SIGNATURE))
    while True:
        head = handle.read(8)
        if len(head) < 8:
            return
        length, kind = struct.unpack(">I4s", head)
        offset = handle.tell()
        yield kind, offset, length
        handle.seek(offset + length + 4)
        if kind == b"IEND":
            return


def _png_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        chunks = list(_png_chunks(handle))
        if not chunks or chunks[0][0] != b"IHDR":
            raise WindowedReadError("unreadable_image", f"{path.name}: PNG without an IHDR chunk")
        header: dict[str, Any] = {"idat": [], "palette": None, "transparency": False}
        for kind, offset, length in chunks:
            handle.seek(offset)
            if kind == b"IHDR":
                width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", handle.read(13))
                header.update(width=width, height=height, depth=depth, colour=colour, interlace=interlace)
            elif kind == b"PLTE":
                header["palette"] = np.frombuffer(handle.read(length), dtype=np.uint8).reshape(-1, 3)
            elif kind == b"tRNS":
                header["transparency"] = True
            elif kind == b"IDAT":
                header["idat"].append((offset, length))
    if header.get("colour") not in PNG_CHANNELS:
        raise WindowedReadError("unreadable_image", f"{path.name}: PNG colour type {header.get('colour')} is not valid")
    if header["interlace"]:
        raise WindowedReadError("image_too_large", f"{path.name} is an interlaced PNG, which cannot be read in windows; re-save it without interlacing, or set images.huge: skip")
    bits = PNG_CHANNELS[header["colour"]] * header["depth"]
    if bits > 32:
        raise WindowedReadError("image_too_large", f"{path.name} is a 16-bit colour PNG, which cannot be read in windows; convert it to TIFF, or set images.huge: skip")
    return header


class _PngRows:
    """Rows of a non-interlaced PNG, inflated in order; reading rows above the last band starts again."""

    def __init__(self, path: Path):
        self.path = path
        header = _png_header(path)
        self.width, self.height = header["width"], header["height"]
        self.depth, self.colour = header["depth"], header["colour"]
        channels = PNG_CHANNELS[self.colour]
        self.row_bytes = (self.width * channels * self.depth + 7) // 8
        self.pixel_bytes = max(1, channels * self.depth // 8)
        self.idat = header["idat"]
        self.samples = channels
        self.band_count = 3 if self.colour in (2, 3, 6) else 1
        self.alpha = self.colour in (4, 6) or header["transparency"]
        self.palette = None
        if self.colour == 3 and header["palette"] is not None:
            # Indices beyond a short palette show black, as Pillow does.
            self.palette = np.zeros((256, 3), dtype=np.uint8)
            self.palette[: len(header["palette"])] = header["palette"][:256]
        self.dtype = np.dtype(np.uint16) if self.depth == 16 else np.dtype(np.uint8)
        self.mode = "I;16" if (self.colour, self.depth) == (0, 16) else {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}[self.colour] + (";16" if self.depth == 16 else "")
        self._handle = open(path, "rb")
        self._restart()

    def close(self) -> None:
        self._handle.close()

    def _restart(self) -> None:
        self._inflater = zlib.decompressobj()
        self._chunk = 0
        self._pending = bytearray()
        self._next_row = 0
        self._previous = bytes(self.row_bytes)
        self._rows: list[np.ndarray] = []  # decoded strips, each (rows, width[, channels])
        self._first_kept = 0

    def read_rows(self, y0: int, y1: int) -> np.ndarray:
        """Return rows [y0, y1) as an array (rows, width) or (rows, width, channels) of the file's values."""
        if y0 < self._first_kept:
            self._restart()
        while self._next_row < y1:
            self._rows.append(self._decode_strip(min(PNG_STRIP_ROWS, self.height - self._next_row)))
        # Drop whole strips above y0, then return the rows asked for.
        while self._rows and self._first_kept + len(self._rows[0]) <= y0:
            self._first_kept += len(self._rows.pop(0))
        block = np.concatenate(self._rows) if len(self._rows) > 1 else self._rows[0]
        return block[y0 - self._first_kept : y1 - self._first_kept]

    def _filtered_bytes(self, size: int) -> bytes:
        while len(self._pending) < size:
            # `max_length` keeps a highly compressed chunk from inflating far beyond the strip.
            wanted = size - len(self._pending)
            if self._inflater.unconsumed_tail:
                self._pending += self._inflater.decompress(self._inflater.unconsumed_tail, wanted)
            elif self._chunk < len(self.idat):
                offset, length = self.idat[self._chunk]
                self._chunk += 1
                self._handle.seek(offset)
                self._pending += self._inflater.decompress(self._handle.read(length), wanted)
            else:
                raise WindowedReadError("unreadable_image", f"{self.path.name}: the pixel data ends before row {self._next_row}")
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data

    def _decode_strip(self, count: int) -> np.ndarray:
        filtered = self._filtered_bytes(count * (self.row_bytes + 1))
        # The seed row stands in for the previous strip's last row; filter type 0 keeps it as written.
        raw = _unfilter(b"\x00" + self._previous + filtered, self.row_bytes, self.pixel_bytes, count + 1)[1:]
        self._previous = raw[-1].tobytes()
        self._next_row += count
        return self._values(raw)

    def _values(self, raw: np.ndarray) -> np.ndarray:
        """Turn raw row bytes (rows, row_bytes) into values (rows, width[, channels])."""
        rows = raw.shape[0]
        channels = PNG_CHANNELS[self.colour]
        if self.depth == 16:
            values = raw.view(">u2").astype(np.uint16)
        elif self.depth == 8:
            values = raw
        else:
            shifts = np.arange(8 - self.depth, -1, -self.depth, dtype=np.uint8)
            values = ((raw[:, :, None] >> shifts) & ((1 << self.depth) - 1)).reshape(rows, -1)[:, : self.width]
            values = values.astype(np.uint8)
            if self.colour == 0:
                values = values * np.uint8(255 // ((1 << self.depth) - 1))
        values = values.reshape(rows, self.width, channels)
        return values[:, :, 0] if channels == 1 and self.palette is None else values


def _unfilter(data: bytes, row_bytes: int, pixel_bytes: int, rows: int) -> np.ndarray:
    """Remove PNG row filters with Pillow's decoder; returns (rows, row_bytes) uint8."""
    colour = PNG_BYTE_TYPES[pixel_bytes]
    width = row_bytes // pixel_bytes
    header = struct.pack(">IIBBBBB", width, rows, 8, colour, 0, 0, 0)
    image_bytes = PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(data, 0)) + _chunk(b"IEND", b"")
    with Image.open(io.BytesIO(image_bytes)) as image:
        image.load()
        return np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(rows, row_bytes)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# TIFF


class _TiffRows:
    """Rows of the first page of a TIFF file: memory-mapped when uncompressed, else by strips or tiles."""

    def __init__(self, path: Path):
        import tifffile

        self.path = path
        try:
            self._file = tifffile.TiffFile(path)
            page = self._file.pages.first
            shape = page.shaped  # (planes or 1, depth, height, width, samples)
        except Exception as error:  # noqa: BLE001 (tifffile raises many types for broken files)
            raise WindowedReadError("unreadable_image", f"cannot read the TIFF header of {path.name}: {error}") from error
        self._page = page
        _, depth, self.height, self.width, samples = shape
        if depth != 1:
            self._file.close()
            raise WindowedReadError("image_too_large", f"{path.name} is a volume TIFF of depth {depth}; only 2-D images are read")
        self.dtype = np.dtype(page.dtype)
        self.samples = samples * (shape[0] if page.planarconfig == 2 else 1)
        self.alpha = bool(page.extrasamples) and any(int(s) in (1, 2) for s in page.extrasamples) and self.samples in (2, 4)
        self.band_count = self.samples - (1 if self.alpha else 0)
        self.palette = None
        if int(page.photometric) == 3 and page.colormap is not None:
            self.palette = (np.asarray(page.colormap).T // 257).astype(np.uint8)
            self.band_count = 3
        self.mode = f"{self.dtype.name}x{self.samples}"
        self._memmap = None
        if page.is_memmappable and page.planarconfig != 2:
            self._memmap = tifffile.memmap(path, page=0, mode="r")

    def close(self) -> None:
        self._memmap = None
        self._file.close()

    def read_rows(self, y0: int, y1: int) -> np.ndarray:
        if self._memmap is not None:
            values = np.array(self._memmap[y0:y1])
            return values.reshape(y1 - y0, self.width, -1) if values.ndim == 3 or self.samples > 1 else values
        page = self._page
        out = np.zeros((y1 - y0, self.width, self.samples), dtype=self.dtype)
        chunk_rows, chunk_cols = page.chunks[0], page.chunks[1]
        across = -(-self.width // chunk_cols)
        down = -(-self.height // chunk_rows)
        handle = self._file.filehandle
        for index, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts)):
            row = (index % (across * down)) // across
            if (row + 1) * chunk_rows <= y0 or row * chunk_rows >= y1 or count == 0:
                continue
            handle.seek(offset)
            segment, (plane, _, top, left, sample), _ = page.decode(handle.read(count), index, jpegtables=page.jpegtables)
            segment = segment.reshape(segment.shape[-3], segment.shape[-2], -1)
            first = max(y0, top)
            last = min(y1, top + segment.shape[0], self.height)
            right = min(self.width, left + segment.shape[1])
            band = plane if page.planarconfig == 2 else sample
            out[first - y0 : last - y0, left:right, band : band + segment.shape[2]] = segment[first - top : last - top, : right - left]
        return out[:, :, 0] if self.samples == 1 and self.palette is None else out


# BMP


def _bmp_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        head = handle.read(54)
    if len(head) < 54:
        raise WindowedReadError("unreadable_image", f"{path.name}: BMP header is truncated")
    offset, header_size, width, height, _, bits, compression = struct.unpack("<I I i i H H I", head[10:34])
    if bits not in (24, 32) or compression != 0:
        raise WindowedReadError(
            "image_too_large",
            f"{path.name} is a {bits}-bit BMP with compression {compression}; only uncompressed 24- and 32-bit BMPs are read in windows. "
            "Convert it to TIFF, or set images.huge: skip",
        )
    return {"offset": offset, "width": width, "height": abs(height), "bottom_up": height > 0, "bits": bits}


class _BmpRows:
    """Rows of an uncompressed 24- or 32-bit BMP, memory-mapped (stored bottom-up unless the height is negative)."""

    def __init__(self, path: Path):
        header = _bmp_header(path)
        self.width, self.height = header["width"], header["height"]
        self._bytes_per_pixel = header["bits"] // 8
        stride = (self.width * header["bits"] + 31) // 32 * 4
        self._memmap = np.memmap(path, dtype=np.uint8, mode="r", offset=header["offset"], shape=(self.height, stride))
        self._bottom_up = header["bottom_up"]
        self.dtype = np.dtype(np.uint8)
        self.samples = 3
        self.band_count = 3
        self.alpha = False
        self.palette = None
        self.mode = "RGB"

    def close(self) -> None:
        self._memmap = None

    def read_rows(self, y0: int, y1: int) -> np.ndarray:
        if self._bottom_up:
            rows = self._memmap[self.height - y1 : self.height - y0][::-1]
        else:
            rows = self._memmap[y0:y1]
        pixels = np.asarray(rows[:, : self.width * self._bytes_per_pixel]).reshape(y1 - y0, self.width, self._bytes_per_pixel)
        return pixels[:, :, 2::-1].copy()  # BGR(X) to RGB
