"""Generic COCO JSON: instance annotations with polygons, RLE masks or boxes; also iSAID's JSON release.

Layout on disk (PATH is the folder given to `--source coco:PATH`); annotation files are found at
depth 0 to 2 below PATH, and every `*.json` there that has an `images` list is read::

    PATH/annotations/instances_train2017.json     images in PATH/train2017/ or PATH/
    PATH/train/_annotations.coco.json              images beside the JSON file
    PATH/train/iSAID_train.json                    images in PATH/train/images/

Each image's `file_name` is looked up, in this order, below the JSON file's folder, its `images/`
sub-folder, the folder named after the split word in the JSON file name (`train2017/`), PATH and
PATH/images/. A `file_name` must stay inside that folder: absolute paths, drive letters and `..`
components are skipped as `unsafe_file_name`, whether or not such a file exists. Back slashes are
read as folder separators. An image entry whose file is not found, and a group of annotations whose
`image_id` has no entry, are each one `missing_image` skip of unit annotation (with the number of
annotations in the message), as a label file without its image is in the other formats. The other
unusable image entries (`missing_file_name`, `unsafe_file_name`, `duplicate_image`) are one image
skip plus one annotation skip per annotation.

Split: the first of trainval, train, validation, valid, val, test found as a word in the JSON file's
stem (`instances_train2017`, `iSAID_val`), else in the name of its folder, else "train".

Categories are mapped by name, never by id, because files of one dataset may number them
differently (iSAID's train and val files do). Each file's own `categories` list gives the names
of its `category_id`s; an annotation whose id is not in that list is skipped as `unknown_category_id`.
Labels are passed on as written (iSAID's `Small_Vehicle`) and mapped by the build with the taxonomy.

Annotations, per entry of `annotations`:

- `segmentation` as a list of polygons (`[[x1, y1, x2, y2, ...], ...]`): one polygon becomes the
  object's outline; several parts become one multi-part outline. A part with fewer than three
  points or an odd number of values is skipped with the annotation.
- `segmentation` as RLE (`{"size": [h, w], "counts": ...}`), with counts either as a list of run
  lengths or as COCO's compressed string: decoded here with numpy (pycocotools is not needed). The
  runs go down the columns, starting with background; the outline is the union of the pixels.
- no `segmentation` (or an empty one): the `bbox` `[x, y, width, height]` as a horizontal box.
- `iscrowd: 1` marks a region that covers a group of objects: skipped as `crowd_annotation`, because
  its category name would describe one object.

Coordinates are continuous pixels with the origin at the top-left corner. `width` and `height` of
image entries are never used, because the build reads the size from the image header. Images
without annotations become records without regions. `native_id` is `file_name` without its suffix;
patch names written by split tools also give `extra.patch_of` (see `mgrs.sources.dota`). Records
carry the image's COCO id in `extra.coco_image_id`.

Each process keeps the parsed annotations of every JSON file it has read, so a worker reads each
file once; memory grows with the size of the JSON files.

Exhaustiveness is unknown for a generic file, so `exhaustive` is False. Licence and citation belong
to the dataset read.
iSAID: S. Waqas Zamir et al., "iSAID: A Large-scale Dataset for Instance Segmentation in Aerial
Images", CVPR Workshops 2019 (academic use only).
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from mgrs.sources.base import ANNOTATION, IMAGE, SceneAnnotations, SceneRef, Skip, Source, SourceObject, register
from mgrs.sources.dota import patch_meta

logger = logging.getLogger(__name__)

JSON_SUFFIX = ".json"
MAX_DEPTH = 2
IMAGES_DIR = "images"
DEFAULT_SPLIT = "train"
# Split words looked up in JSON file names, longest first so that `trainval` is not read as `train`.
SPLIT_WORDS = ("trainval", "train", "validation", "valid", "val", "test")
SPLIT_PATTERN = re.compile(r"(?<![a-z])(" + "|".join(SPLIT_WORDS) + r")(?=\d|[^a-z]|$)")
# Offset of the characters of COCO's compressed RLE strings.
RLE_CHAR_OFFSET = 48


class _AnnotationError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


# Parsed annotation files of this process, keyed by absolute path, size and modification time.
_CACHE: dict[tuple[str, int, int], tuple[dict[Any, list[dict]], dict[Any, str]]] = {}


def split_of(json_path: Path) -> str:
    """Return the split named by a JSON file's stem or, failing that, by its folder."""
    for text in (json_path.stem.lower(), json_path.parent.name.lower()):
        match = SPLIT_PATTERN.search(text)
        if match is not None:
            return match.group(1)
    return DEFAULT_SPLIT


def safe_relative_name(file_name: str) -> PurePosixPath | None:
    """Return `file_name` as a relative path, or None when it is absolute or climbs out with `..`."""
    text = file_name.replace("\\", "/")
    path = PurePosixPath(text)
    if not text or path.is_absolute() or re.match(r"^[A-Za-z]:", text) or ".." in path.parts:
        return None
    return path


def decode_rle_counts(counts: str) -> list[int]:
    """Decode COCO's compressed RLE string into run lengths (the format pycocotools writes).

    Each run is a little-endian number in 5-bit groups, one character (value + 48) per group. Bit 5
    is set on every group but the last, and bit 4 of the last group is the sign. From the third run
    on, the value is the difference to the run two places before.
    """
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value = 0
        shift = 0
        more = True
        while more:
            if position >= len(counts):
                raise _AnnotationError("invalid_rle", "compressed RLE string ends inside a number")
            group = ord(counts[position]) - RLE_CHAR_OFFSET
            if not 0 <= group < 64:
                raise _AnnotationError("invalid_rle", f"character {counts[position]!r} is not part of a compressed RLE string")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def rle_geometry(counts: list[int], height: int, width: int) -> shapely.Geometry:
    """Return the union of the foreground pixels of an RLE mask as shapely geometry (x right, y down)."""
    runs = np.asarray(counts, dtype=np.int64)
    if (runs < 0).any() or runs.sum() != height * width:
        raise _AnnotationError("invalid_rle", f"run lengths sum to {int(runs.sum())}, not {height}x{width} = {height * width}, or are negative")
    ends = np.cumsum(runs)
    starts = ends - runs
    # Runs alternate background and foreground, starting with background, down each column in turn.
    foreground = [(int(s), int(e)) for s, e in zip(starts[1::2], ends[1::2]) if e > s]
    if not foreground:
        raise _AnnotationError("degenerate_polygon", "RLE mask has no foreground pixel")

    boxes = []
    for start, end in foreground:
        while start < end:
            column = start // height
            stop = min(end, (column + 1) * height)
            boxes.append((column, start - column * height, column + 1, stop - column * height))
            start = stop
    x1, y1, x2, y2 = np.asarray(boxes, dtype=np.float64).T
    return shapely.union_all(shapely.box(x1, y1, x2, y2)).simplify(0)


def _rle_object(segmentation: dict, label: str, where: str) -> SourceObject:
    size = segmentation.get("size")
    counts = segmentation.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise _AnnotationError("invalid_rle", f"{where}: RLE size {size!r} is not [height, width]")
    height, width = size
    if isinstance(counts, str):
        runs = decode_rle_counts(counts)
    elif isinstance(counts, list) and all(isinstance(v, int) for v in counts):
        runs = counts
    else:
        raise _AnnotationError("invalid_rle", f"{where}: RLE counts are neither a list of integers nor a string")
    try:
        geometry = rle_geometry(runs, height, width)
    except _AnnotationError as error:
        raise _AnnotationError(error.reason, f"{where}: {error}") from None
    return SourceObject(label=label, geometry=geometry, oriented=True, where=where)


def _polygon_object(parts: list, label: str, where: str) -> SourceObject:
    rings = []
    for part in parts:
        if not isinstance(part, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in part):
            raise _AnnotationError("invalid_coordinates", f"{where}: polygon {str(part)[:60]} is not a list of numbers")
        if len(part) % 2:
            raise _AnnotationError("invalid_coordinates", f"{where}: polygon has an odd number of values ({len(part)})")
        if not all(math.isfinite(v) for v in part):
            raise _AnnotationError("invalid_coordinates", f"{where}: polygon has a non-finite value")
        if len(part) < 6:
            raise _AnnotationError("degenerate_polygon", f"{where}: polygon has {len(part) // 2} points, need at least 3")
        rings.append([(float(part[i]), float(part[i + 1])) for i in range(0, len(part), 2)])

    if len(rings) == 1:
        return SourceObject(label=label, points=rings[0], oriented=True, where=where)
    polygons = [shapely.make_valid(Polygon(ring)) for ring in rings]
    parts_geometry = [g for polygon in polygons for g in getattr(polygon, "geoms", [polygon]) if g.geom_type == "Polygon" and g.area > 0]
    if not parts_geometry:
        raise _AnnotationError("degenerate_polygon", f"{where}: no polygon part has an area")
    return SourceObject(label=label, geometry=shapely.union_all(MultiPolygon(parts_geometry)), oriented=True, where=where)


def _box_object(bbox: Any, label: str, where: str) -> SourceObject:
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
        raise _AnnotationError("missing_coordinates", f"{where}: neither a segmentation nor a bbox [x, y, width, height] (bbox {bbox!r})")
    x, y, width, height = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, width, height)):
        raise _AnnotationError("invalid_coordinates", f"{where}: bbox {bbox} has a non-finite value")
    if width <= 0 or height <= 0:
        raise _AnnotationError("degenerate_box", f"{where}: bbox {bbox} has no area")
    points = [(x, y), (x + width, y), (x + width, y + height), (x, y + height)]
    return SourceObject(label=label, points=points, oriented=False, where=where)


def parse_annotation(annotation: dict, categories: dict[int, str]) -> SourceObject:
    """Turn one COCO annotation into an object; raises `_AnnotationError` with the skip reason."""
    where = f"annotation {annotation.get('id', '?')}"
    label = categories.get(annotation.get("category_id"))
    if label is None:
        raise _AnnotationError("unknown_category_id", f"{where}: category_id {annotation.get('category_id')!r} is not in the file's categories")
    if annotation.get("iscrowd") in (1, True):
        raise _AnnotationError("crowd_annotation", f"{where}: iscrowd is 1")

    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, dict):
        return _rle_object(segmentation, label, where)
    if isinstance(segmentation, list) and segmentation:
        return _polygon_object(segmentation, label, where)
    return _box_object(annotation.get("bbox"), label, where)


def _read_json(path: Path) -> tuple[dict | None, str]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        return None, f"cannot read the JSON file: {error}"
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        return None, "not a COCO file: no `images` list at the top level"
    return data, ""


def _categories(data: dict) -> dict[int, str]:
    names = {}
    for category in data.get("categories") or []:
        if isinstance(category, dict) and isinstance(category.get("name"), str):
            names[category.get("id")] = category["name"].strip()
    return names


def _annotations_by_image(data: dict) -> dict[Any, list[dict]]:
    by_image: dict[Any, list[dict]] = {}
    for annotation in data.get("annotations") or []:
        if isinstance(annotation, dict):
            by_image.setdefault(annotation.get("image_id"), []).append(annotation)
    return by_image


def _cached(path: Path) -> tuple[dict[Any, list[dict]], dict[int, str]] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), status.st_size, status.st_mtime_ns)
    if key not in _CACHE:
        data, _ = _read_json(path)
        if data is None:
            return None
        _CACHE[key] = (_annotations_by_image(data), _categories(data))
    return _CACHE[key]


def _json_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob(f"*{JSON_SUFFIX}")):
        parts = path.relative_to(root).parts
        if len(parts) - 1 <= MAX_DEPTH and path.is_file() and not any(part.startswith(".") for part in parts):
            files.append(path)
    return files


def _image_roots(root: Path, json_path: Path) -> list[Path]:
    folder = json_path.parent
    candidates = [folder, folder / IMAGES_DIR]
    match = re.search(r"(?:trainval|train|val|test)\d*", json_path.stem.lower())
    if match is not None:
        candidates += [folder / match.group(0), folder.parent / match.group(0), root / match.group(0)]
    candidates += [root, root / IMAGES_DIR]
    unique = []
    for candidate in candidates:
        if candidate not in unique and candidate.is_dir():
            unique.append(candidate)
    return unique


@register
class CocoSource(Source):
    """COCO instance JSON files and the images they name."""

    format = "coco"
    license = "unspecified: a generic COCO file; the terms of the dataset read apply"
    homepage = "https://cocodataset.org/#format-data"
    citation = "T.-Y. Lin et al., Microsoft COCO: Common Objects in Context, ECCV 2014 (file format)"
    encoding = "png"

    def scan(self, root: Path) -> Iterator[SceneRef | Skip]:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"coco source folder {root} does not exist; check the PATH of the source")
        files = _json_files(root)
        if not files:
            raise FileNotFoundError(f"coco source folder {root} contains no .json file up to {MAX_DEPTH} folders deep; pass the folder that contains the annotation files")

        seen_images: dict[str, str] = {}
        for json_path in files:
            yield from self._scan_file(root, json_path, seen_images)

    def _scan_file(self, root: Path, json_path: Path, seen_images: dict[str, str]) -> Iterator[SceneRef | Skip]:
        file = json_path.relative_to(root).as_posix()
        data, problem = _read_json(json_path)
        if data is None:
            yield Skip("unsupported_file" if problem.startswith("not a COCO") else "unreadable_annotation", file, problem)
            return

        by_image = _annotations_by_image(data)
        image_roots = _image_roots(root, json_path)
        split = split_of(json_path)
        known_ids = set()
        for entry in data["images"]:
            image_id = entry.get("id") if isinstance(entry, dict) else None
            known_ids.add(image_id)
            annotations = by_image.get(image_id, [])
            file_name = entry.get("file_name") if isinstance(entry, dict) else None
            if not isinstance(file_name, str):
                yield from self._lost(file, f"image entry {image_id!r} has no file_name", "missing_file_name", annotations)
                continue
            name = safe_relative_name(file_name)
            if name is None:
                detail = f"file_name {file_name!r} of image {image_id!r} is absolute or leaves the image folder; write it relative to the image folder"
                yield from self._lost(file, detail, "unsafe_file_name", annotations)
                continue
            image_path = next((r / name for r in image_roots if (r / name).is_file()), None)
            if image_path is None:
                # As with a label file without its image in the other formats: one annotation skip per
                # image entry, because no image was read.
                searched = ", ".join(f"{(r.relative_to(root).as_posix() or '.')}/" for r in image_roots)
                detail = f"image {file_name!r} (id {image_id!r}) not found in {searched}; its {len(annotations)} annotations are not read"
                yield Skip("missing_image", file, detail, ANNOTATION)
                continue
            image = image_path.relative_to(root).as_posix()
            if image in seen_images:
                yield from self._lost(file, f"{image} is also image {seen_images[image]}; the first entry is used", "duplicate_image", annotations, image=image)
                continue
            seen_images[image] = f"{image_id!r} of {file}"

            native_id = str(name.with_suffix(""))
            meta: dict[str, Any] = {"coco_image_id": image_id, **patch_meta(name.stem)}
            yield SceneRef(self.name, native_id, str(root), image, (file,), split, meta)

        for image_id in sorted(set(by_image) - known_ids, key=repr):
            ids = ", ".join(str(annotation.get("id", "?")) for annotation in by_image[image_id][:5])
            detail = f"image_id {image_id!r} is not in `images`; its {len(by_image[image_id])} annotations (ids {ids}) are not read"
            yield Skip("missing_image", file, detail, ANNOTATION)

    @staticmethod
    def _lost(file: str, detail: str, reason: str, annotations: list[dict], image: str | None = None) -> Iterator[Skip]:
        """Skip an image entry and each of its annotations, so that both units are counted."""
        yield Skip(reason, image or file, detail, IMAGE)
        for annotation in annotations:
            yield Skip(reason, file, f"annotation {annotation.get('id', '?')}: its image is skipped", ANNOTATION)

    def load(self, ref: SceneRef) -> SceneAnnotations:
        result = SceneAnnotations(exhaustive=False)
        image_id = ref.meta.get("coco_image_id")
        for file in ref.annotations:
            parsed = _cached(Path(ref.root) / file)
            if parsed is None:
                result.skips.append(Skip("unreadable_annotation", file, "the JSON file can no longer be read"))
                continue
            by_image, categories = parsed
            for annotation in by_image.get(image_id, []):
                try:
                    result.objects.append(parse_annotation(annotation, categories))
                except _AnnotationError as error:
                    result.skips.append(Skip(error.reason, file, str(error)))
        return result
