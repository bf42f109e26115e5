"""DOTA adapter: scan and load on seeded fake data in the real layout, and on the real DOTA samples."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from mgrs.imaging import ImageReadError, load_rgb
from mgrs.sources import get_source
from mgrs.sources.base import ANNOTATION, IMAGE, SceneRef, Skip
from mgrs.sources.dota import CLASSES, DotaSource, parse_label_text, parse_patch_name
from tests.fakes import tree_digest
from tests.fakes.dota import make_dota


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict:
    return make_dota(tmp_path_factory.mktemp("dota"))


@pytest.fixture(scope="module")
def scanned(fake) -> tuple[list, dict[str, SceneRef], list[Skip]]:
    items = list(DotaSource().scan(fake["root"]))
    refs = {item.native_id: item for item in items if isinstance(item, SceneRef)}
    skips = [item for item in items if isinstance(item, Skip)]
    return items, refs, skips


def test_scan_finds_every_scene(fake, scanned):
    _, refs, _ = scanned
    assert sorted(refs) == sorted(fake["scenes"])
    for native_id, expected in fake["scenes"].items():
        ref = refs[native_id]
        assert ref.source == "dota"
        assert ref.split == expected["split"], native_id
        assert ref.image == expected["image"], native_id
        expected_annotations = () if expected["label"] is None else (expected["label"],)
        assert ref.annotations == expected_annotations, native_id
        assert ref.root == str(fake["root"])


def test_scan_skips_by_reason(fake, scanned):
    _, _, skips = scanned
    assert sorted((skip.reason, skip.file) for skip in skips) == fake["scan_skips"]
    units = {skip.reason: skip.unit for skip in skips}
    assert units == {"missing_image": ANNOTATION, "duplicate_image": IMAGE, "unsupported_file": IMAGE}


def test_scan_keeps_unreadable_images(scanned):
    # Images are decoded later by the build, so garbage and truncated files still become scenes.
    _, refs, _ = scanned
    assert refs["P0009"].image == "train/images/P0009.png"
    assert refs["P0010"].image == "train/images/P0010.png"


def test_scan_prefers_png_over_jpeg(scanned):
    _, refs, skips = scanned
    assert refs["P0012"].image == "train/images/P0012.png"
    assert [skip.file for skip in skips if skip.reason == "duplicate_image"] == ["train/images/P0012.jpg"]


def test_scan_matches_any_image_suffix(scanned):
    _, refs, _ = scanned
    assert refs["P0005"].image.endswith(".jpg")
    assert refs["P0011"].image.endswith(".tif")


def test_scan_order_is_deterministic(fake, scanned):
    items, _, _ = scanned
    again = list(DotaSource().scan(fake["root"]))
    assert again == items
    ids_by_split: dict[str, list[str]] = {}
    for item in items:
        if isinstance(item, SceneRef):
            ids_by_split.setdefault(item.split, []).append(item.native_id)
    assert list(ids_by_split) == ["train", "val"]
    for ids in ids_by_split.values():
        assert ids == sorted(ids)


def test_scan_paths_are_relative(scanned):
    items, _, _ = scanned
    for item in items:
        paths = [item.image, *item.annotations] if isinstance(item, SceneRef) else [item.file]
        for path in paths:
            assert not Path(path).is_absolute(), path
            assert "\\" not in path


def test_scan_flat_layout(tmp_path):
    fake = make_dota(tmp_path, split_folders=False)
    refs = [item for item in DotaSource().scan(tmp_path) if isinstance(item, SceneRef)]
    assert len(refs) == len(fake["scenes"])
    assert {ref.split for ref in refs} == {"train"}
    assert refs[0].image.startswith("images/")
    for ref in refs:
        assert ref.image == fake["scenes"][ref.native_id]["image"]


def test_scan_missing_root_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(DotaSource().scan(tmp_path / "absent"))


def test_scan_root_without_layout_raises(tmp_path):
    (tmp_path / "other").mkdir()
    with pytest.raises(FileNotFoundError, match="images/ or labelTxt/"):
        list(DotaSource().scan(tmp_path))


def test_load_matches_description(fake, scanned):
    _, refs, _ = scanned
    source = DotaSource()
    for native_id, expected in fake["scenes"].items():
        loaded = source.load(refs[native_id])
        assert [o.label for o in loaded.objects] == expected["labels"], native_id
        assert [o.difficult for o in loaded.objects] == expected["difficult"], native_id
        assert [o.points for o in loaded.objects] == expected["points"], native_id
        assert loaded.gsd == expected["gsd"], native_id
        assert loaded.extra == expected["extra"], native_id
        assert dict(Counter(s.reason for s in loaded.skips)) == expected["skips"], native_id
        assert loaded.exhaustive is False


def test_load_edge_cases_of_p0001(scanned):
    _, refs, _ = scanned
    loaded = DotaSource().load(refs["P0001"])
    by_label = {o.label: o for o in loaded.objects}

    assert len(loaded.objects) == 10
    assert by_label["plane"].points == [(10.0, 10.0), (30.0, 10.0), (30.0, 20.0), (10.0, 20.0)]
    assert by_label["plane"].where == "line 3"
    assert by_label["ship"].difficult is None
    assert by_label["large-vehicle"].difficult == 2
    assert {"container-crane", "helipad", "flying-saucer"} <= by_label.keys()
    # Out-of-image, bow-tie and zero-area outlines are passed on as written for the build to judge.
    assert by_label["harbor"].points[0] == (-5.0, 40.0)
    assert by_label["tennis-court"].points == [(30.0, 0.0), (40.0, 8.0), (40.0, 0.0), (30.0, 8.0)]
    assert by_label["bridge"].points == [(5.0, 44.0), (15.0, 44.0), (25.0, 44.0), (35.0, 44.0)]
    assert all(o.oriented for o in loaded.objects)
    assert loaded.gsd == 0.5


def test_load_skips_name_their_lines(scanned):
    _, refs, _ = scanned
    loaded = DotaSource().load(refs["P0001"])
    assert [(s.reason, s.detail.split(":")[0]) for s in loaded.skips] == [
        ("malformed_line", "line 14"),
        ("malformed_line", "line 15"),
        ("malformed_line", "line 16"),
        ("invalid_difficult", "line 17"),
        ("invalid_coordinates", "line 18"),
    ]
    assert {s.file for s in loaded.skips} == {"train/labelTxt/P0001.txt"}
    assert {s.unit for s in loaded.skips} == {ANNOTATION}


def test_load_bom_and_null_gsd(scanned):
    _, refs, _ = scanned
    loaded = DotaSource().load(refs["P0002"])
    assert loaded.gsd is None
    assert loaded.extra == {"imagesource": "GF"}
    assert [o.label for o in loaded.objects] == ["storage-tank", "roundabout"]
    assert loaded.skips == []


def test_load_invalid_gsd(scanned):
    _, refs, _ = scanned
    loaded = DotaSource().load(refs["P0004"])
    assert loaded.gsd is None
    assert [s.reason for s in loaded.skips] == ["invalid_gsd"]
    assert len(loaded.objects) == 1


def test_load_empty_label_is_scene_without_objects(scanned):
    _, refs, _ = scanned
    loaded = DotaSource().load(refs["P0008"])
    assert loaded.objects == []
    assert loaded.skips == []


def test_load_image_without_label(scanned):
    _, refs, _ = scanned
    assert refs["P0006"].annotations == ()
    loaded = DotaSource().load(refs["P0006"])
    assert loaded.objects == []
    assert loaded.skips == []


def test_load_binary_label_is_skipped(scanned):
    _, refs, _ = scanned
    loaded = DotaSource().load(refs["P0013"])
    assert loaded.objects == []
    assert [s.reason for s in loaded.skips] == ["unreadable_annotation"]


def test_load_vanished_label_does_not_raise(fake, scanned):
    _, refs, _ = scanned
    ref = refs["P0001"]
    vanished = SceneRef(ref.source, ref.native_id, ref.root, ref.image, ("train/labelTxt/gone.txt",), ref.split)
    loaded = DotaSource().load(vanished)
    assert [s.reason for s in loaded.skips] == ["unreadable_annotation"]


def test_parse_label_text_crlf_and_blank_lines():
    text = "imagesource:GoogleEarth\r\ngsd:0.25\r\n\r\n1 2 3 4 5 6 7 8 plane 1\r\n\r\n"
    parsed = parse_label_text(text, "a.txt")
    assert parsed.gsd == 0.25
    assert len(parsed.objects) == 1
    assert parsed.objects[0].where == "line 4"
    assert parsed.skips == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("P0004__1__0___0", {"scene": "P0004", "x": 0, "y": 0, "scheme": "dota_devkit", "scale": 1.0}),
        ("P0004__0.5__824___412", {"scene": "P0004", "x": 824, "y": 412, "scheme": "dota_devkit", "scale": 0.5}),
        ("P2805__1024__0___0", {"scene": "P2805", "x": 0, "y": 0, "scheme": "mmrotate", "size": 1024}),
        (
            "P0003_0_800_347_1147",
            {"scene": "P0003", "x": 347, "y": 0, "scheme": "isaid", "width": 800, "height": 800},
        ),
        ("P0003", None),
        ("P0003_800_0_347_1147", None),
        ("my__scene", None),
    ],
)
def test_parse_patch_name(name, expected):
    assert parse_patch_name(name) == expected


def test_scan_records_patch_offsets(fake, scanned):
    _, refs, _ = scanned
    for native_id, expected in fake["scenes"].items():
        assert refs[native_id].meta.get("patch_of") == expected["patch_of"], native_id
    assert refs["P0004__1__0___0"].native_id == "P0004__1__0___0"


def test_source_name_carries_version(fake):
    source = get_source("dota", "1.5")
    assert source.name == "dota-v1.5"
    ref = next(item for item in source.scan(fake["root"]) if isinstance(item, SceneRef))
    assert ref.source == "dota-v1.5"


def test_classes_per_version():
    assert len(CLASSES["1.0"]) == 15
    assert CLASSES["1.5"][-1] == "container-crane"
    assert set(CLASSES["2.0"]) - set(CLASSES["1.5"]) == {"airport", "helipad"}


def test_generator_is_deterministic(tmp_path):
    make_dota(tmp_path / "a", seed=3)
    make_dota(tmp_path / "b", seed=3)
    first = tree_digest(tmp_path / "a")
    assert first == tree_digest(tmp_path / "b")
    make_dota(tmp_path / "c", seed=4)
    assert first["train/images/P0001.png"] != tree_digest(tmp_path / "c")["train/images/P0001.png"]


# Real files from the DOTA devkit's examples.


@pytest.fixture(scope="module")
def sample_refs(samples) -> dict[str, SceneRef]:
    return {item.native_id: item for item in DotaSource().scan(samples / "dota") if isinstance(item, SceneRef)}


@pytest.mark.samples
def test_sample_p0706(sample_refs):
    loaded = DotaSource().load(sample_refs["P0706"])
    assert len(loaded.objects) == 536
    assert loaded.skips == []
    assert loaded.gsd == 0.255589285596
    assert loaded.extra == {"imagesource": "GoogleEarth"}
    assert Counter(o.difficult for o in loaded.objects) == {0: 530, 1: 6}

    # Line 3 has a vertex at x=1112, beyond the 1111-pixel width; it is kept as written.
    first = loaded.objects[0]
    assert first.where == "line 3"
    assert first.label == "ship"
    assert first.points[3] == (1112.0, 1062.0)
    outside = [o.where for o in loaded.objects if any(x >= 1112 or y >= 1182 for x, y in o.points)]
    assert outside == ["line 3", "line 37", "line 263", "line 370"]


@pytest.mark.samples
def test_sample_p1888(sample_refs):
    ref = sample_refs["P1888"]
    assert ref.split == "train"
    assert ref.image == "images/P1888.png"
    assert ref.annotations == ("labelTxt/P1888.txt",)
    loaded = DotaSource().load(ref)
    assert len(loaded.objects) == 64
    assert loaded.skips == []
    assert Counter(o.label for o in loaded.objects) == {"large-vehicle": 50, "small-vehicle": 14}


def test_fake_images_cover_pixel_formats(fake):
    # The build's image reader must meet each of these; check that the generator wrote them.
    root = fake["root"]
    modes = {}
    for native_id in ("P0001", "P0002", "P0003", "P0004", "P0005", "P0011"):
        with Image.open(root / fake["scenes"][native_id]["image"]) as image:
            modes[native_id] = (image.format, image.mode)
    assert modes == {
        "P0001": ("PNG", "RGB"),
        "P0002": ("PNG", "L"),
        "P0003": ("PNG", "RGBA"),
        "P0004": ("PNG", "I;16"),
        "P0005": ("JPEG", "RGB"),
        "P0011": ("TIFF", "RGB"),
    }
    for native_id in ("P0009", "P0010"):
        with pytest.raises(ImageReadError):
            load_rgb(root / fake["scenes"][native_id]["image"])


def test_split_named_after_known_folder(tmp_path):
    from mgrs.sources.dota import find_split_folders

    for name, expected in (("val", "val"), ("Test", "test"), ("DOTA", "train")):
        folder = tmp_path / name
        (folder / "images").mkdir(parents=True)

        assert find_split_folders(folder, ("images",), "DOTA") == [(expected, folder)]


def test_split_folder_names_made_valid(tmp_path):
    from mgrs.sources.dota import find_split_folders

    (tmp_path / "train part-1" / "images").mkdir(parents=True)

    assert find_split_folders(tmp_path, ("images",), "DOTA") == [("train_part_1", tmp_path / "train part-1")]
