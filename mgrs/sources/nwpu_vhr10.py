"""NWPU VHR-10: horizontal boxes of 10 object classes in 800 very-high-resolution images.

Layout on disk (PATH is the folder given to `--source nwpu-vhr10:PATH`, the one the archive names
`NWPU VHR-10 dataset`; a PATH that contains that folder is accepted too)::

    PATH/positive image set/001.jpg ... 650.jpg     images with at least one object
    PATH/negative image set/001.jpg ... 150.jpg     images with none of the 10 classes
    PATH/ground truth/001.txt ... 650.txt           one file per positive image
    PATH/colour_infrared.txt                        optional, written by the user (see below)

Folder names contain spaces. Positive images are paired with `ground truth/` files by stem, and a
ground-truth file without a positive image is skipped as `missing_image`. Negative images have no
file: each becomes a record with no regions. Both sets number their images from 001, so `native_id`
is `positive/001` or `negative/001`, and `extra["image_set"]` names the set. The dataset defines no
train/test split, so every record is in the "train" split.

Ground-truth lines look like `(563,478),(630,573),1`: the top-left corner, the bottom-right corner
and the class id, in pixels with the origin at the top-left corner. Spaces anywhere in the line,
blank lines and CRLF line endings are accepted. A line that does not match is skipped as
`malformed_line`, and a class id outside 1 to 10 as `unknown_class_id`. The object's points are the
four corners of the box, with `oriented=False`; there is no difficult flag (`None`).

Classes (`CLASSES`, by id): 1 airplane, 2 ship, 3 storage tank, 4 baseball diamond, 5 tennis court,
6 basketball court, 7 ground track field, 8 harbor, 9 bridge, 10 vehicle. Labels are these names.

Colour-infrared images: 85 of the 800 images are pansharpened colour-infrared (near-infrared, red,
green) tiles from the ISPRS Vaihingen data, where vegetation looks red, so colour words in captions
would be wrong for them. Their file names do not identify them, so the adapter marks only the
images it is given: names listed in `PATH/colour_infrared.txt` (one per line, as
`positive image set/001.jpg` or as the native id `positive/001`; `#` starts a comment) or given to
the constructor as `colour_infrared`. Those records get `extra["colour_infrared"] = true`; for the
others it is unknown and not written.

Exhaustiveness: the negative set is defined as images that contain none of the 10 classes, so
negative scenes are `exhaustive`; positive scenes are not, because completeness is not stated.
GSD is 0.5 to 2 m (Google Earth) or 0.08 m (Vaihingen) and not given per image (None).

Licence: CC-BY-NC-4.0, as listed by dataset catalogues.
Homepage: https://gcheng-nwpu.github.io/
Citation: G. Cheng, J. Han, P. Zhou, L. Guo, "Multi-class geospatial object detection and
geographic image classification based on collection of part detectors", ISPRS Journal of
Photogrammetry and Remote Sensing 98, 2014.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterable, Iterator

from mgrs.sources.base import ANNOTATION, SceneAnnotations, SceneRef, Skip, Source, SourceObject, register
from mgrs.sources.dota import index_images, list_files, relative

CLASSES = {
    1: "airplane",
    2: "ship",
    3: "storage tank",
    4: "baseball diamond",
    5: "tennis court",
    6: "basketball court",
    7: "ground track field",
    8: "harbor",
    9: "bridge",
    10: "vehicle",
}

DATASET_DIR = "NWPU VHR-10 dataset"
POSITIVE_DIR = "positive image set"
NEGATIVE_DIR = "negative image set"
GROUND_TRUTH_DIR = "ground truth"
COLOUR_INFRARED_LIST = "colour_infrared.txt"
IMAGE_SETS = {POSITIVE_DIR: "positive", NEGATIVE_DIR: "negative"}
LABEL_SUFFIX = ".txt"
SPLIT = "train"

_NUMBER = r"\s*([-+]?\d+(?:\.\d*)?)\s*"
GROUND_TRUTH_LINE = re.compile(rf"^\s*\({_NUMBER},{_NUMBER}\)\s*,\s*\({_NUMBER},{_NUMBER}\)\s*,\s*(\S+)\s*$")


def parse_ground_truth(text: str, file: str) -> SceneAnnotations:
    """Parse the text of one `ground truth/NNN.txt` file into objects and per-line skips."""
    result = SceneAnnotations(exhaustive=False)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        match = GROUND_TRUTH_LINE.match(line)
        if match is None:
            result.skips.append(Skip("malformed_line", file, f"{where}: {line.strip()!r} is not (x1,y1),(x2,y2),class_id"))
            continue
        x1, y1, x2, y2 = (float(match.group(i)) for i in range(1, 5))
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            result.skips.append(Skip("invalid_coordinates", file, f"{where}: non-finite coordinate in {line.strip()!r}"))
            continue
        class_id = match.group(5)
        label = CLASSES.get(int(class_id)) if class_id.isdigit() else None
        if label is None:
            result.skips.append(Skip("unknown_class_id", file, f"{where}: class id {class_id!r} is not 1 to 10"))
            continue
        points = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
        result.objects.append(SourceObject(label=label, points=points, oriented=False, difficult=None, where=where))
    return result


def read_colour_infrared_list(path: Path) -> set[str]:
    """Return the entries of a colour-infrared list file; an absent file gives an empty set."""
    if not path.is_file():
        return set()
    entries = set()
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            entries.add(entry)
    return entries


def _dataset_folder(root: Path) -> Path:
    if (root / POSITIVE_DIR).is_dir() or (root / NEGATIVE_DIR).is_dir():
        return root
    if (root / DATASET_DIR).is_dir():
        return root / DATASET_DIR
    raise FileNotFoundError(
        f"NWPU VHR-10 images not found: {root} has neither '{POSITIVE_DIR}/' nor '{NEGATIVE_DIR}/' "
        f"(nor a '{DATASET_DIR}/' folder with them); pass the folder that contains them"
    )


@register
class NwpuVhr10Source(Source):
    """NWPU VHR-10 `ground truth/*.txt` files paired with the positive and negative image sets."""

    format = "nwpu-vhr10"
    license = "CC-BY-NC-4.0"
    homepage = "https://gcheng-nwpu.github.io/"
    citation = (
        "G. Cheng, J. Han, P. Zhou, L. Guo, Multi-class geospatial object detection and geographic image "
        "classification based on collection of part detectors, ISPRS Journal of Photogrammetry and Remote "
        "Sensing 98, 2014"
    )
    encoding = "jpeg"

    def __init__(self, version: str | None = None, colour_infrared: Iterable[str] = ()):
        super().__init__(version)
        self.colour_infrared = set(colour_infrared)

    def scan(self, root: Path) -> Iterator[SceneRef | Skip]:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"NWPU VHR-10 source folder {root} does not exist; check the PATH of the source")
        folder = _dataset_folder(root)
        infrared = self.colour_infrared | read_colour_infrared_list(folder / COLOUR_INFRARED_LIST)

        labels: dict[str, Path] = {}
        for path in list_files(folder / GROUND_TRUTH_DIR):
            if path.suffix.lower() != LABEL_SUFFIX:
                yield Skip("unsupported_file", relative(path, root), f"suffix {path.suffix!r} is not {LABEL_SUFFIX}")
                continue
            labels[path.stem] = path

        positives: set[str] = set()
        for image_dir, image_set in IMAGE_SETS.items():
            images, image_skips = index_images(list_files(folder / image_dir), root)
            yield from image_skips
            for stem, image in sorted(images.items()):
                native_id = f"{image_set}/{stem}"
                label = labels.get(stem) if image_set == "positive" else None
                if image_set == "positive":
                    positives.add(stem)
                meta: dict = {"image_set": image_set}
                if native_id in infrared or relative(image, folder) in infrared:
                    meta["colour_infrared"] = True
                yield SceneRef(
                    source=self.name,
                    native_id=native_id,
                    root=str(root),
                    image=relative(image, root),
                    annotations=() if label is None else (relative(label, root),),
                    split=SPLIT,
                    meta=meta,
                )

        for stem in sorted(labels.keys() - positives):
            detail = f"no image named {stem}.* in {relative(folder / POSITIVE_DIR, root)}/"
            yield Skip("missing_image", relative(labels[stem], root), detail, ANNOTATION)

    def load(self, ref: SceneRef) -> SceneAnnotations:
        negative = ref.meta.get("image_set") == "negative"
        result = SceneAnnotations(exhaustive=negative)
        for file in ref.annotations:
            try:
                text = (Path(ref.root) / file).read_bytes().decode("utf-8-sig")
            except (OSError, UnicodeDecodeError) as error:
                result.skips.append(Skip("unreadable_annotation", file, f"cannot read the ground-truth file: {error}"))
                continue
            parsed = parse_ground_truth(text, file)
            result.objects.extend(parsed.objects)
            result.skips.extend(parsed.skips)
        return result
