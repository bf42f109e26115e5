"""Tests of `export-farslip`, `import-release` and `reconcile` (`mgrs.interop`)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest_shards import encode_png, make_records, write_dataset
from mgrs.cli import app
from mgrs.interop.export_farslip import export_farslip
from mgrs.interop.import_release import ImportOptions, import_release
from mgrs.interop.layout import InteropError
from mgrs.interop.reconcile import reconcile
from mgrs.validate import validate_dataset

runner = CliRunner()


def noisy_records(count: int = 6, seed: int = 5):
    """Seeded records whose images are random noise, so no two of them are perceptual near duplicates."""
    records = make_records({"train": count - 2, "validation": 2}, seed=seed)
    rng = random.Random(seed)
    for split_records in records.values():
        for record in split_records:
            small = Image.new("RGB", (16, 16))
            small.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(256)])
            record.image_bytes = encode_png(small.resize((record.width, record.height), Image.BILINEAR))
    # One region with its own caption, which the export must write as `cap`.
    first = next(r for r in records["train"] if r.regions)
    first.regions[0].caption = "a white plane parked beside the terminal"
    return records


def read_rows(root: Path) -> list[dict]:
    rows = []
    for shard in sorted((root / "data").glob("*.parquet")):
        rows.extend(pq.read_table(shard).to_pylist())
    return sorted(rows, key=lambda row: row["image_id"])


@pytest.fixture
def dataset(tmp_path):
    return write_dataset(tmp_path / "ours", records=noisy_records())


@pytest.fixture
def exported(dataset, tmp_path):
    out = tmp_path / "export"
    export_farslip(dataset, out)
    return out


def test_export_layout(dataset, exported):
    items = json.loads((exported / "train.json").read_text(encoding="utf-8"))
    rows = [row for row in read_rows(dataset) if row["split"] == "train"]

    assert sorted(path.name for path in exported.glob("*.json")) == ["train.json", "validation.json"]
    assert len(items) == len(rows)
    for item, row in zip(items, rows):
        assert list(item)[:4] == ["global_filepath", "brief_caption", "detailed_caption", "segment"]
        assert (exported / item["global_filepath"]).read_bytes() == row["image"]["bytes"]
        assert item["brief_caption"] == row["short_caption"]
        assert item["detailed_caption"] == row["long_caption"]
        for segment, region in zip(item["segment"], row["regions"]):
            assert list(segment["bbox"]) == ["x1", "y1", "x2", "y2", "W", "H"]
            assert list(segment["bbox"].values()) == [*region["bbox"], row["width"], row["height"]]
            assert ("cap" in segment) == (region["caption"] != f"a satellite image of {region['category']}")
    caps = [segment["cap"] for item in items for segment in item["segment"] if "cap" in segment]
    assert caps == ["a white plane parked beside the terminal"]


def test_export_then_import_round_trip(dataset, exported, tmp_path):
    imported = tmp_path / "imported"
    import_release(exported, imported)

    original, restored = read_rows(dataset), read_rows(imported)
    assert [row["image_id"] for row in restored] == [row["image_id"] for row in original]
    for before, after in zip(original, restored):
        assert after == before
    assert validate_dataset(imported) == []


def test_export_rejects_two_ids_for_one_category(tmp_path):
    records = noisy_records()
    regions = [region for record in records["train"] for region in record.regions]
    regions[1].category = regions[0].category
    regions[1].category_id = regions[0].category_id + 100
    root = write_dataset(tmp_path / "mixed", records=records)

    with pytest.raises(InteropError, match="one id space"):
        export_farslip(root, tmp_path / "out")


def write_release(root: Path) -> Path:
    """Write a small release in the reference layout, with keys and cases our export never writes."""
    images = root / "imgs"
    images.mkdir(parents=True)
    Image.new("RGB", (40, 30), (10, 200, 30)).save(images / "a.jpg", quality=95)
    Image.new("L", (20, 20), 90).save(images / "b.png")
    items = [
        {
            "global_filepath": "imgs/a.jpg",
            "brief_caption": "A field.",
            "detailed_caption": "A green field with a car.",
            "scene_class": "farmland",
            "segment": [
                {"bbox": {"x1": 1, "y1": 2, "x2": 11, "y2": 12, "W": 40, "H": 30}, "category": "car", "category_id": 7, "score": 0.9},
                {"bbox": {"x1": 5, "y1": 5, "x2": 9, "y2": 9, "W": 40, "H": 30}, "category": "car", "category_id": 7,
                 "cap": "a satellite image of car"},
                {"bbox": {"x1": 5, "y1": 5}, "category": "car", "category_id": 7},
            ],
        },
        {"global_filepath": "imgs/b.png", "brief_caption": "Grey.", "global_caption": "A grey square.", "segment": []},
        {"global_filepath": "imgs/missing.png", "brief_caption": "x", "detailed_caption": "y", "segment": []},
        {"global_filepath": "../outside.png", "segment": []},
    ]
    path = root / "mgrs200k.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def test_import_release_keeps_unknown_keys(tmp_path):
    release = write_release(tmp_path / "release")
    report = import_release(release, tmp_path / "out", ImportOptions(split="train"))
    rows = read_rows(tmp_path / "out")

    assert [row["image_id"] for row in rows] == ["mgrs-200k/imgs/a", "mgrs-200k/imgs/b"]
    first, second = rows
    extra = json.loads(first["extra"])
    assert extra["release_fields"] == {"scene_class": "farmland"}
    assert extra["release_segment_fields"] == {"0": {"score": 0.9}}
    assert extra["release_invalid_segments"] == {"2": {"bbox": {"x1": 5, "y1": 5}, "category": "car", "category_id": 7}}
    assert extra["template_cap_segments"] == [1]
    assert first["image"]["bytes"] == (tmp_path / "release" / "imgs" / "a.jpg").read_bytes()
    assert [region["bbox"] for region in first["regions"]] == [[1, 2, 11, 12], [5, 5, 9, 9]]
    assert first["source"] == "mgrs-200k"
    assert second["long_caption"] == "A grey square."
    assert json.loads(second["extra"])["converted_from"] == "L"
    assert report["skipped"]["image"] == {"image_outside_root": 1, "missing_image": 1}
    assert report["skipped"]["annotation"] == {"invalid_segment": 1}
    assert validate_dataset(tmp_path / "out") == []


def test_reconcile_self_is_perfect(dataset, exported):
    for other in (dataset, exported):
        result = reconcile(dataset, other)
        assert result["perfect"]
        assert result["images"]["matched"] == 6
        assert result["regions"]["matched"] == result["regions"]["ours"] == result["regions"]["release"]
        assert result["categories"]["disagree"] == 0


def test_reconcile_reports_exactly_the_perturbation(dataset, exported, tmp_path):
    perturbed = tmp_path / "perturbed"
    shutil.copytree(exported, perturbed)
    items = json.loads((perturbed / "train.json").read_text(encoding="utf-8"))
    dropped = items.pop(0)["image_id"]
    with_regions = [item for item in items if item["segment"]]
    shifted, renamed = with_regions[0], with_regions[-1]
    box = shifted["segment"][0]["bbox"]
    width = box["x2"] - box["x1"]
    box["x1"] += max(1, width // 10)
    renamed["segment"][-1]["category"] = "harbor" if renamed["segment"][-1]["category"] != "harbor" else "ship"
    (perturbed / "train.json").write_text(json.dumps(items), encoding="utf-8")

    result = reconcile(dataset, perturbed)

    assert not result["perfect"]
    assert result["images"]["extra"] == 1
    assert result["examples"]["extra"] == [dropped]
    assert result["images"]["missing"] == 0
    assert result["regions"]["boxes_not_identical"] == 1
    assert result["examples"]["boxes_not_identical"][0]["image_id"] == shifted["image_id"]
    assert result["categories"]["disagree"] == 1
    assert result["examples"]["category_changes"][0]["image_id"] == renamed["image_id"]
    # Regions of the dropped record are not compared: only regions of matched records are.
    assert result["regions"]["only_ours"] == 0
    assert result["regions"]["only_release"] == 0
    assert result["captions"]["pairs_with_length_difference"] == 0


def test_cli_commands(dataset, tmp_path):
    exported = tmp_path / "cli-export"
    result = runner.invoke(app, ["export-farslip", str(dataset), "--out", str(exported)])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["export-farslip", str(dataset), "--out", str(exported)])
    assert again.exit_code == 2
    assert "--overwrite" in " ".join(again.output.split())

    result = runner.invoke(app, ["import-release", str(exported), "--out", str(tmp_path / "cli-import")])
    assert result.exit_code == 0, result.output

    result = runner.invoke(app, ["reconcile", str(dataset), str(tmp_path / "cli-import"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["perfect"] is True

    missing = runner.invoke(app, ["reconcile", str(dataset), str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    # Rich wraps long lines at the console width, so compare with the line breaks removed.
    assert "not found" in " ".join(missing.output.split())


def write_items(path: Path, items: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def test_import_nothing_valid_lists_reasons(tmp_path):
    release = write_items(tmp_path / "bad2.json", [{"global_filepath": 3}, {"brief_caption": "x"}, 5])
    out = tmp_path / "out"

    with pytest.raises(InteropError) as error:
        import_release(release, out)

    assert str(error.value) == (
        "none of the 3 items in bad2.json could be imported: item 0: global_filepath is 3, not a path string; "
        "item 1: global_filepath is missing; item 2: not a JSON object but a number"
    )
    assert not out.exists()


def test_import_error_lists_five_reasons(tmp_path):
    release = write_items(tmp_path / "many.json", [{"segment": []} for _ in range(8)])

    with pytest.raises(InteropError) as error:
        import_release(release, tmp_path / "out")

    message = str(error.value)
    assert message.startswith("none of the 8 items in many.json could be imported: item 0: global_filepath is missing;")
    assert "item 4: global_filepath is missing; and 3 more" in message
    assert "item 5" not in message


def test_import_empty_list(tmp_path):
    with pytest.raises(InteropError, match="empty.json contains no items"):
        import_release(write_items(tmp_path / "empty.json", []), tmp_path / "out")


def test_import_no_readable_image_writes_nothing(tmp_path):
    release = write_items(tmp_path / "release" / "r.json", [
        {"global_filepath": "imgs/missing.png", "segment": []},
        {"global_filepath": "../outside.png", "segment": []},
    ])
    out = tmp_path / "out"
    out.mkdir()

    with pytest.raises(InteropError) as error:
        import_release(release, out)

    message = str(error.value)
    assert message.startswith("none of the 2 items in r.json could be imported: item 0: ")
    assert "missing.png" in message
    assert "item 1: global_filepath '../outside.png' leaves" in message
    assert list(out.iterdir()) == []


def test_cli_import_error_carries_reasons(tmp_path):
    release = write_items(tmp_path / "bad.json", [{"brief_caption": "x"}])

    quiet = runner.invoke(app, ["import-release", str(release), "--out", str(tmp_path / "out")])
    verbose = runner.invoke(app, ["-v", "import-release", str(release), "--out", str(tmp_path / "out")])

    assert quiet.exit_code == 2
    assert "none of the 1 item in bad.json could be imported: item 0: global_filepath is missing" in " ".join(quiet.output.split())
    assert verbose.exit_code == 2
    assert "skipped bad.json item 0 (missing_global_filepath)" in " ".join(verbose.output.split())


def test_import_partial_skips_in_report(tmp_path):
    release = write_release(tmp_path / "release")
    import_release(release, tmp_path / "out")

    written = json.loads((tmp_path / "out" / "build-report.json").read_text(encoding="utf-8"))
    examples = written["examples"]["image"]
    assert written["skipped"]["image"] == {"image_outside_root": 1, "missing_image": 1}
    assert examples["image_outside_root"] == ["mgrs200k.json item 3: global_filepath '../outside.png' leaves " + str(tmp_path / "release")]
    assert examples["missing_image"][0].startswith("mgrs200k.json item 2: ")


def test_cli_reconcile_exit_status(dataset, exported, tmp_path):
    perturbed = tmp_path / "perturbed"
    shutil.copytree(exported, perturbed)
    items = json.loads((perturbed / "train.json").read_text(encoding="utf-8"))
    (perturbed / "train.json").write_text(json.dumps(items[1:]), encoding="utf-8")

    same = runner.invoke(app, ["reconcile", str(dataset), str(exported)])
    differs = runner.invoke(app, ["reconcile", str(dataset), str(perturbed)])
    differs_json = runner.invoke(app, ["reconcile", str(dataset), str(perturbed), "--json"])
    failed = runner.invoke(app, ["reconcile", str(dataset), str(tmp_path / "nowhere")])

    assert same.exit_code == 0, same.output
    assert "perfect match" in same.output
    assert differs.exit_code == 1, differs.output
    assert "differences found" in differs.output
    assert differs_json.exit_code == 1
    assert json.loads(differs_json.output)["perfect"] is False
    assert failed.exit_code == 2


def test_cli_reconcile_labels_threshold(dataset, exported):
    result = runner.invoke(app, ["reconcile", str(dataset), str(exported), "--min-iou", "0.7"], terminal_width=200)

    lines = result.output.splitlines()
    assert any("IoU threshold (--min-iou)" in line and "0.7" in line for line in lines)
    assert any("IoU min (measured)" in line and "1.0" in line for line in lines)
    assert not any("min iou" in line for line in lines)
