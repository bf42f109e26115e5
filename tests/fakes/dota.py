"""Fake DOTA data: `<split>/images/*.png` and `<split>/labelTxt/*.txt`, with the cases that break parsers.

Object lines are written from `Line` entries that also state what the adapter must make of them, so
the returned description and the files cannot drift apart.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.fakes import encode_image, encode_png, noise, write_bytes

WIDTH, HEIGHT = 64, 48


@dataclass
class Line:
    """One label line and its expected outcome: an object (`label` set) or a skip (`skip` set)."""

    text: str
    label: str | None = None
    difficult: int | None = None
    skip: str | None = None

    @property
    def points(self) -> list[tuple[float, float]]:
        values = [float(token) for token in self.text.split()[:8]]
        return [(values[i], values[i + 1]) for i in range(0, 8, 2)]


def obj(coordinates: str, label: str, difficult: int | None) -> Line:
    flag = "" if difficult is None else f" {difficult}"
    return Line(f"{coordinates} {label}{flag}", label=label, difficult=difficult)


def bad(text: str, reason: str) -> Line:
    return Line(text, skip=reason)


@dataclass
class Scene:
    """One image and its label file as written to disk."""

    stem: str
    image: str | None = ".png"  # suffix, or None for a label without an image
    pixels: str = "rgb"  # rgb, gray, rgba, uint16, garbage, truncated
    header: list[str] = field(default_factory=list)
    lines: list[Line] | None = field(default_factory=list)  # None: no label file
    newline: str = "\n"
    bom: bool = False
    raw_label: bytes | None = None  # written as is instead of header and lines
    gsd: float | None = None
    extra: dict[str, str] = field(default_factory=dict)
    header_skips: list[str] = field(default_factory=list)
    patch_of: dict | None = None


TRAIN_SCENES = [
    Scene(
        "P0001",
        header=["imagesource:GoogleEarth", "gsd:0.5"],
        newline="\r\n",
        gsd=0.5,
        extra={"imagesource": "GoogleEarth"},
        lines=[
            obj("10 10 30 10 30 20 10 20", "plane", 0),
            obj("12.5 22.5 20.5 22.5 20.5 28.5 12.5 28.5", "small-vehicle", 1),
            obj("40 5 50 5 50 12 40 12", "ship", None),
            obj("35 30 45 30 45 40 35 40", "large-vehicle", 2),
            obj("2 2 8 2 8 8 2 8", "container-crane", 0),
            obj("50 30 60 30 60 40 50 40", "helipad", 0),
            obj("20 30 28 30 28 38 20 38", "flying-saucer", 0),
            obj("-5 40 70 40 70 52 -5 52", "harbor", 0),
            obj("30 0 40 8 40 0 30 8", "tennis-court", 0),
            obj("5 44 15 44 25 44 35 44", "bridge", 1),
            Line(""),
            bad("1 2 3 4 5 6 plane", "malformed_line"),
            bad("1 2 3 4 5 6 7 8a plane 0", "malformed_line"),
            bad("1 2 3 4 5 6 7 8 plane 0 extra", "malformed_line"),
            bad("1 2 3 4 5 6 7 8 plane yes", "invalid_difficult"),
            bad("nan 2 3 4 5 6 7 8 plane 0", "invalid_coordinates"),
            Line(""),
            Line("   "),
        ],
    ),
    Scene(
        "P0002",
        pixels="gray",
        header=["imagesource:GF", "gsd:null"],
        bom=True,
        extra={"imagesource": "GF"},
        lines=[
            obj("1 1 9 1 9 9 1 9", "storage-tank", 0),
            obj("20 20 30 20 30 30 20 30", "roundabout", 0),
        ],
    ),
    Scene(
        "P0003",
        pixels="rgba",
        lines=[
            obj("3.0 4.0 13.0 4.0 13.0 14.0 3.0 14.0", "swimming-pool", 0),
            obj("20.0 4.0 40.0 4.0 40.0 20.0 20.0 20.0", "soccer-ball-field", 1),
            obj("44.25 4.75 60.25 4.75 60.25 20.75 44.25 20.75", "basketball-court", 0),
        ],
    ),
    Scene(
        "P0004",
        pixels="uint16",
        header=["gsd:abc"],
        header_skips=["invalid_gsd"],
        lines=[obj("5 5 25 5 25 25 5 25", "baseball-diamond", 0)],
    ),
    Scene(
        "P0005",
        image=".jpg",
        header=["imagesource:GoogleEarth", "gsd:0.3"],
        gsd=0.3,
        extra={"imagesource": "GoogleEarth"},
        lines=[
            obj("0 0 30 0 30 20 0 20", "ground-track-field", 0),
            obj("32 0 63 0 63 47 32 47", "airport", 0),
        ],
    ),
    Scene("P0006", lines=None),
    Scene("P0007", image=None, lines=[obj("1 1 5 1 5 5 1 5", "plane", 0)]),
    Scene("P0008", lines=[]),
    Scene("P0009", pixels="garbage", lines=[obj("1 1 5 1 5 5 1 5", "plane", 0)]),
    Scene("P0010", pixels="truncated", lines=[obj("1 1 5 1 5 5 1 5", "ship", 1)]),
    Scene("P0011", image=".tif", lines=[obj("1 1 9 1 9 9 1 9", "helicopter", 0)]),
    Scene("P0012", lines=[obj("2 2 6 2 6 6 2 6", "ship", 0)]),
    Scene("P0013", raw_label=b"\x89\xff\x00 not text \xfe\n"),
]

VAL_SCENES = [
    Scene(
        "P0004__1__0___0",
        lines=[
            obj("10.0 10.0 20.0 10.0 20.0 20.0 10.0 20.0", "plane", 0),
            obj("60.0 40.0 70.0 40.0 70.0 50.0 60.0 50.0", "ship", 2),
        ],
        patch_of={"scene": "P0004", "x": 0, "y": 0, "scheme": "dota_devkit", "scale": 1.0},
    ),
    Scene(
        "P0020__0.5__100___50",
        lines=[obj("1.0 1.0 5.0 1.0 5.0 5.0 1.0 5.0", "small-vehicle", 0)],
        patch_of={"scene": "P0020", "x": 100, "y": 50, "scheme": "dota_devkit", "scale": 0.5},
    ),
    Scene(
        "P2805__1024__512___256",
        lines=[obj("1.0 1.0 5.0 1.0 5.0 5.0 1.0 5.0", "large-vehicle", 0)],
        patch_of={"scene": "P2805", "x": 512, "y": 256, "scheme": "mmrotate", "size": 1024},
    ),
    Scene(
        "P0003_0_800_347_1147",
        lines=[obj("1 1 5 1 5 5 1 5", "ship", 0)],
        patch_of={"scene": "P0003", "x": 347, "y": 0, "scheme": "isaid", "width": 800, "height": 800},
    ),
]


def _image_bytes(scene: Scene, rng: np.random.Generator) -> bytes:
    if scene.pixels == "gray":
        return encode_png(noise(rng, HEIGHT, WIDTH, channels=1))
    if scene.pixels == "rgba":
        return encode_png(noise(rng, HEIGHT, WIDTH, channels=4))
    if scene.pixels == "uint16":
        return encode_png(noise(rng, HEIGHT, WIDTH, channels=1, dtype=np.uint16))
    if scene.pixels == "garbage":
        return b"this is not an image " + rng.bytes(64)
    data = encode_image(noise(rng, HEIGHT, WIDTH), scene.image)
    if scene.pixels == "truncated":
        return data[: len(data) // 2]
    return data


def _label_bytes(scene: Scene) -> bytes:
    if scene.raw_label is not None:
        return scene.raw_label
    lines = [*scene.header, *(line.text for line in scene.lines)]
    text = scene.newline.join(lines) + (scene.newline if lines else "")
    return ("\ufeff" if scene.bom else "").encode() + text.encode()


def _describe(scene: Scene, split: str, prefix: str) -> dict:
    lines = scene.lines or []
    objects = [line for line in lines if line.label is not None]
    skips = Counter(scene.header_skips) + Counter(line.skip for line in lines if line.skip)
    if scene.raw_label is not None:
        skips = Counter({"unreadable_annotation": 1})
    has_label = scene.lines is not None or scene.raw_label is not None
    return {
        "split": split,
        "image": f"{prefix}images/{scene.stem}{scene.image}",
        "label": f"{prefix}labelTxt/{scene.stem}.txt" if has_label else None,
        "objects": len(objects),
        "labels": [line.label for line in objects],
        "difficult": [line.difficult for line in objects],
        "points": [line.points for line in objects],
        "gsd": scene.gsd,
        "extra": dict(scene.extra),
        "skips": dict(skips),
        "patch_of": scene.patch_of,
    }


def make_dota(root: Path, seed: int = 0, split_folders: bool = True) -> dict:
    """Write a fake DOTA tree under `root` and return what the adapter must find in it.

    With `split_folders`, scenes go to `train/` and `val/`; without, all go to `images/` and
    `labelTxt/` directly and are one "train" split. Returns `scenes` (native id to the expected
    split, paths, objects, gsd, extra, per-reason skip counts of `load`, and patch offsets) and
    `scan_skips` (reason and file of every skip `scan` must yield).
    """
    rng = np.random.default_rng(seed)
    groups = [("train", TRAIN_SCENES), ("val", VAL_SCENES)]
    scenes: dict[str, dict] = {}
    scan_skips: list[tuple[str, str]] = []

    for split, entries in groups:
        prefix = f"{split}/" if split_folders else ""
        expected_split = split if split_folders else "train"
        for scene in entries:
            if scene.image is not None:
                write_bytes(root / f"{prefix}images/{scene.stem}{scene.image}", _image_bytes(scene, rng))
            if scene.lines is not None or scene.raw_label is not None:
                write_bytes(root / f"{prefix}labelTxt/{scene.stem}.txt", _label_bytes(scene))
            if scene.image is None:
                scan_skips.append(("missing_image", f"{prefix}labelTxt/{scene.stem}.txt"))
            else:
                scenes[scene.stem] = _describe(scene, expected_split, prefix)

        if split == "train":
            # A JPEG re-encoding beside the PNG of the same scene, a stray text file and a hidden file.
            write_bytes(root / f"{prefix}images/P0012.jpg", encode_image(noise(rng, HEIGHT, WIDTH), ".jpg"))
            write_bytes(root / f"{prefix}images/readme.txt", b"downloaded from the DOTA site\n")
            write_bytes(root / f"{prefix}images/.DS_Store", b"\x00\x00\x00\x01Bud1")
            scan_skips.append(("duplicate_image", f"{prefix}images/P0012.jpg"))
            scan_skips.append(("unsupported_file", f"{prefix}images/readme.txt"))

    return {"root": root, "scenes": scenes, "scan_skips": sorted(scan_skips)}
