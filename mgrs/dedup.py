"""Duplicate scenes across sources: exact copies (same decoded pixels) and near copies (perceptual hash).

Deduplication runs in the planning pass, per raw scene and before tiling, so a kept scene and the copies
merged into it share pixel coordinates. Each image is decoded once to 8-bit RGB and gets two hashes:

- a SHA-256 of the decoded pixel array and its shape, which finds copies with identical pixels whatever
  the file format (a PNG and a lossless TIFF of the same image);
- a 64-bit DCT perceptual hash (`imagehash.phash`), which finds re-encoded copies (a PNG and its JPEG).
  Two scenes are near duplicates when their hashes are at most `max_distance` bits apart.

Near-duplicate search is indexed, not pairwise: the 64 bits are cut into `max_distance + 1` segments,
and scenes are bucketed by (segment number, segment value). Two hashes at most `max_distance` bits apart
agree exactly on at least one segment (pigeonhole), so only scenes that share a bucket are compared.

Scenes are visited in survival order (the recipe's priority list, then recipe order, then record id).
The first scene of a group is kept. A later scene that matches a kept one of the same size is removed,
and the converter merges its annotations into the kept scene. A match of another size is kept and
reported, because its annotations do not share the kept scene's pixel coordinates.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import imagehash
import numpy as np

from mgrs.imaging import ImageReadError, load_rgb
from mgrs.recipe import BuildConfig, DedupConfig

logger = logging.getLogger(__name__)

HASH_BITS = 64
# Images whose pixel values have a standard deviation below this are blank (padding, no-data) and are
# never treated as duplicates: every blank image hashes alike.
FLAT_STD = 1.0


@dataclass(frozen=True)
class ImagePrint:
    """The hashes of one decoded image."""

    width: int
    height: int
    pixel_sha256: str
    phash: int
    flat: bool


@dataclass
class Candidate:
    """One scene offered to deduplication; `group` is its source, `order` its place in survival order."""

    key: Any
    group: int
    order: int
    print: ImagePrint | None


@dataclass
class Duplicate:
    """A scene that matched an earlier kept scene; `merged` is False when their sizes differ."""

    removed: Any
    kept: Any
    match: str  # "pixels" or "phash"
    distance: int
    merged: bool


@dataclass
class DedupResult:
    """Result of `find_duplicates`: the duplicates, and the count of scenes not compared, by reason."""

    duplicates: list[Duplicate] = field(default_factory=list)
    not_compared: dict[str, int] = field(default_factory=dict)


def fingerprint_image(path: Path, max_pixels: int) -> ImagePrint:
    """Decode an image to 8-bit RGB and return its pixel and perceptual hashes; raises ImageReadError."""
    loaded = load_rgb(path, max_pixels)
    return fingerprint_pixels(loaded.image)


def fingerprint_pixels(image) -> ImagePrint:
    """Return the hashes of a PIL RGB image."""
    pixels = np.asarray(image.convert("RGB"))
    digest = hashlib.sha256(f"{pixels.shape}".encode())
    digest.update(pixels.tobytes())
    return ImagePrint(
        width=int(pixels.shape[1]),
        height=int(pixels.shape[0]),
        pixel_sha256=digest.hexdigest(),
        phash=phash_int(image),
        flat=float(pixels.std()) < FLAT_STD,
    )


def phash_int(image) -> int:
    """Return the 64-bit perceptual hash of a PIL image as an integer."""
    bits = imagehash.phash(image).hash.flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


class HashIndex:
    """Finds stored 64-bit hashes at most `max_distance` bits from a query without comparing all pairs."""

    def __init__(self, max_distance: int):
        self.max_distance = max_distance
        count = max_distance + 1
        # Segment bounds (bit offsets from the low end) that split the 64 bits as evenly as possible.
        self._bounds = [round(i * HASH_BITS / count) for i in range(count + 1)]
        self._buckets: dict[tuple[int, int], list[tuple[int, int, Any]]] = {}
        self._count = 0

    def _segments(self, value: int) -> Iterable[tuple[int, int]]:
        for number in range(len(self._bounds) - 1):
            low, high = self._bounds[number], self._bounds[number + 1]
            yield number, (value >> low) & ((1 << (high - low)) - 1)

    def add(self, value: int, key: Any) -> None:
        serial = self._count
        self._count += 1
        for segment in self._segments(value):
            self._buckets.setdefault(segment, []).append((value, serial, key))

    def near(self, value: int) -> list[tuple[int, Any]]:
        """Return (distance, key) of every stored hash within `max_distance`, each key once, in insertion order."""
        found: dict[int, tuple[int, Any]] = {}
        for segment in self._segments(value):
            for stored, serial, key in self._buckets.get(segment, []):
                if serial in found:
                    continue
                distance = hamming(stored, value)
                if distance <= self.max_distance:
                    found[serial] = (distance, key)
        return [found[serial] for serial in sorted(found)]


def find_duplicates(candidates: list[Candidate], config: DedupConfig) -> DedupResult:
    """Group candidates into kept scenes and their duplicates, visiting them in `order`."""
    result = DedupResult()
    index = HashIndex(config.max_distance)
    kept_by_pixels: dict[str, Candidate] = {}

    for candidate in sorted(candidates, key=lambda c: c.order):
        image = candidate.print
        if image is None:
            result.not_compared["unreadable"] = result.not_compared.get("unreadable", 0) + 1
            continue
        if image.flat:
            result.not_compared["blank_image"] = result.not_compared.get("blank_image", 0) + 1
            continue

        match = _best_match(candidate, kept_by_pixels, index, config)
        if match is not None:
            kept, kind, distance = match
            same_size = (kept.print.width, kept.print.height) == (image.width, image.height)
            result.duplicates.append(Duplicate(candidate.key, kept.key, kind, distance, merged=same_size))
            if same_size:
                continue

        # A kept scene, or a copy of another size, which stays and may be matched by later scenes.
        kept_by_pixels.setdefault(image.pixel_sha256, candidate)
        index.add(image.phash, candidate)
    return result


def _best_match(candidate, kept_by_pixels, index, config) -> tuple[Candidate, str, int] | None:
    image = candidate.print
    options: list[tuple[tuple, Candidate, str, int]] = []

    exact = kept_by_pixels.get(image.pixel_sha256)
    if exact is not None and _comparable(candidate, exact, config):
        options.append(((0, 0, 0, exact.order), exact, "pixels", 0))
    for distance, kept in index.near(image.phash):
        if kept is exact or not _comparable(candidate, kept, config):
            continue
        other_size = (kept.print.width, kept.print.height) != (image.width, image.height)
        options.append(((int(other_size), 1, distance, kept.order), kept, "phash", distance))

    if not options:
        return None
    _, kept, kind, distance = min(options, key=lambda option: option[0])
    return kept, kind, distance


def _comparable(candidate: Candidate, kept: Candidate, config: DedupConfig) -> bool:
    return config.within_source or candidate.group != kept.group


def survival_rank(source_name: str, source_format: str, source_index: int, priority: list[str]) -> int:
    """Return the rank of a source in survival order: its place in `priority`, else after all listed ones."""
    for rank, entry in enumerate(priority):
        if entry in (source_name, source_format):
            return rank
    return len(priority) + source_index


def dedup_scenes(scenes: list, config: BuildConfig, source_names: list[str], workers: int = 1) -> tuple[list, dict[str, Any]]:
    """Remove duplicate planned scenes and attach each removed copy to the scene it matched.

    `scenes` are `PlannedScene`s; `source_names[i]` is the `source` value of `config.sources[i]`.
    Returns the kept scenes (in the given order) and the report section that lists every removed
    duplicate, every copy of another size that was kept, and the scenes that could not be compared.
    """
    dedup = config.dedup
    prints = _fingerprint_all([scene.ref.image_path for scene in scenes], config.images.max_pixels, workers)
    ranked = sorted(
        range(len(scenes)),
        key=lambda i: (
            survival_rank(source_names[scenes[i].source_index], config.sources[scenes[i].source_index].format, scenes[i].source_index, dedup.priority),
            scenes[i].image_ids[0],
        ),
    )
    candidates = [Candidate(key=i, group=scenes[i].source_index, order=order, print=prints[i]) for order, i in enumerate(ranked)]
    result = find_duplicates(candidates, dedup)

    removed: set[int] = set()
    section: dict[str, Any] = {"removed": [], "kept_other_size": [], "not_compared": dict(sorted(result.not_compared.items()))}
    for duplicate in result.duplicates:
        copy, kept = scenes[duplicate.removed], scenes[duplicate.kept]
        entry = {
            "scene": _describe(copy),
            "matched": _describe(kept),
            "match": duplicate.match,
            "distance": duplicate.distance,
        }
        if duplicate.merged:
            removed.add(duplicate.removed)
            kept.merged.append((copy.source_index, copy.ref))
            section["removed"].append(entry)
        else:
            entry["sizes"] = [[copy.width, copy.height], [kept.width, kept.height]]
            section["kept_other_size"].append(entry)

    for scene in scenes:
        scene.merged.sort(key=lambda item: (item[0], item[1].image))
    section["removed"].sort(key=lambda entry: entry["scene"]["image_id"])
    section["kept_other_size"].sort(key=lambda entry: entry["scene"]["image_id"])
    if section["removed"]:
        logger.info("removed %d duplicate scenes; their regions are merged into the copies kept", len(section["removed"]))
    if section["kept_other_size"]:
        logger.warning(
            "%d near-duplicate scenes differ in size from the copy they match and were kept; see dedup in the build report",
            len(section["kept_other_size"]),
        )
    kept_scenes = [scene for i, scene in enumerate(scenes) if i not in removed]
    return kept_scenes, section


def _describe(scene) -> dict[str, Any]:
    """Name a scene by source, raw image and the id it has untiled (tiles add a window to it)."""
    return {"source": scene.ref.source, "image": scene.ref.image, "image_id": f"{scene.ref.source}/{scene.ref.native_id}"}


def _fingerprint_all(paths: list[Path], max_pixels: int, workers: int) -> list[ImagePrint | None]:
    jobs = [(path, max_pixels) for path in paths]
    if workers <= 1 or len(jobs) <= 1:
        return [_fingerprint_or_none(job) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        return list(pool.imap(_fingerprint_or_none, jobs, chunksize=4))


def _fingerprint_or_none(job: tuple[Path, int]) -> ImagePrint | None:
    path, max_pixels = job
    try:
        return fingerprint_image(path, max_pixels)
    except ImageReadError as error:
        # The converter meets the same error and counts the skip; here the scene is only left uncompared.
        logger.debug("not deduplicating %s: %s", path, error)
        return None
