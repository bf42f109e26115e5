"""Build edge cases on small DOTA folders made by the tests: empty splits, edited inputs, versions."""

from __future__ import annotations

import os

import datasets
import numpy as np
import pytest
from PIL import Image

from mgrs.build import BuildError, build
from mgrs.recipe import BuildConfig, SourceSpec
from mgrs.validate import validate_dataset

QUAD = "10 10 40 10 40 30 10 30 ship 0\n"


def make_scene(folder, name, label=None, seed=0):
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labelTxt").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(folder / "images" / f"{name}.png")
    if label is not None:
        (folder / "labelTxt" / f"{name}.txt").write_text(label)


def dota_config(root, **output):
    config = BuildConfig(sources=[SourceSpec("dota", str(root))])
    for key, value in output.items():
        setattr(config.output, key, value)
    return config


def test_skip_empty_drops_empty_split(tmp_path):
    make_scene(tmp_path / "src" / "train", "A", QUAD)
    make_scene(tmp_path / "src" / "val", "B", None, seed=1)
    config = dota_config(tmp_path / "src")
    config.skip_empty = True

    result = build(config, tmp_path / "out")

    assert [s["file"] for s in result.report["shards"]] == ["data/train-00000-of-00001.parquet"]
    assert sorted(p.name for p in (tmp_path / "out" / "data").iterdir()) == ["train-00000-of-00001.parquet"]
    assert validate_dataset(tmp_path / "out") == []
    assert len(datasets.load_dataset(str(tmp_path / "out"), split="train")) == 1


def test_skip_empty_renumbers_shards(tmp_path):
    for index, label in enumerate([QUAD, "", QUAD, ""]):
        make_scene(tmp_path / "src", f"P{index}", label, seed=index)
    config = dota_config(tmp_path / "src", rows_per_shard=1)
    config.skip_empty = True

    build(config, tmp_path / "out")

    names = sorted(p.name for p in (tmp_path / "out" / "data").iterdir())
    assert names == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    assert validate_dataset(tmp_path / "out") == []


def test_skip_empty_everything_fails(tmp_path):
    make_scene(tmp_path / "src", "A", "")
    config = dota_config(tmp_path / "src")
    config.skip_empty = True

    with pytest.raises(BuildError, match="no records were written"):
        build(config, tmp_path / "out")


def test_edited_label_needs_rebuild(tmp_path):
    make_scene(tmp_path / "src", "A", QUAD)
    config = dota_config(tmp_path / "src")
    build(config, tmp_path / "out")
    label = tmp_path / "src" / "labelTxt" / "A.txt"
    label.write_text(QUAD.replace("ship", "plane"))
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 10**9))

    with pytest.raises(BuildError, match="--overwrite"):
        build(config, tmp_path / "out")
    build(config, tmp_path / "out", overwrite=True)

    rows = datasets.load_dataset(str(tmp_path / "out"), split="train")
    assert rows[0]["regions"][0]["category"] == "airplane"


def test_overwrite_rebuilds_same_plan(tmp_path):
    make_scene(tmp_path / "src", "A", QUAD)
    config = dota_config(tmp_path / "src")
    build(config, tmp_path / "out")

    again = build(config, tmp_path / "out", overwrite=True)

    assert again.shards_kept == []
    assert again.shards_written == ["data/train-00000-of-00001.parquet"]


def test_unknown_dota_version_rejected(tmp_path):
    make_scene(tmp_path / "src", "A", QUAD)
    config = BuildConfig(sources=[SourceSpec("dota", str(tmp_path / "src"), "3.0")])

    with pytest.raises(KeyError, match="1.0, 1.5, 2.0"):
        build(config, tmp_path / "out")


def test_max_skip_rate_checked_before_writing(tmp_path):
    make_scene(tmp_path / "src", "A", QUAD)
    (tmp_path / "src" / "images" / "B.png").write_bytes(b"not a png")
    config = dota_config(tmp_path / "src")
    config.max_skip_rate = 0.1

    with pytest.raises(BuildError, match="while planning"):
        build(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_max_skip_rate_counts_truncated_image_once(tmp_path):
    make_scene(tmp_path / "src", "A", QUAD)
    make_scene(tmp_path / "src", "B", QUAD, seed=1)
    image = tmp_path / "src" / "images" / "B.png"
    image.write_bytes(image.read_bytes()[:200])
    config = dota_config(tmp_path / "src")
    config.max_skip_rate = 0.1

    with pytest.raises(BuildError, match=r"1 of 2 images \(50.0%\) were skipped in the build"):
        build(config, tmp_path / "out")


def test_dry_run_checks_skip_rate(tmp_path):
    make_scene(tmp_path / "src", "A", QUAD)
    (tmp_path / "src" / "images" / "B.png").write_bytes(b"not a png")
    config = dota_config(tmp_path / "src")
    config.max_skip_rate = 0.1

    with pytest.raises(BuildError, match="while planning"):
        build(config, tmp_path / "out", dry_run=True)
