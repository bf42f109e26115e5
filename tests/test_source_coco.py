"""Generic COCO adapter: iSAID-style fake files, RLE decoding, unsafe file names, and an end-to-end build."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from mgrs.build import build
from mgrs.recipe import BuildConfig, SourceSpec
from mgrs.sources import get_source
from mgrs.sources.base import SceneRef, Skip
from mgrs.sources.coco import decode_rle_counts, rle_geometry, safe_relative_name, split_of
from tests.fakes import tree_digest
from tests.fakes.coco import compress_counts, make_coco, rle_counts


def scan(root) -> tuple[dict[str, SceneRef], list[Skip]]:
    items = list(get_source("coco").scan(root))
    return {i.native_id: i for i in items if isinstance(i, SceneRef)}, [i for i in items if isinstance(i, Skip)]


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict:
    return make_coco(tmp_path_factory.mktemp("coco"))


def test_scan_finds_images_and_splits(fake):
    refs, _ = scan(fake["root"])
    assert sorted(refs) == sorted(fake["scenes"])
    assert {k: r.split for k, r in refs.items()} == {k: e["split"] for k, e in fake["scenes"].items()}
    assert refs["P0001"].image == "train/images/P0001.png"
    assert refs["P0001"].meta == {"coco_image_id": 1}
    assert refs["P0003_0_800_347_1147"].meta["patch_of"]["x"] == 347


def test_scan_skips_are_counted(fake):
    _, skips = scan(fake["root"])
    # A missing image file is one annotation skip per image entry, as a label file without its
    # image is in the other formats; the fake still lists the image skip it used to give.
    expected = [skip for skip in fake["scan_skips"] if skip != ("missing_image", "image", "P0404.png")]
    assert sorted((s.reason, s.unit, s.file) for s in skips) == expected


def test_missing_image_one_skip_per_entry(tmp_path):
    images = [{"id": 1, "file_name": "absent.png"}, {"id": 2, "file_name": "here.png"}]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 5, 4, 4]},
        {"id": 3, "image_id": 9, "category_id": 1, "bbox": [1, 1, 4, 4]},
        {"id": 4, "image_id": 9, "category_id": 1, "bbox": [5, 5, 4, 4]},
        {"id": 5, "image_id": 9, "category_id": 1, "bbox": [9, 9, 4, 4]},
    ]
    data = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "ship"}]}
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "here.png").write_bytes(b"")
    (tmp_path / "train.json").write_text(json.dumps(data), encoding="utf-8")

    refs, skips = scan(tmp_path)
    assert sorted(refs) == ["here"]
    assert [(s.reason, s.unit, s.file) for s in skips] == [("missing_image", "annotation", "train.json")] * 2
    assert "2 annotations" in skips[0].detail and "absent.png" in skips[0].detail
    assert "3 annotations" in skips[1].detail and "image_id 9" in skips[1].detail


def test_file_names_outside_root_rejected():
    assert safe_relative_name("../../secret.png") is None
    assert safe_relative_name("/etc/hostname") is None
    assert safe_relative_name("C:\\data\\a.png") is None
    assert safe_relative_name("a/../../b.png") is None
    assert str(safe_relative_name("sub\\a.png")) == "sub/a.png"


def test_load_maps_categories_by_name(fake):
    refs, _ = scan(fake["root"])
    source = get_source("coco")
    for native_id, expected in fake["scenes"].items():
        loaded = source.load(refs[native_id])
        assert [o.label for o in loaded.objects] == expected["labels"], native_id
        assert dict(Counter(s.reason for s in loaded.skips)) == expected["skips"], native_id


def test_load_geometry_kinds(fake):
    refs, _ = scan(fake["root"])
    objects = get_source("coco").load(refs["P0001"]).objects
    polygon, two_parts, rle_list, rle_string, box = objects
    assert polygon.points == [(2.0, 2.0), (12.0, 2.0), (12.0, 10.0), (2.0, 10.0)]
    assert two_parts.geometry.geom_type == "MultiPolygon"
    assert two_parts.geometry.area == pytest.approx(32.0)
    assert rle_list.geometry.bounds == (5.0, 25.0, 15.0, 35.0)
    assert rle_list.geometry.area == pytest.approx(100.0)
    assert rle_string.geometry.bounds == (26.0, 3.0, 36.0, 9.0)
    assert box.points == [(15.0, 15.0), (20.0, 15.0), (20.0, 19.0), (15.0, 19.0)]
    assert box.oriented is False


def test_compressed_rle_round_trip():
    rng = np.random.default_rng(1)
    mask = rng.random((23, 17)) > 0.6
    runs = rle_counts(mask)
    assert decode_rle_counts(compress_counts(runs)) == runs
    geometry = rle_geometry(runs, 23, 17)
    assert geometry.area == pytest.approx(mask.sum())


def test_rle_with_wrong_total_is_skipped():
    from mgrs.sources.coco import parse_annotation

    annotation = {"id": 1, "category_id": 1, "segmentation": {"size": [4, 4], "counts": [3, 2]}}
    with pytest.raises(ValueError, match="sum to 5"):
        parse_annotation(annotation, {1: "ship"})


def test_split_from_file_names(tmp_path):
    assert split_of(tmp_path / "annotations" / "instances_train2017.json") == "train"
    assert split_of(tmp_path / "annotations" / "instances_val2017.json") == "val"
    assert split_of(tmp_path / "iSAID_trainval.json") == "trainval"
    assert split_of(tmp_path / "valid" / "_annotations.coco.json") == "valid"
    assert split_of(tmp_path / "x" / "labels.json") == "train"


def test_generator_is_deterministic(tmp_path):
    make_coco(tmp_path / "a", seed=2)
    make_coco(tmp_path / "b", seed=2)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_build_end_to_end(fake, tmp_path):
    result = build(BuildConfig(sources=[SourceSpec("coco", str(fake["root"]))]), tmp_path / "out")
    rows = {row["image_id"]: row for shard in sorted((tmp_path / "out" / "data").glob("*.parquet")) for row in pq.read_table(shard).to_pylist()}
    assert sorted(rows) == sorted(f"coco/{name}" for name in fake["scenes"])
    # The val file numbers its categories differently; names decide.
    assert [r["source_category"] for r in rows["coco/P0010"]["regions"]] == ["plane", "Small_Vehicle"]
    assert [r["category"] for r in rows["coco/P0010"]["regions"]] == ["airplane", "small vehicle"]
    assert rows["coco/P0002"]["regions"] == []
    assert json.loads(rows["coco/P0001"]["extra"])["coco_image_id"] == 1
    assert "secret" not in json.dumps(rows["coco/P0001"]["extra"])
    assert "unsafe_file_name" in json.dumps(result.report)
