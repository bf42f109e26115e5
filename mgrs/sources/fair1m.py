"""FAIR1M 1.0 / 2.0: oriented boxes of 37 fine-grained object classes in Gaofen and Google Earth TIFFs.

Layout on disk (PATH is the folder given to `--source fair1m:PATH`)::

    PATH/train/part1/images/0.tif        PATH/train/part1/labelXml/0.xml
    PATH/train/part2/images/...          PATH/train/part2/labelXml/...
    PATH/validation/images/...           PATH/validation/labelXml/...      (or labelXmls/)
    PATH/test/images/...                 no labels: test labels are withheld

or a PATH that itself contains `images/` and `labelXml/`. Every folder up to three levels below PATH
that contains `images/` is read. Its split is the first folder name below PATH (`train` for
`train/part1`), or "train" when PATH itself contains `images/`. The label folder is `labelXml/` or,
as some archives unpack, `labelXmls/`; when both exist, `labelXml/` is read and the other is skipped
as `duplicate_label_folder`. Images and XML files are paired by stem. `native_id` is the stem
prefixed with the folder path below PATH (`train/part1/0`), because the parts and splits number their
images independently. An image without XML becomes a scene without annotation files, and an XML
without an image is skipped as `missing_image`. Hidden files (`._0.tif` from macOS archives) are
ignored.

XML (elements are found by tag, so order, tabs and a missing declaration do not matter)::

    <annotation>
      <source><filename>0.tif</filename><origin>GF2/GF3</origin></source>
      <size><width/><height/><depth/></size>                       optional and never used
      <objects>
        <object>
          <coordinate>pixel</coordinate><type>rectangle</type>
          <possibleresult><name>Boeing737</name></possibleresult>
          <points><point>x,y</point> x5</points>
        </object>
      </objects>
    </annotation>

- `points` is a closed ring: five points whose last repeats the first, with an arbitrary start point
  and direction. The repeated point is dropped, so an object has the four corners as written, with
  `oriented=True`. A ring that is not closed is passed on with all its points; fewer than three
  distinct points are skipped as `degenerate_polygon`.
- Coordinates are float pixels with the origin at the top-left corner. Negative values and values
  beyond the image occur; they are passed on as written, and the build clips them.
- An object whose `<coordinate>` is given and is not `pixel` is skipped as `unsupported_coordinates`.
- The label is the first non-empty `possibleresult/name`. There is no difficult flag (`None`).
- `<source><origin>` (the satellite or Google Earth) goes to `extra["origin"]`.

Classes (`CLASSES`, by super-class): the spellings of the official class list. Files in the wild use
variants (`Boeing 737`, `LiquidCargoShip`, lower case); labels are passed on as written and the
taxonomy's aliases map every variant.

Images are TIFFs, mostly 8-bit RGB; the build reads 16-bit and multi-band TIFFs through tifffile and
stretches them to 8 bit. GSD is 0.3 to 0.8 m over the dataset but not given per image (None). The
dataset does not state that it is exhaustively labelled, so `exhaustive` is False.

Licence: CC-BY-NC-SA-3.0, as listed by dataset catalogues.
Homepage: https://www.gaofen-challenge.com/benchmark
Citation: X. Sun et al., "FAIR1M: A benchmark dataset for fine-grained object recognition in
high-resolution remote sensing imagery", ISPRS Journal of Photogrammetry and Remote Sensing 184, 2022.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Iterator

from mgrs.sources.base import ANNOTATION, SceneAnnotations, SceneRef, Skip, Source, SourceObject, read_annotation_files, register
from mgrs.sources.dota import find_folders_containing, index_images, list_files, relative

CLASSES = {
    "ship": (
        "Passenger Ship", "Motorboat", "Fishing Boat", "Tugboat", "other-ship", "Engineering Ship",
        "Liquid Cargo Ship", "Dry Cargo Ship", "Warship",
    ),
    "vehicle": (
        "Small Car", "Bus", "Cargo Truck", "Dump Truck", "other-vehicle", "Van", "Trailer", "Tractor",
        "Excavator", "Truck Tractor",
    ),
    "airplane": (
        "Boeing737", "Boeing747", "Boeing777", "Boeing787", "ARJ21", "C919", "A220", "A321", "A330", "A350",
        "other-airplane",
    ),
    "court": ("Baseball Field", "Basketball Court", "Football Field", "Tennis Court"),
    "road": ("Roundabout", "Intersection", "Bridge"),
}

IMAGE_DIR = "images"
# In order of preference when a folder has both.
LABEL_DIRS = ("labelXml", "labelXmls")
XML_SUFFIX = ".xml"
DEFAULT_SPLIT = "train"
# How many folder levels below PATH are searched for `images/` (train/part1/images is two).
MAX_DEPTH = 3
PIXEL_COORDINATES = "pixel"


class _ObjectError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _parse_point(text: str | None, where: str) -> tuple[float, float]:
    parts = (text or "").replace(" ", "").split(",")
    if len(parts) != 2:
        raise _ObjectError("invalid_coordinates", f"{where}: point {text!r} is not 'x,y'")
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise _ObjectError("invalid_coordinates", f"{where}: point {text!r} is not two numbers") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise _ObjectError("invalid_coordinates", f"{where}: point {text!r} is not finite")
    return x, y


def _parse_points(element: ElementTree.Element, where: str) -> list[tuple[float, float]]:
    points = [_parse_point(point.text, where) for point in element.iter("point")]
    if not points:
        raise _ObjectError("missing_coordinates", f"{where}: <points> is missing or has no <point>")
    if len(points) >= 2 and points[0] == points[-1]:
        points = points[:-1]
    if len(set(points)) < 3:
        raise _ObjectError("degenerate_polygon", f"{where}: {len(set(points))} distinct points, need at least 3")
    return points


def _first_label(element: ElementTree.Element) -> str:
    for name in element.iter("name"):
        if name.text and name.text.strip():
            return name.text.strip()
    return ""


def _parse_object(element: ElementTree.Element, index: int, file: str) -> SourceObject | Skip:
    where = f"object {index}"
    candidates = element.find("possibleresult")
    label = _first_label(element if candidates is None else candidates)
    if not label:
        return Skip("empty_label", file, f"{where}: <possibleresult><name> is missing or empty")

    system = (element.findtext("coordinate") or PIXEL_COORDINATES).strip().lower()
    if system != PIXEL_COORDINATES:
        return Skip("unsupported_coordinates", file, f"{where}: <coordinate> is {system!r}, only pixel is read")

    try:
        points = _parse_points(element, where)
    except _ObjectError as error:
        return Skip(error.reason, file, str(error))
    return SourceObject(label=label, points=points, oriented=True, difficult=None, where=where)


def parse_annotation_xml(data: bytes, file: str) -> SceneAnnotations:
    """Parse one FAIR1M XML file into objects, per-object skips and the image's origin."""
    result = SceneAnnotations(exhaustive=False)
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        result.skips.append(Skip("unreadable_annotation", file, f"invalid XML: {error}"))
        return result

    origin = (root.findtext("source/origin") or "").strip()
    if origin:
        result.extra["origin"] = origin
    for index, element in enumerate(root.iter("object"), start=1):
        result.add(_parse_object(element, index, file))
    return result


@register
class Fair1mSource(Source):
    """FAIR1M XML files (`labelXml/*.xml` or `labelXmls/*.xml`) paired with their TIFF images."""

    format = "fair1m"
    license = "CC-BY-NC-SA-3.0"
    homepage = "https://www.gaofen-challenge.com/benchmark"
    citation = (
        "X. Sun et al., FAIR1M: A benchmark dataset for fine-grained object recognition in high-resolution "
        "remote sensing imagery, ISPRS Journal of Photogrammetry and Remote Sensing 184, 2022"
    )
    encoding = "png"

    def scan(self, root: Path) -> Iterator[SceneRef | Skip]:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"FAIR1M source folder {root} does not exist; check the PATH of the source")
        folders = find_folders_containing(root, IMAGE_DIR, MAX_DEPTH, skip_names=LABEL_DIRS)
        if not folders:
            raise FileNotFoundError(
                f"FAIR1M source folder {root} has no {IMAGE_DIR}/ folder in it or up to {MAX_DEPTH} levels below; "
                f"pass the folder that contains train/, validation/ or {IMAGE_DIR}/"
            )
        for folder in folders:
            yield from self._scan_folder(root, folder)

    def _scan_folder(self, root: Path, folder: Path) -> Iterator[SceneRef | Skip]:
        prefix = relative(folder, root) if folder != root else ""
        split = prefix.split("/")[0] if prefix else DEFAULT_SPLIT

        images, image_skips = index_images(list_files(folder / IMAGE_DIR), root)
        yield from image_skips

        label_folders = [folder / name for name in LABEL_DIRS if (folder / name).is_dir()]
        for extra_folder in label_folders[1:]:
            yield Skip(
                "duplicate_label_folder",
                relative(extra_folder, root),
                f"{relative(label_folders[0], root)}/ is read instead",
            )
        annotations: dict[str, Path] = {}
        for path in list_files(label_folders[0]) if label_folders else []:
            if path.suffix.lower() != XML_SUFFIX:
                yield Skip("unsupported_file", relative(path, root), f"suffix {path.suffix!r} is not {XML_SUFFIX}")
                continue
            annotations[path.stem] = path

        for stem in sorted(images.keys() | annotations.keys()):
            image = images.get(stem)
            annotation = annotations.get(stem)
            if image is None:
                detail = f"no image named {stem}.* in {relative(folder / IMAGE_DIR, root)}/"
                yield Skip("missing_image", relative(annotation, root), detail, ANNOTATION)
                continue
            yield SceneRef(
                source=self.name,
                native_id=f"{prefix}/{stem}" if prefix else stem,
                root=str(root),
                image=relative(image, root),
                annotations=() if annotation is None else (relative(annotation, root),),
                split=split,
            )

    def load(self, ref: SceneRef) -> SceneAnnotations:
        result = SceneAnnotations(exhaustive=False)
        for file, data in read_annotation_files(ref, "XML", result):
            parsed = parse_annotation_xml(data, file)
            result.objects.extend(parsed.objects)
            result.skips.extend(parsed.skips)
            result.extra.update(parsed.extra)
        return result
