"""iSAID adapter: scan and load on seeded fake masks in the devkit layout, and on the real P0005 sample."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import shapely
from PIL import Image

from mgrs.sources import get_source
from mgrs.sources.base import ANNOTATION, IMAGE, SceneRef, Skip
from mgrs.sources.isaid import CLASS_COLOURS, IsaidSource, masks_to_objects
from tests.fakes import tree_digest
from tests.fakes.isaid import make_isaid


def scan(source, root) -> tuple[dict[str, SceneRef], list[Skip]]:
    items = list(source.scan(root))
    refs = {item.native_id: item for item in items if isinstance(item, SceneRef)}
    skips = [item for item in items if isinstance(item, Skip)]
    return refs, skips


def class_components(class_codes: np.ndarray, code: int) -> int:
    """Count the 4-connected components of one class in a packed class-colour image."""
    boxes = []
    for row, line in enumerate(class_codes == code):
        # Starts and ends of the runs of True in this row, from the changes of a zero-padded copy.
        changes = np.flatnonzero(np.diff(np.concatenate(([0], line.astype(np.int8), [0]))))
        boxes.extend(shapely.box(start, row, end, row + 1) for start, end in zip(changes[::2], changes[1::2]))
    union = shapely.union_all(boxes)
    return len(getattr(union, "geoms", [union])) if not union.is_empty else 0


def pack(path) -> np.ndarray:
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB")).astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict:
    return make_isaid(tmp_path_factory.mktemp("isaid"))


@pytest.fixture(scope="module")
def scanned(fake) -> tuple[dict[str, SceneRef], list[Skip]]:
    return scan(IsaidSource(), fake["root"])


def test_scan_finds_images_not_masks(fake, scanned):
    refs, _ = scanned
    assert sorted(refs) == sorted(fake["scenes"])
    for native_id, expected in fake["scenes"].items():
        ref = refs[native_id]
        assert ref.source == "isaid"
        assert ref.split == expected["split"], native_id
        assert ref.image == expected["image"], native_id
        assert ref.annotations == expected["annotations"], native_id
        assert ref.meta.get("patch_of") == expected["patch_of"], native_id


def test_scan_skips_masks_without_image(fake, scanned):
    _, skips = scanned
    assert sorted((skip.reason, skip.file) for skip in skips) == fake["scan_skips"]
    assert {skip.unit for skip in skips} == {ANNOTATION}


def test_scan_is_deterministic(fake):
    first = list(IsaidSource().scan(fake["root"]))
    assert list(IsaidSource().scan(fake["root"])) == first


def test_load_matches_description(fake, scanned):
    refs, _ = scanned
    source = IsaidSource()
    for native_id, expected in fake["scenes"].items():
        loaded = source.load(refs[native_id])
        assert sorted(o.label for o in loaded.objects) == expected["labels"], native_id
        assert sorted(round(o.geometry.area) for o in loaded.objects) == expected["areas"], native_id
        assert dict(Counter(s.reason for s in loaded.skips)) == expected["skips"], native_id
        assert loaded.exhaustive is False
        assert loaded.gsd is None


def test_touching_vehicles_stay_two_objects(fake, scanned):
    refs, _ = scanned
    loaded = IsaidSource().load(refs["P0001"])
    vehicles = [o for o in loaded.objects if o.label == "Small_Vehicle"]
    assert len(vehicles) == 2
    assert vehicles[0].geometry.touches(vehicles[1].geometry)
    assert sorted(v.geometry.bounds for v in vehicles) == [(2.0, 2.0, 8.0, 6.0), (8.0, 2.0, 14.0, 6.0)]

    class_codes = pack(fake["root"] / "train/images/P0001_instance_color_RGB.png")
    assert class_components(class_codes, 0x00007F) == 1


def test_objects_are_pixel_outlines(scanned):
    refs, _ = scanned
    loaded = IsaidSource().load(refs["P0001"])
    by_label = {o.label: o for o in loaded.objects if o.label != "Small_Vehicle"}

    plane = by_label["plane"].geometry
    assert plane.geom_type == "Polygon"
    assert plane.area == 64
    assert plane.bounds == (2.0, 10.0, 12.0, 20.0)
    # The L shape keeps its six corners once collinear run corners are dropped.
    assert len(plane.exterior.coords) == 7

    bridge = by_label["Bridge"].geometry
    assert bridge.geom_type == "MultiPolygon"
    assert len(bridge.geoms) == 2
    assert bridge.area == 36

    for obj in loaded.objects:
        assert obj.points is None
        assert obj.oriented is True
        assert obj.difficult is None
        assert obj.geometry.is_valid
        assert obj.where.startswith("instance (")


def test_min_instance_area_is_inclusive(scanned):
    refs, _ = scanned
    default = IsaidSource().load(refs["P0001"])
    assert "storage_tank" in {o.label for o in default.objects}  # 11 pixels
    assert "ship" not in {o.label for o in default.objects}  # 10 pixels

    stricter = IsaidSource(min_instance_area=11).load(refs["P0001"])
    assert "storage_tank" not in {o.label for o in stricter.objects}
    assert Counter(s.reason for s in stricter.skips)["tiny_instance"] == 2

    looser = IsaidSource(min_instance_area=0).load(refs["P0001"])
    assert "ship" in {o.label for o in looser.objects}


def test_negative_min_instance_area_raises():
    with pytest.raises(ValueError, match="min_instance_area"):
        IsaidSource(min_instance_area=-1)


def test_bad_pixels_are_skipped_with_colours(scanned):
    refs, _ = scanned
    loaded = IsaidSource().load(refs["P0001"])
    details = {s.reason: s.detail for s in loaded.skips}
    assert "(200, 10, 10)" in details["unknown_class_colour"]
    assert "(220, 230, 240)" in details["instance_without_class"]
    assert "(0, 100, 155)" in details["class_without_instance"]
    assert details["tiny_instance"].startswith("instance (160, 170, 180)")
    assert {s.unit for s in loaded.skips} == {ANNOTATION}


@pytest.mark.parametrize(
    ("native_id", "reason"),
    [("P0002", "missing_mask"), ("P0003", "mask_size_mismatch"), ("P0006", "unreadable_annotation")],
)
def test_broken_masks_skip_the_image(scanned, native_id, reason):
    refs, _ = scanned
    loaded = IsaidSource().load(refs[native_id])
    assert loaded.objects == []
    assert [(s.reason, s.unit, s.file) for s in loaded.skips] == [(reason, IMAGE, refs[native_id].image)]


def test_image_without_masks_counted(scanned):
    refs, _ = scanned
    assert refs["P0004"].annotations == ()
    loaded = IsaidSource().load(refs["P0004"])
    assert loaded.objects == []
    assert [skip.reason for skip in loaded.skips] == ["missing_mask"]
    assert loaded.skips[0].unit == "image"


def test_folder_without_masks_rejected(tmp_path):
    images = tmp_path / "train" / "images"
    images.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(images / "P0001.png")

    with pytest.raises(FileNotFoundError, match="no iSAID masks"):
        list(IsaidSource().scan(tmp_path))


def test_masks_to_objects_on_arrays():
    class_codes = np.zeros((4, 6), dtype=np.uint32)
    instance_codes = np.zeros((4, 6), dtype=np.uint32)
    class_codes[0:4, 0:6] = 0x00007F  # one Small_Vehicle region across the whole image
    instance_codes[0:4, 0:3] = 1
    instance_codes[0:4, 3:6] = 2
    objects, skips = masks_to_objects(class_codes, instance_codes, "m.png", min_instance_area=10)
    assert [o.geometry.area for o in objects] == [12.0, 12.0]
    assert skips == []


def test_class_colours_are_the_fifteen_isaid_classes():
    assert len(CLASS_COLOURS) == 15
    assert CLASS_COLOURS[(0, 0, 127)] == "Small_Vehicle"
    assert CLASS_COLOURS[(0, 127, 127)] == "Large_Vehicle"


def test_scan_missing_root_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(get_source("isaid").scan(tmp_path / "absent"))


def test_generator_is_deterministic(tmp_path):
    make_isaid(tmp_path / "a", seed=7)
    make_isaid(tmp_path / "b", seed=7)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


# The real P0005 sample from the iSAID devkit.


@pytest.mark.samples
def test_sample_p0005_instances(samples):
    refs, skips = scan(IsaidSource(), samples / "isaid")
    assert skips == []
    assert sorted(refs) == ["P0005"]
    ref = refs["P0005"]
    assert ref.split == "train"
    assert ref.image == "train/images/P0005.png"
    assert ref.annotations == (
        "train/images/P0005_instance_color_RGB.png",
        "train/images/P0005_instance_id_RGB.png",
    )

    loaded = IsaidSource().load(ref)
    assert loaded.skips == []
    # 131 instance colours besides black in the id mask, each of one class.
    assert len(loaded.objects) == 131
    assert Counter(o.label for o in loaded.objects) == {"Large_Vehicle": 99, "Small_Vehicle": 32}
    for obj in loaded.objects:
        assert obj.geometry.area > 10
        assert obj.geometry.is_valid

    # Areas of the outlines add up to the labelled pixels of the class mask.
    class_codes = pack(samples / "isaid" / ref.annotations[0])
    assert sum(o.geometry.area for o in loaded.objects) == np.count_nonzero(class_codes)

    # Connected components of the class mask merge touching vehicles: 32 small vehicles form 29 components.
    objects = Counter(o.label for o in loaded.objects)
    small_components = class_components(class_codes, 0x00007F)
    large_components = class_components(class_codes, 0x007F7F)
    assert objects["Small_Vehicle"] > small_components
    assert objects["Large_Vehicle"] >= large_components
    assert len(loaded.objects) > small_components + large_components
