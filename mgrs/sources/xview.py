"""xView (2018 detection challenge): horizontal boxes of 60 object classes in WorldView-3 GeoTIFFs.

Layout on disk (PATH is the folder given to `--source xview:PATH`)::

    PATH/xView_train.geojson       one FeatureCollection with every training box
    PATH/train_images/100.tif
    PATH/val_images/1036.tif       no labels: validation labels are withheld

Every folder of PATH whose name ends in `_images` is read, and its split is the name before that
suffix (`train`, `val`). The labels are `xView_train.geojson`, or the only `*.geojson` file in PATH.
Features are grouped by `properties.image_id` (the image's file name), so an image with features has
the GeoJSON as its annotation file and an image without any has none.

Each feature is one object::

    {"type": "Feature", "geometry": {...lon/lat polygon...},
     "properties": {"bounds_imcoords": "2712,1145,2746,1177", "type_id": 73, "image_id": "2355.tif",
                    "feature_id": 374410, ...}}

- `bounds_imcoords` contains pixel coordinates with the origin at the top-left corner: four values
  `xmin,ymin,xmax,ymax` (a horizontal box, `oriented=False`) or, in xView-style files of other
  projects, eight values `x1,y1,...,x4,y4` (an oriented quad as written, `oriented=True`). The lon/lat
  `geometry` is never used for pixels. Boxes beyond the image are passed on, and the build clips them.
- `type_id` is mapped to the class name of `CLASSES`, the names of the xView baseline's class file.
  Ids 75 and 82 occur in the labels but not in the class file. The dataset's maintainers call them
  artefacts of the labelling process, so they are skipped as `label_noise`. Any other id missing from
  `CLASSES` is skipped as `unknown_type_id`.
- An empty or missing `bounds_imcoords` (`""`, `"[]"`) is skipped as `missing_coordinates`, and a
  value that is not 4 or 8 numbers as `invalid_coordinates`. There is no difficult flag (`None`).

Scan skips: `missing_image` once per `image_id` that names no file (`1395.tif` in the real release),
with the number of its features in the detail; `junk_file` for macOS resource-fork files (`._100.tif`,
or any file that starts with the AppleDouble magic number, such as `_109.tif`); `missing_image_id`
for features without `properties.image_id`; `unreadable_annotation` when the GeoJSON cannot be
parsed, in which case the images still become scenes without annotation files.

Labelling is partial: some images have objects labelled in only part of the scene. `exhaustive` is
False and `extra["labelling"]` says so, so captions never claim that something is absent.
GSD: all images are WorldView-3 at about 0.3 m per pixel, which the records carry as `gsd`.

Licence: CC-BY-NC-SA-4.0.
Homepage: https://xviewdataset.org/
Citation: D. Lam et al., "xView: Objects in Context in Overhead Imagery", arXiv:1802.07856, 2018.
"""

from __future__ import annotations

import json
import logging
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from mgrs.sources.base import ANNOTATION, IMAGE, SceneAnnotations, SceneRef, Skip, Source, SourceObject, register
from mgrs.sources.dota import index_images, relative

logger = logging.getLogger(__name__)

CLASSES = {
    11: "Fixed-wing Aircraft",
    12: "Small Aircraft",
    13: "Passenger/Cargo Plane",
    15: "Helicopter",
    17: "Passenger Vehicle",
    18: "Small Car",
    19: "Bus",
    20: "Pickup Truck",
    21: "Utility Truck",
    23: "Truck",
    24: "Cargo Truck",
    25: "Truck Tractor w/ Box Trailer",
    26: "Truck Tractor",
    27: "Trailer",
    28: "Truck Tractor w/ Flatbed Trailer",
    29: "Truck Tractor w/ Liquid Tank",
    32: "Crane Truck",
    33: "Railway Vehicle",
    34: "Passenger Car",
    35: "Cargo/Container Car",
    36: "Flat Car",
    37: "Tank car",
    38: "Locomotive",
    40: "Maritime Vessel",
    41: "Motorboat",
    42: "Sailboat",
    44: "Tugboat",
    45: "Barge",
    47: "Fishing Vessel",
    49: "Ferry",
    50: "Yacht",
    51: "Container Ship",
    52: "Oil Tanker",
    53: "Engineering Vehicle",
    54: "Tower crane",
    55: "Container Crane",
    56: "Reach Stacker",
    57: "Straddle Carrier",
    59: "Mobile Crane",
    60: "Dump Truck",
    61: "Haul Truck",
    62: "Scraper/Tractor",
    63: "Front loader/Bulldozer",
    64: "Excavator",
    65: "Cement Mixer",
    66: "Ground Grader",
    71: "Hut/Tent",
    72: "Shed",
    73: "Building",
    74: "Aircraft Hangar",
    76: "Damaged Building",
    77: "Facility",
    79: "Construction Site",
    83: "Vehicle Lot",
    84: "Helipad",
    86: "Storage Tank",
    89: "Shipping container lot",
    91: "Shipping Container",
    93: "Pylon",
    94: "Tower",
}
# Ids found in the labels that the class file does not list; the maintainers treat them as label noise.
NOISE_TYPE_IDS = frozenset({75, 82})

LABEL_FILE = "xView_train.geojson"
GEOJSON_SUFFIX = ".geojson"
IMAGE_DIR_SUFFIX = "_images"
APPLEDOUBLE_MAGIC = b"\x00\x05\x16\x07"
EMPTY_BOUNDS = {"", "[]", "none", "null"}
LABELLING_NOTE = "partial: some images are labelled in only part of the scene"
GSD_METRES = 0.3


class Feature(NamedTuple):
    """The fields of one GeoJSON feature that `load` needs."""

    number: int
    feature_id: Any
    type_id: Any
    bounds: Any


class FeatureIndex(NamedTuple):
    by_image: dict[str, list[Feature]]
    skips: list[Skip]


def _read_index(path: Path, file: str) -> FeatureIndex:
    """Group the features of a GeoJSON file by image name; an unreadable file gives one skip."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            collection = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return FeatureIndex({}, [Skip("unreadable_annotation", file, f"cannot parse the GeoJSON file: {error}")])
    features = collection.get("features") if isinstance(collection, dict) else None
    if not isinstance(features, list):
        return FeatureIndex({}, [Skip("unreadable_annotation", file, "the GeoJSON file has no 'features' list")])

    by_image: dict[str, list[Feature]] = {}
    skips: list[Skip] = []
    for number, feature in enumerate(features, start=1):
        properties = feature.get("properties") if isinstance(feature, dict) else None
        properties = properties if isinstance(properties, dict) else {}
        image = str(properties.get("image_id") or "").strip()
        feature_id = properties.get("feature_id", number)
        if not image:
            skips.append(Skip("missing_image_id", file, f"feature {feature_id}: properties.image_id is missing"))
            continue
        entry = Feature(number, feature_id, properties.get("type_id"), properties.get("bounds_imcoords"))
        by_image.setdefault(image, []).append(entry)
    return FeatureIndex(by_image, skips)


# NOTE: each build worker process parses the GeoJSON once (spawned workers share nothing), so the
# full 1-million-feature file costs its parse time and several GB of memory per worker.
@lru_cache(maxsize=2)
def _cached_index(path: str, size: int, mtime_ns: int, file: str) -> FeatureIndex:
    return _read_index(Path(path), file)


def feature_index(root: Path, file: str) -> FeatureIndex:
    """Return the features of `root/file` grouped by image, parsed once per process and file version."""
    path = Path(root) / file
    status = path.stat()
    return _cached_index(str(path), status.st_size, status.st_mtime_ns, file)


def _parse_bounds(value: Any, where: str, file: str) -> tuple[list[tuple[float, float]], bool] | Skip:
    if isinstance(value, list):
        text = ",".join(str(v) for v in value)
    elif value is None:
        text = ""
    else:
        text = str(value).strip()
    if text.lower() in EMPTY_BOUNDS:
        return Skip("missing_coordinates", file, f"{where}: bounds_imcoords is empty")
    try:
        values = [float(token) for token in text.strip("[]").split(",")]
    except ValueError:
        return Skip("invalid_coordinates", file, f"{where}: bounds_imcoords {text!r} is not a list of numbers")
    if not all(math.isfinite(v) for v in values):
        return Skip("invalid_coordinates", file, f"{where}: bounds_imcoords {text!r} is not finite")
    if len(values) == 4:
        xmin, ymin, xmax, ymax = values
        return [(xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax)], False
    if len(values) == 8:
        return [(values[i], values[i + 1]) for i in range(0, 8, 2)], True
    return Skip("invalid_coordinates", file, f"{where}: bounds_imcoords has {len(values)} values, expected 4 or 8")


def _parse_feature(feature: Feature, file: str) -> SourceObject | Skip:
    where = f"feature {feature.feature_id}"
    try:
        type_id = int(feature.type_id)
    except (TypeError, ValueError):
        return Skip("unknown_type_id", file, f"{where}: type_id {feature.type_id!r} is not an integer")
    if type_id in NOISE_TYPE_IDS:
        return Skip("label_noise", file, f"{where}: type_id {type_id} is not in the class list (labelling artefact)")
    label = CLASSES.get(type_id)
    if label is None:
        return Skip("unknown_type_id", file, f"{where}: type_id {type_id} is not in the class list")

    parsed = _parse_bounds(feature.bounds, where, file)
    if isinstance(parsed, Skip):
        return parsed
    points, oriented = parsed
    return SourceObject(label=label, points=points, oriented=oriented, difficult=None, where=where)


def _is_junk(path: Path) -> bool:
    """Return whether `path` is a macOS resource-fork file rather than an image."""
    if path.name.startswith("._"):
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == APPLEDOUBLE_MAGIC
    except OSError:
        return False


def find_label_file(root: Path) -> Path | None:
    """Return `xView_train.geojson`, or the only GeoJSON file in `root`, or None."""
    preferred = root / LABEL_FILE
    if preferred.is_file():
        return preferred
    candidates = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == GEOJSON_SUFFIX)
    return candidates[0] if len(candidates) == 1 else None


@register
class XviewSource(Source):
    """xView GeoJSON labels (`xView_train.geojson`) paired with the GeoTIFFs in `*_images/`."""

    format = "xview"
    license = "CC-BY-NC-SA-4.0"
    homepage = "https://xviewdataset.org/"
    citation = "D. Lam et al., xView: Objects in Context in Overhead Imagery, arXiv:1802.07856, 2018"
    encoding = "png"

    def scan(self, root: Path) -> Iterator[SceneRef | Skip]:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"xView source folder {root} does not exist; check the PATH of the source")
        image_folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith(IMAGE_DIR_SUFFIX))
        if not image_folders:
            raise FileNotFoundError(
                f"xView images not found: {root} has no train_images/ or val_images/ folder; pass the folder that contains them"
            )

        label_path = find_label_file(root)
        label_file = None if label_path is None else relative(label_path, root)
        index = FeatureIndex({}, []) if label_file is None else feature_index(root, label_file)
        if label_file is None:
            logger.warning("no %s (or single *.geojson) in %s: its images have no labels", LABEL_FILE, root)
        yield from index.skips

        found: set[str] = set()
        for folder in image_folders:
            split = folder.name[: -len(IMAGE_DIR_SUFFIX)] or "train"
            files = sorted(p for p in folder.iterdir() if p.is_file())
            kept = []
            for path in files:
                if _is_junk(path):
                    yield Skip("junk_file", relative(path, root), "macOS resource-fork file, not an image", IMAGE)
                else:
                    kept.append(path)
            images, image_skips = index_images(kept, root)
            yield from image_skips
            for stem, image in sorted(images.items()):
                found.add(image.name)
                has_features = image.name in index.by_image
                yield SceneRef(
                    source=self.name,
                    native_id=stem,
                    root=str(root),
                    image=relative(image, root),
                    annotations=(label_file,) if has_features else (),
                    split=split,
                )

        for name in sorted(index.by_image.keys() - found):
            count = len(index.by_image[name])
            detail = f"image {name} is not in any *{IMAGE_DIR_SUFFIX}/ folder; its {count} features are skipped"
            yield Skip("missing_image", label_file, detail, ANNOTATION)

    def load(self, ref: SceneRef) -> SceneAnnotations:
        result = SceneAnnotations(exhaustive=False, gsd=GSD_METRES, extra={"labelling": LABELLING_NOTE})
        image_name = Path(ref.image).name
        for file in ref.annotations:
            try:
                index = feature_index(Path(ref.root), file)
            except OSError as error:
                result.skips.append(Skip("unreadable_annotation", file, f"cannot read the GeoJSON file: {error}"))
                continue
            for feature in index.by_image.get(image_name, []):
                result.add(_parse_feature(feature, file))
        return result
