"""Generic Pascal VOC folders: one XML file per image with horizontal boxes; also HRRSD, RSOD and LEVIR.

Layout on disk (PATH is the folder given to `--source voc:PATH`)::

    PATH/Annotations/0001.xml               or  PATH/Annotation/xml/0001.xml (searched recursively)
    PATH/JPEGImages/0001.jpg                    PATH/images/0001.png (any folder named JPEGImages*,
                                                images or Images, searched recursively)
    PATH/ImageSets/Main/train.txt           optional split lists, below

A PATH that contains `Annotations/` or `Annotation/` is one group of images. Otherwise every
sub-folder that contains one is read as its own group:

- a sub-folder named like a split (`train`, `val`, `trainval`, `test`, `valid`, `validation`) gives
  that split to its images;
- any other sub-folder is a per-class folder as RSOD distributes them (`aircraft/`, `oiltank/`,
  `overpass/`, `playground/`). Its images are labelled only for that class, so records carry
  `extra.labelled_class_folder` and `native_id` is `{folder}/{stem}`.

HRRSD is read from its `OPT2017/` folder, which contains `Annotations/`, `ImageSets/Main/` and, once the
separately distributed JPEGs are unpacked there, `JPEGImages/`. LEVIR is read once its labels are in
VOC XML; its original per-image text labels are not read by this format.

Images and XML files are paired by file stem. An image without XML is a scene without annotation
files, and an XML without an image is skipped as `missing_image`. Other files among the annotations
(RSOD's `labels/*.txt` copies) are skipped as `unsupported_file`.

Splits: `ImageSets/Main/` may hold plain lists `{set}.txt` (one image id per line; an id may contain
spaces, so the whole line is the id) and per-class lists `{class}_{set}.txt` as VOC and HRRSD write
them (`{id} 1`, `{id} -1` or `{id} 0` per line; class names such as `baseball diamond` put spaces in
the file names). Every id in any list of a set belongs to that set, whatever its ±1 flag, because a
per-class list names every image of the set. An image named by several sets takes the first of
train, val, trainval, test, then any other set in name order. An image that no list names takes the
split of its group, or "train".

XML: read by tag name, so a missing XML declaration, tab indents, and missing `<size>`,
`<difficult>`, `<pose>` or `<truncated>` elements are accepted. Class names are passed on exactly as
written, inner spaces included (HRRSD's `T junction`). `<size>` is never used: the build reads the
size from the image header, so a missing or wrong `<size>` (width and height swapped) changes nothing.
Each `<object>` needs a `<bndbox>` (xmin, ymin, xmax, ymax); a `<robndbox>` with four named corners
is read as an oriented box when there is no `<bndbox>`.

Coordinates are pixels with the origin at the top-left corner. VOC files are nominally 1-based, but
HRRSD mixes 0- and 1-based boxes, so values are passed on unshifted; one pixel does not matter for
captions.

Exhaustiveness is unknown for a generic folder, so `exhaustive` is False and captions claim no
absences. Licence and citation belong to the dataset read; records carry the placeholder below.

HRRSD: Y. Zhang, Y. Yuan, Y. Feng, X. Lu, "Hierarchical and Robust Convolutional Neural Network for
Very High-Resolution Remote Sensing Object Detection", IEEE TGRS 57(8), 2019 (Mulan PSL v1 licence).
RSOD: Y. Long, Y. Gong, Z. Xiao, Q. Liu, "Accurate Object Localization in Remote Sensing Images Based
on Convolutional Neural Networks", IEEE TGRS 55(5), 2017. LEVIR: Z. Zou, Z. Shi, "Random Access
Memories: A New Paradigm for Target Detection in High Resolution Aerial Remote Sensing Images",
IEEE TIP 27(3), 2018.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

from mgrs.sources.base import ANNOTATION, SceneAnnotations, SceneRef, Skip, Source, read_annotation_files, register
from mgrs.sources.dior import parse_annotation_xml
from mgrs.sources.dota import index_images, list_files, relative

logger = logging.getLogger(__name__)

ANNOTATION_DIRS = ("Annotations", "Annotation")
IMAGE_DIR_NAMES = ("images", "Images")
IMAGE_DIR_PREFIX = "JPEGImages"
IMAGE_SETS_DIR = "ImageSets/Main"
XML_SUFFIX = ".xml"
LIST_SUFFIX = ".txt"

# Sets in order of precedence; sets with other names follow in name order.
SET_ORDER = ("train", "val", "trainval", "test")
SPLIT_FOLDERS = {"train", "val", "trainval", "test", "valid", "validation"}
DEFAULT_SPLIT = "train"
# Flags that end a row of a per-class list (`{id} 1`); a row without one is a plain id.
LIST_FLAGS = {"1", "-1", "0"}


def _annotation_folder(folder: Path) -> Path | None:
    for name in ANNOTATION_DIRS:
        if (folder / name).is_dir():
            return folder / name
    return None


def _groups(root: Path) -> list[tuple[Path, str, str | None]]:
    """Return (folder, split, class folder) for every group of images under `root`.

    Raises FileNotFoundError when neither `root` nor a sub-folder has an annotation folder.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"voc source folder {root} does not exist; check the PATH of the source")
    if _annotation_folder(root) is not None:
        return [(root, DEFAULT_SPLIT, None)]

    groups = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name.startswith(".") or _annotation_folder(folder) is None:
            continue
        if folder.name.lower() in SPLIT_FOLDERS:
            groups.append((folder, folder.name, None))
        else:
            groups.append((folder, DEFAULT_SPLIT, folder.name))
    if not groups:
        raise FileNotFoundError(
            f"voc source folder {root} contains no Annotations/ folder, and no sub-folder contains one; "
            "pass the folder that contains Annotations/ and JPEGImages/"
        )
    return groups


def _image_folders(folder: Path, annotations: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_dir() and path != annotations and (path.name.startswith(IMAGE_DIR_PREFIX) or path.name in IMAGE_DIR_NAMES)
    )


def _list_name(path: Path) -> tuple[str, str | None]:
    """Return (set, class) of a split list: `train.txt` gives ("train", None), `T junction_val.txt` ("val", "T junction")."""
    stem = path.stem
    class_name, underscore, set_name = stem.rpartition("_")
    if not underscore:
        return stem, None
    return set_name, class_name


def _list_ids(text: str, per_class: bool) -> list[str]:
    ids = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        if per_class and len(parts) == 2 and parts[1] in LIST_FLAGS:
            ids.append(parts[0])
        else:
            ids.append(line)
    return ids


def read_split_lists(folder: Path) -> dict[str, str]:
    """Map image ids to sets from `ImageSets/Main/*.txt`; empty when there are no lists."""
    lists = folder / IMAGE_SETS_DIR
    members: dict[str, set[str]] = {}
    for path in list_files(lists):
        if path.suffix.lower() != LIST_SUFFIX:
            continue
        set_name, class_name = _list_name(path)
        text = path.read_text(encoding="utf-8-sig", errors="replace")
        members.setdefault(set_name, set()).update(_list_ids(text, per_class=class_name is not None))

    order = [name for name in SET_ORDER if name in members]
    order += sorted(name for name in members if name not in SET_ORDER)
    splits: dict[str, str] = {}
    for set_name in order:
        for image_id in sorted(members[set_name]):
            splits.setdefault(image_id, set_name)
    return splits


@register
class VocSource(Source):
    """Pascal VOC XML files (`Annotations/*.xml`) paired with their images."""

    format = "voc"
    license = "unspecified: a generic VOC folder; the terms of the dataset read apply"
    homepage = "http://host.robots.ox.ac.uk/pascal/VOC/"
    citation = "M. Everingham et al., The PASCAL Visual Object Classes (VOC) Challenge, IJCV 88, 2010 (file format)"
    encoding = "png"

    def scan(self, root: Path) -> Iterator[SceneRef | Skip]:
        root = Path(root)
        for folder, split, class_folder in _groups(root):
            yield from self._scan_group(root, folder, split, class_folder)

    def _scan_group(self, root: Path, folder: Path, split: str, class_folder: str | None) -> Iterator[SceneRef | Skip]:
        annotation_folder = _annotation_folder(folder)
        image_folders = _image_folders(folder, annotation_folder)
        image_files = [path for image_folder in image_folders for path in list_files(image_folder, recursive=True)]
        images, image_skips = index_images(image_files, root)
        yield from image_skips

        annotations: dict[str, Path] = {}
        for path in list_files(annotation_folder, recursive=True):
            if path.suffix.lower() != XML_SUFFIX:
                yield Skip("unsupported_file", relative(path, root), f"suffix {path.suffix!r} is not {XML_SUFFIX}")
                continue
            if path.stem in annotations:
                yield Skip("duplicate_annotation", relative(path, root), f"{relative(annotations[path.stem], root)} has the same stem and is used")
                continue
            annotations[path.stem] = path

        listed = read_split_lists(folder)
        prefix = "" if class_folder is None else f"{class_folder}/"
        for stem in sorted(images.keys() | annotations.keys()):
            image = images.get(stem)
            annotation = annotations.get(stem)
            if image is None:
                searched = ", ".join(f"{relative(f, root)}/" for f in image_folders) or f"no image folder in {relative(folder, root) or '.'}/"
                yield Skip("missing_image", relative(annotation, root), f"no image named {stem}.* in {searched}", ANNOTATION)
                continue
            yield SceneRef(
                source=self.name,
                native_id=prefix + stem,
                root=str(root),
                image=relative(image, root),
                annotations=() if annotation is None else (relative(annotation, root),),
                split=listed.get(stem, split),
                meta={} if class_folder is None else {"labelled_class_folder": class_folder},
            )

    def load(self, ref: SceneRef) -> SceneAnnotations:
        result = SceneAnnotations(exhaustive=False)
        for file, data in read_annotation_files(ref, "XML", result):
            parsed = parse_annotation_xml(data, file, prefer_oriented=False)
            result.objects.extend(parsed.objects)
            result.skips.extend(parsed.skips)
        return result
