"""Fake DIOR / DIOR-R data: JPEGs in `JPEGImages-trainval/` and `JPEGImages-test/`, VOC XML in
`Annotations/Horizontal Bounding Boxes/` and `Annotations/Oriented Bounding Boxes/` (spaces in the
folder names, as distributed), and optional `ImageSets/Main/*.txt` split lists.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.fakes import encode_image, noise, write_bytes

SIZE = 32
HORIZONTAL_DIR = "Annotations/Horizontal Bounding Boxes"
ORIENTED_DIR = "Annotations/Oriented Bounding Boxes"


@dataclass
class Box:
    """One `<object>` and its expected outcome.

    `corners` is the oriented quad LT, RT, RB, LB; the horizontal box is its bounding box. `skip` names
    the reason the adapter must give instead of an object; `xml` replaces the generated element.
    """

    label: str
    corners: list[tuple[float, float]]
    difficult: int | None = 0
    skip: str | None = None
    xml: str | None = None

    @property
    def horizontal(self) -> list[tuple[float, float]]:
        xs = [x for x, _ in self.corners]
        ys = [y for _, y in self.corners]
        return [(min(xs), min(ys)), (max(xs), min(ys)), (max(xs), max(ys)), (min(xs), max(ys))]


@dataclass
class Scene:
    stem: str
    folder: str | None = "JPEGImages-trainval"  # None: an XML without an image
    boxes: list[Box] | None = field(default_factory=list)  # None: no XML
    style: str = "voc"  # voc: declaration, <size>, <difficult>; bare: none of them, tab indents
    malformed: bool = False
    listed_split: str | None = None


def rect(x1: float, y1: float, x2: float, y2: float) -> list[tuple[float, float]]:
    return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]


SCENES = [
    Scene(
        "00001",
        boxes=[
            Box("golffield", rect(3, 5, 20, 18), difficult=0),
            Box("Expressway-Service-area", [(10, 4), (24, 10), (20, 20), (6, 14)], difficult=1),
        ],
        listed_split="train",
    ),
    Scene(
        "00002",
        style="bare",
        boxes=[
            Box("vehicle", rect(1, 1, 4, 3), difficult=None),
            Box("vehicle", rect(5, 1, 8, 3), difficult=None),
            Box("Expressway-toll-station", rect(10, 10, 30, 30), difficult=None),
        ],
        listed_split="train",
    ),
    Scene("00003", malformed=True, boxes=[Box("dam", rect(1, 1, 9, 9))], listed_split="val"),
    Scene(
        "00004",
        folder="JPEGImages-test",
        boxes=[
            Box("", rect(1, 1, 5, 5), skip="empty_label", xml="<object><pose>Unspecified</pose>{box}</object>"),
            Box("airplane", rect(1, 1, 5, 5), skip="invalid_coordinates"),
            Box("ship", rect(1, 1, 5, 5), skip="missing_coordinates", xml="<object><name>ship</name></object>"),
            Box("windmill", rect(1, 1, 5, 5), skip="invalid_difficult"),
            Box("airplane", rect(6.5, 7.5, 16.5, 17.5), difficult=0),
        ],
        listed_split="test",
    ),
    Scene("00005", folder="JPEGImages-test", boxes=None, listed_split="test"),
    Scene("00006", folder=None, boxes=[Box("bridge", rect(1, 1, 9, 9))], listed_split="test"),
    Scene("00007", boxes=[Box("dam", rect(2, 2, 12, 12))], listed_split="train"),
    Scene("00008", boxes=[Box("chimney", rect(2, 2, 6, 20))]),
]

# 00007 is listed twice; train comes first.
IMAGE_SETS = {
    "train": ["00001", "00002", "00007"],
    "val": ["00003", "00007"],
    "test": ["00004", "00005", "00006"],
}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _box_xml(box: Box, oriented: bool) -> str:
    if oriented:
        names = ("left_top", "right_top", "right_bottom", "left_bottom")
        values = "".join(f"<x_{n}>{_number(x)}</x_{n}><y_{n}>{_number(y)}</y_{n}>" for n, (x, y) in zip(names, box.corners))
        return f"<robndbox>{values}</robndbox><angle>0</angle>"
    (xmin, ymin), _, (xmax, ymax), _ = box.horizontal
    return (
        f"<bndbox><xmin>{_number(xmin)}</xmin><ymin>{_number(ymin)}</ymin>"
        f"<xmax>{_number(xmax)}</xmax><ymax>{_number(ymax)}</ymax></bndbox>"
    )


def _object_xml(box: Box, oriented: bool, with_difficult: bool) -> str:
    if box.xml is not None:
        return box.xml.format(box=_box_xml(box, oriented))
    geometry = _box_xml(box, oriented)
    if box.skip == "invalid_coordinates":
        geometry = geometry.replace(">1<", ">1a<", 1)
    kind = "<type>robndbox</type>" if oriented else ""
    difficult = ""
    if box.skip == "invalid_difficult":
        difficult = "<difficult>x</difficult>"
    elif with_difficult and box.difficult is not None:
        difficult = f"<difficult>{box.difficult}</difficult>"
    return f"<object>{kind}<name>{box.label}</name><pose>Unspecified</pose><truncated>0</truncated>{difficult}{geometry}</object>"


def _xml_bytes(scene: Scene, oriented: bool) -> bytes:
    objects = [_object_xml(box, oriented, with_difficult=scene.style == "voc") for box in scene.boxes]
    if scene.style == "voc":
        head = '<?xml version="1.0" encoding="UTF-8"?>\n<annotation>\n'
        size = f"    <size><width>{SIZE}</width><height>{SIZE}</height><depth>3</depth></size>\n"
        body = "".join(f"    {element}\n" for element in objects)
        text = f"{head}    <filename>{scene.stem}.jpg</filename>\n{size}{body}</annotation>\n"
    else:
        # Tab indents and a line break between every pair of tags, as some exporters write.
        body = "".join("\t" + element.replace("><", ">\n\t\t<") + "\n" for element in objects)
        text = f"<annotation>\n\t<filename>{scene.stem}.jpg</filename>\n{body}</annotation>\n"
    if scene.malformed:
        text = text[: len(text) // 2]
    return text.encode("utf-8")


def _expected_split(scene: Scene, image_sets: bool) -> str:
    if image_sets and scene.listed_split is not None:
        return scene.listed_split
    return "test" if scene.folder == "JPEGImages-test" else "trainval"


def _describe(scene: Scene, image_sets: bool, horizontal_dir: str) -> dict:
    boxes = scene.boxes or []
    objects = [box for box in boxes if box.skip is None]
    skips = Counter(box.skip for box in boxes if box.skip)
    if scene.malformed:
        objects, skips = [], Counter({"unreadable_annotation": 1})
    has_xml = scene.boxes is not None
    return {
        "split": _expected_split(scene, image_sets),
        "image": f"{scene.folder}/{scene.stem}.jpg",
        "horizontal_xml": f"{horizontal_dir}/{scene.stem}.xml" if has_xml else None,
        "oriented_xml": f"{ORIENTED_DIR}/{scene.stem}.xml" if has_xml else None,
        "objects": len(objects),
        "labels": [box.label for box in objects],
        "difficult": [box.difficult for box in objects],
        "horizontal_points": [box.horizontal for box in objects],
        "oriented_points": [box.corners for box in objects],
        "skips": dict(skips),
    }


def make_dior(root: Path, seed: int = 0, image_sets: bool = True, horizontal_in_subfolder: bool = True) -> dict:
    """Write a fake DIOR / DIOR-R tree under `root` and return what the adapters must find in it.

    Horizontal XML goes to `Annotations/Horizontal Bounding Boxes/`, or straight into `Annotations/`
    when `horizontal_in_subfolder` is False; oriented XML always goes to `Annotations/Oriented
    Bounding Boxes/`. Returns `scenes` (native id to split, paths, objects and per-reason skips of
    `load`) and `scan_skips` for each format.
    """
    rng = np.random.default_rng(seed)
    horizontal_dir = HORIZONTAL_DIR if horizontal_in_subfolder else "Annotations"
    scenes: dict[str, dict] = {}
    scan_skips: dict[str, list[tuple[str, str]]] = {"dior": [], "dior-r": []}

    for scene in SCENES:
        if scene.folder is not None:
            write_bytes(root / scene.folder / f"{scene.stem}.jpg", encode_image(noise(rng, SIZE, SIZE), ".jpg"))
        if scene.boxes is not None:
            write_bytes(root / horizontal_dir / f"{scene.stem}.xml", _xml_bytes(scene, oriented=False))
            write_bytes(root / ORIENTED_DIR / f"{scene.stem}.xml", _xml_bytes(scene, oriented=True))
        if scene.folder is None:
            scan_skips["dior"].append(("missing_image", f"{horizontal_dir}/{scene.stem}.xml"))
            scan_skips["dior-r"].append(("missing_image", f"{ORIENTED_DIR}/{scene.stem}.xml"))
        else:
            scenes[scene.stem] = _describe(scene, image_sets, horizontal_dir)

    if image_sets:
        for split, ids in IMAGE_SETS.items():
            write_bytes(root / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{i}\n" for i in ids).encode())

    return {"root": root, "scenes": scenes, "scan_skips": scan_skips}
