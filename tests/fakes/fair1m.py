"""Fake FAIR1M data: TIFF images and XML labels in `train/part1`, `train/part2` (a `labelXmls/` label
folder), `validation` (both `labelXml/` and `labelXmls/`) and `test` (no labels).

Traps: closed five-point rings with arbitrary start points and directions, spelling variants of class
names, negative and beyond-image coordinates, a four-point ring that is not closed, bad objects of
every skip reason, a truncated XML file, an XML without its image, the same stem in two parts, a macOS
resource-fork file, and 8-bit RGB, 16-bit grey, 16-bit RGB and 16-bit four-band TIFFs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from tests.fakes import encode_image, noise, write_bytes

WIDTH, HEIGHT = 48, 40


@dataclass
class Obj:
    """One `<object>`: its label, its ring as written (closed or not) and the expected outcome."""

    label: str
    ring: list[tuple[float, float]]
    skip: str | None = None
    coordinate: str = "pixel"
    xml: str | None = None

    @property
    def expected_points(self) -> list[tuple[float, float]]:
        return self.ring[:-1] if self.ring[0] == self.ring[-1] else self.ring


def ring(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [*points, points[0]]


@dataclass
class Scene:
    folder: str  # the folder that contains images/
    stem: str
    image: str | None = "rgb8"  # rgb8, grey16, rgb16, bands4_16, or None for an XML without image
    label_dir: str | None = "labelXml"  # None: no XML
    objects: list[Obj] = field(default_factory=list)
    malformed: bool = False
    origin: str = "GF2"


SCENES = [
    Scene(
        "train/part1",
        "0",
        objects=[
            # Starts at the bottom-right corner and runs counter-clockwise.
            Obj("Boeing737", ring([(30.5, 20.0), (30.5, 8.0), (10.0, 8.0), (10.0, 20.0)])),
            Obj("Boeing 737", ring([(2, 2), (9, 3), (8, 10), (1, 9)])),
            Obj("LiquidCargoShip", ring([(-5.0, 30.0), (12.0, 30.0), (12.0, 39.0), (-5.0, 39.0)])),
            Obj("Small Car", ring([(41.0, 33.0), (49.0, 33.0), (49.0, 41.0), (41.0, 41.0)])),
            Obj("other-vehicle", [(20, 25), (26, 25), (26, 30), (20, 30)]),
        ],
    ),
    Scene(
        "train/part1",
        "1",
        image="grey16",
        objects=[
            Obj("", ring([(1, 1), (5, 1), (5, 5), (1, 5)]), skip="empty_label"),
            Obj("Bus", ring([(1, 1), (5, 1), (5, 5), (1, 5)]), skip="invalid_coordinates"),
            Obj("Bus", [], skip="missing_coordinates", xml="<object><possibleresult><name>Bus</name></possibleresult></object>"),
            Obj("Van", ring([(1, 1), (5, 1), (5, 5), (1, 5)]), skip="unsupported_coordinates", coordinate="geographic"),
            Obj("Tugboat", ring([(3, 3), (3, 3), (7, 7), (3, 3)]), skip="degenerate_polygon"),
            Obj("Tennis Court", ring([(20.25, 4.75), (40.0, 4.75), (40.0, 18.5), (20.25, 18.5)])),
        ],
    ),
    Scene("train/part1", "2", malformed=True, objects=[Obj("Bridge", ring([(1, 1), (9, 1), (9, 9), (1, 9)]))]),
    Scene("train/part1", "9", image=None, objects=[Obj("Bridge", ring([(1, 1), (9, 1), (9, 9), (1, 9)]))]),
    Scene(
        "train/part2",
        "0",
        image="rgb16",
        label_dir="labelXmls",
        origin="Google Earth",
        objects=[Obj("Dry Cargo Ship", ring([(4, 4), (30, 6), (29, 16), (3, 14)]))],
    ),
    Scene(
        "validation",
        "0",
        image="bands4_16",
        objects=[Obj("Intersection", ring([(10, 10), (30, 10), (30, 30), (10, 30)]))],
    ),
    Scene("test", "5", label_dir=None),
]


def _point_text(x: float, y: float) -> str:
    return f"{x:g},{y:g}"


def _object_xml(obj: Obj) -> str:
    if obj.xml is not None:
        return obj.xml
    points = "".join(f"<point>{_point_text(x, y)}</point>" for x, y in obj.ring)
    if obj.skip == "invalid_coordinates":
        points = points.replace("<point>1,1</point>", "<point>1,a</point>", 1)
    return (
        f"\t\t<object>\n\t\t\t<coordinate>{obj.coordinate}</coordinate>\n\t\t\t<type>rectangle</type>\n"
        f"\t\t\t<description>None</description>\n"
        f"\t\t\t<possibleresult>\n\t\t\t\t<name>{obj.label}</name>\n\t\t\t</possibleresult>\n"
        f"\t\t\t<points>{points}</points>\n\t\t</object>\n"
    )


def _xml_bytes(scene: Scene) -> bytes:
    objects = "".join(_object_xml(obj) for obj in scene.objects)
    text = (
        '<?xml version="1.0" encoding="utf-8"?>\n<annotation>\n'
        f"\t<source>\n\t\t<filename>{scene.stem}.tif</filename>\n\t\t<origin>{scene.origin}</origin>\n\t</source>\n"
        "\t<research>\n\t\t<version>1.0</version>\n\t</research>\n"
        f"\t<size>\n\t\t<width>{HEIGHT}</width>\n\t\t<height>{WIDTH}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        f"\t<objects>\n{objects}\t</objects>\n</annotation>\n"
    )
    if scene.malformed:
        text = text[: len(text) // 2]
    return text.encode("utf-8")


def _image_bytes(kind: str, rng: np.random.Generator, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "rgb8":
        write_bytes(path, encode_image(noise(rng, HEIGHT, WIDTH), ".tif"))
    elif kind == "grey16":
        tifffile.imwrite(path, noise(rng, HEIGHT, WIDTH, 1, np.uint16) // 64, photometric="minisblack")
    elif kind == "rgb16":
        tifffile.imwrite(path, noise(rng, HEIGHT, WIDTH, 3, np.uint16) // 64, photometric="rgb")
    elif kind == "bands4_16":
        tifffile.imwrite(path, noise(rng, HEIGHT, WIDTH, 4, np.uint16) // 16, photometric="minisblack", planarconfig="contig")
    else:
        raise ValueError(f"unknown fake image kind {kind!r}")


def _native_id(scene: Scene) -> str:
    return f"{scene.folder}/{scene.stem}"


def make_fair1m(root: Path, seed: int = 0) -> dict:
    """Write a fake FAIR1M tree under `root` and return what the adapter must find in it.

    Returns `scenes` (native id to split, image, annotations, labels, points and per-reason skips of
    `load`) and `scan_skips` ((reason, file) pairs in scan order).
    """
    rng = np.random.default_rng(seed)
    scenes: dict[str, dict] = {}
    scan_skips: list[tuple[str, str]] = []

    for scene in SCENES:
        base = root / scene.folder
        if scene.image is not None:
            _image_bytes(scene.image, rng, base / "images" / f"{scene.stem}.tif")
        if scene.label_dir is not None:
            write_bytes(base / scene.label_dir / f"{scene.stem}.xml", _xml_bytes(scene))
        if scene.image is None:
            scan_skips.append(("missing_image", f"{scene.folder}/{scene.label_dir}/{scene.stem}.xml"))
            continue

        objects = [obj for obj in scene.objects if obj.skip is None]
        skips = Counter(obj.skip for obj in scene.objects if obj.skip)
        if scene.malformed:
            objects, skips = [], Counter({"unreadable_annotation": 1})
        scenes[_native_id(scene)] = {
            "split": scene.folder.split("/")[0],
            "image": f"{scene.folder}/images/{scene.stem}.tif",
            "annotations": () if scene.label_dir is None else (f"{scene.folder}/{scene.label_dir}/{scene.stem}.xml",),
            "labels": [obj.label for obj in objects],
            "points": [[(float(x), float(y)) for x, y in obj.expected_points] for obj in objects],
            "skips": dict(skips),
            "origin": scene.origin if scene.label_dir is not None and not scene.malformed else None,
            "image_kind": scene.image,
        }

    # The validation folder also has labelXmls/ (an archive unpacked twice), and part1 a resource fork.
    write_bytes(root / "validation" / "labelXmls" / "0.xml", _xml_bytes(SCENES[5]))
    write_bytes(root / "train" / "part1" / "images" / "._0.tif", b"\x00\x05\x16\x07" + bytes(60))
    scan_skips.append(("duplicate_label_folder", "validation/labelXmls"))
    return {"root": root, "scenes": scenes, "scan_skips": scan_skips}
