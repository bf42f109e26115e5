"""Tests of duplicate detection (`mgrs.dedup`), region merging (`mgrs.merge`) and per-source sampling."""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from mgrs.dedup import Candidate, HashIndex, ImagePrint, find_duplicates, fingerprint_pixels, hamming
from mgrs.merge import duplicate_boxes
from mgrs.recipe import BuildConfig, DedupConfig, RecipeError, SourceSpec, config_from_dict
from mgrs.report import Tally
from mgrs.sampling import sample_scenes
from mgrs.sources.base import SceneRef

P0005 = "isaid/train/images/P0005.png"
# Quads on three vehicles that iSAID also outlines in P0005, and one storage tank that it does not have.
DOTA_LABELS = """imagesource:GoogleEarth
gsd:0.15
97 223 180 223 180 246 97 246 large-vehicle 0
273 596 368 596 368 619 273 619 large-vehicle 0
37 666 74 666 74 681 37 681 small-vehicle 0
600 100 640 100 640 140 600 140 storage-tank 0
"""


def make_print(phash: int, size=(100, 100), pixels: str | None = None, flat: bool = False) -> ImagePrint:
    return ImagePrint(size[0], size[1], pixels or f"sha-{phash}", phash, flat)


def test_hash_index_matches_brute_force():
    rng = random.Random(7)
    base = [rng.getrandbits(64) for _ in range(40)]
    # Add near copies with 1 to 4 flipped bits, so every distance up to 4 occurs.
    stored = list(base)
    for value in base[:20]:
        flips = rng.sample(range(64), rng.randint(1, 4))
        stored.append(value ^ sum(1 << bit for bit in flips))

    for max_distance in (0, 1, 2, 4):
        index = HashIndex(max_distance)
        for key, value in enumerate(stored):
            index.add(value, key)
        for value in stored:
            expected = sorted(key for key, other in enumerate(stored) if hamming(value, other) <= max_distance)
            found = sorted(key for _, key in index.near(value))
            assert found == expected, max_distance


def test_find_duplicates_keeps_priority_copy():
    candidates = [
        Candidate(key="dota/P1", group=1, order=1, print=make_print(0b1011)),
        Candidate(key="isaid/P1", group=0, order=0, print=make_print(0b1010)),
        Candidate(key="dior/9", group=2, order=2, print=make_print(0xFFFF_0000_FFFF)),
    ]
    result = find_duplicates(candidates, DedupConfig(max_distance=1))

    assert len(result.duplicates) == 1
    duplicate = result.duplicates[0]
    assert (duplicate.removed, duplicate.kept) == ("dota/P1", "isaid/P1")
    assert duplicate.match == "phash"
    assert duplicate.distance == 1
    assert duplicate.merged


def test_find_duplicates_threshold_is_inclusive():
    pair = [Candidate("a", 0, 0, make_print(0)), Candidate("b", 1, 1, make_print(0b11))]

    assert find_duplicates(pair, DedupConfig(max_distance=1)).duplicates == []
    assert len(find_duplicates(pair, DedupConfig(max_distance=2)).duplicates) == 1


def test_find_duplicates_exact_pixels_beat_phash():
    candidates = [
        Candidate("near", 0, 0, make_print(0b1, pixels="other")),
        Candidate("exact", 1, 1, make_print(0b111, pixels="same")),
        Candidate("copy", 2, 2, make_print(0b0, pixels="same")),
    ]
    duplicates = find_duplicates(candidates, DedupConfig(max_distance=1)).duplicates

    assert [(d.removed, d.kept, d.match) for d in duplicates] == [("copy", "exact", "pixels")]


def test_find_duplicates_other_size_is_kept():
    candidates = [
        Candidate("full", 0, 0, make_print(5, size=(800, 800))),
        Candidate("half", 1, 1, make_print(5, size=(400, 400))),
        Candidate("full-copy", 2, 2, make_print(5, size=(800, 800))),
    ]
    duplicates = find_duplicates(candidates, DedupConfig()).duplicates

    assert [(d.removed, d.kept, d.merged) for d in duplicates] == [("half", "full", False), ("full-copy", "full", True)]


def test_find_duplicates_skips_same_source_and_blank_images():
    candidates = [
        Candidate("a", 0, 0, make_print(9)),
        Candidate("b", 0, 1, make_print(9)),
        Candidate("blank-1", 1, 2, make_print(0, flat=True)),
        Candidate("blank-2", 2, 3, make_print(0, flat=True)),
        Candidate("unreadable", 2, 4, None),
    ]
    result = find_duplicates(candidates, DedupConfig())

    assert result.duplicates == []
    assert result.not_compared == {"blank_image": 2, "unreadable": 1}
    within = find_duplicates(candidates, DedupConfig(within_source=True))
    assert [(d.removed, d.kept) for d in within.duplicates] == [("b", "a")]


def test_fingerprint_pixels_jpeg_copy_is_near():
    rng = random.Random(3)
    image = Image.new("RGB", (64, 48))
    image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(64 * 48)])
    image = image.resize((256, 192), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    jpeg = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    original, copy = fingerprint_pixels(image), fingerprint_pixels(jpeg)
    assert original.pixel_sha256 != copy.pixel_sha256
    assert hamming(original.phash, copy.phash) <= 1
    assert not original.flat
    assert fingerprint_pixels(Image.new("RGB", (32, 32), (9, 9, 9))).flat


def test_duplicate_boxes_one_to_one_by_category():
    kept = [((0, 0, 10, 10), 1), ((20, 0, 30, 10), 2)]
    added = [
        ((0, 0, 10, 9), 1),  # repeats kept 0
        ((0, 0, 10, 8), 1),  # also overlaps kept 0, which is already taken
        ((20, 0, 30, 10), 3),  # same box, other category
        ((50, 50, 60, 60), 1),  # new object
    ]
    assert duplicate_boxes(kept, added, 0.5) == {0}
    assert duplicate_boxes(kept, [((0, 0, 10, 9), 1)], 0.95) == set()


def test_recipe_dedup_and_sampling_options(tmp_path):
    config = config_from_dict(
        {
            "sources": [{"format": "dota", "path": "d", "sample_fraction": 0.5, "limit": 3, "seed": 4, "splits": ["train"]}],
            "dedup": {"priority": ["isaid", "dota-v1.0"], "max_distance": 2, "merge_iou": 0.4},
        },
        root=tmp_path,
    )
    config.validate()

    assert config.sources[0].limit == 3
    assert config.sources[0].splits == ["train"]
    assert config.dedup.priority == ["isaid", "dota-v1.0"]
    for bad in ({"max_distance": 40}, {"merge_iou": 1.5}, {"priority": "isaid"}):
        with pytest.raises(RecipeError, match="dedup"):
            config_from_dict({"sources": ["dota:d"], "dedup": bad}, root=tmp_path).validate()
    with pytest.raises(RecipeError, match="sample_fraction"):
        config_from_dict({"sources": [{"format": "dota", "path": "d", "sample_fraction": 0}]}, root=tmp_path).validate()
    with pytest.raises(RecipeError, match="unknown key"):
        config_from_dict({"sources": [{"format": "dota", "path": "d", "sample": 1}]}, root=tmp_path)


class _Scene:
    """The two fields of a planned scene that sampling reads."""

    def __init__(self, source_index: int, native_id: str, split: str = "train"):
        self.source_index = source_index
        self.ref = SceneRef("dota", native_id, "/data", f"images/{native_id}.png", (), split)
        self.image_ids = [f"dota/{native_id}"]


def test_sampling_is_seeded_and_nested():
    scenes = [_Scene(0, f"P{i:04d}", split="test" if i % 5 == 0 else "train") for i in range(200)]

    def sample(**options) -> list[str]:
        config = BuildConfig(sources=[SourceSpec("dota", "/data", **options)])
        return [scene.ref.native_id for scene in sample_scenes(scenes, config, Tally())]

    half = sample(sample_fraction=0.5, seed=1)
    quarter = sample(sample_fraction=0.25, seed=1)
    assert 70 < len(half) < 130
    assert set(quarter) <= set(half)
    assert sample(sample_fraction=0.5, seed=1) == half
    assert sample(sample_fraction=0.5, seed=2) != half
    assert len(sample(limit=7)) == 7
    assert set(sample(limit=7)) <= set(sample(limit=20))

    tally = Tally()
    kept = sample_scenes(scenes, BuildConfig(sources=[SourceSpec("dota", "/data", splits=["train"])]), tally)
    assert len(kept) == 160
    assert tally.notes["not_in_source_splits"] == 40


@pytest.fixture
def dota_copy(samples, tmp_path):
    """Build a DOTA-layout folder holding P0005 with a few quads, as PNG, JPEG or a resized PNG."""

    def make(kind: str) -> Path:
        root = tmp_path / f"dota-{kind}"
        (root / "images").mkdir(parents=True)
        (root / "labelTxt").mkdir()
        (root / "labelTxt" / "P0005.txt").write_text(DOTA_LABELS, encoding="utf-8")
        source = samples / P0005
        if kind == "png":
            shutil.copy(source, root / "images" / "P0005.png")
        elif kind == "jpeg":
            Image.open(source).convert("RGB").save(root / "images" / "P0005.jpg", quality=90)
        else:
            image = Image.open(source).convert("RGB")
            image.resize((image.width // 2, image.height // 2)).save(root / "images" / "P0005.png")
        return root

    return make


def build_pair(samples: Path, dota_root: Path, out: Path, **dedup):
    from mgrs.build import build

    config = BuildConfig(
        sources=[SourceSpec("dota", str(dota_root), version="1.0"), SourceSpec("isaid", str(samples / "isaid"))],
    )
    config.dedup = DedupConfig(priority=["isaid"], **dedup)
    return build(config, out)


def read_rows(out: Path) -> list[dict]:
    rows = []
    for shard in sorted((out / "data").glob("*.parquet")):
        rows.extend(pq.read_table(shard).to_pylist())
    return rows


@pytest.mark.samples
@pytest.mark.parametrize("kind, match", [("png", "pixels"), ("jpeg", "phash")])
def test_build_merges_dota_copy_of_isaid(samples, dota_copy, tmp_path, kind, match):
    result = build_pair(samples, dota_copy(kind), tmp_path / "out")
    report = result.report

    removed = report["dedup"]["removed"]
    assert len(removed) == 1
    assert removed[0]["scene"]["image_id"] == "dota-v1.0/P0005"
    assert removed[0]["matched"]["image_id"] == "isaid/P0005"
    assert removed[0]["match"] == match
    assert report["records_by_source"] == {"isaid": 4}
    assert report["skipped"]["annotation"].get("duplicate_region") == 3
    # Only the storage tank is new; the three vehicles were already outlined by iSAID.
    # iSAID outlines 131 instances in P0005 and the DOTA label file has 4 objects.
    assert report["annotations_read"] == 131 + 4
    assert report["annotations_placed"] == 131 + 1

    rows = read_rows(tmp_path / "out")
    # The tank lies where two tiles overlap, so it is a region of both.
    tanks = [region for row in rows for region in row["regions"] if region["category"] == "storage tank"]
    assert len(tanks) == 2
    assert tanks[0]["source_category"] == "storage-tank"
    merged = json.loads(rows[0]["extra"])["merged_from"]
    assert merged[0]["source"] == "dota-v1.0"
    assert merged[0]["regions_added"] == 1
    assert merged[0]["regions_repeated"] == 3
    assert "Duplicate scenes removed: 1" in (tmp_path / "out" / "README.md").read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.samples
def test_build_reports_copy_of_other_size(samples, dota_copy, tmp_path):
    report = build_pair(samples, dota_copy("half"), tmp_path / "out").report

    assert report["dedup"]["removed"] == []
    kept = report["dedup"]["kept_other_size"]
    assert len(kept) == 1
    assert kept[0]["sizes"] == [[442, 488], [884, 977]]
    assert set(report["records_by_source"]) == {"isaid", "dota-v1.0"}


@pytest.mark.slow
@pytest.mark.samples
def test_build_without_dedup_keeps_both(samples, dota_copy, tmp_path):
    report = build_pair(samples, dota_copy("png"), tmp_path / "out", enabled=False).report

    assert report["dedup"] == {}
    assert set(report["records_by_source"]) == {"isaid", "dota-v1.0"}


@pytest.mark.slow
@pytest.mark.samples
def test_dedup_shards_identical_across_workers(samples, dota_copy, tmp_path):
    from mgrs.build import build

    root = dota_copy("jpeg")
    shards = []
    for workers in (1, 2):
        config = BuildConfig(sources=[SourceSpec("dota", str(root), version="1.0"), SourceSpec("isaid", str(samples / "isaid"))])
        config.dedup = DedupConfig(priority=["isaid"])
        out = tmp_path / f"out-{workers}"
        build(config, out, workers=workers)
        shards.append({path.name: path.read_bytes() for path in (out / "data").glob("*.parquet")})
    assert shards[0] == shards[1]


def test_mgrs_200k_recipe_loads(monkeypatch):
    from mgrs.recipe import load_recipe

    repository = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("MGRS_RAW", "/data/raw")
    config = load_recipe(repository / "pipelines" / "mgrs-200k.yaml", root=repository)
    config.validate()

    formats = [spec.format for spec in config.sources]
    assert formats[:3] == ["isaid", "dota", "dior-r"]
    assert config.dedup.enabled
    assert config.dedup.priority[0] == "isaid"
    assert config.dedup.max_distance == 1
    assert all(spec.splits for spec in config.sources)
    assert "test" not in {split for spec in config.sources for split in spec.splits}
