"""Fake Pascal VOC folders: an HRRSD-style folder and an RSOD-style folder of per-class sub-folders.

HRRSD-style (`hrrsd/`): XML without a declaration and with tab indents, class names with spaces, a
file without `<size>`, a file whose `<size>` swaps width and height, a truncated XML file, bad
objects, an XML without an image, an image without XML, and `ImageSets/Main/` lists in both forms:
plain `{set}.txt` and per-class `{class}_{set}.txt` with `id ±1` rows and spaces in the file name.

RSOD-style (`rsod/`): `aircraft/` and `oiltank/`, each with `Annotation/xml/*.xml`, the same labels
as `Annotation/labels/*.txt`, and `JPEGImages/`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.fakes import encode_image, noise, write_bytes

# Images are wider than high, so a swapped width and height would move boxes out of the image.
WIDTH, HEIGHT = 48, 32


def _object(name: str, box: tuple[int, int, int, int] | None, difficult: str | None = "0", indent: str = "\t") -> str:
    parts = [f"<name>{name}</name>", "<pose>overlook</pose>", "<truncated>0</truncated>"]
    if difficult is not None:
        parts.append(f"<difficult>{difficult}</difficult>")
    if box is not None:
        xmin, ymin, xmax, ymax = box
        parts.append(f"<bndbox>\n{indent}\t\t<xmin>{xmin}</xmin>\n{indent}\t\t<ymin>{ymin}</ymin>\n{indent}\t\t<xmax>{xmax}</xmax>\n{indent}\t\t<ymax>{ymax}</ymax>\n{indent}\t</bndbox>")
    inner = "".join(f"\n{indent}\t{part}" for part in parts)
    return f"{indent}<object>{inner}\n{indent}</object>\n"


def _xml(stem: str, objects: list[str], size: tuple[int, int] | None, declaration: bool = False) -> bytes:
    head = '<?xml version="1.0" encoding="utf-8"?>\n' if declaration else ""
    size_xml = "" if size is None else f"\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
    text = f"{head}<annotation>\n\t<folder>OPT2017</folder>\n\t<filename>{stem}.jpg</filename>\n{size_xml}{''.join(objects)}</annotation>\n"
    return text.encode("utf-8")


def make_hrrsd(root: Path, rng: np.random.Generator) -> dict:
    """Write the HRRSD-style folder and return what a scan and a load must find."""
    scenes = {
        # stem: (objects as (label, box, difficult) or a skip reason, size element, split)
        "0001": ([("storage tank", (2, 3, 12, 14), 0), ("T junction", (20, 5, 30, 25), 0)], (WIDTH, HEIGHT), "train"),
        "0002": ([("ship", (36, 4, 46, 20), None)], None, "val"),
        "0003": ([("airplane", (40, 20, 47, 31), 0)], (HEIGHT, WIDTH), "val"),
        "0004": ("unreadable_annotation", (WIDTH, HEIGHT), "train"),
        "0005": ([("", (1, 1, 5, 5), "empty_label"), ("bridge", None, "missing_coordinates"), ("tennis court", (5, 5, 15, 15), 1)], (WIDTH, HEIGHT), "test"),
        "0007": (None, None, "train"),
    }
    expected: dict[str, dict] = {}
    for stem, (objects, size, split) in scenes.items():
        write_bytes(root / "JPEGImages" / f"{stem}.jpg", encode_image(noise(rng, HEIGHT, WIDTH), ".jpg"))
        entry = {"image": f"JPEGImages/{stem}.jpg", "split": split, "labels": [], "boxes": [], "difficult": [], "skips": {}}
        expected[stem] = entry
        if objects is None:
            entry["annotations"] = ()
            continue
        entry["annotations"] = (f"Annotations/{stem}.xml",)
        if objects == "unreadable_annotation":
            data = _xml(stem, [_object("ship", (1, 1, 5, 5))], size)
            write_bytes(root / "Annotations" / f"{stem}.xml", data[: len(data) // 2])
            entry["skips"] = {"unreadable_annotation": 1}
            continue
        elements = []
        for label, box, outcome in objects:
            if isinstance(outcome, str):
                elements.append(_object(label, box))
                entry["skips"][outcome] = entry["skips"].get(outcome, 0) + 1
                continue
            elements.append(_object(label, box, None if outcome is None else str(outcome)))
            entry["labels"].append(label)
            entry["boxes"].append(box)
            entry["difficult"].append(outcome)
        write_bytes(root / "Annotations" / f"{stem}.xml", _xml(stem, elements, size, declaration=stem == "0003"))

    write_bytes(root / "Annotations" / "0006.xml", _xml("0006", [_object("ship", (1, 1, 5, 5))], (WIDTH, HEIGHT)))
    lists = {
        "train.txt": "0001\n",
        "baseball diamond_val.txt": "0002  1\n0003 -1\n",
        "T junction_test.txt": "0005\t1\n0006 -1\n",
    }
    for name, text in lists.items():
        write_bytes(root / "ImageSets" / "Main" / name, text.encode())
    return {"scenes": expected, "scan_skips": [("missing_image", "Annotations/0006.xml")]}


def make_rsod(root: Path, rng: np.random.Generator) -> dict:
    """Write the RSOD-style folder of per-class folders and return what a scan must find."""
    expected = {}
    for folder, label in (("aircraft", "aircraft"), ("oiltank", "oiltank")):
        stem = f"{folder}_1"
        write_bytes(root / folder / "JPEGImages" / f"{stem}.jpg", encode_image(noise(rng, HEIGHT, WIDTH), ".jpg"))
        write_bytes(root / folder / "Annotation" / "xml" / f"{stem}.xml", _xml(stem, [_object(label, (4, 4, 20, 20))], (WIDTH, HEIGHT), True))
        write_bytes(root / folder / "Annotation" / "labels" / f"{stem}.txt", f"{stem}.jpg {label} 4 4 20 20\n".encode())
        expected[f"{folder}/{stem}"] = {
            "image": f"{folder}/JPEGImages/{stem}.jpg",
            "annotations": (f"{folder}/Annotation/xml/{stem}.xml",),
            "folder": folder,
            "label": label,
        }
    skips = [("unsupported_file", f"{folder}/Annotation/labels/{folder}_1.txt") for folder in ("aircraft", "oiltank")]
    return {"scenes": expected, "scan_skips": skips}


def make_voc(root: Path, seed: int = 0) -> dict:
    """Write both fake folders under `root` and describe them."""
    rng = np.random.default_rng(seed)
    return {
        "hrrsd": {"root": root / "hrrsd", **make_hrrsd(root / "hrrsd", rng)},
        "rsod": {"root": root / "rsod", **make_rsod(root / "rsod", rng)},
    }
