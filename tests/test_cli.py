"""End-to-end runs of the `mgrs` command line on fake sources with bad input, and on the real samples."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from mgrs.cli import app
from tests.fakes.dior import make_dior
from tests.fakes.dota import make_dota
from tests.fakes.isaid import make_isaid

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def fake_build(tmp_path_factory):
    """All three fake sources, with their bad inputs, built through the CLI."""
    root = tmp_path_factory.mktemp("fakes")
    dota = make_dota(root / "DOTA v1")
    dior = make_dior(root / "DIOR data")
    isaid = make_isaid(root / "iSAID")
    out = root / "out"
    result = run(
        "build",
        "--source", f"dota@1.5:{dota['root']}",
        "--source", f"dior:{dior['root']}",
        "--source", f"dior-r:{dior['root']}",
        "--source", f"isaid:{isaid['root']}",
        "--out", str(out),
        "--rows-per-shard", "3",
    )
    return {"result": result, "out": out, "dota": dota, "dior": dior, "isaid": isaid}


def test_build_bad_input_exits_zero(fake_build):
    result = fake_build["result"]

    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


def test_build_bad_input_accounts_annotations(fake_build):
    report = json.loads((fake_build["out"] / "build-report.json").read_text())
    scan_annotation_skips = sum(report["planned"]["skipped"].get("annotation", {}).values())
    load_annotation_skips = sum(report["skipped"]["annotation"].values()) - scan_annotation_skips

    assert report["annotations_read"] > 0
    assert report["annotations_read"] == report["annotations_placed"] + load_annotation_skips


def test_build_bad_input_accounts_images(fake_build):
    report = json.loads((fake_build["out"] / "build-report.json").read_text())
    scenes = {**fake_build["dota"]["scenes"], **fake_build["isaid"]["scenes"]}
    dior_scenes = len(fake_build["dior"]["scenes"])
    converted_or_skipped = report["images_read"] + sum(report["skipped"]["image"].values())

    assert converted_or_skipped >= len(scenes) + 2 * dior_scenes
    assert report["skipped"]["image"].get("unreadable_image", 0) >= 1


def test_build_bad_input_is_valid(fake_build):
    result = run("validate", str(fake_build["out"]))

    assert result.exit_code == 0, result.output


def test_build_bad_input_reasons_listed(fake_build):
    report = json.loads((fake_build["out"] / "build-report.json").read_text())
    reasons = set(report["skipped"]["annotation"]) | set(report["skipped"]["image"])

    assert "malformed_line" in reasons
    assert "degenerate_polygon" in reasons
    assert "missing_image" in reasons
    for unit, counts in report["skipped"].items():
        for reason in counts:
            assert report["examples"][unit][reason], (unit, reason)


def test_build_bad_input_unknown_label_kept(fake_build):
    import pyarrow.parquet as pq

    rows = [row for shard in sorted((fake_build["out"] / "data").glob("*.parquet")) for row in pq.read_table(shard, columns=["regions"]).to_pylist()]
    others = [r for row in rows for r in row["regions"] if r["category"] == "other"]

    assert others
    assert all(r["source_category"] != "other" for r in others)


def test_build_without_sources_fails_clearly(tmp_path):
    result = run("build", "--out", str(tmp_path / "out"))

    assert result.exit_code == 2
    assert "no sources" in result.output


def test_build_bad_source_syntax(tmp_path):
    result = run("build", "--source", "dota", "--out", str(tmp_path / "out"))

    assert result.exit_code == 2
    assert "FORMAT[@VERSION]:PATH" in result.output


def test_build_unknown_format(tmp_path):
    result = run("build", "--source", f"pascal:{tmp_path}", "--out", str(tmp_path / "out"))

    assert result.exit_code == 2
    assert "known formats" in result.output


def test_build_dry_run_writes_nothing(tmp_path, samples):
    out = tmp_path / "out"
    result = run("build", "--source", f"dota:{samples / 'dota'}", "--out", str(out), "--dry-run")

    assert result.exit_code == 0, result.output
    assert "5 records" in result.output
    assert not out.exists()


def test_validate_reports_problems(tmp_path):
    from tests.conftest_shards import write_dataset

    folder = write_dataset(tmp_path / "ds", {"train": 3})
    (folder / "README.md").unlink()
    result = run("validate", str(folder))

    assert result.exit_code == 1
    assert "README.md" in result.output


@pytest.mark.samples
def test_samples_cli_round_trip(tmp_path, samples):
    out = tmp_path / "out"
    result = run("build", "--source", f"dota@1.0:{samples / 'dota'}", "--source", f"dior-r:{samples / 'dior'}", "--out", str(out))
    assert result.exit_code == 0, result.output

    stats = run("stats", str(out), "--json")
    assert stats.exit_code == 0, stats.output
    numbers = json.loads(stats.stdout)
    assert numbers["records"] == 6

    preview = run("preview", str(out), "--out", str(tmp_path / "sheet.png"), "--count", "4")
    assert preview.exit_code == 0, preview.output
    assert Image.open(tmp_path / "sheet.png").size[0] > 0

    categories = run("categories")
    assert categories.exit_code == 0
    assert "small vehicle" in categories.output


@pytest.mark.samples
def test_build_with_server_captioner(tmp_path, samples):
    from tests.chat_server import ChatServer

    out = tmp_path / "out"
    with ChatServer() as server:
        result = run(
            "build", "--source", f"dior-r:{samples / 'dior'}", "--out", str(out),
            "--captioner", "openai", "--caption-base-url", server.base_url, "--caption-model", "test-vlm",
            "--caption-cache", str(tmp_path / "cache.duckdb"),
        )
        requests = server.requests

    assert result.exit_code == 0, result.output
    assert requests == 1
    report = json.loads((out / "build-report.json").read_text())
    import pyarrow.parquet as pq

    rows = pq.read_table(next((out / "data").glob("*.parquet")), columns=["caption_source", "short_caption"]).to_pylist()
    assert rows[0]["caption_source"].startswith("openai:test-vlm")
    assert rows[0]["short_caption"]
    assert report["captioning"]
