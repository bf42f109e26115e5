"""Segmentation dataset definitions, in the layout that SegEarth-OV's preparation scripts write.

Each dataset has a root folder (`--data`) with an image folder and a mask folder inside it. A mask
has the image's file stem plus `mask_suffix`. Masks are class-index images (one 8-bit channel) or
colour images decoded through the palette. With `reduce_zero_label`, stored value 0 is ignored and
every other value v becomes class v - 1, as mmsegmentation does for LoVEDA, Potsdam and Vaihingen.

Class lists give synonyms after commas and the best synonym wins. The probability thresholds and
background indices follow the FarSLIP reference protocol.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class SegmentationDataset:
    """Classes, palette, thresholds and file layout of one segmentation dataset."""

    name: str
    classes: tuple[tuple[str, ...], ...]
    palette: tuple[Colour, ...]
    threshold: float
    background: int
    images: str = "img_dir/val"
    masks: str = "ann_dir/val"
    image_suffix: str = ".png"
    mask_suffix: str = ".png"
    reduce_zero_label: bool = False
    ignore_index: int = 255
    exclude_suffixes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.palette) != len(self.classes):
            raise ValueError(f"segmentation dataset {self.name}: {len(self.classes)} classes but {len(self.palette)} palette colours; give one colour per class")
        if not 0 <= self.background < len(self.classes):
            raise ValueError(f"segmentation dataset {self.name}: background index {self.background} is not a class index (0..{len(self.classes) - 1})")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"segmentation dataset {self.name}: threshold {self.threshold} must lie in [0, 1]")

    @property
    def class_names(self) -> list[str]:
        """The first name of each class, used in tables."""
        return [synonyms[0] for synonyms in self.classes]


def _classes(*lines: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(name.strip() for name in line.split(",")) for line in lines)


ISPRS_PALETTE = ((255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0))

DATASETS: dict[str, SegmentationDataset] = {
    "openearthmap": SegmentationDataset(
        name="openearthmap",
        classes=_classes("background", "bareland,barren", "grass", "pavement", "road", "tree,forest", "water,river", "cropland", "building,roof,house"),
        palette=((0, 0, 0), (128, 0, 0), (0, 255, 36), (148, 148, 148), (255, 255, 255), (34, 97, 38), (0, 69, 255), (75, 181, 73), (222, 31, 7)),
        threshold=0.1,
        background=0,
        image_suffix=".tif",
        mask_suffix=".tif",
    ),
    # NOTE: the LoveDA palette is the one commonly used for display, not checked against a source;
    # LoveDA masks are class-index PNGs, so it only colours the pictures.
    "loveda": SegmentationDataset(
        name="loveda",
        classes=_classes("background", "building,roof,house", "road", "water", "barren", "forest", "agricultural"),
        palette=((255, 255, 255), (255, 0, 0), (255, 255, 0), (0, 0, 255), (159, 129, 183), (0, 255, 0), (255, 195, 128)),
        threshold=0.3,
        background=0,
        reduce_zero_label=True,
    ),
    "potsdam": SegmentationDataset(
        name="potsdam",
        classes=_classes("road,parking lot", "building", "low vegetation", "tree", "car", "clutter,background"),
        palette=ISPRS_PALETTE,
        threshold=0.1,
        background=5,
        reduce_zero_label=True,
    ),
    "vaihingen": SegmentationDataset(
        name="vaihingen",
        classes=_classes("impervious surface", "building", "low vegetation", "tree", "car", "clutter"),
        palette=ISPRS_PALETTE,
        threshold=0.1,
        background=5,
        reduce_zero_label=True,
    ),
    "udd5": SegmentationDataset(
        name="udd5",
        classes=_classes("vegetation", "building", "road", "vehicle", "background"),
        palette=((107, 142, 35), (102, 102, 156), (128, 64, 128), (0, 0, 142), (0, 0, 0)),
        threshold=0.4,
        background=4,
        images="val/src",
        masks="val/gt",
        image_suffix=".JPG",
    ),
    # NOTE: VDD ships class-index masks without a published palette here; these colours only draw
    # the pictures and were chosen by this project.
    "vdd": SegmentationDataset(
        name="vdd",
        classes=_classes("background", "facade", "road", "vegetation", "vehicle", "roof", "water"),
        palette=((0, 0, 0), (102, 102, 156), (128, 64, 128), (107, 142, 35), (0, 0, 142), (70, 70, 70), (28, 42, 168)),
        threshold=0.3,
        background=0,
        images="test/src",
        masks="test/gt",
        image_suffix=".JPG",
    ),
    # UAVid as prepared for SegEarth-OV: moving and static cars merged into one `car` class.
    "uavid": SegmentationDataset(
        name="uavid",
        classes=_classes("background", "building", "road", "car", "tree", "vegetation", "human"),
        palette=((0, 0, 0), (128, 0, 0), (128, 64, 128), (192, 0, 192), (0, 128, 0), (128, 128, 0), (64, 64, 0)),
        threshold=0.3,
        background=0,
        images="img_dir/test",
        masks="ann_dir/test",
    ),
    # iSAID: prepared patches store class indices, and the raw release stores these colours. The raw
    # release keeps images and masks side by side (--images train/images --masks train/images).
    "isaid": SegmentationDataset(
        name="isaid",
        classes=_classes(
            "background", "ship", "store tank", "baseball diamond", "tennis court", "basketball court",
            "ground track field", "bridge", "large vehicle", "small vehicle", "helicopter", "swimming pool",
            "roundabout", "soccer ball field", "plane", "harbor",
        ),
        palette=(
            (0, 0, 0), (0, 0, 63), (0, 63, 63), (0, 63, 0), (0, 63, 127), (0, 63, 191), (0, 63, 255), (0, 127, 63),
            (0, 127, 127), (0, 0, 127), (0, 0, 191), (0, 0, 255), (0, 191, 127), (0, 127, 191), (0, 127, 255), (0, 100, 155),
        ),
        threshold=0.4,
        background=0,
        mask_suffix="_instance_color_RGB.png",
        exclude_suffixes=("_instance_id_RGB.png",),
    ),
}


def load_dataset_config(spec: str | Path) -> SegmentationDataset:
    """Return a built-in dataset by name or read one from a YAML file (keys as in SegmentationDataset).

    In YAML, `classes` is a list of strings with synonyms after commas, `palette` a list of [r, g, b].
    """
    if str(spec).lower() in DATASETS:
        return DATASETS[str(spec).lower()]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"segmentation dataset {spec!r} is neither a built-in name ({', '.join(DATASETS)}) nor a YAML file")

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    known = {item.name for item in fields(SegmentationDataset)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; allowed keys are {sorted(known)}")
    for key in ("classes", "threshold", "background"):
        if key not in data:
            raise ValueError(f"{path}: missing key {key!r}; see configs/eval/segment/example.yaml")
    data.setdefault("name", path.stem)
    data["classes"] = _classes(*data["classes"])
    palette = data.get("palette") or [default_colour(index) for index in range(len(data["classes"]))]
    data["palette"] = tuple(tuple(int(value) for value in colour) for colour in palette)
    data["exclude_suffixes"] = tuple(data.get("exclude_suffixes", ()))
    return SegmentationDataset(**data)


def default_colour(index: int) -> Colour:
    """Return a distinct display colour for class `index` (for datasets without a palette)."""
    return ((index * 97) % 256, (index * 57 + 80) % 256, (index * 151 + 160) % 256)
