"""Fake xView data: one `xView_train.geojson` with pixel boxes in `properties.bounds_imcoords`, GeoTIFFs
in `train_images/` and `val_images/`.

Traps: 4- and 8-value boxes, boxes beyond the image, label-noise type ids 75 and 82, an unknown type
id, empty and malformed `bounds_imcoords`, a feature without `image_id`, features of an image that is
missing (`1395.tif`), macOS resource-fork files (`._10.tif` and `_109.tif`), and an image without
features.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from tests.fakes import encode_image, noise, write_bytes

WIDTH, HEIGHT = 56, 44
APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(40)

# (image_id, type_id, bounds_imcoords, expected skip reason or None)
FEATURES = [
    ("10.tif", 18, "2,3,12,11", None),
    ("10.tif", 73, "20,4,40,8,36,24,16,20", None),
    ("10.tif", 75, "1,1,5,5", "label_noise"),
    ("10.tif", 82, "1,1,5,5", "label_noise"),
    ("10.tif", 999, "1,1,5,5", "unknown_type_id"),
    ("10.tif", 19, "[]", "missing_coordinates"),
    ("10.tif", 19, "", "missing_coordinates"),
    ("10.tif", 19, "1,2,3", "invalid_coordinates"),
    ("10.tif", 19, "1,a,3,4", "invalid_coordinates"),
    ("10.tif", 60, "50,30,58,42", None),
    ("11.tif", 13, "5,5,30,25", None),
    ("11.tif", 34, "31,26,50,40", None),
    ("1395.tif", 18, "1,1,5,5", None),
    ("1395.tif", 18, "6,6,9,9", None),
    (None, 18, "1,1,5,5", None),
]


def _feature(number: int, image_id: str | None, type_id: int, bounds: str) -> dict:
    properties = {
        "bounds_imcoords": bounds,
        "edited_by": "wwoscarbecerril",
        "cat_id": "1040010028371A00",
        "type_id": type_id,
        "ingest_time": "2017/07/24 12:49:09.118+00",
        "feature_id": 374400 + number,
        "grid_file": "Grid2.shp",
    }
    if image_id is not None:
        properties["image_id"] = image_id
    lon, lat = 39.8 + number * 1e-5, 21.4
    polygon = [[lon, lat], [lon + 1e-5, lat], [lon + 1e-5, lat + 1e-5], [lon, lat + 1e-5], [lon, lat]]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [polygon]}, "properties": properties}


def _points(bounds: str) -> tuple[list[tuple[float, float]], bool]:
    values = [float(v) for v in bounds.split(",")]
    if len(values) == 4:
        x1, y1, x2, y2 = values
        return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)], False
    return [(values[i], values[i + 1]) for i in range(0, 8, 2)], True


def make_xview(root: Path, seed: int = 0) -> dict:
    """Write a fake xView tree under `root` and return what the adapter must find in it.

    Returns `scenes` (native id to split, image, annotations, objects and per-reason skips of `load`)
    and `scan_skips` ((reason, file) pairs in scan order).
    """
    from mgrs.sources.xview import CLASSES

    rng = np.random.default_rng(seed)
    for name in ("10", "11", "12"):
        write_bytes(root / "train_images" / f"{name}.tif", encode_image(noise(rng, HEIGHT, WIDTH), ".tif"))
    write_bytes(root / "val_images" / "20.tif", encode_image(noise(rng, HEIGHT, WIDTH), ".tif"))
    write_bytes(root / "train_images" / "._10.tif", APPLEDOUBLE)
    write_bytes(root / "train_images" / "_109.tif", APPLEDOUBLE)

    features = [_feature(n, image, type_id, bounds) for n, (image, type_id, bounds, _) in enumerate(FEATURES, start=1)]
    collection = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}, "features": features}
    write_bytes(root / "xView_train.geojson", json.dumps(collection, indent=1).encode("utf-8"))

    scenes: dict[str, dict] = {}
    for stem, split in (("10", "train"), ("11", "train"), ("12", "train"), ("20", "val")):
        rows = [row for row in FEATURES if row[0] == f"{stem}.tif"]
        kept = [row for row in rows if row[3] is None]
        scenes[stem] = {
            "split": split,
            "image": f"{split}_images/{stem}.tif",
            "annotations": ("xView_train.geojson",) if rows else (),
            "labels": [CLASSES[row[1]] for row in kept],
            "points": [_points(row[2]) for row in kept],
            "skips": dict(Counter(row[3] for row in rows if row[3])),
        }
    scan_skips = [
        ("missing_image_id", "xView_train.geojson"),
        ("junk_file", "train_images/._10.tif"),
        ("junk_file", "train_images/_109.tif"),
        ("missing_image", "xView_train.geojson"),
    ]
    return {"root": root, "scenes": scenes, "scan_skips": scan_skips}
