"""Tests of record ids, shard names, shard dealing and holdout splits in `mgrs.plan`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mgrs.plan import (
    HOLDOUT_SPLIT,
    PlannedScene,
    _deal_shards,
    _holdout_split,
    _shard_count,
    make_plan,
    record_id,
    shard_name,
)
from mgrs.recipe import BuildConfig, SourceSpec
from mgrs.sources.base import SceneRef

SHARD_NAME = re.compile(r"data/(?P<split>[a-z]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet")


def make_ref(native_id: str, split: str = "train", meta: dict | None = None, source: str = "dota") -> SceneRef:
    return SceneRef(
        source=source,
        native_id=native_id,
        root="/data",
        image=f"images/{native_id}.png",
        annotations=(),
        split=split,
        meta=meta or {},
    )


def make_scene(native_id: str, tiles: int = 1, split: str = "train", file_size: int = 1000) -> PlannedScene:
    if tiles == 1:
        windows = [(0, 0, 100, 100)]
        ids = [record_id("dota", native_id, None)]
    else:
        windows = [(i * 50, 0, 100, 100) for i in range(tiles)]
        ids = [record_id("dota", native_id, window) for window in windows]
    return PlannedScene(
        source_index=0,
        ref=make_ref(native_id, split),
        width=100 + 50 * (tiles - 1),
        height=100,
        windows=windows,
        image_ids=ids,
        split=split,
        file_size=file_size,
    )


def make_config(**output) -> BuildConfig:
    config = BuildConfig(sources=[SourceSpec("dota", "/data")])
    for name, value in output.items():
        setattr(config.output, name, value)
    return config


def assert_contiguous(ids: list[str], prefix_of: dict[str, str]) -> None:
    """Assert that the ids of each scene form one run in `ids`."""
    runs = [prefix_of[i] for i in ids]
    seen: list[str] = []
    for scene in runs:
        if not seen or seen[-1] != scene:
            assert scene not in seen, f"ids of {scene} are split by another scene: {ids}"
            seen.append(scene)


# record_id and shard_name -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (None, "dota-v1.0/P0706"),
        ((0, 0, 800, 800), "dota-v1.0/P0706/x00000_y00000_w00800_h00800"),
        ((311, 1200, 800, 512), "dota-v1.0/P0706/x00311_y01200_w00800_h00512"),
        ((12345, 6, 7, 8), "dota-v1.0/P0706/x12345_y00006_w00007_h00008"),
    ],
)
def test_record_id_format(window, expected):
    assert record_id("dota-v1.0", "P0706", window) == expected


def test_record_id_sorts_by_window_position():
    # Zero padding makes the text order the numeric order: x first, then y.
    windows = [(x, y, 800, 800) for y in (0, 600, 1200) for x in (0, 311, 1200)]
    by_position = sorted(windows, key=lambda w: (w[0], w[1]))

    ids = sorted(record_id("dota", "P0001", window) for window in windows)

    assert ids == [record_id("dota", "P0001", window) for window in by_position]


def test_record_id_scenes_sort_together():
    tiles = [(x, y, 800, 800) for y in (0, 600) for x in (0, 600, 1200)]
    scenes = {
        "P0706": tiles,
        "P0706-x": tiles,
        "P07060": tiles,
        "P0706_1": None,
        "P070": tiles,
        "P0706.": None,
    }
    prefix_of = {}
    for native_id, windows in scenes.items():
        for window in windows or [None]:
            prefix_of[record_id("dota", native_id, window)] = native_id

    ordered = sorted(prefix_of)

    assert_contiguous(ordered, prefix_of)


@pytest.mark.parametrize(
    ("split", "index", "count", "expected"),
    [
        ("train", 0, 1, "data/train-00000-of-00001.parquet"),
        ("validation", 11, 12, "data/validation-00011-of-00012.parquet"),
    ],
)
def test_shard_name(split, index, count, expected):
    assert shard_name(split, index, count) == expected


# Shard dealing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "estimated_bytes", "output", "count"),
    [
        (10, 1, {"num_shards": 3}, 3),
        (2, 1, {"num_shards": 5}, 2),
        (10, 1, {"rows_per_shard": 3}, 4),
        (9, 1, {"rows_per_shard": 3}, 3),
        (1, 1, {"rows_per_shard": 100}, 1),
        (10, 1_000, {"target_shard_bytes": 400}, 3),
        (10, 0, {"target_shard_bytes": 400}, 1),
        # One row never spreads over several shards, however large its image.
        (1, 10_000, {"target_shard_bytes": 400}, 1),
        (3, 10_000, {"target_shard_bytes": 400}, 3),
    ],
)
def test_shard_count(rows, estimated_bytes, output, count):
    assert _shard_count(rows, estimated_bytes, make_config(**output)) == count


@pytest.mark.parametrize(
    "output",
    [
        {"num_shards": 1},
        {"num_shards": 3},
        {"num_shards": 50},
        {"rows_per_shard": 1},
        {"rows_per_shard": 4},
        {"target_shard_bytes": 2500},
        {"target_shard_bytes": 1},
    ],
)
def test_deal_shards_covers_rows(output):
    scenes = [make_scene(f"P{i:04d}", tiles=1 + i % 3) for i in range(7)]
    config = make_config(**output)
    every_id = sorted(i for scene in scenes for i in scene.image_ids)

    shards = _deal_shards(scenes, config)

    dealt = [i for shard in shards for i in shard.image_ids]
    assert dealt == every_id
    assert all(shard.image_ids for shard in shards)
    assert [shard.index for shard in shards] == list(range(len(shards)))
    assert all(shard.count == len(shards) for shard in shards)
    assert all(SHARD_NAME.fullmatch(shard.name) for shard in shards)


def test_deal_shards_rows_per_shard_sizes():
    scenes = [make_scene(f"P{i:04d}") for i in range(10)]

    shards = _deal_shards(scenes, make_config(rows_per_shard=4))

    assert len(shards) == 3
    assert max(len(s.image_ids) for s in shards) <= 4
    assert max(len(s.image_ids) for s in shards) - min(len(s.image_ids) for s in shards) <= 1


def test_deal_shards_more_shards_than_rows():
    scenes = [make_scene("P0001"), make_scene("P0002")]

    shards = _deal_shards(scenes, make_config(num_shards=8))

    assert len(shards) == 2
    assert [len(s.image_ids) for s in shards] == [1, 1]
    assert [s.name for s in shards] == ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]


def test_deal_shards_large_image_byte_target():
    scenes = [make_scene("P0001", file_size=2_000_000_000)]

    shards = _deal_shards(scenes, make_config())

    assert len(shards) == 1
    assert shards[0].image_ids == ["dota/P0001"]


def test_deal_shards_per_split():
    scenes = [
        make_scene("P0001", split="train"),
        make_scene("P0002", split="val"),
        make_scene("P0003", split="train"),
        make_scene("P0004", split="val", tiles=3),
    ]

    shards = _deal_shards(scenes, make_config(num_shards=2))

    assert [s.split for s in shards] == ["train", "train", "val", "val"]
    assert [s.name for s in shards][2] == "data/val-00000-of-00002.parquet"
    assert [i for s in shards if s.split == "train" for i in s.image_ids] == ["dota/P0001", "dota/P0003"]
    assert sum(len(s.image_ids) for s in shards if s.split == "val") == 4


def test_deal_shards_byte_target_per_split():
    scenes = [make_scene(f"T{i}", split="train", file_size=100) for i in range(6)]
    scenes.append(make_scene("V0", split="validation", file_size=100))

    shards = _deal_shards(scenes, make_config(target_shard_bytes=250))

    assert [s.name for s in shards] == [
        "data/train-00000-of-00003.parquet",
        "data/train-00001-of-00003.parquet",
        "data/train-00002-of-00003.parquet",
        "data/validation-00000-of-00001.parquet",
    ]


# Holdout split ------------------------------------------------------------------------------------


def holdout_config(fraction: float, seed: int = 0) -> BuildConfig:
    config = make_config()
    config.splits.holdout_fraction = fraction
    config.splits.holdout_seed = seed
    return config


def test_holdout_zero_keeps_split():
    assert _holdout_split(make_ref("P0001", split="val"), holdout_config(0.0)) == "val"


def test_holdout_deterministic():
    refs = [make_ref(f"P{i:04d}") for i in range(200)]

    first = [_holdout_split(ref, holdout_config(0.3, seed=5)) for ref in refs]
    second = [_holdout_split(ref, holdout_config(0.3, seed=5)) for ref in refs]

    assert first == second
    assert set(first) == {"train", HOLDOUT_SPLIT}


def test_holdout_fraction_roughly_kept():
    refs = [make_ref(f"P{i:04d}") for i in range(2000)]

    held_out = sum(_holdout_split(ref, holdout_config(0.2)) == HOLDOUT_SPLIT for ref in refs)

    assert 300 <= held_out <= 500


def test_holdout_seed_changes_draw():
    refs = [make_ref(f"P{i:04d}") for i in range(200)]

    seed_0 = [_holdout_split(ref, holdout_config(0.5, seed=0)) for ref in refs]
    seed_1 = [_holdout_split(ref, holdout_config(0.5, seed=1)) for ref in refs]

    assert seed_0 != seed_1


def test_holdout_grows_with_fraction():
    refs = [make_ref(f"P{i:04d}") for i in range(300)]

    small = {ref.native_id for ref in refs if _holdout_split(ref, holdout_config(0.1)) == HOLDOUT_SPLIT}
    large = {ref.native_id for ref in refs if _holdout_split(ref, holdout_config(0.4)) == HOLDOUT_SPLIT}

    assert small <= large


def test_holdout_keeps_patches_together():
    config = holdout_config(0.5, seed=3)
    for scene_index in range(40):
        scene = f"P{scene_index:04d}"
        patches = [
            make_ref(f"{scene}__1024__{x}___{y}", meta={"patch_of": {"scene": scene, "x": x, "y": y}})
            for x in (0, 824)
            for y in (0, 824)
        ]

        splits = {_holdout_split(ref, config) for ref in patches}

        assert len(splits) == 1
        assert splits == {_holdout_split(make_ref(scene), config)}


# make_plan on a small DOTA folder -----------------------------------------------------------------


def write_image(path: Path, width: int, height: int, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def dota_root(tmp_path) -> Path:
    rng = np.random.default_rng(11)
    root = tmp_path / "dota"
    sizes = {"P0706": (40, 30), "P0706-x": (40, 30), "P07060": (16, 16), "P0705": (20, 16)}
    for name, (width, height) in sizes.items():
        write_image(root / "images" / f"{name}.png", width, height, rng)
    return root


def test_make_plan_ids_contiguous(dota_root):
    config = BuildConfig(sources=[SourceSpec("dota", str(dota_root))])
    config.tiling.size = 16
    config.tiling.overlap = 4
    config.output.rows_per_shard = 5

    plan = make_plan(config)

    every_id = [i for shard in plan.shards for i in shard.image_ids]
    prefix_of = {i: scene.ref.native_id for scene in plan.scenes for i in scene.image_ids}
    # "-" sorts before the "/" that ends a tiled scene's prefix, and "0" after it.
    assert [scene.ref.native_id for scene in plan.scenes] == ["P0705", "P0706-x", "P0706", "P07060"]
    assert every_id == sorted(prefix_of)
    assert_contiguous(every_id, prefix_of)
    assert plan.scenes[3].image_ids == ["dota/P07060"]
    assert len(plan.scenes[2].image_ids) == 3 * 3


def test_make_plan_deterministic(dota_root):
    config = BuildConfig(sources=[SourceSpec("dota", str(dota_root))])

    first = make_plan(config)
    second = make_plan(config)

    assert first.fingerprint("x") == second.fingerprint("x")
    assert first.fingerprint("x") != first.fingerprint("y")


def test_make_plan_duplicate_source_skipped(dota_root):
    config = BuildConfig(sources=[SourceSpec("dota", str(dota_root)), SourceSpec("dota", str(dota_root))])

    plan = make_plan(config)

    assert len(plan.scenes) == 4
    assert plan.tally.skipped["image"]["duplicate_image_id"] == 4


def test_make_plan_unreadable_image_skipped(dota_root):
    (dota_root / "images" / "P0999.png").write_bytes(b"not an image")
    config = BuildConfig(sources=[SourceSpec("dota", str(dota_root))])

    plan = make_plan(config)

    assert len(plan.scenes) == 4
    assert plan.tally.skipped["image"]["unreadable_image"] == 1


def test_make_plan_limit(dota_root):
    config = BuildConfig(sources=[SourceSpec("dota", str(dota_root))], limit=2)

    plan = make_plan(config)

    assert [scene.ref.native_id for scene in plan.scenes] == ["P0705", "P0706"]
    assert plan.estimated_bytes == sum(scene.file_size for scene in plan.scenes)
