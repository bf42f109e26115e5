"""End-to-end builds from the real DOTA, DIOR-R and iSAID sample files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from shapely.geometry import Polygon, box

from mgrs.build import BuildError, build
from mgrs.recipe import BuildConfig, SourceSpec, TilingConfig
from mgrs.validate import validate_dataset

pytestmark = pytest.mark.samples

THRESHOLD = 0.7


def read_rows(out: Path) -> list[dict]:
    rows = []
    for shard in sorted((out / "data").glob("*.parquet")):
        rows.extend(pq.read_table(shard).to_pylist())
    return rows


def shard_digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "data").glob("*.parquet"))}


def dota_objects(label_file: Path) -> list[tuple[str, Polygon]]:
    objects = []
    for line in label_file.read_text().splitlines():
        tokens = line.split()
        if len(tokens) < 9:
            continue
        values = [float(t) for t in tokens[:8]]
        objects.append((tokens[8], Polygon(list(zip(values[0::2], values[1::2])))))
    return objects


def test_demo_is_valid(demo_build):
    problems = validate_dataset(demo_build.out)

    assert problems == []


def test_demo_counts(demo_build):
    report = demo_build.report

    assert report["records_by_source"] == {"dior-r": 1, "dota-v1.0": 5, "isaid": 4}
    assert report["images_read"] == 4
    assert report["annotations_read"] >= 536 + 64 + 1


def test_demo_loads_with_datasets(demo_build):
    rows = datasets.load_dataset(str(demo_build.out), split="train")
    first = rows[0]

    assert isinstance(first["image"], Image.Image)
    assert first["image"].size == (first["width"], first["height"])
    assert isinstance(first["regions"][0], dict)
    assert len(first["regions"][0]["bbox"]) == 4


def test_demo_streams_with_datasets(demo_build):
    stream = datasets.load_dataset(str(demo_build.out), split="train", streaming=True)
    first = next(iter(stream))

    assert isinstance(first["image"], Image.Image)
    assert first["regions"]


def test_demo_rows_sorted_and_unique(demo_build):
    ids = [row["image_id"] for row in read_rows(demo_build.out)]

    assert len(ids) == len(set(ids))
    for shard in sorted((demo_build.out / "data").glob("*.parquet")):
        shard_ids = pq.read_table(shard, columns=["image_id"]).column("image_id").to_pylist()
        assert shard_ids == sorted(shard_ids)


def test_demo_tiles_are_data(demo_build):
    tiles = {row["image_id"]: row["tile"] for row in read_rows(demo_build.out) if row["source_image"].endswith("P0706.png")}

    assert sorted((t["x"], t["y"]) for t in tiles.values()) == [(0, 0), (0, 382), (311, 0), (311, 382)]
    assert all(t["width"] == 800 and t["height"] == 800 for t in tiles.values())


def test_demo_no_absolute_paths(demo_build, samples):
    for row in read_rows(demo_build.out):
        assert not row["source_image"].startswith("/")
        assert str(samples) not in (row["image"]["path"] or "")
        assert str(samples) not in row["extra"]
    assert str(samples) not in (demo_build.out / "README.md").read_text()
    assert str(samples) not in (demo_build.out / "build-report.json").read_text()


def test_dota_objects_accounted_in_tiles(demo_build, samples):
    """Every DOTA object lands in each tile where at least 70% of it is visible, and nowhere else."""
    rows = [row for row in read_rows(demo_build.out) if row["source"] == "dota-v1.0"]
    for scene in ("P0706", "P1888"):
        objects = dota_objects(samples / "dota" / "labelTxt" / f"{scene}.txt")
        scene_rows = [row for row in rows if row["source_image"] == f"images/{scene}.png"]
        assert scene_rows
        for row in scene_rows:
            t = row["tile"]
            window = box(t["x"], t["y"], t["x"] + t["width"], t["y"] + t["height"])
            expected = []
            for label, polygon in objects:
                visible = polygon.intersection(window).area / polygon.area
                if visible >= THRESHOLD:
                    left, top, right, bottom = polygon.intersection(window).bounds
                    expected.append((label, left - t["x"], top - t["y"], right - t["x"], bottom - t["y"]))
            actual = [(r["source_category"], *r["bbox"]) for r in row["regions"]]
            assert len(actual) == len(expected), row["image_id"]
            for got, want in zip(sorted(actual), sorted(expected)):
                assert got[0] == want[0]
                assert np.allclose(got[1:], want[1:], atol=1e-3), (row["image_id"], got, want)


def test_dota_every_object_in_a_record_or_counted(samples, tmp_path):
    config = BuildConfig(sources=[SourceSpec("dota", str(samples / "dota"), "1.0")])
    result = build(config, tmp_path / "out")
    report = result.report
    objects = {scene: dota_objects(samples / "dota" / "labelTxt" / f"{scene}.txt") for scene in ("P0706", "P1888")}
    rows = read_rows(tmp_path / "out")

    placed = set()
    for row in rows:
        t = row["tile"]
        scene = Path(row["source_image"]).stem
        for region in row["regions"]:
            raw = (scene, region["source_category"], round(region["bbox"][0] + t["x"], 2), round(region["bbox"][1] + t["y"], 2))
            placed.add(raw)
    unplaced = 0
    for scene, scene_objects in objects.items():
        for label, polygon in scene_objects:
            frame = box(0, 0, *Image.open(samples / "dota" / "images" / f"{scene}.png").size)
            clipped = polygon.intersection(frame)
            key = (scene, label, round(clipped.bounds[0], 2), round(clipped.bounds[1], 2))
            if key not in placed:
                unplaced += 1

    skipped = sum(report["skipped"]["annotation"].values())
    assert report["annotations_read"] == 600
    assert report["annotations_placed"] == 600 - skipped
    assert unplaced == skipped
    assert sum(len(r["regions"]) for r in rows) == report["regions"]


def test_isaid_one_region_per_instance(samples, tmp_path):
    """Without tiling, each (instance colour, class colour) pair above 10 px is one region with the mask's box."""
    folder = samples / "isaid" / "train" / "images"
    ids = np.asarray(Image.open(folder / "P0005_instance_id_RGB.png").convert("RGB")).astype(np.int64)
    classes = np.asarray(Image.open(folder / "P0005_instance_color_RGB.png").convert("RGB")).astype(np.int64)
    keys = (ids[..., 0] << 16 | ids[..., 1] << 8 | ids[..., 2]) * (1 << 24) + (classes[..., 0] << 16 | classes[..., 1] << 8 | classes[..., 2])
    keys[(ids.sum(-1) == 0) | (classes.sum(-1) == 0)] = -1
    expected = {}
    for key in np.unique(keys):
        if key < 0:
            continue
        ys, xs = np.nonzero(keys == key)
        if len(xs) > 10:
            expected[int(key)] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)

    config = BuildConfig(sources=[SourceSpec("isaid", str(samples / "isaid"))], tiling=TilingConfig(size=2000, overlap=200))
    build(config, tmp_path / "out")
    rows = read_rows(tmp_path / "out")

    assert len(rows) == 1
    regions = rows[0]["regions"]
    assert len(regions) == len(expected)
    assert sorted(tuple(r["bbox"]) for r in regions) == sorted(tuple(float(v) for v in b) for b in expected.values())
    assert {r["category"] for r in regions} == {"small vehicle", "large vehicle"}


@pytest.mark.slow
def test_build_same_bytes_any_workers(samples, tmp_path, demo_build):
    from mgrs.recipe import load_recipe

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAMPLES", str(samples))
        config = load_recipe(Path(__file__).resolve().parents[1] / "pipelines" / "demo.yaml")
    build(config, tmp_path / "two", workers=2)

    assert shard_digests(tmp_path / "two") == shard_digests(demo_build.out)


def test_build_resumes_missing_shard(samples, tmp_path):
    config = BuildConfig(sources=[SourceSpec("dota", str(samples / "dota"), "1.0")])
    config.output.rows_per_shard = 2
    out = tmp_path / "out"
    first = build(config, out)
    before = shard_digests(out)
    victim = sorted((out / "data").glob("*.parquet"))[1]
    victim.unlink()

    second = build(config, out)

    assert second.shards_written == [f"data/{victim.name}"]
    assert len(second.shards_kept) == len(first.shards_written) - 1
    assert shard_digests(out) == before
    assert second.report["regions"] == first.report["regions"]


def test_build_refuses_other_folder(samples, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    config = BuildConfig(sources=[SourceSpec("dior-r", str(samples / "dior"))])

    with pytest.raises(BuildError, match="--overwrite"):
        build(config, out)


def test_build_overwrite_removes_stale_shards(samples, tmp_path):
    out = tmp_path / "out"
    config = BuildConfig(sources=[SourceSpec("dota", str(samples / "dota"), "1.0")])
    config.output.rows_per_shard = 1
    build(config, out)
    config.output.rows_per_shard = 10

    build(config, out, overwrite=True)

    assert [p.name for p in (out / "data").glob("*.parquet")] == ["train-00000-of-00001.parquet"]
    assert validate_dataset(out) == []


def test_build_nothing_readable(tmp_path):
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    config = BuildConfig(sources=[SourceSpec("dota", str(empty))])

    with pytest.raises(BuildError, match="nothing could be read"):
        build(config, tmp_path / "out")


def test_build_coarse_granularity(samples, tmp_path):
    config = BuildConfig(sources=[SourceSpec("isaid", str(samples / "isaid"))])
    config.categories.granularity = "coarse"
    build(config, tmp_path / "out")

    categories = {(r["category"], r["category_id"]) for row in read_rows(tmp_path / "out") for r in row["regions"]}
    assert categories == {("vehicle", 19)}


def test_build_holdout_keeps_scene_tiles_together(samples, tmp_path):
    config = BuildConfig(sources=[SourceSpec("dota", str(samples / "dota"), "1.0")])
    config.splits.holdout_fraction = 0.5
    build(config, tmp_path / "out")

    splits = {}
    for row in read_rows(tmp_path / "out"):
        splits.setdefault(row["source_image"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits.values())


def test_build_min_mask_area_applies(samples, tmp_path):
    config = BuildConfig(sources=[SourceSpec("isaid", str(samples / "isaid"))], tiling=TilingConfig(size=2000, overlap=200))
    config.geometry.min_mask_area = 500
    result = build(config, tmp_path / "out")

    assert result.report["skipped"]["annotation"]["tiny_instance"] > 0
    assert all((r["bbox"][2] - r["bbox"][0]) * (r["bbox"][3] - r["bbox"][1]) > 500 for row in read_rows(tmp_path / "out") for r in row["regions"])


def test_build_interrupted_then_resumed(samples, tmp_path, monkeypatch):
    import mgrs.build

    config = BuildConfig(sources=[SourceSpec("dota", str(samples / "dota"), "1.0")])
    config.output.rows_per_shard = 2
    reference = tmp_path / "reference"
    build(config, reference)

    real_write = mgrs.build.write_shard
    calls = []

    def write_then_stop(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    out = tmp_path / "out"
    monkeypatch.setattr(mgrs.build, "write_shard", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        build(config, out)
    monkeypatch.setattr(mgrs.build, "write_shard", real_write)
    resumed = build(config, out)

    assert resumed.shards_kept == [calls[0]]
    assert shard_digests(out) == shard_digests(reference)
    assert resumed.report["regions"] == json.loads((reference / "build-report.json").read_text())["regions"]
