"""HRSC2016: oriented boxes of ships in Google Earth harbour scenes, with a three-level class hierarchy.

Layout on disk (PATH is the folder given to `--source hrsc2016:PATH`)::

    PATH/FullDataSet/AllImages/100000001.bmp      as MMRotate expects it, or
    PATH/FullDataSet/Annotations/100000001.xml
    PATH/ImageSets/trainval.txt, test.txt         optional, also train.txt and val.txt
    PATH/Train/AllImages/..., PATH/Test/AllImages/...   as the original archives unpack

Every folder up to two levels below PATH (PATH included) that contains `AllImages/` is read, with
its XML files in `Annotations/` beside it. The split of an image is the first of train, val,
trainval, test whose list in `ImageSets/` (or `ImageSets/Main/`) names it. An image that no list
names takes the name of its folder in lower case when that is `train`, `val` or `test`, and "train"
otherwise.
Images and XML files are paired by stem. An image without XML becomes a scene without annotation
files, and an XML without an image is skipped as `missing_image`.

XML: root `HRSC_Image` with `Img_ID`, `Img_FileName`, `Img_FileFmt` (bmp), `Img_Resolution` (metres
per pixel), `Img_SizeWidth`, `Img_SizeHeight`, `Img_Rotation`, and `HRSC_Objects/HRSC_Object` per
ship with `Class_ID`, `difficult`, `truncated`, `box_xmin`..`box_ymax` (horizontal box),
`mbox_cx`, `mbox_cy`, `mbox_w`, `mbox_h`, `mbox_ang` (rotated box, angle in radians) and `header_x`,
`header_y` (the bow point).

- The rotated box becomes a quad: the corners of a `mbox_w` x `mbox_h` rectangle centred on
  (`mbox_cx`, `mbox_cy`), rotated by `mbox_ang` radians (positive turns x towards y, clockwise on
  screen), listed clockwise from the corner at (-w/2, -h/2). Corners may fall outside the image; the
  build clips them. An object without a complete rotated box falls back to its horizontal box.
- `Img_SizeWidth` and `Img_SizeHeight` are never used (loaders that read them have swapped them);
  the build reads the size from the image. `Img_Resolution` becomes `gsd` when it is a positive number.
- The bow points go to `extra["bow_points"]`, keyed by the object's `where` ("object 1"), in pixels
  of the raw image. `Img_Rotation` goes to `extra["image_rotation"]` when it is not `000d`.
- `difficult` is the integer in `<difficult>` (0 or 1), None when absent. `truncated` is not kept.
- An XML without `HRSC_Object` elements (images without ships occur) is a scene with no objects.

Classes: `Class_ID` is `1000000` followed by a two-digit leaf id of the hierarchy (ship, then
aircraft carrier / warship / merchant ship / submarine, then ship classes). The names used by common
loaders include symbol strings such as `OXo|--)` and `CntShip(_|.--.--|_]=`, which must never reach
a caption, so `CLASS_NAMES` maps each id to a readable name, and that name is the object's label:

- 18 and 25 (two container-ship drawings) are "container ship"; 20 and 30 (two car-carrier
  drawings) are "car carrier"; 29 (`Medical`) is "hospital ship".
- 19 (`OXo|--)`) sits among the merchant-ship classes, and its meaning is not published, so it is
  the generic "merchant ship". 28 (`lute`) is also unexplained and is the generic "ship".
- Named classes get their class name: 05 "Nimitz class aircraft carrier", 15 `Austen` is the
  Austin class, and so on. Ids 21 and 23 are unused; any id not in `CLASS_NAMES` is skipped as
  `unknown_class_id`.

Ships are the only labelled objects, and no statement about completeness is published, so
`exhaustive` is False.

Licence: research use; no licence is stated with the download (check the dataset homepage).
Homepage: https://sites.google.com/site/hrsc2016/
Citation: Z. Liu, L. Yuan, L. Weng, Y. Yang, "A High Resolution Optical Satellite Image Dataset for
Ship Recognition and Some New Baselines", ICPRAM 2017.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Iterator

from mgrs.sources.base import ANNOTATION, SceneAnnotations, SceneRef, Skip, Source, SourceObject, read_annotation_files, register
from mgrs.sources.dota import find_folders_containing, index_images, list_files, relative

CLASS_ID_PREFIX = "1000000"
CLASS_NAMES = {
    "01": "ship",
    "02": "aircraft carrier",
    "03": "warship",
    "04": "merchant ship",
    "05": "Nimitz class aircraft carrier",
    "06": "Enterprise class aircraft carrier",
    "07": "Arleigh Burke class destroyer",
    "08": "Whidbey Island class dock landing ship",
    "09": "Perry class frigate",
    "10": "San Antonio class amphibious transport dock",
    "11": "Ticonderoga class cruiser",
    "12": "Kitty Hawk class aircraft carrier",
    "13": "Kuznetsov class aircraft carrier",
    "14": "Abukuma class destroyer escort",
    "15": "Austin class amphibious transport dock",
    "16": "Tarawa class amphibious assault ship",
    "17": "Blue Ridge class command ship",
    "18": "container ship",
    "19": "merchant ship",
    "20": "car carrier",
    "22": "hovercraft",
    "24": "yacht",
    "25": "container ship",
    "26": "cruise ship",
    "27": "submarine",
    "28": "ship",
    "29": "hospital ship",
    "30": "car carrier",
    "31": "Ford class aircraft carrier",
    "32": "Midway class aircraft carrier",
    "33": "Invincible class aircraft carrier",
}

IMAGE_DIR = "AllImages"
ANNOTATION_DIR = "Annotations"
IMAGE_SETS_DIRS = ("ImageSets", "ImageSets/Main")
IMAGE_SET_SPLITS = ("train", "val", "trainval", "test")
FOLDER_SPLITS = {"train": "train", "val": "val", "test": "test"}
DEFAULT_SPLIT = "train"
MAX_DEPTH = 2
XML_SUFFIX = ".xml"
ROTATED_TAGS = ("mbox_cx", "mbox_cy", "mbox_w", "mbox_h", "mbox_ang")
HORIZONTAL_TAGS = ("box_xmin", "box_ymin", "box_xmax", "box_ymax")
DIFFICULT_VALUES = {"0": 0, "1": 1, "2": 2}
NO_ROTATION = "000d"


class _ObjectError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def rotated_box_corners(cx: float, cy: float, width: float, height: float, angle: float) -> list[tuple[float, float]]:
    """Return the four corners of a rotated box, clockwise in image coordinates (y down).

    `angle` is in radians; a positive angle turns the box's width axis from +x towards +y.
    """
    cos, sin = math.cos(angle), math.sin(angle)
    corners = []
    for dx, dy in ((-width / 2, -height / 2), (width / 2, -height / 2), (width / 2, height / 2), (-width / 2, height / 2)):
        corners.append((cx + dx * cos - dy * sin, cy + dx * sin + dy * cos))
    return corners


def class_name(class_id: str) -> str | None:
    """Return the readable name of an HRSC `Class_ID` such as `100000005`, or None when unknown."""
    class_id = class_id.strip()
    if len(class_id) != len(CLASS_ID_PREFIX) + 2 or not class_id.startswith(CLASS_ID_PREFIX):
        return None
    return CLASS_NAMES.get(class_id[-2:])


def _numbers(element: ElementTree.Element, tags: tuple[str, ...], where: str) -> list[float] | None:
    """Return the values of `tags`, None when any is missing; raise for a value that is not a number."""
    texts = [element.findtext(tag) for tag in tags]
    if any(text is None or not text.strip() for text in texts):
        return None
    values = []
    for tag, text in zip(tags, texts):
        try:
            value = float(text)
        except ValueError:
            raise _ObjectError("invalid_coordinates", f"{where}: <{tag}> value {text.strip()!r} is not a number") from None
        if not math.isfinite(value):
            raise _ObjectError("invalid_coordinates", f"{where}: <{tag}> value {text.strip()!r} is not finite")
        values.append(value)
    return values


def _outline(element: ElementTree.Element, where: str) -> tuple[list[tuple[float, float]], bool]:
    rotated = _numbers(element, ROTATED_TAGS, where)
    if rotated is not None:
        return rotated_box_corners(*rotated), True
    horizontal = _numbers(element, HORIZONTAL_TAGS, where)
    if horizontal is not None:
        xmin, ymin, xmax, ymax = horizontal
        return [(xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax)], False
    raise _ObjectError("missing_coordinates", f"{where}: has neither a complete mbox_* nor box_* set")


def _parse_object(element: ElementTree.Element, index: int, file: str) -> tuple[SourceObject | Skip, list[float] | None]:
    """Return the object (or its skip) and its bow point."""
    where = f"object {index}"
    class_id = (element.findtext("Class_ID") or "").strip()
    label = class_name(class_id)
    if label is None:
        return Skip("unknown_class_id", file, f"{where}: Class_ID {class_id!r} is not in the HRSC2016 class list"), None

    difficult = None
    flag = (element.findtext("difficult") or "").strip()
    if flag:
        difficult = DIFFICULT_VALUES.get(flag)
        if difficult is None:
            return Skip("invalid_difficult", file, f"{where}: <difficult> value {flag!r} is not 0, 1 or 2"), None

    try:
        points, oriented = _outline(element, where)
        bow = _numbers(element, ("header_x", "header_y"), where)
    except _ObjectError as error:
        return Skip(error.reason, file, str(error)), None
    return SourceObject(label=label, points=points, oriented=oriented, difficult=difficult, where=where), bow


def _positive_number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def parse_annotation_xml(data: bytes, file: str) -> SceneAnnotations:
    """Parse one HRSC2016 XML file into objects, per-object skips, GSD and extra facts."""
    result = SceneAnnotations(exhaustive=False)
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        result.skips.append(Skip("unreadable_annotation", file, f"invalid XML: {error}"))
        return result

    result.gsd = _positive_number(root.findtext("Img_Resolution"))
    rotation = (root.findtext("Img_Rotation") or "").strip()
    if rotation and rotation != NO_ROTATION:
        result.extra["image_rotation"] = rotation

    bow_points: dict[str, list[float]] = {}
    for index, element in enumerate(root.iter("HRSC_Object"), start=1):
        parsed, bow = _parse_object(element, index, file)
        if isinstance(parsed, Skip):
            result.skips.append(parsed)
            continue
        result.objects.append(parsed)
        if bow is not None:
            bow_points[parsed.where] = bow
    if bow_points:
        result.extra["bow_points"] = bow_points
    return result


def _read_image_sets(root: Path) -> dict[str, str]:
    splits: dict[str, str] = {}
    for folder in IMAGE_SETS_DIRS:
        for split in IMAGE_SET_SPLITS:
            path = root / folder / f"{split}.txt"
            if not path.is_file():
                continue
            for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
                tokens = line.split()
                if tokens:
                    splits.setdefault(Path(tokens[0]).stem, split)
    return splits


@register
class Hrsc2016Source(Source):
    """HRSC2016 XML files (`Annotations/*.xml`) paired with their BMP images (`AllImages/`)."""

    format = "hrsc2016"
    license = "HRSC2016: research use, no licence stated with the download"
    homepage = "https://sites.google.com/site/hrsc2016/"
    citation = (
        "Z. Liu, L. Yuan, L. Weng, Y. Yang, A High Resolution Optical Satellite Image Dataset for Ship Recognition "
        "and Some New Baselines, ICPRAM 2017"
    )
    encoding = "png"

    def scan(self, root: Path) -> Iterator[SceneRef | Skip]:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"HRSC2016 source folder {root} does not exist; check the PATH of the source")
        folders = find_folders_containing(root, IMAGE_DIR, MAX_DEPTH)
        if not folders:
            raise FileNotFoundError(
                f"HRSC2016 images not found: {root} has no {IMAGE_DIR}/ folder in it or up to {MAX_DEPTH} levels below; "
                f"pass the folder that contains FullDataSet/ (or Train/ and Test/)"
            )
        listed = _read_image_sets(root)
        for folder in folders:
            yield from self._scan_folder(root, folder, listed)

    def _scan_folder(self, root: Path, folder: Path, listed: dict[str, str]) -> Iterator[SceneRef | Skip]:
        folder_split = FOLDER_SPLITS.get(folder.name.lower(), DEFAULT_SPLIT)
        images, image_skips = index_images(list_files(folder / IMAGE_DIR), root)
        yield from image_skips

        annotations: dict[str, Path] = {}
        for path in list_files(folder / ANNOTATION_DIR):
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
                native_id=stem,
                root=str(root),
                image=relative(image, root),
                annotations=() if annotation is None else (relative(annotation, root),),
                split=listed.get(stem, folder_split),
            )

    def load(self, ref: SceneRef) -> SceneAnnotations:
        result = SceneAnnotations(exhaustive=False)
        for file, data in read_annotation_files(ref, "XML", result):
            parsed = parse_annotation_xml(data, file)
            result.objects.extend(parsed.objects)
            result.skips.extend(parsed.skips)
            result.extra.update(parsed.extra)
            if parsed.gsd is not None:
                result.gsd = parsed.gsd
        return result
