"""YOLO text labels: `yolo` (horizontal boxes) and `yolo-obb` (oriented quads), normalised coordinates.

Layout on disk (PATH is the folder given to `--source yolo:PATH` or `--source yolo-obb:PATH`)::

    PATH/images/train/0001.jpg    PATH/labels/train/0001.txt     ultralytics layout
    PATH/train/images/0001.jpg    PATH/train/labels/0001.txt     Roboflow layout
    PATH/images/0001.jpg          PATH/labels/0001.txt           one split, named "train"
    PATH/data.yaml or PATH/classes.txt                            class names

Every image below PATH that has a folder named `images` in its path is read. Its label file is the
same path with the last `images` replaced by `labels` and the suffix by `.txt`, as ultralytics pairs
them. The split is the folder right after `images` (`images/val/...`), else the folder right before it
(`val/images/...`), else "train". An image without a label file is a negative, a scene without
annotation files, and an empty label file a scene with no objects. A label file without an image is
skipped as `missing_image`.

Class names come from the first of `data.yaml`, `dataset.yaml` (`names:` as a list, or as a mapping
from class id to name), `classes.txt`, `labels/classes.txt`, `obj.names` (one name per line, the line
number is the class id) in PATH. Without one the scan stops with an error that names these files.

Label lines, one object per line, values separated by white space:

- `yolo`: `class cx cy w h`, the box centre and size as fractions of the image width and height.
  A line of `class x1 y1 x2 y2 ... xn yn` with three or more points is a YOLO segmentation outline
  and is read as that polygon.
- `yolo-obb`: `class x1 y1 x2 y2 x3 y3 x4 y4`, the four corners as fractions, as ultralytics writes
  oriented boxes.

Fractions are multiplied by the image size read from the image header (no pixel is decoded), so
`load` reads the header; when it cannot be read, every line is skipped as `image_not_readable` and
the build reports the image. Values outside [0, 1] are passed on and clipped by the build. A class
id that is not an integer index of the class names is skipped as `unknown_class_id`.

NOTE: ultralytics measures fractions against the image after applying its EXIF orientation, while
the build keeps the stored pixels; a rotated JPEG with an EXIF orientation of 5 to 8 gets misplaced
boxes (records carry `extra.exif_orientation` for such images).

Exhaustiveness is unknown for a generic folder, so `exhaustive` is False. Licence and citation
belong to the dataset read.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterator

import yaml

from mgrs.imaging import ImageReadError, read_header_size
from mgrs.sources.base import ANNOTATION, SceneAnnotations, SceneRef, Skip, Source, SourceObject, register
from mgrs.sources.dota import IMAGE_SUFFIXES, index_images, list_files, relative

logger = logging.getLogger(__name__)

IMAGES_DIR = "images"
LABELS_DIR = "labels"
LABEL_SUFFIX = ".txt"
DEFAULT_SPLIT = "train"
YAML_FILES = ("data.yaml", "dataset.yaml")
NAME_LIST_FILES = ("classes.txt", "labels/classes.txt", "obj.names")
# Tokens of a box line (class + 4 values) and of an oriented-box line (class + 8 values).
BOX_TOKENS = 5
QUAD_TOKENS = 9


class _LineError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def read_class_names(root: Path) -> tuple[list[str], str]:
    """Return the class names and the file they came from; raises FileNotFoundError or ValueError."""
    for name in YAML_FILES:
        path = root / name
        if path.is_file():
            return _names_from_yaml(path), name
    for name in NAME_LIST_FILES:
        path = root / name
        if path.is_file():
            lines = path.read_text(encoding="utf-8-sig").splitlines()
            # Trailing blank lines are common; a blank line inside the list would shift every id after it.
            while lines and not lines[-1].strip():
                lines.pop()
            return [line.strip() for line in lines], name
    expected = ", ".join(YAML_FILES + NAME_LIST_FILES)
    raise FileNotFoundError(f"YOLO class names not found in {root}: expected one of {expected}; add a classes.txt with one name per line")


def _names_from_yaml(path: Path) -> list[str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read the class names in {path}: {error}") from error
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        return [str(name).strip() for name in names]
    if isinstance(names, dict) and all(isinstance(key, int) and key >= 0 for key in names):
        listed = [""] * (max(names) + 1)
        for key, name in names.items():
            listed[key] = str(name).strip()
        return listed
    raise ValueError(f"{path}: `names` must be a list of class names or a mapping from class id to name, found {names!r}")


def _split_of(parts: tuple[str, ...], images_index: int) -> str:
    if images_index + 2 < len(parts):
        return parts[images_index + 1]
    if images_index > 0:
        return parts[images_index - 1]
    return DEFAULT_SPLIT


def _label_path(parts: tuple[str, ...], images_index: int) -> Path:
    label_parts = list(parts)
    label_parts[images_index] = LABELS_DIR
    return Path(*label_parts).with_suffix(LABEL_SUFFIX)


def _class_name(token: str, names: list[str], where: str) -> str:
    try:
        value = float(token)
    except ValueError:
        raise _LineError("unknown_class_id", f"{where}: class id {token!r} is not a number") from None
    if not value.is_integer() or not 0 <= value < len(names) or not names[int(value)]:
        raise _LineError("unknown_class_id", f"{where}: class id {token!r} is not one of the {len(names)} class names")
    return names[int(value)]


def parse_line(tokens: list[str], names: list[str], width: int, height: int, oriented: bool, where: str) -> SourceObject:
    """Turn the tokens of one label line into an object in pixels; raises `_LineError` with the skip reason."""
    if oriented and len(tokens) != QUAD_TOKENS:
        raise _LineError("malformed_line", f"{where}: expected a class id and 8 corner values, found {len(tokens)} tokens")
    if not oriented and (len(tokens) < BOX_TOKENS or (len(tokens) > BOX_TOKENS and (len(tokens) % 2 == 0 or len(tokens) < 7))):
        raise _LineError("malformed_line", f"{where}: expected `class cx cy w h` or a class id and 3 or more points, found {len(tokens)} tokens")

    label = _class_name(tokens[0], names, where)
    try:
        values = [float(token) for token in tokens[1:]]
    except ValueError:
        raise _LineError("malformed_line", f"{where}: values {' '.join(tokens[1:])!r} are not all numbers") from None
    if not all(math.isfinite(value) for value in values):
        raise _LineError("invalid_coordinates", f"{where}: non-finite value in {' '.join(tokens[1:])!r}")

    if not oriented and len(tokens) == BOX_TOKENS:
        cx, cy, w, h = values
        if w <= 0 or h <= 0:
            raise _LineError("degenerate_box", f"{where}: width {w} or height {h} is not positive")
        x1, y1, x2, y2 = (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height
        return SourceObject(label=label, points=[(x1, y1), (x2, y1), (x2, y2), (x1, y2)], oriented=False, where=where)
    points = [(values[i] * width, values[i + 1] * height) for i in range(0, len(values), 2)]
    return SourceObject(label=label, points=points, oriented=True, where=where)


@register
class YoloSource(Source):
    """YOLO detection labels (`labels/*.txt`, `class cx cy w h` as fractions) paired with their images."""

    format = "yolo"
    license = "unspecified: a generic YOLO folder; the terms of the dataset read apply"
    homepage = "https://docs.ultralytics.com/datasets/detect/"
    citation = "Ultralytics YOLO label format (file format)"
    encoding = "png"
    oriented = False

    def scan(self, root: Path) -> Iterator[SceneRef | Skip]:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{self.format} source folder {root} does not exist; check the PATH of the source")
        names, names_file = read_class_names(root)

        files = [path for path in list_files(root, recursive=True) if IMAGES_DIR in path.relative_to(root).parts[:-1]]
        if not files:
            raise FileNotFoundError(f"{self.format} source folder {root} has no images/ folder; pass the folder that contains images/ and labels/")
        images = [path for path in files if path.suffix.lower() in IMAGE_SUFFIXES]
        # Stems repeat across splits, so images are indexed per folder.
        by_folder: dict[Path, list[Path]] = {}
        for path in files:
            by_folder.setdefault(path.parent, []).append(path)
        paired_labels: set[Path] = set()
        for folder in sorted(by_folder):
            chosen, skips = index_images(by_folder[folder], root)
            yield from skips
            for path in sorted(chosen.values()):
                yield self._scene(root, path, names_file, paired_labels)

        yield from self._orphan_labels(root, images, paired_labels)

    def _scene(self, root: Path, image: Path, names_file: str, paired_labels: set[Path]) -> SceneRef:
        parts = image.relative_to(root).parts
        images_index = len(parts) - 2 - parts[:-1][::-1].index(IMAGES_DIR)
        label = root / _label_path(parts, images_index)
        annotations: tuple[str, ...] = ()
        if label.is_file():
            paired_labels.add(label)
            annotations = (relative(label, root), names_file)
        split = _split_of(parts, images_index)
        native_parts = [part for index, part in enumerate(parts[:-1]) if index != images_index]
        native_id = "/".join([*native_parts, image.stem])
        return SceneRef(self.name, native_id, str(root), relative(image, root), annotations, split)

    def _orphan_labels(self, root: Path, images: list[Path], paired_labels: set[Path]) -> Iterator[Skip]:
        for label in list_files(root, recursive=True):
            parts = label.relative_to(root).parts
            if LABELS_DIR not in parts[:-1] or label.suffix.lower() != LABEL_SUFFIX or label in paired_labels:
                continue
            if label.name in ("classes.txt",) or label.relative_to(root).as_posix() in NAME_LIST_FILES:
                continue
            yield Skip("missing_image", relative(label, root), f"no image with the stem {label.stem} in the matching images/ folder", ANNOTATION)

    def load(self, ref: SceneRef) -> SceneAnnotations:
        result = SceneAnnotations(exhaustive=False)
        if not ref.annotations:
            return result
        label_file, names_file = ref.annotations
        root = Path(ref.root)
        try:
            text = (root / label_file).read_bytes().decode("utf-8-sig")
            names, _ = read_class_names(root)
        except (OSError, UnicodeDecodeError, ValueError) as error:
            result.skips.append(Skip("unreadable_annotation", label_file, f"cannot read the label or class-name file: {error}"))
            return result

        lines = [(number, line.split()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
        try:
            width, height = read_header_size(ref.image_path)
        except ImageReadError as error:
            for number, _ in lines:
                result.skips.append(Skip("image_not_readable", label_file, f"line {number}: {error}"))
            return result

        for number, tokens in lines:
            try:
                result.objects.append(parse_line(tokens, names, width, height, self.oriented, f"line {number}"))
            except _LineError as error:
                result.skips.append(Skip(error.reason, label_file, str(error)))
        return result


@register
class YoloObbSource(YoloSource):
    """YOLO oriented-box labels (`class x1 y1 x2 y2 x3 y3 x4 y4` as fractions)."""

    format = "yolo-obb"
    homepage = "https://docs.ultralytics.com/datasets/obb/"
    citation = "Ultralytics YOLO OBB label format (file format)"
    oriented = True
