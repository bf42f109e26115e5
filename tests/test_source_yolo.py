"""YOLO and YOLO-OBB adapters: both folder layouts, class-name files, bad lines, and an end-to-end build."""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq
import pytest

from mgrs.build import build
from mgrs.recipe import BuildConfig, SourceSpec
from mgrs.sources import get_source
from mgrs.sources.base import SceneRef, Skip
from mgrs.sources.yolo import read_class_names
from tests.fakes import tree_digest
from tests.fakes.yolo import NAMES, make_yolo


def scan(format_name, root) -> tuple[dict[str, SceneRef], list[Skip]]:
    items = list(get_source(format_name).scan(root))
    return {i.native_id: i for i in items if isinstance(i, SceneRef)}, [i for i in items if isinstance(i, Skip)]


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict:
    return make_yolo(tmp_path_factory.mktemp("yolo"))


def test_scan_ultralytics_layout(fake):
    refs, skips = scan("yolo", fake["detect"]["root"])
    assert sorted(refs) == sorted(fake["detect"]["scenes"])
    assert {k: r.split for k, r in refs.items()} == {k: e["split"] for k, e in fake["detect"]["scenes"].items()}
    assert refs["train/a"].annotations == ("labels/train/a.txt", "data.yaml")
    assert refs["train/negative"].annotations == ()
    assert [(s.reason, s.file) for s in skips] == fake["detect"]["scan_skips"]


def test_load_boxes_in_pixels(fake):
    refs, _ = scan("yolo", fake["detect"]["root"])
    source = get_source("yolo")
    for native_id, expected in fake["detect"]["scenes"].items():
        loaded = source.load(refs[native_id])
        assert [o.label for o in loaded.objects] == expected["labels"], native_id
        assert dict(Counter(s.reason for s in loaded.skips)) == expected["skips"], native_id
    first = source.load(refs["train/a"]).objects[0]
    assert first.points == fake["detect"]["scenes"]["train/a"]["first_box"]
    assert first.oriented is False


def test_segment_line_read_as_polygon(fake):
    refs, _ = scan("yolo", fake["detect"]["root"])
    outline = get_source("yolo").load(refs["train/a"]).objects[2]
    assert outline.oriented is True
    assert outline.points == [(0.1 * 64, 0.1 * 32), (0.3 * 64, 0.1 * 32), (0.3 * 64, 0.4 * 32)]


def test_obb_roboflow_layout(fake):
    refs, skips = scan("yolo-obb", fake["obb"]["root"])
    assert sorted(refs) == ["train/d"]
    assert skips == []
    loaded = get_source("yolo-obb").load(refs["train/d"])
    assert [o.points for o in loaded.objects] == [fake["obb"]["first_quad"]]
    assert [s.reason for s in loaded.skips] == ["malformed_line"]


def test_class_names_from_each_file(tmp_path):
    (tmp_path / "data.yaml").write_text("names: [plane, ship]\n")
    assert read_class_names(tmp_path) == (["plane", "ship"], "data.yaml")
    (tmp_path / "data.yaml").unlink()
    (tmp_path / "obj.names").write_text("a\nb\n")
    assert read_class_names(tmp_path) == (["a", "b"], "obj.names")


def test_missing_class_names_raise(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="classes.txt"):
        list(get_source("yolo").scan(tmp_path))


def test_unreadable_image_skips_every_line(tmp_path):
    make_yolo(tmp_path)
    root = tmp_path / "detect"
    (root / "images" / "val" / "c.jpg").write_bytes(b"not an image")
    refs, _ = scan("yolo", root)
    loaded = get_source("yolo").load(refs["val/c"])
    assert loaded.objects == []
    assert [s.reason for s in loaded.skips] == ["image_not_readable"]


def test_generator_is_deterministic(tmp_path):
    make_yolo(tmp_path / "a", seed=4)
    make_yolo(tmp_path / "b", seed=4)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_build_end_to_end(fake, tmp_path):
    config = BuildConfig(sources=[SourceSpec("yolo", str(fake["detect"]["root"])), SourceSpec("yolo-obb", str(fake["obb"]["root"]))])
    build(config, tmp_path / "out")
    rows = {row["image_id"]: row for shard in sorted((tmp_path / "out" / "data").glob("*.parquet")) for row in pq.read_table(shard).to_pylist()}
    assert sorted(rows) == sorted([*(f"yolo/{k}" for k in fake["detect"]["scenes"]), "yolo-obb/train/d"])
    assert rows["yolo/train/a"]["regions"][0]["bbox"] == [24.0, 8.0, 40.0, 24.0]
    assert rows["yolo/val/c"]["regions"][0]["bbox"] == [32.0, 0.0, 64.0, 32.0]
    assert rows["yolo-obb/train/d"]["regions"][0]["polygon"] == [16.0, 8.0, 32.0, 8.0, 32.0, 24.0, 16.0, 24.0]
    assert NAMES[2] == rows["yolo/val/c"]["regions"][0]["source_category"]


def test_orphan_label_one_annotation_skip(fake, tmp_path):
    _, skips = scan("yolo", fake["detect"]["root"])
    assert [(s.reason, s.unit) for s in skips] == [("missing_image", "annotation")]

    report = build(BuildConfig(sources=[SourceSpec("yolo", str(fake["detect"]["root"]))]), tmp_path / "out").report
    # The orphan label file is a planning skip: in `planned.skipped`, not in `annotations_read`.
    assert report["planned"]["skipped"]["annotation"] == {"missing_image": 1}
    assert report["skipped"]["annotation"]["missing_image"] == 1
    load_skips = sum(report["skipped"]["annotation"].values()) - sum(report["planned"]["skipped"]["annotation"].values())
    assert report["annotations_read"] == report["annotations_placed"] + load_skips
    assert report["annotations_read"] == 8
