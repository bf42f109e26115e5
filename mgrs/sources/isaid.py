"""iSAID: instance masks of 15 object classes on the DOTA v1.0 images.

Layout on disk (PATH is the folder given to `--source isaid:PATH`), as the iSAID devkit expects it::

    PATH/train/images/P0002.png
    PATH/train/images/P0002_instance_color_RGB.png    class colour of every pixel
    PATH/train/images/P0002_instance_id_RGB.png       one colour per instance
    PATH/val/images/...
    PATH/test/images/P0006.png                        no masks: test labels are withheld

Each sub-folder with `images/` is a split named after the folder (a PATH that itself contains
`images/` is one split named "train"). The two masks sit beside their image and are recognised by
their suffixes, so scan never takes them for images. An image without either mask becomes a scene
without annotation files, and a mask without its image is skipped as `missing_image`.

Objects: one per pair of (instance colour, class colour) in the two masks, so that touching objects
of one class stay separate instances, which connected components of the class mask would merge.
Black is background in both masks. The object's `geometry` is the union of its pixels as a shapely
(Multi)Polygon, with pixel edges as coordinates: pixel (x, y) covers [x, x+1] x [y, y+1]. An instance
split into several parts (an occluded bridge, say) stays one object with a MultiPolygon.

Skips, per object unless noted:
- `tiny_instance`: area at most `min_instance_area` pixels (10 by default, a constructor option).
- `unknown_class_colour`: instance pixels whose class colour is not in `CLASS_COLOURS`.
- `instance_without_class`: instance pixels whose class colour is black.
- `class_without_instance`: class pixels whose instance colour is black, counted per class colour.
- `missing_mask`, `mask_size_mismatch`, `unreadable_annotation` (unit "image"): one mask is absent,
  the masks differ in size from each other or from the image, or a mask cannot be decoded. The
  scene then has no objects, and the skip records the reason.

Classes, as spelled by the devkit's label table (`CLASS_COLOURS`), with casing and underscores that
differ from DOTA's: ship, storage_tank, baseball_diamond, tennis_court, basketball_court,
Ground_Track_Field, Bridge, Large_Vehicle, Small_Vehicle, Helicopter, Swimming_pool, Roundabout,
Soccer_ball_field, plane, Harbor. Labels are passed on as spelled and mapped by the build with the
taxonomy.

The images are the DOTA v1.0 images: the same scene read from both sources is a duplicate that the
build must resolve. Image names of the devkit's patch splitter (`P0003_0_800_347_1147`, y before x)
have their offsets recovered into `SceneRef.meta["patch_of"]`. GSD is not given (None).
Like DOTA, iSAID leaves small or vague objects unlabelled, so `exhaustive` is False.

Licence: academic use only, no commercial use (the DOTA images keep their own terms).
Homepage: https://captain-whu.github.io/iSAID/
Citation: S. Waqas Zamir et al., "iSAID: A Large-scale Dataset for Instance Segmentation in Aerial
Images", CVPR Workshops 2019.
"""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

import numpy as np
import shapely
from PIL import Image, UnidentifiedImageError
from shapely.geometry.base import BaseGeometry

from mgrs.sources.base import ANNOTATION, IMAGE, SceneAnnotations, SceneRef, Skip, Source, SourceObject, register
from mgrs.sources.dota import find_split_folders, index_images, list_files, patch_meta, relative

CLASS_COLOURS: dict[tuple[int, int, int], str] = {
    (0, 0, 63): "ship",
    (0, 63, 63): "storage_tank",
    (0, 63, 0): "baseball_diamond",
    (0, 63, 127): "tennis_court",
    (0, 63, 191): "basketball_court",
    (0, 63, 255): "Ground_Track_Field",
    (0, 127, 63): "Bridge",
    (0, 127, 127): "Large_Vehicle",
    (0, 0, 127): "Small_Vehicle",
    (0, 0, 191): "Helicopter",
    (0, 0, 255): "Swimming_pool",
    (0, 191, 127): "Roundabout",
    (0, 127, 191): "Soccer_ball_field",
    (0, 127, 255): "plane",
    (0, 100, 155): "Harbor",
}

# Class colours packed as 0xRRGGBB, the form `masks_to_objects` compares.
CLASS_CODES = {(r << 16) | (g << 8) | b: name for (r, g, b), name in CLASS_COLOURS.items()}

IMAGE_DIR = "images"
CLASS_MASK_SUFFIX = "_instance_color_RGB"
INSTANCE_MASK_SUFFIX = "_instance_id_RGB"
MASK_SUFFIXES = (CLASS_MASK_SUFFIX, INSTANCE_MASK_SUFFIX)
MIN_INSTANCE_AREA = 10

BACKGROUND = 0
# Colours packed into one integer: 24 bits per colour, the instance colour above the class colour.
COLOUR_BITS = 24
COLOUR_MASK = (1 << COLOUR_BITS) - 1


class _MaskError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _mask_kind(path: Path) -> tuple[str, str] | None:
    """Return (image stem, mask suffix) for a mask file, or None for any other file."""
    for suffix in MASK_SUFFIXES:
        if path.stem.endswith(suffix):
            return path.stem[: -len(suffix)], suffix
    return None


def _pack(rgb: np.ndarray) -> np.ndarray:
    """Pack an (H, W, 3) uint8 image into (H, W) uint32 colour codes 0xRRGGBB."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _unpack(code: int) -> tuple[int, int, int]:
    return (code >> 16) & 0xFF, (code >> 8) & 0xFF, code & 0xFF


def _open_mask(path: Path, file: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as error:
        raise _MaskError("unreadable_annotation", f"cannot open mask {file}: {error}") from error


def _decode_mask(image: Image.Image, file: str) -> np.ndarray:
    try:
        return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:
        raise _MaskError("unreadable_annotation", f"cannot decode mask {file}: {error}") from error


def _image_size(path: Path) -> tuple[int, int] | None:
    """Return the image's (width, height) from its header, or None when the build will report it unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return None


def _read_masks(ref: SceneRef, class_file: str, instance_file: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode both masks as (H, W) colour codes, checking their sizes against each other and the image."""
    root = Path(ref.root)
    with ExitStack() as stack:
        class_image = stack.enter_context(_open_mask(root / class_file, class_file))
        instance_image = stack.enter_context(_open_mask(root / instance_file, instance_file))
        if class_image.size != instance_image.size:
            raise _MaskError(
                "mask_size_mismatch",
                f"class mask is {class_image.size[0]}x{class_image.size[1]}, instance mask is "
                f"{instance_image.size[0]}x{instance_image.size[1]}",
            )
        image_size = _image_size(ref.image_path)
        if image_size is not None and image_size != class_image.size:
            raise _MaskError(
                "mask_size_mismatch",
                f"masks are {class_image.size[0]}x{class_image.size[1]}, the image is {image_size[0]}x{image_size[1]}",
            )
        return _pack(_decode_mask(class_image, class_file)), _pack(_decode_mask(instance_image, instance_file))


def _row_runs(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split every row of an (H, W) code image into runs of equal codes.

    Returns (code, row, x_start, x_end) arrays with one entry per run, x_end exclusive.
    """
    height, width = codes.shape
    flat = codes.ravel()
    starts_run = np.ones(flat.shape, dtype=bool)
    starts_run[1:] = flat[1:] != flat[:-1]
    starts_run[::width] = True
    starts = np.flatnonzero(starts_run)
    ends = np.append(starts[1:], flat.size)
    return flat[starts], starts // width, starts % width, starts % width + (ends - starts)


def _runs_to_geometry(rows: np.ndarray, x_starts: np.ndarray, x_ends: np.ndarray) -> BaseGeometry:
    boxes = shapely.box(x_starts, rows, x_ends, rows + 1)
    return shapely.union_all(boxes).simplify(0)


def masks_to_objects(
    class_codes: np.ndarray, instance_codes: np.ndarray, file: str, min_instance_area: int
) -> tuple[list[SourceObject], list[Skip]]:
    """Turn (H, W) class and instance colour codes into one object per (instance, class) colour pair."""
    pair_codes = (instance_codes.astype(np.uint64) << np.uint64(COLOUR_BITS)) | class_codes.astype(np.uint64)
    values, rows, x_starts, x_ends = _row_runs(pair_codes)
    lengths = x_ends - x_starts
    pairs, run_pair = np.unique(values, return_inverse=True)
    areas = np.bincount(run_pair, weights=lengths, minlength=len(pairs)).astype(np.int64)

    # Group the runs by pair once, so that each object takes a slice instead of a full-image search.
    order = np.argsort(run_pair, kind="stable")
    bounds = np.searchsorted(run_pair[order], np.arange(len(pairs) + 1))

    objects: list[SourceObject] = []
    skips: list[Skip] = []
    for index, pair in enumerate(pairs.tolist()):
        instance, class_code = pair >> COLOUR_BITS, pair & COLOUR_MASK
        area = int(areas[index])
        if instance == BACKGROUND:
            if class_code != BACKGROUND:
                detail = f"{area} pixels of class colour {_unpack(class_code)} have a black instance colour"
                skips.append(Skip("class_without_instance", file, detail))
            continue

        where = f"instance {_unpack(instance)}"
        if class_code == BACKGROUND:
            skips.append(Skip("instance_without_class", file, f"{where}: {area} pixels have a black class colour"))
            continue
        label = CLASS_CODES.get(class_code)
        if label is None:
            skips.append(Skip("unknown_class_colour", file, f"{where}: class colour {_unpack(class_code)} is not an iSAID class"))
            continue
        if area <= min_instance_area:
            skips.append(Skip("tiny_instance", file, f"{where}: {label} of {area} pixels, at most {min_instance_area}"))
            continue

        runs = order[bounds[index] : bounds[index + 1]]
        geometry = _runs_to_geometry(rows[runs], x_starts[runs], x_ends[runs])
        objects.append(SourceObject(label=label, geometry=geometry, oriented=True, where=where))
    return objects, skips


@register
class IsaidSource(Source):
    """iSAID class-colour and instance-colour masks beside the DOTA images."""

    format = "isaid"
    license = "iSAID: academic use only, no commercial use"
    homepage = "https://captain-whu.github.io/iSAID/"
    citation = (
        "S. Waqas Zamir et al., iSAID: A Large-scale Dataset for Instance Segmentation in Aerial Images, "
        "CVPR Workshops 2019"
    )
    encoding = "png"

    def __init__(self, version: str | None = None, min_instance_area: int = MIN_INSTANCE_AREA):
        super().__init__(version)
        if min_instance_area < 0:
            raise ValueError(f"min_instance_area must be a number of pixels >= 0, got {min_instance_area}")
        self.min_instance_area = min_instance_area

    def scan(self, root: Path) -> Iterator[SceneRef | Skip]:
        root = Path(root)
        found_masks = False
        for split, folder in find_split_folders(root, (IMAGE_DIR,), "iSAID"):
            for item in self._scan_split(root, folder / IMAGE_DIR, split):
                if isinstance(item, SceneRef) and item.annotations:
                    found_masks = True
                yield item
        if not found_masks:
            raise FileNotFoundError(
                f"no iSAID masks (*{CLASS_MASK_SUFFIX}.png, *{INSTANCE_MASK_SUFFIX}.png) found under {root}; "
                "pass the folder that contains <split>/images/ with the masks beside each image"
            )

    def _scan_split(self, root: Path, folder: Path, split: str) -> Iterator[SceneRef | Skip]:
        masks: dict[str, dict[str, Path]] = {}
        candidates: list[Path] = []
        for path in list_files(folder):
            kind = _mask_kind(path)
            if kind is None:
                candidates.append(path)
            else:
                stem, suffix = kind
                masks.setdefault(stem, {})[suffix] = path
        images, image_skips = index_images(candidates, root)
        yield from image_skips

        for stem in sorted(images.keys() | masks.keys()):
            found = masks.get(stem, {})
            image = images.get(stem)
            if image is None:
                for suffix in MASK_SUFFIXES:
                    if suffix in found:
                        detail = f"no image named {stem}.* beside the mask"
                        yield Skip("missing_image", relative(found[suffix], root), detail, ANNOTATION)
                continue

            yield SceneRef(
                source=self.name,
                native_id=stem,
                root=str(root),
                image=relative(image, root),
                annotations=tuple(relative(found[suffix], root) for suffix in MASK_SUFFIXES if suffix in found),
                split=split,
                meta=patch_meta(stem),
            )

    def load(self, ref: SceneRef) -> SceneAnnotations:
        result = SceneAnnotations(exhaustive=False)
        if not ref.annotations:
            detail = f"neither {ref.native_id}{CLASS_MASK_SUFFIX}.png nor {ref.native_id}{INSTANCE_MASK_SUFFIX}.png beside the image"
            result.skips.append(Skip("missing_mask", ref.image, detail, IMAGE))
            return result

        by_suffix = {kind[1]: file for file in ref.annotations if (kind := _mask_kind(Path(file))) is not None}
        class_file = by_suffix.get(CLASS_MASK_SUFFIX)
        instance_file = by_suffix.get(INSTANCE_MASK_SUFFIX)
        if class_file is None or instance_file is None:
            missing = CLASS_MASK_SUFFIX if class_file is None else INSTANCE_MASK_SUFFIX
            detail = f"{ref.native_id}{missing}.png not found beside the image; both masks are needed"
            result.skips.append(Skip("missing_mask", ref.image, detail, IMAGE))
            return result

        try:
            class_codes, instance_codes = _read_masks(ref, class_file, instance_file)
        except _MaskError as error:
            result.skips.append(Skip(error.reason, ref.image, str(error), IMAGE))
            return result

        objects, skips = masks_to_objects(class_codes, instance_codes, instance_file, self.min_instance_area)
        result.objects.extend(objects)
        result.skips.extend(skips)
        return result
