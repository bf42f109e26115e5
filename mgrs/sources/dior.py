"""DIOR (horizontal boxes) and DIOR-R (oriented boxes): 20 object classes in 800x800 Google Earth JPEGs.

Layout on disk (PATH is the folder given to `--source dior:PATH` or `--source dior-r:PATH`)::

    PATH/JPEGImages-trainval/00001.jpg
    PATH/JPEGImages-test/11726.jpg
    PATH/Annotations/00001.xml                               DIOR, or
    PATH/Annotations/Horizontal Bounding Boxes/00001.xml     DIOR as shipped with DIOR-R
    PATH/Annotations/Oriented Bounding Boxes/00001.xml       DIOR-R
    PATH/ImageSets/Main/train.txt, val.txt, test.txt         optional

Folder names contain spaces. Images are read from every folder whose name starts with `JPEGImages`
(`JPEGImages/` included), searched recursively because archives sometimes unpack into a nested
folder of the same name. Images and XML files are paired by stem. An image without XML becomes a
scene without annotation files (the test labels are not distributed everywhere), and an XML without
an image is skipped as `missing_image`.

Splits: when `ImageSets/Main/` contains `train.txt`, `val.txt`, `trainval.txt` or `test.txt` (one image
id per line), an image takes the first of train, val, trainval, test whose list names it. An image
that no list names, or any image when there are no lists, takes the split of its folder:
`JPEGImages-trainval` gives "trainval", `JPEGImages-test` gives "test", and any other folder "train".

XML: Pascal VOC style, one `<object>` per box, read by tag name so that a missing XML declaration,
tabs, and missing `<size>`, `<difficult>`, `<pose>` or `<truncated>` elements are all accepted.
`<size>` is never used, because the build reads the size from the image. `<pose>`, `<truncated>` and
the DIOR-R `<angle>` are not kept: the four corners already fix the oriented box.

- DIOR `<bndbox>`: xmin, ymin, xmax, ymax. The object's points are the four corners clockwise from
  (xmin, ymin), with `oriented=False`.
- DIOR-R `<robndbox>`: x_left_top, y_left_top, x_right_top, y_right_top, x_right_bottom,
  y_right_bottom, x_left_bottom, y_left_bottom, in that order, which runs clockwise in image
  coordinates. The points are those corners as written, with `oriented=True`.
- An object without the preferred element falls back to the other one, so a DIOR-R file that holds
  a `<bndbox>` still yields a horizontal box.
- Coordinates are pixels with the origin at the top-left corner. VOC files are nominally 1-based, but
  the values are passed on unshifted, because DIOR does not state its convention and a one-pixel
  shift does not matter for captions.
- `difficult` is the integer in `<difficult>`, or None when the element is missing (DIOR horizontal
  files have none).

Classes, as spelled in the XML files (`CLASSES`): mostly lower-case single words, but the two
expressway classes are mixed-case and hyphenated. Labels are passed on exactly as written and
mapped by the build with the taxonomy.

GSD: 0.5 m to 30 m per pixel over the dataset, but not given per image, so `gsd` is None.
Exhaustiveness is not documented by the authors, so `exhaustive` is False and captions claim no
absences.

Licence: CC-BY-NC-4.0, as listed by dataset catalogues.
Citation: K. Li, G. Wan, G. Cheng, L. Meng, J. Han, "Object detection in optical remote sensing
images: A survey and a new benchmark", ISPRS Journal of Photogrammetry and Remote Sensing 159, 2020
(DIOR); G. Cheng et al., "Anchor-Free Oriented Proposal Generator for Object Detection", IEEE TGRS
60, 2022 (DIOR-R).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Iterator

from mgrs.sources.base import ANNOTATION, SceneAnnotations, SceneRef, Skip, Source, SourceObject, read_annotation_files, register
from mgrs.sources.dota import index_images, list_files, relative

CLASSES = (
    "airplane",
    "airport",
    "baseballfield",
    "basketballcourt",
    "bridge",
    "chimney",
    "dam",
    "Expressway-Service-area",
    "Expressway-toll-station",
    "golffield",
    "groundtrackfield",
    "harbor",
    "overpass",
    "ship",
    "stadium",
    "storagetank",
    "tenniscourt",
    "trainstation",
    "vehicle",
    "windmill",
)

ANNOTATION_DIR = "Annotations"
HORIZONTAL_DIR = "Annotations/Horizontal Bounding Boxes"
ORIENTED_DIR = "Annotations/Oriented Bounding Boxes"
IMAGE_DIR_PREFIX = "JPEGImages"
IMAGE_SETS_DIR = "ImageSets/Main"
XML_SUFFIX = ".xml"

# Lists in order of precedence: an image named by several lists takes the first.
IMAGE_SET_SPLITS = ("train", "val", "trainval", "test")
# Split of an image that no list names, by the suffix of its folder name.
FOLDER_SPLITS = {"-trainval": "trainval", "-test": "test"}
DEFAULT_SPLIT = "train"

HORIZONTAL_TAGS = ("xmin", "ymin", "xmax", "ymax")
ORIENTED_TAGS = (
    ("x_left_top", "y_left_top"),
    ("x_right_top", "y_right_top"),
    ("x_right_bottom", "y_right_bottom"),
    ("x_left_bottom", "y_left_bottom"),
)
DIFFICULT_VALUES = {"0": 0, "1": 1, "2": 2}


class _ObjectError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _read_image_sets(root: Path) -> dict[str, str]:
    """Map image ids to splits from `ImageSets/Main/*.txt`; empty when there are no lists."""
    splits: dict[str, str] = {}
    for split in IMAGE_SET_SPLITS:
        path = root / IMAGE_SETS_DIR / f"{split}.txt"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
            tokens = line.split()
            if tokens:
                splits.setdefault(tokens[0], split)
    return splits


def _folder_split(folder: Path) -> str:
    name = folder.name.lower()
    for suffix, split in FOLDER_SPLITS.items():
        if name.endswith(suffix):
            return split
    return DEFAULT_SPLIT


def _number(element: ElementTree.Element, tag: str, where: str) -> float:
    text = element.findtext(tag)
    if text is None or not text.strip():
        raise _ObjectError("missing_coordinates", f"{where}: <{tag}> is missing or empty")
    try:
        value = float(text)
    except ValueError:
        raise _ObjectError("invalid_coordinates", f"{where}: <{tag}> value {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise _ObjectError("invalid_coordinates", f"{where}: <{tag}> value {text.strip()!r} is not finite")
    return value


def _horizontal_points(box: ElementTree.Element, where: str) -> list[tuple[float, float]]:
    xmin, ymin, xmax, ymax = (_number(box, tag, where) for tag in HORIZONTAL_TAGS)
    return [(xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax)]


def _oriented_points(box: ElementTree.Element, where: str) -> list[tuple[float, float]]:
    return [(_number(box, x_tag, where), _number(box, y_tag, where)) for x_tag, y_tag in ORIENTED_TAGS]


def _read_outline(element: ElementTree.Element, prefer_oriented: bool, where: str) -> tuple[list[tuple[float, float]], bool]:
    """Return the object's points and whether they form an oriented box."""
    readers = [("robndbox", _oriented_points, True), ("bndbox", _horizontal_points, False)]
    if not prefer_oriented:
        readers.reverse()
    for tag, read_points, oriented in readers:
        box = element.find(tag)
        if box is not None:
            return read_points(box, where), oriented
    raise _ObjectError("missing_coordinates", f"{where}: has neither <robndbox> nor <bndbox>")


def _parse_object(element: ElementTree.Element, index: int, file: str, prefer_oriented: bool) -> SourceObject | Skip:
    where = f"object {index}"
    label = (element.findtext("name") or "").strip()
    if not label:
        return Skip("empty_label", file, f"{where}: <name> is missing or empty")

    difficult = None
    flag = element.findtext("difficult")
    if flag is not None and flag.strip():
        difficult = DIFFICULT_VALUES.get(flag.strip())
        if difficult is None:
            return Skip("invalid_difficult", file, f"{where}: <difficult> value {flag.strip()!r} is not 0, 1 or 2")

    try:
        points, oriented = _read_outline(element, prefer_oriented, where)
    except _ObjectError as error:
        return Skip(error.reason, file, str(error))
    return SourceObject(label=label, points=points, oriented=oriented, difficult=difficult, where=where)


def parse_annotation_xml(data: bytes, file: str, prefer_oriented: bool) -> SceneAnnotations:
    """Parse one VOC-style XML file into objects and per-object skips."""
    result = SceneAnnotations(exhaustive=False)
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        result.skips.append(Skip("unreadable_annotation", file, f"invalid XML: {error}"))
        return result

    for index, element in enumerate(root.findall("object"), start=1):
        result.add(_parse_object(element, index, file, prefer_oriented))
    return result


@register
class DiorSource(Source):
    """DIOR horizontal boxes (`Annotations/*.xml` or `Annotations/Horizontal Bounding Boxes/*.xml`)."""

    format = "dior"
    license = "CC-BY-NC-4.0"
    homepage = "https://arxiv.org/abs/1909.00133"
    citation = (
        "K. Li, G. Wan, G. Cheng, L. Meng, J. Han, Object detection in optical remote sensing images: "
        "A survey and a new benchmark, ISPRS Journal of Photogrammetry and Remote Sensing 159, 2020"
    )
    encoding = "jpeg"
    oriented = False

    def annotation_folder(self, root: Path) -> Path:
        """Return the folder of this format's XML files, raising FileNotFoundError when there is none."""
        horizontal = root / HORIZONTAL_DIR
        if horizontal.is_dir():
            return horizontal
        flat = root / ANNOTATION_DIR
        if flat.is_dir() and any(path.suffix.lower() == XML_SUFFIX for path in list_files(flat)):
            return flat
        hint = " The folder has Oriented Bounding Boxes/; read it with the dior-r format." if (root / ORIENTED_DIR).is_dir() else ""
        raise FileNotFoundError(
            f"DIOR annotations not found: {root} has neither {HORIZONTAL_DIR}/ nor XML files in {ANNOTATION_DIR}/; "
            f"pass the folder that contains {ANNOTATION_DIR}/.{hint}"
        )

    def scan(self, root: Path) -> Iterator[SceneRef | Skip]:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{self.format} source folder {root} does not exist; check the PATH of the source")
        annotation_folder = self.annotation_folder(root)
        image_folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(IMAGE_DIR_PREFIX))
        if not image_folders:
            raise FileNotFoundError(
                f"{self.format} images not found: {root} has no {IMAGE_DIR_PREFIX}-trainval/, {IMAGE_DIR_PREFIX}-test/ "
                f"or {IMAGE_DIR_PREFIX}/ folder; pass the folder that contains them"
            )

        image_files = [path for folder in image_folders for path in list_files(folder, recursive=True)]
        images, image_skips = index_images(image_files, root)
        yield from image_skips

        annotations: dict[str, Path] = {}
        for path in list_files(annotation_folder):
            if path.suffix.lower() != XML_SUFFIX:
                yield Skip("unsupported_file", relative(path, root), f"suffix {path.suffix!r} is not {XML_SUFFIX}")
                continue
            annotations[path.stem] = path

        listed_splits = _read_image_sets(root)
        for stem in sorted(images.keys() | annotations.keys()):
            image = images.get(stem)
            annotation = annotations.get(stem)
            if image is None:
                folders = ", ".join(f"{folder.name}/" for folder in image_folders)
                yield Skip("missing_image", relative(annotation, root), f"no image named {stem}.* in {folders}", ANNOTATION)
                continue

            folder = next(f for f in image_folders if f in image.parents)
            yield SceneRef(
                source=self.name,
                native_id=stem,
                root=str(root),
                image=relative(image, root),
                annotations=() if annotation is None else (relative(annotation, root),),
                split=listed_splits.get(stem, _folder_split(folder)),
            )

    def load(self, ref: SceneRef) -> SceneAnnotations:
        result = SceneAnnotations(exhaustive=False)
        for file, data in read_annotation_files(ref, "XML", result):
            parsed = parse_annotation_xml(data, file, prefer_oriented=self.oriented)
            result.objects.extend(parsed.objects)
            result.skips.extend(parsed.skips)
        return result


@register
class DiorRSource(DiorSource):
    """DIOR-R oriented boxes (`Annotations/Oriented Bounding Boxes/*.xml`)."""

    format = "dior-r"
    homepage = "https://arxiv.org/abs/2110.01931"
    citation = (
        "G. Cheng, J. Wang, K. Li, X. Xie, C. Lang, Y. Yao, J. Han, Anchor-Free Oriented Proposal Generator "
        "for Object Detection, IEEE Transactions on Geoscience and Remote Sensing 60, 2022"
    )
    oriented = True

    def annotation_folder(self, root: Path) -> Path:
        folder = root / ORIENTED_DIR
        if not folder.is_dir():
            raise FileNotFoundError(
                f"DIOR-R annotations not found: {folder} does not exist; pass the folder that contains "
                f"{ORIENTED_DIR}/, or read horizontal boxes with the dior format"
            )
        return folder
