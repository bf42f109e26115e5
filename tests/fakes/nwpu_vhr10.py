"""Fake NWPU VHR-10 data inside a `NWPU VHR-10 dataset/` folder: JPEGs in `positive image set/` and
`negative image set/`, boxes in `ground truth/NNN.txt`, and a user-written `colour_infrared.txt`.

Traps: spaces in folder names and inside ground-truth lines, blank lines, CRLF line endings, a
malformed line, an unknown class id, a positive image without ground truth, a ground-truth file
without image, the same stems in both image sets, and colour-infrared images named only by the list.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from tests.fakes import encode_image, noise, write_bytes

WIDTH, HEIGHT = 60, 40
DATASET_DIR = "NWPU VHR-10 dataset"

# Ground-truth files by stem: the text and the expected (label, box) objects and skip reasons.
GROUND_TRUTH = {
    "001": (
        "(2,3),(20,15),1\r\n( 25 , 5 ) , ( 40 , 30 ) , 10\r\n\r\n(41,2),(58,12),2\r\n\r\n",
        [("airplane", (2, 3, 20, 15)), ("vehicle", (25, 5, 40, 30)), ("ship", (41, 2, 58, 12))],
        {},
    ),
    "002": (
        "(1,1),(10,10),7\n(1,1),(10,10)\n(3,3),(9,9),11\n(5,6),(66,44),9\n",
        [("ground track field", (1, 1, 10, 10)), ("bridge", (5, 6, 66, 44))],
        {"malformed_line": 1, "unknown_class_id": 1},
    ),
    "004": ("(1,1),(5,5),3\n", [], {}),
}
POSITIVE = ("001", "002", "003")
NEGATIVE = ("001", "002")
COLOUR_INFRARED_LIST = "# Vaihingen images\npositive/002\nnegative image set/002.jpg  # by path\n"


def make_nwpu_vhr10(root: Path, seed: int = 0) -> dict:
    """Write a fake NWPU VHR-10 tree under `root/NWPU VHR-10 dataset` and return what the adapter must find.

    Returns `scenes` (native id to image, annotations, objects, skips, image set, colour-infrared
    flag) and `scan_skips` ((reason, file) pairs).
    """
    rng = np.random.default_rng(seed)
    base = root / DATASET_DIR
    for stem in POSITIVE:
        write_bytes(base / "positive image set" / f"{stem}.jpg", encode_image(noise(rng, HEIGHT, WIDTH), ".jpg"))
    for stem in NEGATIVE:
        write_bytes(base / "negative image set" / f"{stem}.jpg", encode_image(noise(rng, HEIGHT, WIDTH), ".jpg"))
    for stem, (text, _, _) in GROUND_TRUTH.items():
        write_bytes(base / "ground truth" / f"{stem}.txt", text.encode("utf-8"))
    write_bytes(base / "colour_infrared.txt", COLOUR_INFRARED_LIST.encode("utf-8"))

    scenes: dict[str, dict] = {}
    for image_set, stems in (("positive", POSITIVE), ("negative", NEGATIVE)):
        for stem in stems:
            truth = GROUND_TRUTH.get(stem) if image_set == "positive" else None
            objects = [] if truth is None else truth[1]
            scenes[f"{image_set}/{stem}"] = {
                "image": f"{DATASET_DIR}/{image_set} image set/{stem}.jpg",
                "annotations": () if truth is None else (f"{DATASET_DIR}/ground truth/{stem}.txt",),
                "labels": [label for label, _ in objects],
                "boxes": [box for _, box in objects],
                "skips": {} if truth is None else dict(Counter(truth[2])),
                "image_set": image_set,
                "colour_infrared": stem == "002",
            }
    scan_skips = [("missing_image", f"{DATASET_DIR}/ground truth/004.txt")]
    return {"root": root, "scenes": scenes, "scan_skips": scan_skips}
