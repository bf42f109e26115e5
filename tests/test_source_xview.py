"""xView adapter: scan and load on seeded fake data in the real layout, and an end-to-end build."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from mgrs.build import build
from mgrs.recipe import BuildConfig, SourceSpec
from mgrs.sources import get_source
from mgrs.sources.base import IMAGE, SceneRef, Skip
from mgrs.sources.xview import CLASSES, NOISE_TYPE_IDS, XviewSource
from mgrs.taxonomy import load_taxonomy
from tests.fakes import tree_digest
from tests.fakes.xview import make_xview


def scan(root) -> tuple[dict[str, SceneRef], list[Skip]]:
    items = list(XviewSource().scan(root))
    refs = {item.native_id: item for item in items if isinstance(item, SceneRef)}
    skips = [item for item in items if isinstance(item, Skip)]
    return refs, skips


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict:
    return make_xview(tmp_path_factory.mktemp("xview"))


def test_class_list_has_60_classes():
    assert len(CLASSES) == 60
    assert not NOISE_TYPE_IDS & set(CLASSES)
    assert isinstance(get_source("xview"), XviewSource)


def test_scan_finds_every_scene(fake):
    refs, _ = scan(fake["root"])
    assert sorted(refs) == sorted(fake["scenes"])
    for native_id, expected in fake["scenes"].items():
        assert refs[native_id].image == expected["image"], native_id
        assert refs[native_id].annotations == expected["annotations"], native_id
        assert refs[native_id].split == expected["split"], native_id


def test_scan_skips_junk_and_missing_images(fake):
    _, skips = scan(fake["root"])
    assert [(skip.reason, skip.file) for skip in skips] == fake["scan_skips"]
    junk = [skip for skip in skips if skip.reason == "junk_file"]
    assert {skip.unit for skip in junk} == {IMAGE}
    missing = next(skip for skip in skips if skip.reason == "missing_image")
    assert "1395.tif" in missing.detail
    assert "2 features" in missing.detail


def test_load_matches_description(fake):
    refs, _ = scan(fake["root"])
    source = XviewSource()
    for native_id, expected in fake["scenes"].items():
        loaded = source.load(refs[native_id])
        assert [o.label for o in loaded.objects] == expected["labels"], native_id
        assert [(o.points, o.oriented) for o in loaded.objects] == expected["points"], native_id
        assert dict(Counter(s.reason for s in loaded.skips)) == expected["skips"], native_id


def test_load_is_partial_labelling(fake):
    refs, _ = scan(fake["root"])
    loaded = XviewSource().load(refs["10"])
    assert loaded.exhaustive is False
    assert loaded.extra["labelling"].startswith("partial")
    assert loaded.gsd == pytest.approx(0.3)


def test_load_noise_ids_are_counted(fake):
    refs, _ = scan(fake["root"])
    skips = XviewSource().load(refs["10"]).skips
    noise = [skip.detail for skip in skips if skip.reason == "label_noise"]
    assert len(noise) == 2
    assert "type_id 75" in noise[0]
    assert "type_id 82" in noise[1]


def test_unreadable_geojson_is_a_skip(tmp_path):
    make_xview(tmp_path)
    (tmp_path / "xView_train.geojson").write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    refs, skips = scan(tmp_path)
    assert sorted(refs) == ["10", "11", "12", "20"]
    assert all(ref.annotations == () for ref in refs.values())
    assert skips[0].reason == "unreadable_annotation"


def test_scan_without_image_folders_raises(tmp_path):
    (tmp_path / "xView_train.geojson").write_text("{}", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="train_images"):
        list(XviewSource().scan(tmp_path))


def test_every_class_resolves():
    taxonomy = load_taxonomy()
    for name in CLASSES.values():
        assert taxonomy.lookup(name, "xview") is not None, name
    assert taxonomy.lookup("Passenger Car", "xview").name == "railway passenger car"
    assert taxonomy.resolve("Small Car", "coarse").name == "vehicle"


def test_generator_is_deterministic(tmp_path):
    make_xview(tmp_path / "a", seed=2)
    make_xview(tmp_path / "b", seed=2)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_build_end_to_end(fake, tmp_path):
    config = BuildConfig(sources=[SourceSpec(format="xview", path=str(fake["root"]))])
    result = build(config, tmp_path / "out")
    rows = [row for shard in sorted((tmp_path / "out" / "data").glob("*.parquet")) for row in pq.read_table(shard).to_pylist()]
    by_id = {row["image_id"]: row for row in rows}
    report = result.report

    assert sorted(by_id) == ["xview/10", "xview/11", "xview/12", "xview/20"]
    first = by_id["xview/10"]
    assert [r["category"] for r in first["regions"]] == ["small car", "building", "dump truck"]
    assert first["regions"][2]["bbox"][2:] == [56.0, 42.0]
    assert json.loads(first["extra"])["exhaustive_labels"] is False
    assert first["gsd"] == pytest.approx(0.3)
    assert by_id["xview/12"]["regions"] == []
    assert "railway passenger car" in [r["category"] for r in by_id["xview/11"]["regions"]]

    text = json.dumps(report)
    for reason in ("label_noise", "junk_file", "missing_image", "missing_coordinates", "unknown_type_id"):
        assert reason in text, reason
