"""DIOR and DIOR-R adapters: scan and load on seeded fake data in the real layout, and on the real DIOR-R sample."""

from __future__ import annotations

from collections import Counter

import pytest

from mgrs.sources import get_source
from mgrs.sources.base import ANNOTATION, SceneRef, Skip
from mgrs.sources.dior import DiorRSource, DiorSource, parse_annotation_xml
from tests.fakes import tree_digest
from tests.fakes.dior import make_dior

FORMATS = ("dior", "dior-r")


def scan(source, root) -> tuple[dict[str, SceneRef], list[Skip]]:
    items = list(source.scan(root))
    refs = {item.native_id: item for item in items if isinstance(item, SceneRef)}
    skips = [item for item in items if isinstance(item, Skip)]
    return refs, skips


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict:
    return make_dior(tmp_path_factory.mktemp("dior"))


@pytest.mark.parametrize("format_name", FORMATS)
def test_scan_finds_every_scene(fake, format_name):
    refs, _ = scan(get_source(format_name), fake["root"])
    assert sorted(refs) == sorted(fake["scenes"])
    key = "oriented_xml" if format_name == "dior-r" else "horizontal_xml"
    for native_id, expected in fake["scenes"].items():
        ref = refs[native_id]
        assert ref.source == format_name
        assert ref.image == expected["image"], native_id
        expected_annotations = () if expected[key] is None else (expected[key],)
        assert ref.annotations == expected_annotations, native_id


@pytest.mark.parametrize("format_name", FORMATS)
def test_scan_skips_xml_without_image(fake, format_name):
    _, skips = scan(get_source(format_name), fake["root"])
    assert [(skip.reason, skip.file) for skip in skips] == fake["scan_skips"][format_name]
    assert {skip.unit for skip in skips} == {ANNOTATION}


def test_scan_splits_from_image_sets(fake):
    refs, _ = scan(DiorSource(), fake["root"])
    splits = {native_id: ref.split for native_id, ref in refs.items()}
    assert splits == {native_id: expected["split"] for native_id, expected in fake["scenes"].items()}
    # Listed in train.txt and val.txt: train wins. Listed nowhere: the folder decides.
    assert splits["00007"] == "train"
    assert splits["00008"] == "trainval"
    assert splits["00004"] == "test"


def test_scan_splits_from_folders(tmp_path):
    fake = make_dior(tmp_path, image_sets=False)
    refs, _ = scan(DiorRSource(), tmp_path)
    splits = {native_id: ref.split for native_id, ref in refs.items()}
    assert splits == {native_id: expected["split"] for native_id, expected in fake["scenes"].items()}
    assert set(splits.values()) == {"trainval", "test"}


def test_scan_horizontal_xml_directly_in_annotations(tmp_path):
    fake = make_dior(tmp_path, horizontal_in_subfolder=False)
    refs, skips = scan(DiorSource(), tmp_path)
    assert refs["00001"].annotations == ("Annotations/00001.xml",)
    assert [(skip.reason, skip.file) for skip in skips] == fake["scan_skips"]["dior"]
    loaded = DiorSource().load(refs["00001"])
    assert [o.label for o in loaded.objects] == fake["scenes"]["00001"]["labels"]


def test_scan_is_deterministic(fake):
    first = list(DiorRSource().scan(fake["root"]))
    assert list(DiorRSource().scan(fake["root"])) == first
    ids = [item.native_id for item in first if isinstance(item, SceneRef)]
    assert ids == sorted(ids)


def test_scan_without_oriented_folder_raises(tmp_path):
    make_dior(tmp_path)
    (tmp_path / "Annotations" / "Oriented Bounding Boxes").rename(tmp_path / "Annotations" / "elsewhere")
    with pytest.raises(FileNotFoundError, match="Oriented Bounding Boxes"):
        list(DiorRSource().scan(tmp_path))


def test_scan_horizontal_on_oriented_only_raises(tmp_path):
    make_dior(tmp_path)
    (tmp_path / "Annotations" / "Horizontal Bounding Boxes").rename(tmp_path / "hbb")
    with pytest.raises(FileNotFoundError, match="dior-r"):
        list(DiorSource().scan(tmp_path))


def test_scan_without_images_raises(tmp_path):
    (tmp_path / "Annotations" / "Oriented Bounding Boxes").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        list(DiorRSource().scan(tmp_path))


@pytest.mark.parametrize("format_name", FORMATS)
def test_load_matches_description(fake, format_name):
    source = get_source(format_name)
    refs, _ = scan(source, fake["root"])
    key = "oriented_points" if format_name == "dior-r" else "horizontal_points"
    for native_id, expected in fake["scenes"].items():
        loaded = source.load(refs[native_id])
        assert [o.label for o in loaded.objects] == expected["labels"], native_id
        assert [o.difficult for o in loaded.objects] == expected["difficult"], native_id
        assert [o.points for o in loaded.objects] == expected[key], native_id
        assert {o.oriented for o in loaded.objects} <= {format_name == "dior-r"}
        assert dict(Counter(s.reason for s in loaded.skips)) == expected["skips"], native_id
        assert loaded.gsd is None
        assert loaded.exhaustive is False


def test_load_bare_xml_keeps_mixed_case_labels(fake):
    refs, _ = scan(DiorSource(), fake["root"])
    loaded = DiorSource().load(refs["00002"])
    assert [o.label for o in loaded.objects] == ["vehicle", "vehicle", "Expressway-toll-station"]
    assert [o.difficult for o in loaded.objects] == [None, None, None]
    assert loaded.objects[2].points == [(10.0, 10.0), (30.0, 10.0), (30.0, 30.0), (10.0, 30.0)]
    assert loaded.objects[2].where == "object 3"


def test_load_rotated_quad_as_written(fake):
    refs, _ = scan(DiorRSource(), fake["root"])
    loaded = DiorRSource().load(refs["00001"])
    service_area = loaded.objects[1]
    assert service_area.label == "Expressway-Service-area"
    assert service_area.points == [(10.0, 4.0), (24.0, 10.0), (20.0, 20.0), (6.0, 14.0)]
    assert service_area.difficult == 1
    assert service_area.oriented is True


def test_load_bad_objects_are_skipped_by_reason(fake):
    refs, _ = scan(DiorSource(), fake["root"])
    loaded = DiorSource().load(refs["00004"])
    assert [(s.reason, s.detail.split(":")[0]) for s in loaded.skips] == [
        ("empty_label", "object 1"),
        ("invalid_coordinates", "object 2"),
        ("missing_coordinates", "object 3"),
        ("invalid_difficult", "object 4"),
    ]
    assert [(o.label, o.where) for o in loaded.objects] == [("airplane", "object 5")]
    assert loaded.objects[0].points == [(6.5, 7.5), (16.5, 7.5), (16.5, 17.5), (6.5, 17.5)]


def test_load_malformed_xml(fake):
    refs, _ = scan(DiorRSource(), fake["root"])
    loaded = DiorRSource().load(refs["00003"])
    assert loaded.objects == []
    assert [(s.reason, s.file) for s in loaded.skips] == [
        ("unreadable_annotation", "Annotations/Oriented Bounding Boxes/00003.xml")
    ]


def test_load_image_without_xml(fake):
    refs, _ = scan(DiorSource(), fake["root"])
    assert refs["00005"].annotations == ()
    loaded = DiorSource().load(refs["00005"])
    assert loaded.objects == []
    assert loaded.skips == []


def test_parse_falls_back_to_other_box_element():
    xml = b"<annotation><object><name>dam</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>"
    parsed = parse_annotation_xml(xml, "a.xml", prefer_oriented=True)
    assert parsed.objects[0].points == [(1.0, 2.0), (3.0, 2.0), (3.0, 4.0), (1.0, 4.0)]
    assert parsed.objects[0].oriented is False


def test_encoding_and_licence():
    for source in (DiorSource(), DiorRSource()):
        assert source.encoding == "jpeg"
        assert source.license == "CC-BY-NC-4.0"


def test_generator_is_deterministic(tmp_path):
    make_dior(tmp_path / "a", seed=5)
    make_dior(tmp_path / "b", seed=5)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


# The real DIOR-R sample from the MMRotate test data.


@pytest.mark.samples
def test_sample_00001_golffield(samples):
    refs, skips = scan(DiorRSource(), samples / "dior")
    assert skips == []
    ref = refs["00001"]
    assert ref.image == "JPEGImages-trainval/00001.jpg"
    assert ref.annotations == ("Annotations/Oriented Bounding Boxes/00001.xml",)
    assert ref.split == "trainval"

    loaded = DiorRSource().load(ref)
    assert loaded.skips == []
    assert len(loaded.objects) == 1
    golf = loaded.objects[0]
    assert golf.label == "golffield"
    assert golf.points == [(133.0, 237.0), (684.0, 237.0), (684.0, 672.0), (133.0, 672.0)]
    assert golf.difficult == 0
    assert golf.oriented is True
