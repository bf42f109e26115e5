"""Generic VOC adapter: HRRSD-style and RSOD-style fake folders, split lists, and an end-to-end build."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from mgrs.build import build
from mgrs.recipe import BuildConfig, SourceSpec
from mgrs.sources import get_source
from mgrs.sources.base import SceneRef, Skip
from mgrs.sources.voc import read_split_lists
from tests.fakes import tree_digest
from tests.fakes.voc import HEIGHT, WIDTH, make_voc


def scan(root) -> tuple[dict[str, SceneRef], list[Skip]]:
    items = list(get_source("voc").scan(root))
    return {i.native_id: i for i in items if isinstance(i, SceneRef)}, [i for i in items if isinstance(i, Skip)]


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict:
    return make_voc(tmp_path_factory.mktemp("voc"))


def test_scan_pairs_images_and_xml(fake):
    refs, skips = scan(fake["hrrsd"]["root"])
    assert sorted(refs) == sorted(fake["hrrsd"]["scenes"])
    for stem, expected in fake["hrrsd"]["scenes"].items():
        assert refs[stem].image == expected["image"]
        assert refs[stem].annotations == expected["annotations"]
    assert [(s.reason, s.file) for s in skips] == fake["hrrsd"]["scan_skips"]


def test_scan_splits_from_both_list_forms(fake):
    refs, _ = scan(fake["hrrsd"]["root"])
    assert {stem: ref.split for stem, ref in refs.items()} == {stem: e["split"] for stem, e in fake["hrrsd"]["scenes"].items()}


def test_split_lists_with_spaces_and_flags(tmp_path):
    main = tmp_path / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "storage tank_trainval.txt").write_text("img 7  1\nimg 8 -1\n")
    (main / "test.txt").write_text("img 9\n")
    (main / "train.txt").write_text("img 7\n")
    assert read_split_lists(tmp_path) == {"img 7": "train", "img 8": "trainval", "img 9": "test"}


def test_load_matches_description(fake):
    refs, _ = scan(fake["hrrsd"]["root"])
    source = get_source("voc")
    for stem, expected in fake["hrrsd"]["scenes"].items():
        loaded = source.load(refs[stem])
        assert [o.label for o in loaded.objects] == expected["labels"], stem
        boxes = [(o.points[0][0], o.points[0][1], o.points[2][0], o.points[2][1]) for o in loaded.objects]
        assert boxes == [tuple(float(v) for v in box) for box in expected["boxes"]], stem
        assert [o.difficult for o in loaded.objects] == expected["difficult"], stem
        assert dict(Counter(s.reason for s in loaded.skips)) == expected["skips"], stem
        assert {o.oriented for o in loaded.objects} <= {False}
        assert loaded.exhaustive is False


def test_class_names_keep_inner_spaces(fake):
    refs, _ = scan(fake["hrrsd"]["root"])
    loaded = get_source("voc").load(refs["0001"])
    assert [o.label for o in loaded.objects] == ["storage tank", "T junction"]


def test_rsod_class_folders(fake):
    refs, skips = scan(fake["rsod"]["root"])
    assert sorted(refs) == sorted(fake["rsod"]["scenes"])
    for native_id, expected in fake["rsod"]["scenes"].items():
        ref = refs[native_id]
        assert ref.image == expected["image"]
        assert ref.annotations == expected["annotations"]
        assert ref.meta == {"labelled_class_folder": expected["folder"]}
        assert ref.split == "train"
        assert [o.label for o in get_source("voc").load(ref).objects] == [expected["label"]]
    assert sorted((s.reason, s.file) for s in skips) == fake["rsod"]["scan_skips"]


def test_split_sub_folders(tmp_path):
    make_voc(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "hrrsd").rename(tmp_path / "data" / "val")
    refs, _ = scan(tmp_path / "data")
    assert refs["0007"].split == "val"
    assert refs["0001"].split == "train"  # named by ImageSets/Main/train.txt
    assert refs["0001"].image == "val/JPEGImages/0001.jpg"


def test_scan_without_annotations_raises(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(FileNotFoundError, match="Annotations"):
        list(get_source("voc").scan(tmp_path))


def test_generator_is_deterministic(tmp_path):
    make_voc(tmp_path / "a", seed=3)
    make_voc(tmp_path / "b", seed=3)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_build_reads_sizes_from_images(fake, tmp_path):
    config = BuildConfig(sources=[SourceSpec("voc", str(fake["hrrsd"]["root"]))])
    result = build(config, tmp_path / "out")

    rows = {}
    for shard in sorted((tmp_path / "out" / "data").glob("*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            rows[row["image_id"]] = row
    assert sorted(rows) == [f"voc/{stem}" for stem in sorted(fake["hrrsd"]["scenes"])]
    for row in rows.values():
        assert (row["width"], row["height"]) == (WIDTH, HEIGHT)
    # 0002 has no <size> and 0003 a swapped one: both boxes lie right of x = 32, inside the 48 px width.
    assert [r["bbox"] for r in rows["voc/0002"]["regions"]] == [[36.0, 4.0, 46.0, 20.0]]
    assert [r["bbox"] for r in rows["voc/0003"]["regions"]] == [[40.0, 20.0, 47.0, 31.0]]
    assert json.loads(rows["voc/0001"]["extra"])["exhaustive_labels"] is False
    assert {row["split"] for row in rows.values()} == {"train", "val", "test"}

    skipped = result.report["skipped"]
    text = json.dumps(skipped)
    for reason in ("missing_image", "unreadable_annotation", "empty_label", "missing_coordinates"):
        assert reason in text
