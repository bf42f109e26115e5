"""FAIR1M adapter: scan and load on seeded fake data in the real layout, and an end-to-end build."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from mgrs.build import build
from mgrs.recipe import BuildConfig, SourceSpec
from mgrs.sources import get_source
from mgrs.sources.base import SceneRef, Skip
from mgrs.sources.fair1m import Fair1mSource, parse_annotation_xml
from mgrs.taxonomy import load_taxonomy
from tests.fakes import tree_digest
from tests.fakes.fair1m import make_fair1m


def scan(root) -> tuple[dict[str, SceneRef], list[Skip]]:
    items = list(Fair1mSource().scan(root))
    refs = {item.native_id: item for item in items if isinstance(item, SceneRef)}
    skips = [item for item in items if isinstance(item, Skip)]
    return refs, skips


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict:
    return make_fair1m(tmp_path_factory.mktemp("fair1m"))


def test_registered_under_format_name():
    assert isinstance(get_source("fair1m"), Fair1mSource)


def test_scan_finds_every_scene(fake):
    refs, _ = scan(fake["root"])
    assert sorted(refs) == sorted(fake["scenes"])
    for native_id, expected in fake["scenes"].items():
        assert refs[native_id].image == expected["image"], native_id
        assert refs[native_id].annotations == expected["annotations"], native_id
        assert refs[native_id].split == expected["split"], native_id


def test_scan_same_stem_in_two_parts(fake):
    refs, _ = scan(fake["root"])
    assert {"train/part1/0", "train/part2/0", "validation/0"} <= set(refs)
    assert refs["train/part2/0"].annotations == ("train/part2/labelXmls/0.xml",)


def test_scan_skips(fake):
    _, skips = scan(fake["root"])
    assert [(skip.reason, skip.file) for skip in skips] == fake["scan_skips"]


def test_scan_root_with_images_is_train(tmp_path):
    make_fair1m(tmp_path)
    refs, _ = scan(tmp_path / "validation")
    assert list(refs) == ["0"]
    assert refs["0"].split == "train"
    assert refs["0"].annotations == ("labelXml/0.xml",)


def test_scan_without_images_raises(tmp_path):
    (tmp_path / "labelXml").mkdir()
    with pytest.raises(FileNotFoundError, match="images/"):
        list(Fair1mSource().scan(tmp_path))


def test_load_matches_description(fake):
    refs, _ = scan(fake["root"])
    source = Fair1mSource()
    for native_id, expected in fake["scenes"].items():
        loaded = source.load(refs[native_id])
        assert [o.label for o in loaded.objects] == expected["labels"], native_id
        assert [o.points for o in loaded.objects] == expected["points"], native_id
        assert dict(Counter(s.reason for s in loaded.skips)) == expected["skips"], native_id
        assert all(o.oriented and o.difficult is None for o in loaded.objects)
        assert loaded.exhaustive is False
        assert loaded.extra.get("origin") == expected["origin"], native_id


def test_load_drops_closing_point_keeps_start(fake):
    refs, _ = scan(fake["root"])
    boeing = Fair1mSource().load(refs["train/part1/0"]).objects[0]
    # The ring is passed on from its arbitrary start point and direction.
    assert boeing.points == [(30.5, 20.0), (30.5, 8.0), (10.0, 8.0), (10.0, 20.0)]


def test_load_keeps_negative_and_outside_coordinates(fake):
    refs, _ = scan(fake["root"])
    objects = Fair1mSource().load(refs["train/part1/0"]).objects
    ship = next(o for o in objects if o.label == "LiquidCargoShip")
    car = next(o for o in objects if o.label == "Small Car")
    assert min(x for x, _ in ship.points) == -5.0
    assert max(x for x, _ in car.points) == 49.0


def test_load_skip_details_name_objects(fake):
    refs, _ = scan(fake["root"])
    loaded = Fair1mSource().load(refs["train/part1/1"])
    assert [(s.reason, s.detail.split(":")[0]) for s in loaded.skips] == [
        ("empty_label", "object 1"),
        ("invalid_coordinates", "object 2"),
        ("missing_coordinates", "object 3"),
        ("unsupported_coordinates", "object 4"),
        ("degenerate_polygon", "object 5"),
    ]
    assert [o.where for o in loaded.objects] == ["object 6"]


def test_parse_without_declaration_or_size():
    xml = b"<annotation><objects><object><possibleresult><name>A220</name></possibleresult><points><point>1, 2</point><point>5,2</point><point>5,6</point><point>1, 2</point></points></object></objects></annotation>"
    parsed = parse_annotation_xml(xml, "a.xml")
    assert parsed.objects[0].points == [(1.0, 2.0), (5.0, 2.0), (5.0, 6.0)]
    assert parsed.skips == []


def test_every_label_spelling_resolves(fake):
    taxonomy = load_taxonomy()
    refs, _ = scan(fake["root"])
    labels = {o.label for ref in refs.values() for o in Fair1mSource().load(ref).objects}
    for label in labels:
        assert taxonomy.lookup(label) is not None, label
    assert taxonomy.lookup("Boeing 737") == taxonomy.lookup("Boeing737")
    assert taxonomy.resolve("Boeing737", "coarse").name == "airplane"


def test_generator_is_deterministic(tmp_path):
    make_fair1m(tmp_path / "a", seed=3)
    make_fair1m(tmp_path / "b", seed=3)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_build_end_to_end(fake, tmp_path):
    config = BuildConfig(sources=[SourceSpec(format="fair1m", path=str(fake["root"]))])
    result = build(config, tmp_path / "out")
    rows = [row for shard in sorted((tmp_path / "out" / "data").glob("*.parquet")) for row in pq.read_table(shard).to_pylist()]
    by_id = {row["image_id"]: row for row in rows}

    assert sorted(by_id) == sorted(f"fair1m/{native_id}" for native_id in fake["scenes"])
    assert result.report["records_by_source"] == {"fair1m": len(fake["scenes"])}
    assert {row["split"] for row in rows} == {"train", "validation", "test"}

    first = by_id["fair1m/train/part1/0"]
    assert (first["width"], first["height"]) == (48, 40)
    assert [r["category"] for r in first["regions"]] == ["Boeing 737", "Boeing 737", "liquid cargo ship", "small car", "vehicle"]
    # Boxes are clipped to the image: the ship starts left of it, the car ends below and right of it.
    ship, car = first["regions"][2], first["regions"][3]
    assert ship["bbox"][0] == 0.0
    assert car["bbox"][2:] == [48.0, 40.0]

    # 16-bit TIFFs are stretched to 8 bit and record it; Pillow cannot open the four-band one at all.
    for native_id, bands in (("train/part2/0", 3), ("validation/0", 4)):
        extra = json.loads(by_id[f"fair1m/{native_id}"]["extra"])
        assert extra["tiff_reader"] == "tifffile", native_id
        assert extra["bands"] == bands, native_id
        assert extra["stretch"]["percentiles"] == [2.0, 98.0]
    grey = json.loads(by_id["fair1m/train/part1/1"]["extra"])
    assert grey["stretch"]["from_mode"].startswith("I;16")
