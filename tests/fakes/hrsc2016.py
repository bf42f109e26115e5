"""Fake HRSC2016 data: BMP images in `FullDataSet/AllImages/`, XML in `FullDataSet/Annotations/` and
split lists in `ImageSets/`.

Traps: rotated boxes with angles in radians, symbol class names (`OXo|--)` is id 19), an unused class
id, an object with only a horizontal box, bad objects, `Img_SizeWidth` and `Img_SizeHeight` written
swapped, an image without ships, an image without XML, an XML without image and a truncated XML.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tests.fakes import noise, write_bytes

WIDTH, HEIGHT = 64, 48


@dataclass
class Ship:
    class_id: str
    rotated: tuple[float, float, float, float, float] | None = (30.0, 20.0, 20.0, 8.0, 0.0)
    horizontal: tuple[float, float, float, float] | None = (20, 16, 40, 24)
    bow: tuple[float, float] | None = (40.0, 20.0)
    difficult: str = "0"
    skip: str | None = None
    label: str | None = None  # the readable name the adapter must give


@dataclass
class Scene:
    stem: str
    image: bool = True
    ships: list[Ship] | None = field(default_factory=list)  # None: no XML
    malformed: bool = False
    rotation: str = "000d"
    resolution: str = "1.07"
    listed: str | None = "trainval"


SCENES = [
    Scene(
        "100000001",
        ships=[
            Ship("100000005", rotated=(30.0, 20.0, 20.0, 8.0, 0.5), bow=(38.8, 24.8), label="Nimitz class aircraft carrier"),
            Ship("100000019", rotated=(10.0, 30.0, 12.0, 4.0, -1.5707963), bow=(10.0, 24.0), difficult="1", label="merchant ship"),
        ],
    ),
    Scene("100000002", ships=[], rotation="090d", listed="test"),
    Scene(
        "100000003",
        resolution="0",
        ships=[
            Ship("100000021", skip="unknown_class_id"),
            Ship("100000025", rotated=None, horizontal=(2, 3, 12, 9), bow=None, label="container ship"),
            Ship("100000030", rotated=None, horizontal=None, skip="missing_coordinates"),
            Ship("100000029", rotated=(5.0, 5.0, "wide", 2.0, 0.0), skip="invalid_coordinates"),
            Ship("100000028", rotated=(-2.0, 40.0, 10.0, 4.0, 0.0), bow=None, label="ship"),
        ],
        listed=None,
    ),
    Scene("100000004", image=False, ships=[Ship("100000002")]),
    Scene("100000005", ships=None),
    Scene("100000006", malformed=True, ships=[Ship("100000002")]),
]


def _object_xml(ship: Ship) -> str:
    parts = [f"<Class_ID>{ship.class_id}</Class_ID>", "<truncated>0</truncated>", f"<difficult>{ship.difficult}</difficult>"]
    if ship.horizontal is not None:
        parts += [f"<{tag}>{value}</{tag}>" for tag, value in zip(("box_xmin", "box_ymin", "box_xmax", "box_ymax"), ship.horizontal)]
    if ship.rotated is not None:
        parts += [f"<{tag}>{value}</{tag}>" for tag, value in zip(("mbox_cx", "mbox_cy", "mbox_w", "mbox_h", "mbox_ang"), ship.rotated)]
    if ship.bow is not None:
        parts += [f"<header_x>{ship.bow[0]}</header_x>", f"<header_y>{ship.bow[1]}</header_y>"]
    parts.append("<seg_color>255,0,0</seg_color>")
    return "      <HRSC_Object>\n" + "".join(f"        {p}\n" for p in parts) + "      </HRSC_Object>\n"


def _xml_bytes(scene: Scene) -> bytes:
    objects = "".join(_object_xml(ship) for ship in scene.ships)
    # Width and height are written swapped on purpose: the adapter must not use them.
    text = (
        "<HRSC_Image>\n"
        f"  <Img_ID>{scene.stem}</Img_ID>\n  <Img_FileName>{scene.stem}</Img_FileName>\n  <Img_FileFmt>bmp</Img_FileFmt>\n"
        "  <Img_Location>69.040297,33.070036</Img_Location>\n"
        f"  <Img_SizeWidth>{HEIGHT}</Img_SizeWidth>\n  <Img_SizeHeight>{WIDTH}</Img_SizeHeight>\n  <Img_SizeDepth>3</Img_SizeDepth>\n"
        f"  <Img_Resolution>{scene.resolution}</Img_Resolution>\n  <Img_Rotation>{scene.rotation}</Img_Rotation>\n"
        f"  <HRSC_Objects>\n{objects}  </HRSC_Objects>\n</HRSC_Image>\n"
    )
    if scene.malformed:
        text = text[: len(text) // 2]
    return text.encode("utf-8")


def _bmp(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="BMP")
    return buffer.getvalue()


def make_hrsc2016(root: Path, seed: int = 0) -> dict:
    """Write a fake HRSC2016 tree under `root` and return what the adapter must find in it.

    Returns `scenes` (native id to split, image, annotations, labels, difficult flags, bow points,
    per-reason skips, gsd and extra) and `scan_skips` ((reason, file) pairs).
    """
    rng = np.random.default_rng(seed)
    base = root / "FullDataSet"
    scenes: dict[str, dict] = {}
    scan_skips: list[tuple[str, str]] = []
    listed: dict[str, list[str]] = {"trainval": [], "test": []}

    for scene in SCENES:
        if scene.image:
            write_bytes(base / "AllImages" / f"{scene.stem}.bmp", _bmp(noise(rng, HEIGHT, WIDTH)))
        if scene.ships is not None:
            write_bytes(base / "Annotations" / f"{scene.stem}.xml", _xml_bytes(scene))
        if scene.listed is not None:
            listed[scene.listed].append(scene.stem)
        if not scene.image:
            scan_skips.append(("missing_image", f"FullDataSet/Annotations/{scene.stem}.xml"))
            continue

        ships = [ship for ship in scene.ships or [] if ship.skip is None]
        skips = Counter(ship.skip for ship in scene.ships or [] if ship.skip)
        if scene.malformed:
            ships, skips = [], Counter({"unreadable_annotation": 1})
        has_xml = scene.ships is not None and not scene.malformed
        scenes[scene.stem] = {
            "split": scene.listed or "train",
            "image": f"FullDataSet/AllImages/{scene.stem}.bmp",
            "annotations": () if scene.ships is None else (f"FullDataSet/Annotations/{scene.stem}.xml",),
            "labels": [ship.label for ship in ships],
            "difficult": [int(ship.difficult) for ship in ships],
            "oriented": [ship.rotated is not None for ship in ships],
            "skips": dict(skips),
            "gsd": float(scene.resolution) if has_xml and float(scene.resolution) > 0 else None,
            "rotation": scene.rotation if has_xml and scene.rotation != "000d" else None,
        }

    for split, stems in listed.items():
        write_bytes(root / "ImageSets" / f"{split}.txt", "".join(f"{stem}\n" for stem in stems).encode())
    return {"root": root, "scenes": scenes, "scan_skips": scan_skips}
