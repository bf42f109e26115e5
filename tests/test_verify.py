"""`mgrs verify-source` and `mgrs.verify`: raw downloads checked against the source manifests."""

from __future__ import annotations

import hashlib

import pytest
import yaml
from typer.testing import CliRunner

from mgrs.cli import app
from mgrs.sources import FORMATS
from mgrs.verify import ERROR, WARNING, ManifestError, available_manifests, load_manifest, verify_source
from tests.fakes.dior import make_dior
from tests.fakes.nwpu_vhr10 import make_nwpu_vhr10

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
    assert {check.what for check in result.warnings} == {"positive images", "negative images", "ground-truth files"}
    assert all(check.severity == WARNING for check in result.warnings)


def test_missing_folder_is_a_problem(tmp_path):
    make_dior(tmp_path)
    (tmp_path / "Annotations" / "Oriented Bounding Boxes").rename(tmp_path / "elsewhere")
    result = verify_source("dior-r", tmp_path)
    assert [check.what for check in result.problems] == ["oriented-box annotations"]
    assert result.problems[0].status == "missing"
    assert "Oriented Bounding Boxes" in result.problems[0].message


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
