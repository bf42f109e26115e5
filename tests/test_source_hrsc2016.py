"""HRSC2016 adapter: scan and load on seeded fake data in the real layout, and an end-to-end build."""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import pyarrow.parquet as pq
import pytest

from mgrs.build import build
from mgrs.recipe import BuildConfig, SourceSpec
from mgrs.sources import get_source
from mgrs.sources.base import SceneRef, Skip
from mgrs.sources.hrsc2016 import CLASS_NAMES, Hrsc2016Source, class_name, rotated_box_corners
from mgrs.taxonomy import load_taxonomy
from tests.fakes import tree_digest
from tests.fakes.hrsc2016 import HEIGHT, WIDTH, make_hrsc2016


def scan(root) -> tuple[dict[str, SceneRef], list[Skip]]:
    items = list(Hrsc2016Source().scan(root))
    refs = {item.native_id: item for item in items if isinstance(item, SceneRef)}
    skips = [item for item in items if isinstance(item, Skip)]
    return refs, skips


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict:
    return make_hrsc2016(tmp_path_factory.mktemp("hrsc"))


def test_scan_finds_every_scene(fake):
    refs, skips = scan(fake["root"])
    assert sorted(refs) == sorted(fake["scenes"])
    for native_id, expected in fake["scenes"].items():
        assert refs[native_id].image == expected["image"], native_id
        assert refs[native_id].annotations == expected["annotations"], native_id
        assert refs[native_id].split == expected["split"], native_id
    assert [(skip.reason, skip.file) for skip in skips] == fake["scan_skips"]
    assert isinstance(get_source("hrsc2016"), Hrsc2016Source)


def test_scan_train_and_test_folders(tmp_path):
    make_hrsc2016(tmp_path)
    (tmp_path / "FullDataSet").rename(tmp_path / "Test")
    (tmp_path / "ImageSets" / "trainval.txt").unlink()
    (tmp_path / "ImageSets" / "test.txt").unlink()
    refs, _ = scan(tmp_path)
    assert {ref.split for ref in refs.values()} == {"test"}


def test_load_matches_description(fake):
    refs, _ = scan(fake["root"])
    source = Hrsc2016Source()
    for native_id, expected in fake["scenes"].items():
        loaded = source.load(refs[native_id])
        assert [o.label for o in loaded.objects] == expected["labels"], native_id
        assert [o.difficult for o in loaded.objects] == expected["difficult"], native_id
        assert [o.oriented for o in loaded.objects] == expected["oriented"], native_id
        assert dict(Counter(s.reason for s in loaded.skips)) == expected["skips"], native_id
        assert loaded.gsd == expected["gsd"], native_id
        assert loaded.extra.get("image_rotation") == expected["rotation"], native_id
        assert loaded.exhaustive is False


def test_load_rotated_box_in_radians(fake):
    refs, _ = scan(fake["root"])
    loaded = Hrsc2016Source().load(refs["100000001"])
    carrier = loaded.objects[0]
    flat = [value for point in carrier.points for value in point]
    assert flat == pytest.approx([23.1419, 11.6954, 40.6935, 21.2839, 36.8581, 28.3046, 19.3065, 18.7161], abs=1e-3)
    # The long side turns by 0.5 rad: its direction from the first to the second corner.
    (x1, y1), (x2, y2) = carrier.points[0], carrier.points[1]
    assert math.atan2(y2 - y1, x2 - x1) == pytest.approx(0.5)
    assert math.dist(carrier.points[0], carrier.points[1]) == pytest.approx(20.0)
    assert loaded.extra["bow_points"] == {"object 1": [38.8, 24.8], "object 2": [10.0, 24.0]}


def test_rotated_box_corners_clockwise():
    corners = rotated_box_corners(10, 10, 4, 2, 0)
    assert corners == [(8, 9), (12, 9), (12, 11), (8, 11)]
    area2 = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(corners, corners[1:] + corners[:1]))
    assert area2 > 0  # positive shoelace sum: clockwise with y pointing down


def test_class_names_are_readable():
    assert len(CLASS_NAMES) == 31
    assert "21" not in CLASS_NAMES
    assert "23" not in CLASS_NAMES
    for name in CLASS_NAMES.values():
        assert re.fullmatch(r"[A-Za-z][A-Za-z -]*", name), name
    assert class_name("100000019") == "merchant ship"
    assert class_name("100000020") == class_name("100000030") == "car carrier"
    assert class_name("200000001") is None


def test_every_class_resolves_under_ship():
    taxonomy = load_taxonomy()
    for name in set(CLASS_NAMES.values()):
        category = taxonomy.resolve(name, "coarse")
        assert category is not None, name
        assert category.name == "ship", name
    assert taxonomy.lookup("OXo|--)", "hrsc2016").name == "merchant ship"
    assert taxonomy.lookup("OXo|--)") is None


def test_generator_is_deterministic(tmp_path):
    make_hrsc2016(tmp_path / "a", seed=4)
    make_hrsc2016(tmp_path / "b", seed=4)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_build_end_to_end(fake, tmp_path):
    config = BuildConfig(sources=[SourceSpec(format="hrsc2016", path=str(fake["root"]))])
    build(config, tmp_path / "out")
    rows = [row for shard in sorted((tmp_path / "out" / "data").glob("*.parquet")) for row in pq.read_table(shard).to_pylist()]
    by_id = {row["image_id"]: row for row in rows}

    assert sorted(by_id) == sorted(f"hrsc2016/{native_id}" for native_id in fake["scenes"])
    first = by_id["hrsc2016/100000001"]
    # The size comes from the BMP, not from the swapped Img_SizeWidth / Img_SizeHeight.
    assert (first["width"], first["height"]) == (WIDTH, HEIGHT)
    assert [r["category"] for r in first["regions"]] == ["Nimitz class aircraft carrier", "merchant ship"]
    assert json.loads(first["extra"])["bow_points"]["object 1"] == [38.8, 24.8]
    assert by_id["hrsc2016/100000002"]["regions"] == []
    for row in rows:
        for text in (row["short_caption"], row["long_caption"], *(r["category"] for r in row["regions"])):
            assert "|" not in text, text
            assert "(" not in text, text
