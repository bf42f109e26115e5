"""NWPU VHR-10 adapter: scan and load on seeded fake data in the real layout, and an end-to-end build."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from mgrs.build import build
from mgrs.recipe import BuildConfig, SourceSpec
from mgrs.sources import get_source
from mgrs.sources.base import SceneRef, Skip
from mgrs.sources.nwpu_vhr10 import CLASSES, NwpuVhr10Source, parse_ground_truth
from mgrs.taxonomy import load_taxonomy
from tests.fakes import tree_digest
from tests.fakes.nwpu_vhr10 import DATASET_DIR, make_nwpu_vhr10


def scan(root, source=None) -> tuple[dict[str, SceneRef], list[Skip]]:
    items = list((source or NwpuVhr10Source()).scan(root))
    refs = {item.native_id: item for item in items if isinstance(item, SceneRef)}
    skips = [item for item in items if isinstance(item, Skip)]
    return refs, skips


def corners(box) -> list[tuple[float, float]]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict:
    return make_nwpu_vhr10(tmp_path_factory.mktemp("nwpu"))


def test_scan_finds_every_scene(fake):
    refs, skips = scan(fake["root"])
    assert sorted(refs) == sorted(fake["scenes"])
    for native_id, expected in fake["scenes"].items():
        ref = refs[native_id]
        assert ref.image == expected["image"], native_id
        assert ref.annotations == expected["annotations"], native_id
        assert ref.split == "train"
        assert ref.meta["image_set"] == expected["image_set"], native_id
    assert [(skip.reason, skip.file) for skip in skips] == fake["scan_skips"]
    assert isinstance(get_source("nwpu-vhr10"), NwpuVhr10Source)


def test_scan_accepts_the_dataset_folder_itself(fake):
    refs, _ = scan(fake["root"] / DATASET_DIR)
    assert sorted(refs) == sorted(fake["scenes"])
    assert refs["positive/001"].image == "positive image set/001.jpg"


def test_colour_infrared_from_list_file(fake):
    refs, _ = scan(fake["root"])
    for native_id, expected in fake["scenes"].items():
        assert refs[native_id].meta.get("colour_infrared", False) == expected["colour_infrared"], native_id


def test_colour_infrared_from_option(tmp_path):
    make_nwpu_vhr10(tmp_path)
    (tmp_path / DATASET_DIR / "colour_infrared.txt").unlink()
    refs, _ = scan(tmp_path, NwpuVhr10Source(colour_infrared=["positive/003"]))
    assert [native_id for native_id, ref in refs.items() if ref.meta.get("colour_infrared")] == ["positive/003"]


def test_load_matches_description(fake):
    refs, _ = scan(fake["root"])
    source = NwpuVhr10Source()
    for native_id, expected in fake["scenes"].items():
        loaded = source.load(refs[native_id])
        assert [o.label for o in loaded.objects] == expected["labels"], native_id
        assert [o.points for o in loaded.objects] == [corners(box) for box in expected["boxes"]], native_id
        assert dict(Counter(s.reason for s in loaded.skips)) == expected["skips"], native_id
        assert all(o.oriented is False for o in loaded.objects)
        assert loaded.exhaustive is (expected["image_set"] == "negative"), native_id


def test_parse_line_numbers_in_skips():
    parsed = parse_ground_truth("\n(1,1),(4,4),3\n(1,1),(4,4),x\n(1;1),(4,4),3\n", "g.txt")
    assert [(s.reason, s.detail.split(":")[0]) for s in parsed.skips] == [
        ("unknown_class_id", "line 3"),
        ("malformed_line", "line 4"),
    ]
    assert parsed.objects[0].where == "line 2"


def test_every_class_resolves():
    taxonomy = load_taxonomy()
    for name in CLASSES.values():
        assert taxonomy.lookup(name) is not None, name


def test_generator_is_deterministic(tmp_path):
    make_nwpu_vhr10(tmp_path / "a", seed=1)
    make_nwpu_vhr10(tmp_path / "b", seed=1)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_build_end_to_end(fake, tmp_path):
    config = BuildConfig(sources=[SourceSpec(format="nwpu-vhr10", path=str(fake["root"]))])
    build(config, tmp_path / "out")
    rows = [row for shard in sorted((tmp_path / "out" / "data").glob("*.parquet")) for row in pq.read_table(shard).to_pylist()]
    by_id = {row["image_id"]: row for row in rows}

    assert sorted(by_id) == sorted(f"nwpu-vhr10/{native_id}" for native_id in fake["scenes"])
    first = by_id["nwpu-vhr10/positive/001"]
    assert [r["category"] for r in first["regions"]] == ["airplane", "vehicle", "ship"]
    assert first["regions"][1]["bbox"] == [25.0, 5.0, 40.0, 30.0]
    assert by_id["nwpu-vhr10/negative/001"]["regions"] == []
    assert json.loads(by_id["nwpu-vhr10/negative/002"]["extra"])["colour_infrared"] is True
    assert "colour_infrared" not in json.loads(by_id["nwpu-vhr10/positive/001"]["extra"])
