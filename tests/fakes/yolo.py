"""Fake YOLO folders: ultralytics layout (`images/{split}/`, `labels/{split}/`, `data.yaml` with a
`names` mapping) with boxes, and Roboflow layout (`{split}/images/`, `{split}/labels/`,
`classes.txt`) with oriented boxes.

Traps: a negative image without a label file, an empty label file, a label without an image, a
`classes.txt` inside `labels/`, blank lines, a class id outside the names, a non-numeric value, a
line with the wrong token count, a zero-width box, a segmentation outline in a box file, and images
whose width and height differ, so fractions multiplied by the wrong side show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.fakes import encode_image, noise, write_bytes

WIDTH, HEIGHT = 64, 32
NAMES = ["plane", "ship", "storage-tank"]


def make_yolo(root: Path, seed: int = 0) -> dict:
    """Write `detect/` (yolo) and `obb/` (yolo-obb) under `root` and describe what must be found."""
    rng = np.random.default_rng(seed)

    detect = root / "detect"
    write_bytes(detect / "data.yaml", b"path: .\ntrain: images/train\nval: images/val\nnames:\n  0: plane\n  1: ship\n  2: storage-tank\n")
    labels = {
        ("train", "a"): "0 0.5 0.5 0.25 0.5\n\n1 0.125 0.25 0.125 0.25\n7 0.5 0.5 0.1 0.1\n1 0.5 x 0.1 0.1\n2 0.5 0.5\n1 0.5 0.5 0 0.1\n2 0.1 0.1 0.3 0.1 0.3 0.4\n",
        ("train", "b"): "",
        ("val", "c"): "2 0.75 0.5 0.5 1.0\n",
    }
    for (split, stem), text in labels.items():
        write_bytes(detect / "images" / split / f"{stem}.jpg", encode_image(noise(rng, HEIGHT, WIDTH), ".jpg"))
        write_bytes(detect / "labels" / split / f"{stem}.txt", text.encode())
    write_bytes(detect / "images" / "train" / "negative.png", encode_image(noise(rng, HEIGHT, WIDTH), ".png"))
    write_bytes(detect / "labels" / "train" / "orphan.txt", b"0 0.5 0.5 0.1 0.1\n")
    write_bytes(detect / "labels" / "classes.txt", "\n".join(NAMES).encode())

    obb = root / "obb"
    write_bytes(obb / "classes.txt", ("\n".join(NAMES) + "\n\n").encode())
    write_bytes(obb / "train" / "images" / "d.png", encode_image(noise(rng, HEIGHT, WIDTH), ".png"))
    write_bytes(obb / "train" / "labels" / "d.txt", b"1 0.25 0.25 0.5 0.25 0.5 0.75 0.25 0.75\n1 0.1 0.1 0.2 0.2\n")

    return {
        "detect": {
            "root": detect,
            "scenes": {
                "train/a": {
                    "split": "train",
                    "labels": ["plane", "ship", "storage-tank"],
                    # Box corners in pixels: (cx - w/2) * 64, (cy - h/2) * 32, ...
                    "first_box": [(24.0, 8.0), (40.0, 8.0), (40.0, 24.0), (24.0, 24.0)],
                    "skips": {"unknown_class_id": 1, "malformed_line": 2, "degenerate_box": 1},
                },
                "train/b": {"split": "train", "labels": [], "skips": {}},
                "train/negative": {"split": "train", "labels": [], "skips": {}, "annotations": ()},
                "val/c": {"split": "val", "labels": ["storage-tank"], "skips": {}},
            },
            "scan_skips": [("missing_image", "labels/train/orphan.txt")],
        },
        "obb": {
            "root": obb,
            "scenes": {"train/d": {"split": "train", "labels": ["ship"], "skips": {"malformed_line": 1}}},
            "first_quad": [(16.0, 8.0), (32.0, 8.0), (32.0, 24.0), (16.0, 24.0)],
        },
    }
