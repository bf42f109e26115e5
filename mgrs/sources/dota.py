"""DOTA v1.0 / v1.5 / v2.0: oriented quads of 15 to 18 object classes in aerial images.

Layout on disk (PATH is the folder given to `--source dota:PATH`)::

    PATH/images/P0000.png            or   PATH/train/images/P0000.png
    PATH/labelTxt/P0000.txt                PATH/train/labelTxt/P0000.txt
                                           PATH/val/images/...

A PATH that contains `images/` or `labelTxt/` is one split named "train". Otherwise every sub-folder
that contains them is read as the split named after the folder. Images are paired with labels by
file stem whatever their suffix (`.png` originals, `.jpg` re-encodings, `.tif`). When one stem has
several images, the first of PNG, TIFF, BMP, WebP, JPEG is used and the others are skipped as
`duplicate_image`. An image without a label file becomes a scene without annotation files (DOTA
withholds test labels), and a label file without an image is skipped as `missing_image`.

Label files have one object per line, after two optional header lines that v1.0 and v1.5 write::

    imagesource:GoogleEarth
    gsd:0.146343590398
    x1 y1 x2 y2 x3 y3 x4 y4 class difficult

- Coordinates are continuous pixels with the origin at the top-left corner of the image, x to the
  right and y down: integers in v1.0, floats in v1.5, v2.0 and split outputs. The vertices run
  clockwise and the first one is meaningful (the nose side of a plane, for example). Vertices may lie
  outside the image; they are passed on as written, and the build clips them.
- `difficult` is 0 or 1, and 2 in patches written by the DOTA devkit's splitter for objects that the
  patch border cuts. A line without the flag gets `difficult=None` ("not stated"), where the devkit
  reads it as 0.
- Header lines are any line whose first token contains a colon, anywhere in the file. `gsd` (metres
  per pixel, or `null`) becomes `SceneAnnotations.gsd`; `imagesource` and any other key go to
  `extra`. DOTA v2.0 labels have no header: their GSD sits in a separate meta file that is not read.
- Text may use LF or CRLF and start with a UTF-8 byte-order mark; blank lines are ignored. An empty
  label file is a scene with no objects.

Classes, as spelled in the label files (`CLASSES`): the 15 of v1.0, `container-crane` since v1.5, and
`airport` and `helipad` since v2.0. Labels are passed on exactly as written; the build maps them
with the taxonomy and counts the names it does not know.

Patches written by split tools keep their full name as `native_id`, and the offset of the patch in
its scene is recovered from the name into `SceneRef.meta["patch_of"]` (see `parse_patch_name`).

DOTA is not exhaustively labelled: very small or vague objects were left out, so counts in captions
are lower bounds and absences are never claimed.

Licence: academic use only, no commercial use; Google Earth imagery also falls under Google's terms.
Homepage: https://captain-whu.github.io/DOTA/
Citation: G.-S. Xia et al., "DOTA: A Large-scale Dataset for Object Detection in Aerial Images",
CVPR 2018; J. Ding et al., "Object Detection in Aerial Images: A Large-Scale Benchmark and
Challenges", IEEE TPAMI 2021 (v2.0).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Iterable, Iterator

from mgrs.sources.base import ANNOTATION, IMAGE, SceneAnnotations, SceneRef, Skip, Source, SourceObject, register

logger = logging.getLogger(__name__)

CLASSES_V1_0 = (
    "plane",
    "baseball-diamond",
    "bridge",
    "ground-track-field",
    "small-vehicle",
    "large-vehicle",
    "ship",
    "tennis-court",
    "basketball-court",
    "storage-tank",
    "soccer-ball-field",
    "roundabout",
    "harbor",
    "swimming-pool",
    "helicopter",
)
CLASSES_V1_5 = (*CLASSES_V1_0, "container-crane")
CLASSES_V2_0 = (*CLASSES_V1_5, "airport", "helipad")
CLASSES = {"1.0": CLASSES_V1_0, "1.5": CLASSES_V1_5, "2.0": CLASSES_V2_0}

IMAGE_DIR = "images"
LABEL_DIR = "labelTxt"
LABEL_SUFFIX = ".txt"
DEFAULT_SPLIT = "train"
# A source folder with one of these names that holds the data directly is read as that split.
KNOWN_SPLITS = {"train", "training", "val", "valid", "validation", "test", "testing", "trainval"}

# Image suffixes in order of preference when one stem has several images: lossless first.
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".webp", ".jpg", ".jpeg")
DIFFICULT_VALUES = {"0": 0, "1": 1, "2": 2}
NULL_VALUES = {"", "null", "none", "nan"}

# DOTA devkit names carry a resize factor where MMRotate and ultralytics names carry the patch size.
# A middle value with a decimal point or below this bound is read as a factor.
MAX_PATCH_SCALE = 16

# {scene}__{scale or patch size}__{x}___{y}: DOTA devkit (`P0004__1__0___0`), MMRotate, ultralytics.
DOTA_PATCH_NAME = re.compile(r"^(?P<scene>.+?)__(?P<middle>\d+(?:\.\d+)?)__(?P<x>\d+)___(?P<y>\d+)$")
# {scene}_{y1}_{y2}_{x1}_{x2}: iSAID devkit (`P0003_0_800_347_1147`), note y before x.
ISAID_PATCH_NAME = re.compile(r"^(?P<scene>P\d+)_(?P<y1>\d+)_(?P<y2>\d+)_(?P<x1>\d+)_(?P<x2>\d+)$")


def parse_patch_name(name: str) -> dict | None:
    """Return the scene and offset encoded in a patch name, or None for a name of no split tool.

    The result always has `scene`, `x`, `y` (pixels) and `scheme`. DOTA devkit names add `scale`, the
    factor by which the scene was resized before splitting, and their x and y are pixels of the
    resized scene. MMRotate names add `size`, the patch size. iSAID names add `width` and `height`.
    """
    match = DOTA_PATCH_NAME.match(name)
    if match is not None:
        middle = match["middle"]
        patch = {"scene": match["scene"], "x": int(match["x"]), "y": int(match["y"])}
        if "." in middle or float(middle) < MAX_PATCH_SCALE:
            return {**patch, "scheme": "dota_devkit", "scale": float(middle)}
        return {**patch, "scheme": "mmrotate", "size": int(middle)}

    match = ISAID_PATCH_NAME.match(name)
    if match is not None:
        y1, y2, x1, x2 = (int(match[key]) for key in ("y1", "y2", "x1", "x2"))
        if y2 > y1 and x2 > x1:
            return {"scene": match["scene"], "x": x1, "y": y1, "scheme": "isaid", "width": x2 - x1, "height": y2 - y1}
    return None


def find_split_folders(root: Path, markers: tuple[str, ...], format_name: str) -> list[tuple[str, Path]]:
    """Return (split, folder) pairs, with `root` itself as one split when it contains one of `markers`.

    That split is named after `root` when its name is a known split name (`val`, `test`, ...), else
    "train". Otherwise each sub-folder that contains a marker is a split named after the folder, sorted
    by name, with a warning for names that are not known split names.

    Raises FileNotFoundError when `root` is missing or neither it nor a sub-folder has the layout.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"{format_name} source folder {root} does not exist; check the PATH of the source")
    if any((root / marker).is_dir() for marker in markers):
        if root.name.lower() in KNOWN_SPLITS:
            return [(split_name(root.name), root)]
        return [(DEFAULT_SPLIT, root)]

    splits = [
        (split_name(folder.name), folder)
        for folder in sorted(root.iterdir())
        if folder.is_dir() and not folder.name.startswith(".") and any((folder / marker).is_dir() for marker in markers)
    ]
    for split, folder in splits:
        if folder.name.lower() not in KNOWN_SPLITS:
            logger.warning(
                "%s: sub-folder %s is read as split %r; if it is not a split, pass the folder %s itself",
                format_name, folder, split, folder,
            )
    if not splits:
        expected = " or ".join(f"{marker}/" for marker in markers)
        raise FileNotFoundError(
            f"{format_name} source folder {root} contains no {expected}, and no split folder (train/, val/, ...) "
            f"contains one; pass the folder that contains {expected}"
        )
    return splits


def find_folders_containing(root: Path, marker: str, max_depth: int, skip_names: tuple[str, ...] = ()) -> list[Path]:
    """Return the folders at most `max_depth` levels below `root` (root included) that contain `marker/`.

    The search does not go below a folder that contains `marker/`, into hidden folders, or into folders
    named in `skip_names`.
    """
    found = []
    level = [root]
    for _ in range(max_depth + 1):
        next_level = []
        for folder in level:
            if (folder / marker).is_dir():
                found.append(folder)
                continue
            next_level.extend(
                child
                for child in sorted(folder.iterdir())
                if child.is_dir() and not child.name.startswith(".") and child.name not in skip_names
            )
        level = next_level
    return sorted(found)


def patch_meta(stem: str) -> dict:
    """Return a SceneRef's `meta` for an image stem: `patch_of` when the stem is a split tool's patch name."""
    patch = parse_patch_name(stem)
    return {} if patch is None else {"patch_of": patch}


def split_name(folder_name: str) -> str:
    """Return a split name the Hub accepts (letters, digits, underscores) for a split folder's name."""
    return re.sub(r"\W+", "_", folder_name.strip().lower()).strip("_") or DEFAULT_SPLIT


def list_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Return the visible regular files in `folder`, sorted; an absent folder gives an empty list."""
    if not folder.is_dir():
        return []
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = [
        path
        for path in candidates
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]
    return sorted(files)


def relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def index_images(files: Iterable[Path], root: Path) -> tuple[dict[str, Path], list[Skip]]:
    """Map each stem to one image file, choosing by `IMAGE_SUFFIXES` order.

    Returns the map and a skip for every other file: `duplicate_image` for a second image of the
    same stem, `unsupported_file` for a file that is not an image by its suffix.
    """
    by_stem: dict[str, list[Path]] = {}
    skips: list[Skip] = []
    for path in files:
        suffix = path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            skips.append(Skip("unsupported_file", relative(path, root), f"suffix {path.suffix!r} is not an image suffix", IMAGE))
            continue
        by_stem.setdefault(path.stem, []).append(path)

    chosen: dict[str, Path] = {}
    for stem, paths in sorted(by_stem.items()):
        paths.sort(key=lambda p: (IMAGE_SUFFIXES.index(p.suffix.lower()), p.as_posix()))
        chosen[stem] = paths[0]
        for other in paths[1:]:
            skips.append(
                Skip("duplicate_image", relative(other, root), f"{relative(paths[0], root)} has the same stem and is used", IMAGE)
            )
    return chosen, skips


def _index_labels(files: Iterable[Path], root: Path) -> tuple[dict[str, Path], list[Skip]]:
    labels: dict[str, Path] = {}
    skips: list[Skip] = []
    for path in files:
        if path.suffix.lower() != LABEL_SUFFIX:
            skips.append(Skip("unsupported_file", relative(path, root), f"suffix {path.suffix!r} is not {LABEL_SUFFIX}"))
            continue
        labels[path.stem] = path
    return labels, skips


def _decode_label(path: Path, file: str) -> tuple[str | None, Skip | None]:
    try:
        data = path.read_bytes()
    except OSError as error:
        return None, Skip("unreadable_annotation", file, f"cannot read the label file: {error}")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as error:
        return None, Skip("unreadable_annotation", file, f"the label file is not UTF-8 text: {error}")


def _parse_header(line: str, number: int, file: str, result: SceneAnnotations) -> None:
    key, _, value = line.partition(":")
    key = key.strip().lower()
    value = value.strip()
    if key != "gsd":
        result.extra[key] = value
        return

    if value.lower() in NULL_VALUES:
        result.gsd = None
        return
    try:
        gsd = float(value)
    except ValueError:
        gsd = math.nan
    if not math.isfinite(gsd) or gsd <= 0:
        result.skips.append(Skip("invalid_gsd", file, f"line {number}: gsd {value!r} is not a positive number of metres per pixel"))
        return
    result.gsd = gsd


def _parse_object(tokens: list[str], number: int, file: str) -> SourceObject | Skip:
    where = f"line {number}"
    if len(tokens) not in (9, 10):
        return Skip(
            "malformed_line",
            file,
            f"{where}: expected 9 or 10 fields (8 coordinates, a class name, an optional difficult flag), "
            f"found {len(tokens)}: {' '.join(tokens)!r}",
        )
    try:
        values = [float(token) for token in tokens[:8]]
    except ValueError:
        return Skip("malformed_line", file, f"{where}: coordinates {' '.join(tokens[:8])!r} are not all numbers")
    if not all(math.isfinite(value) for value in values):
        return Skip("invalid_coordinates", file, f"{where}: non-finite coordinate in {' '.join(tokens[:8])!r}")

    difficult = None
    if len(tokens) == 10:
        difficult = DIFFICULT_VALUES.get(tokens[9])
        if difficult is None:
            return Skip("invalid_difficult", file, f"{where}: difficult flag {tokens[9]!r} is not 0, 1 or 2")

    points = [(values[i], values[i + 1]) for i in range(0, 8, 2)]
    return SourceObject(label=tokens[8], points=points, oriented=True, difficult=difficult, where=where)


def parse_label_text(text: str, file: str) -> SceneAnnotations:
    """Parse the text of one labelTxt file into objects, header facts and per-line skips."""
    result = SceneAnnotations(exhaustive=False)
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if ":" in tokens[0]:
            _parse_header(line, number, file, result)
            continue
        result.add(_parse_object(tokens, number, file))
    return result


@register
class DotaSource(Source):
    """DOTA label files (`labelTxt/*.txt`) paired with their images."""

    format = "dota"
    versions = tuple(CLASSES)
    license = "DOTA: academic use only, no commercial use"
    homepage = "https://captain-whu.github.io/DOTA/"
    citation = (
        "G.-S. Xia et al., DOTA: A Large-scale Dataset for Object Detection in Aerial Images, CVPR 2018; "
        "J. Ding et al., Object Detection in Aerial Images: A Large-Scale Benchmark and Challenges, IEEE TPAMI 2021"
    )
    encoding = "png"

    def scan(self, root: Path) -> Iterator[SceneRef | Skip]:
        root = Path(root)
        for split, folder in find_split_folders(root, (IMAGE_DIR, LABEL_DIR), "DOTA"):
            yield from self._scan_split(root, folder, split)

    def _scan_split(self, root: Path, folder: Path, split: str) -> Iterator[SceneRef | Skip]:
        images, image_skips = index_images(list_files(folder / IMAGE_DIR), root)
        labels, label_skips = _index_labels(list_files(folder / LABEL_DIR), root)
        yield from image_skips
        yield from label_skips

        for stem in sorted(images.keys() | labels.keys()):
            label = labels.get(stem)
            image = images.get(stem)
            if image is None:
                detail = f"no image named {stem}.* in {relative(folder / IMAGE_DIR, root)}/"
                yield Skip("missing_image", relative(label, root), detail, ANNOTATION)
                continue

            yield SceneRef(
                source=self.name,
                native_id=stem,
                root=str(root),
                image=relative(image, root),
                annotations=() if label is None else (relative(label, root),),
                split=split,
                meta=patch_meta(stem),
            )

    def load(self, ref: SceneRef) -> SceneAnnotations:
        result = SceneAnnotations(exhaustive=False)
        for file in ref.annotations:
            text, skip = _decode_label(Path(ref.root) / file, file)
            if skip is not None:
                result.skips.append(skip)
                continue
            parsed = parse_label_text(text, file)
            result.objects.extend(parsed.objects)
            result.skips.extend(parsed.skips)
            result.extra.update(parsed.extra)
            if parsed.gsd is not None:
                result.gsd = parsed.gsd
        return result
