"""`mgrs verify-source` and `mgrs.verify`: raw downloads checked against the source manifests."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mgrs.cli import app
from mgrs.sources import FORMATS
from mgrs.verify import ERROR, WARNING, ManifestError, available_manifests, load_manifest, verify_source
from tests.fakes import encode_png, noise, write_bytes
from tests.fakes.coco import make_coco
from tests.fakes.dior import make_dior
from tests.fakes.dota import make_dota
from tests.fakes.fair1m import make_fair1m
from tests.fakes.hrsc2016 import make_hrsc2016
from tests.fakes.isaid import make_isaid
from tests.fakes.nwpu_vhr10 import make_nwpu_vhr10
from tests.fakes.voc import make_voc
from tests.fakes.xview import make_xview
from tests.fakes.yolo import make_yolo

runner = CliRunner()
SOURCES = ["dota", "dior", "dior-r", "isaid", "fair1m", "xview", "hrsc2016", "nwpu-vhr10", "voc", "coco", "yolo", "yolo-obb"]


def write_manifest(folder, name, expect) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "expect": expect}), encoding="utf-8")


@pytest.mark.parametrize("name", SOURCES)
def test_shipped_manifest_fields(name):
    manifest = load_manifest(name)
    for key in ("name", "title", "format", "homepage", "license", "citation", "expect"):
        assert manifest.get(key), f"{name}: {key}"
    assert manifest["name"] == name
    assert manifest["expect"]


def test_every_registered_format_has_manifest():
    assert set(FORMATS) <= set(available_manifests())


def test_fake_nwpu_matches_with_count_warnings(tmp_path):
    make_nwpu_vhr10(tmp_path)
    result = verify_source("nwpu-vhr10", tmp_path)
    assert result.problems == []
    # Three positive images instead of 650: a warning, because the expected count is not verified.
    counted = {check.what for check in result.warnings if check.status == "count_differs"}
    assert counted == {"positive images", "negative images", "ground-truth files"}
    assert all(check.severity == WARNING for check in result.warnings)


def test_missing_folder_is_a_problem(tmp_path):
    make_dior(tmp_path)
    (tmp_path / "Annotations" / "Oriented Bounding Boxes").rename(tmp_path / "elsewhere")
    result = verify_source("dior-r", tmp_path)
    assert [(check.what, check.status) for check in result.problems] == [
        ("layout read by the dior-r adapter", "layout_rejected"),
        ("oriented-box annotations", "missing"),
    ]
    assert "Oriented Bounding Boxes" in result.problems[0].message
    assert "Oriented Bounding Boxes" in result.problems[1].message


def test_verified_count_and_checksum(tmp_path):
    data = tmp_path / "data"
    (data / "labels").mkdir(parents=True)
    (data / "labels" / "a.txt").write_text("a", encoding="utf-8")
    (data / "labels" / "b.txt").write_text("b", encoding="utf-8")
    (data / "index.json").write_text("{}", encoding="utf-8")
    manifests = tmp_path / "manifests"
    write_manifest(
        manifests,
        "mine",
        [
            {"what": "labels", "glob": "labels/*.txt", "count": 3, "count_verified": True},
            {"what": "index", "glob": "index.json", "sha256": hashlib.sha256(b"{}").hexdigest()},
            {"what": "readme", "glob": "README*", "required": False},
        ],
    )
    result = verify_source("mine", data, manifests)
    assert [(c.what, c.status, c.severity) for c in result.checks] == [
        ("labels", "count_differs", ERROR),
        ("index", "ok", None),
        ("readme", "ok", None),
    ]

    (data / "index.json").write_text("{ }", encoding="utf-8")
    (data / "labels" / "c.txt").write_text("c", encoding="utf-8")
    result = verify_source("mine", data, manifests)
    assert [(c.what, c.status) for c in result.problems] == [("index", "checksum_differs")]


def test_unknown_manifest_lists_known(tmp_path):
    with pytest.raises(ManifestError, match="known sources: .*dota"):
        load_manifest("nope")


def test_cli_exit_codes(tmp_path):
    make_nwpu_vhr10(tmp_path / "nwpu")
    ok = runner.invoke(app, ["verify-source", "nwpu-vhr10", str(tmp_path / "nwpu")])
    assert ok.exit_code == 0, ok.output
    assert "warning" in ok.output

    (tmp_path / "empty").mkdir()
    bad = runner.invoke(app, ["verify-source", "nwpu-vhr10", str(tmp_path / "empty")])
    assert bad.exit_code == 1
    assert "positive images: nothing matches" in bad.output

    unknown = runner.invoke(app, ["verify-source", "nope", str(tmp_path)])
    assert unknown.exit_code == 2
    assert "Traceback" not in unknown.output

    missing = runner.invoke(app, ["verify-source", "dota", str(tmp_path / "absent")])
    assert missing.exit_code == 2


def make_roboflow_coco(root):
    """Write a Roboflow COCO export: `<split>/_annotations.coco.json` with the images beside it."""
    rng = np.random.default_rng(3)
    for split in ("train", "valid"):
        write_bytes(root / split / "a.jpg.rf.1.png", encode_png(noise(rng, 16, 16)))
        data = {
            "images": [{"id": 0, "file_name": "a.jpg.rf.1.png"}],
            "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "bbox": [1, 1, 5, 5]}],
            "categories": [{"id": 1, "name": "ship"}],
        }
        write_bytes(root / split / "_annotations.coco.json", json.dumps(data).encode())


def _dota_flat(root):
    make_dota(root, split_folders=False)


def _dota_split(root):
    make_dota(root, split_folders=True)


def _dior_flat(root):
    make_dior(root, image_sets=False, horizontal_in_subfolder=False)


def _voc_hrrsd(root):
    make_voc(root)
    return root / "hrrsd"


def _voc_rsod(root):
    make_voc(root)
    return root / "rsod"


def _yolo_ultralytics(root):
    return make_yolo(root)["detect"]["root"]


def _yolo_roboflow(root):
    return make_yolo(root)["obb"]["root"]


# (manifest name, writer of a layout the adapter reads, which returns the source folder or None for root).
ACCEPTED_LAYOUTS = {
    "dota-split-folders": ("dota", _dota_split),
    "dota-flat": ("dota", _dota_flat),
    "dior": ("dior", make_dior),
    "dior-flat-annotations": ("dior", _dior_flat),
    "dior-r": ("dior-r", make_dior),
    "isaid": ("isaid", make_isaid),
    "fair1m": ("fair1m", make_fair1m),
    "xview": ("xview", make_xview),
    "hrsc2016": ("hrsc2016", make_hrsc2016),
    "nwpu-vhr10": ("nwpu-vhr10", make_nwpu_vhr10),
    "voc-hrrsd": ("voc", _voc_hrrsd),
    "voc-rsod": ("voc", _voc_rsod),
    "coco-isaid-json": ("coco", make_coco),
    "coco-roboflow": ("coco", make_roboflow_coco),
    "yolo-ultralytics": ("yolo", _yolo_ultralytics),
    "yolo-obb-roboflow": ("yolo-obb", _yolo_roboflow),
}


@pytest.mark.parametrize("layout", sorted(ACCEPTED_LAYOUTS))
def test_accepted_layout_has_no_problems(layout, tmp_path):
    name, write = ACCEPTED_LAYOUTS[layout]
    written = write(tmp_path)
    root = written if isinstance(written, Path) else tmp_path
    result = verify_source(name, root)
    assert [check.message for check in result.problems] == []
    assert result.layout is not None
    assert result.layout.rejected is None
    assert result.layout.images > 0


def test_layout_counts_and_scan_skips(tmp_path):
    expected = make_dota(tmp_path, split_folders=True)
    result = verify_source("dota", tmp_path)
    splits = {}
    for scene in expected["scenes"].values():
        splits[scene["split"]] = splits.get(scene["split"], 0) + 1
    assert result.layout.images_by_split == splits
    assert sum(result.layout.skipped.get("annotation", {}).values()) + sum(result.layout.skipped.get("image", {}).values()) == len(expected["scan_skips"])
    skip_checks = [check for check in result.checks if check.status == "scan_skips"]
    assert len(skip_checks) == 1
    assert skip_checks[0].severity == WARNING
    assert "missing_image 1" in skip_checks[0].message


def test_coco_roboflow_layout_cli(tmp_path):
    make_roboflow_coco(tmp_path)
    outcome = runner.invoke(app, ["verify-source", "coco", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    assert "2 images" in outcome.output


def test_absent_split_is_a_warning(tmp_path):
    make_isaid(tmp_path / "isaid")
    shutil.rmtree(tmp_path / "isaid" / "val")
    result = verify_source("isaid", tmp_path / "isaid")
    assert result.problems == []
    val_checks = [check for check in result.checks if check.what.startswith("validation")]
    assert [check.status for check in val_checks] == ["missing"] * 3
    assert all(check.severity == WARNING and "val split is absent" in check.message for check in val_checks)

    make_dior(tmp_path / "dior")
    shutil.rmtree(tmp_path / "dior" / "JPEGImages-test")
    result = verify_source("dior-r", tmp_path / "dior")
    assert result.problems == []
    test_check = next(check for check in result.checks if check.what == "test images")
    assert (test_check.status, test_check.severity) == ("missing", WARNING)
    assert "test split is absent" in test_check.message


def test_no_images_is_a_problem(tmp_path):
    make_dota(tmp_path, split_folders=False)
    shutil.rmtree(tmp_path / "images")
    (tmp_path / "images").mkdir()
    result = verify_source("dota", tmp_path)
    assert [(check.what, check.status) for check in result.problems][0] == ("layout read by the dota adapter", "no_images")
    # Without images the manifest's required entries are problems again.
    assert ("training images", "missing") in [(check.what, check.status) for check in result.problems]


def test_rejected_layout_is_a_problem(tmp_path):
    root = make_yolo(tmp_path)["obb"]["root"]
    (root / "classes.txt").unlink()
    outcome = runner.invoke(app, ["verify-source", "yolo-obb", str(root)])
    assert outcome.exit_code == 1
    assert "rejected" in outcome.output
    assert "classes.txt" in outcome.output


def test_verified_count_by_split_presence(tmp_path):
    make_dota(tmp_path / "data", split_folders=True)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    manifest = {
        "name": "mine",
        "format": "dota",
        "expect": [
            {"what": "train images", "glob": "train/images/*.png", "split": "train", "count": 1, "count_verified": True},
            {"what": "test images", "glob": "train/images/*.png", "split": "test", "count": 1, "count_verified": True},
        ],
    }
    (manifests / "mine.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    result = verify_source("mine", tmp_path / "data", manifests)
    by_what = {check.what: (check.status, check.severity) for check in result.checks}
    assert by_what["train images"] == ("count_differs", ERROR)
    assert by_what["test images"] == ("count_differs", WARNING)


@pytest.mark.parametrize(("name", "folder"), [("dota", "dota"), ("isaid", "isaid"), ("dior-r", "dior")])
def test_real_samples_pass(samples, name, folder):
    outcome = runner.invoke(app, ["verify-source", name, str(samples / folder)])
    assert outcome.exit_code == 0, outcome.output
    assert "  problem " not in outcome.output
    assert "  ok layout read by" in outcome.output
