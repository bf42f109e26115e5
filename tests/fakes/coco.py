"""Fake COCO folder in iSAID's JSON-release layout: `train/` and `val/`, each with a JSON file and `images/`.

Traps: the two files number their categories differently (mapped by name), image entries without
`width` and `height`, a polygon, a two-part polygon, an RLE mask with counts as a list and one as
COCO's compressed string, a box without segmentation, a crowd annotation, an unknown category id,
an annotation of an unknown image, an image without annotations, a missing image file, and
`file_name` values that climb out of the image folder (`../`) or are absolute.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.fakes import encode_png, noise, write_bytes

SIZE = 40
TRAIN_CATEGORIES = [{"id": 1, "name": "ship"}, {"id": 2, "name": "Small_Vehicle"}, {"id": 3, "name": "plane"}]
# The same names with other ids, as in iSAID's val file.
VAL_CATEGORIES = [{"id": 7, "name": "plane"}, {"id": 8, "name": "ship"}, {"id": 9, "name": "Small_Vehicle"}]


def rle_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of a (H, W) bool mask down the columns, starting with background."""
    flat = mask.ravel(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    return runs if flat[0] == 0 else [0, *runs]


def compress_counts(runs: list[int]) -> str:
    """Encode run lengths as COCO's compressed RLE string."""
    characters = []
    for index, value in enumerate(runs):
        if index > 2:
            value -= runs[index - 2]
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = not ((group & 0x10) == 0 and value == 0 or (group & 0x10) != 0 and value == -1)
            if more:
                group |= 0x20
            characters.append(chr(group + 48))
    return "".join(characters)


def _mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def make_coco(root: Path, seed: int = 0) -> dict:
    """Write the fake folder under `root` and return what a scan and a load must find."""
    rng = np.random.default_rng(seed)
    for split, stem in (("train", "P0001"), ("train", "P0002"), ("train", "P0003_0_800_347_1147"), ("val", "P0010")):
        write_bytes(root / split / "images" / f"{stem}.png", encode_png(noise(rng, SIZE, SIZE)))
    write_bytes(root / "secret.png", encode_png(noise(rng, SIZE, SIZE)))

    train = {
        "images": [
            {"id": 1, "file_name": "P0001.png"},
            {"id": 2, "file_name": "P0002.png", "width": SIZE, "height": SIZE},
            {"id": 3, "file_name": "P0003_0_800_347_1147.png"},
            {"id": 4, "file_name": "P0404.png"},
            {"id": 5, "file_name": "../../secret.png"},
            {"id": 6, "file_name": "/etc/hostname"},
        ],
        "categories": TRAIN_CATEGORIES,
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]], "bbox": [2, 2, 10, 8], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 2, "segmentation": [[20, 20, 24, 20, 24, 24, 20, 24], [30, 30, 34, 30, 34, 34, 30, 34]], "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 3, "segmentation": {"size": [SIZE, SIZE], "counts": rle_counts(_mask(5, 25, 15, 35))}, "iscrowd": 0},
            {"id": 13, "image_id": 1, "category_id": 1, "segmentation": {"size": [SIZE, SIZE], "counts": compress_counts(rle_counts(_mask(26, 3, 36, 9)))}, "iscrowd": 0},
            {"id": 14, "image_id": 1, "category_id": 2, "bbox": [15, 15, 5, 4], "iscrowd": 0},
            {"id": 15, "image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5], "iscrowd": 1},
            {"id": 16, "image_id": 1, "category_id": 99, "bbox": [1, 1, 5, 5], "iscrowd": 0},
            {"id": 17, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 2, 2]], "iscrowd": 0},
            {"id": 18, "image_id": 77, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0},
            {"id": 19, "image_id": 4, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0},
            {"id": 20, "image_id": 5, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0},
            {"id": 21, "image_id": 3, "category_id": 3, "bbox": [3, 3, 20, 10], "iscrowd": 0},
        ],
    }
    val = {
        "images": [{"id": 1, "file_name": "P0010.png"}],
        "categories": VAL_CATEGORIES,
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [4, 4, 10, 10], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [20, 20, 6, 6], "iscrowd": 0},
        ],
    }
    write_bytes(root / "train" / "iSAID_train.json", json.dumps(train).encode())
    write_bytes(root / "val" / "iSAID_val.json", json.dumps(val).encode())
    write_bytes(root / "val" / "notes.json", b'{"comment": "not a COCO file"}')

    scenes = {
        "P0001": {"split": "train", "labels": ["ship", "Small_Vehicle", "plane", "ship", "Small_Vehicle"],
                  "skips": {"crowd_annotation": 1, "unknown_category_id": 1, "degenerate_polygon": 1}},
        "P0002": {"split": "train", "labels": [], "skips": {}},
        "P0003_0_800_347_1147": {"split": "train", "labels": ["plane"], "skips": {}},
        "P0010": {"split": "val", "labels": ["plane", "Small_Vehicle"], "skips": {}},
    }
    scan_skips = sorted(
        [
            ("missing_image", "image", "P0404.png"),
            ("missing_image", "annotation", "train/iSAID_train.json"),
            ("unsafe_file_name", "image", "train/iSAID_train.json"),
            ("unsafe_file_name", "annotation", "train/iSAID_train.json"),
            ("unsafe_file_name", "image", "train/iSAID_train.json"),
            ("missing_image", "annotation", "train/iSAID_train.json"),
            ("unsupported_file", "annotation", "val/notes.json"),
        ]
    )
    return {"root": root, "scenes": scenes, "scan_skips": scan_skips}
