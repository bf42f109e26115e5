"""Fake iSAID data: `<split>/images/P####.png` with `_instance_color_RGB.png` (class colours) and
`_instance_id_RGB.png` (instance colours) beside each image, as the iSAID devkit expects.

Instances are painted as unions of pixel rectangles, so their expected areas are exact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.fakes import encode_png, noise, write_bytes

CLASS_SUFFIX = "_instance_color_RGB"
INSTANCE_SUFFIX = "_instance_id_RGB"

SMALL_VEHICLE = (0, 0, 127)
LARGE_VEHICLE = (0, 127, 127)
PLANE = (0, 127, 255)
BRIDGE = (0, 127, 63)
SHIP = (0, 0, 63)
STORAGE_TANK = (0, 63, 63)
HARBOR = (0, 100, 155)
UNKNOWN = (200, 10, 10)
BLACK = (0, 0, 0)

Rect = tuple[int, int, int, int]  # x, y, width, height in pixels


@dataclass
class Instance:
    """One painted instance and its expected outcome: an object with `label`, or a skip reason."""

    instance_colour: tuple[int, int, int]
    class_colour: tuple[int, int, int]
    rects: list[Rect]
    label: str | None = None
    skip: str | None = None

    @property
    def area(self) -> int:
        return sum(width * height for _, _, width, height in self.rects)


@dataclass
class Scene:
    stem: str
    split: str
    width: int = 48
    height: int = 32
    instances: list[Instance] = field(default_factory=list)
    image: bool = True
    masks: tuple[str, ...] = (CLASS_SUFFIX, INSTANCE_SUFFIX)
    instance_mask_size: tuple[int, int] | None = None  # (width, height) when it differs from the image
    garbage_mask: bool = False
    mask_skip: str | None = None
    patch_of: dict | None = None


P0001_INSTANCES = [
    # Two small vehicles of one class that share an edge: connected components would merge them.
    Instance((10, 20, 30), SMALL_VEHICLE, [(2, 2, 6, 4)], label="Small_Vehicle"),
    Instance((40, 50, 60), SMALL_VEHICLE, [(8, 2, 6, 4)], label="Small_Vehicle"),
    Instance((70, 80, 90), LARGE_VEHICLE, [(20, 2, 10, 5)], label="Large_Vehicle"),
    # An L shape and an instance in two parts.
    Instance((100, 110, 120), PLANE, [(2, 10, 10, 4), (2, 14, 4, 6)], label="plane"),
    Instance((130, 140, 150), BRIDGE, [(20, 10, 6, 3), (30, 10, 6, 3)], label="Bridge"),
    # 11 pixels is just above the default limit of 10, which the tiny ship meets.
    Instance((250, 1, 2), STORAGE_TANK, [(36, 28, 11, 1)], label="storage_tank"),
    Instance((160, 170, 180), SHIP, [(40, 2, 2, 5)], skip="tiny_instance"),
    Instance((190, 200, 210), UNKNOWN, [(40, 10, 5, 5)], skip="unknown_class_colour"),
    Instance((220, 230, 240), BLACK, [(2, 24, 4, 4)], skip="instance_without_class"),
    Instance(BLACK, HARBOR, [(10, 24, 3, 3)], skip="class_without_instance"),
]

SCENES = [
    Scene("P0001", "train", instances=P0001_INSTANCES),
    Scene("P0002", "train", masks=(CLASS_SUFFIX,), mask_skip="missing_mask"),
    Scene("P0006", "train", garbage_mask=True, mask_skip="unreadable_annotation"),
    Scene(
        "P0003",
        "val",
        instances=[Instance((1, 1, 1), SHIP, [(1, 1, 5, 5)], label="ship")],
        instance_mask_size=(40, 32),
        mask_skip="mask_size_mismatch",
    ),
    Scene("P0004", "val", masks=(), mask_skip="missing_mask"),
    Scene(
        "P0005_0_20_0_24",
        "val",
        width=24,
        height=20,
        instances=[Instance((9, 9, 9), SHIP, [(2, 2, 5, 4)], label="ship")],
        patch_of={"scene": "P0005", "x": 0, "y": 0, "scheme": "isaid", "width": 24, "height": 20},
    ),
    Scene("P0009", "val", image=False, instances=[Instance((1, 2, 3), SHIP, [(1, 1, 5, 5)], label="ship")]),
]


def _paint(width: int, height: int, instances: list[Instance]) -> tuple[np.ndarray, np.ndarray]:
    class_mask = np.zeros((height, width, 3), dtype=np.uint8)
    instance_mask = np.zeros((height, width, 3), dtype=np.uint8)
    for instance in instances:
        for x, y, w, h in instance.rects:
            class_mask[y : y + h, x : x + w] = instance.class_colour
            instance_mask[y : y + h, x : x + w] = instance.instance_colour
    return class_mask, instance_mask


def _describe(scene: Scene) -> dict:
    prefix = f"{scene.split}/images/{scene.stem}"
    objects = [i for i in scene.instances if i.label is not None]
    skips = Counter(i.skip for i in scene.instances if i.skip)
    if scene.mask_skip is not None:
        objects, skips = [], Counter({scene.mask_skip: 1})
    return {
        "split": scene.split,
        "image": f"{prefix}.png",
        "annotations": tuple(f"{prefix}{suffix}.png" for suffix in scene.masks),
        "objects": len(objects),
        "labels": sorted(i.label for i in objects),
        "areas": sorted(i.area for i in objects),
        "skips": dict(skips),
        "patch_of": scene.patch_of,
    }


def make_isaid(root: Path, seed: int = 0) -> dict:
    """Write a fake iSAID tree under `root` and return what the adapter must find in it.

    Returns `scenes` (native id to split, paths, object count, sorted labels and pixel areas,
    per-reason skips of `load`, patch offsets) and `scan_skips` (reason and file).
    """
    rng = np.random.default_rng(seed)
    scenes: dict[str, dict] = {}
    scan_skips: list[tuple[str, str]] = []

    for scene in SCENES:
        folder = root / scene.split / "images"
        if scene.image:
            write_bytes(folder / f"{scene.stem}.png", encode_png(noise(rng, scene.height, scene.width)))

        class_mask, instance_mask = _paint(scene.width, scene.height, scene.instances)
        if scene.instance_mask_size is not None:
            width, height = scene.instance_mask_size
            instance_mask = np.zeros((height, width, 3), dtype=np.uint8)
        contents = {CLASS_SUFFIX: encode_png(class_mask), INSTANCE_SUFFIX: encode_png(instance_mask)}
        if scene.garbage_mask:
            contents[INSTANCE_SUFFIX] = b"\x89PNG\r\n\x1a\n" + rng.bytes(40)
        for suffix in scene.masks:
            write_bytes(folder / f"{scene.stem}{suffix}.png", contents[suffix])

        if scene.image:
            scenes[scene.stem] = _describe(scene)
        else:
            for suffix in scene.masks:
                scan_skips.append(("missing_image", f"{scene.split}/images/{scene.stem}{suffix}.png"))

    return {"root": root, "scenes": scenes, "scan_skips": sorted(scan_skips)}
