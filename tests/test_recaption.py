"""Recaptioning a dataset into a new folder, and builds that caption through a chat-completions server."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mgrs.build import build
from mgrs.captions.template import TemplateCaptioner
from mgrs.cli import app
from mgrs.recaption import RecaptionError, recaption_dataset
from mgrs.recipe import BuildConfig, CaptionerConfig, OutputConfig, SourceSpec
from mgrs.validate import validate_dataset
from tests.chat_server import ChatServer
from tests.conftest_shards import write_dataset
from tests.fakes import tree_digest
from tests.fakes.dota import make_dota

CAPTION_COLUMNS = {"short_caption", "long_caption", "caption_source"}


@pytest.fixture
def server():
    with ChatServer() as running:
        yield running


@pytest.fixture
def source(tmp_path):
    return write_dataset(tmp_path / "source", {"train": 5, "validation": 3}, seed=2, shards_per_split=2)


def server_config(server: ChatServer, tmp_path: Path, **overrides) -> CaptionerConfig:
    settings = {
        "kind": "openai", "base_url": server.base_url, "model": "test-vlm", "max_concurrency": 2,
        "retry_backoff": 0.01, "max_retries": 1, "cache": str(tmp_path / "cache.duckdb"),
    }
    settings.update(overrides)
    return CaptionerConfig(**settings)


def shard_rows(root: Path) -> dict[str, list[dict]]:
    return {path.name: pq.read_table(path).to_pylist() for path in sorted((root / "data").glob("*.parquet"))}


def test_recaption_changes_only_captions(source, tmp_path):
    before = tree_digest(source)
    result = recaption_dataset(source, tmp_path / "out", CaptionerConfig(kind="template"))

    assert tree_digest(source) == before
    old = shard_rows(source)
    new = shard_rows(result.out)
    assert sorted(old) == sorted(new)
    for name in old:
        assert len(new[name]) == len(old[name])
        for old_row, new_row in zip(old[name], new[name]):
            assert {k: v for k, v in old_row.items() if k not in CAPTION_COLUMNS} == {k: v for k, v in new_row.items() if k not in CAPTION_COLUMNS}
            assert new_row["caption_source"] == TemplateCaptioner.name
    assert validate_dataset(result.out) == []


def test_recaption_report_and_card(source, tmp_path):
    result = recaption_dataset(source, tmp_path / "out", CaptionerConfig(kind="template"))

    report = json.loads((result.out / "build-report.json").read_text())
    assert report["caption_quality"]["records"] == 8
    assert report["captioning"]["records"] == 8
    assert "## Caption quality" in (result.out / "README.md").read_text()


def test_recaption_with_server(source, server, tmp_path):
    result = recaption_dataset(source, tmp_path / "out", server_config(server, tmp_path))

    assert server.requests == 8
    sources = {row["caption_source"] for rows in shard_rows(result.out).values() for row in rows}
    assert sources == {"openai:test-vlm:prompt-v1"}
    assert result.report["captioning"]["requests"] == 8
    assert validate_dataset(result.out) == []


def test_recaption_rerun_keeps_shards(source, server, tmp_path):
    recaption_dataset(source, tmp_path / "out", server_config(server, tmp_path))
    server.reset_counts()
    again = recaption_dataset(source, tmp_path / "out", server_config(server, tmp_path))

    assert server.requests == 0
    assert again.shards_written == []
    assert len(again.shards_kept) == 4


def test_recaption_new_folder_uses_cache(source, server, tmp_path):
    first = recaption_dataset(source, tmp_path / "one", server_config(server, tmp_path))
    server.reset_counts()
    second = recaption_dataset(source, tmp_path / "two", server_config(server, tmp_path))

    assert server.requests == 0
    assert second.report["captioning"]["cache_hits"] == 8
    assert shard_rows(first.out) == shard_rows(second.out)


def test_recaption_refuses_overlap(source):
    with pytest.raises(RecaptionError, match="overlaps"):
        recaption_dataset(source, source / "inside", CaptionerConfig(kind="template"))


def test_recaption_refuses_other_folder(source, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(RecaptionError, match="--overwrite"):
        recaption_dataset(source, out, CaptionerConfig(kind="template"))


def test_recaption_missing_source(tmp_path):
    with pytest.raises(RecaptionError, match="not found"):
        recaption_dataset(tmp_path / "nothing", tmp_path / "out", CaptionerConfig(kind="template"))


def test_cli_caption_with_server(source, server, tmp_path):
    result = CliRunner().invoke(app, [
        "caption", str(source), "--out", str(tmp_path / "out"), "--captioner", "openai",
        "--base-url", server.base_url, "--model", "test-vlm", "--max-concurrency", "2",
        "--cache", str(tmp_path / "cache.duckdb"),
    ])

    assert result.exit_code == 0, result.output
    assert "8 records" in result.output
    assert server.requests == 8


def test_cli_caption_error_is_one_line(source, tmp_path):
    result = CliRunner().invoke(app, ["caption", str(source), "--out", str(tmp_path / "o"), "--captioner", "openai"])

    assert result.exit_code == 2
    assert "captioner.model" in result.output
    assert "Traceback" not in result.output


def fake_build_config(root: Path, captioner: CaptionerConfig) -> BuildConfig:
    return BuildConfig(
        sources=[SourceSpec(format="dota", path=str(root))],
        output=OutputConfig(rows_per_shard=4),
        captioner=captioner,
    )


def test_build_template_has_quality_report(tmp_path):
    make_dota(tmp_path / "dota", seed=0)
    result = build(fake_build_config(tmp_path / "dota", CaptionerConfig()), tmp_path / "out")

    quality = result.report["caption_quality"]
    assert quality["records"] == sum(result.report["records"].values())
    assert quality["caption_sources"] == {TemplateCaptioner.name: quality["records"]}
    assert quality["coverage"]["mean"] == 1.0
    assert quality["hallucination"]["records_flagged"] == 0
    assert "captioning" not in result.report


@pytest.mark.slow
def test_build_with_server_same_bytes_any_workers(server, tmp_path):
    make_dota(tmp_path / "dota", seed=0)
    one = build(fake_build_config(tmp_path / "dota", server_config(server, tmp_path)), tmp_path / "one", workers=1)
    records = sum(one.report["records"].values())
    requests = server.requests
    server.reset_counts()
    two = build(fake_build_config(tmp_path / "dota", server_config(server, tmp_path)), tmp_path / "two", workers=2)

    assert requests == records
    assert server.requests == 0
    assert tree_digest(one.out / "data") == tree_digest(two.out / "data")
    assert one.report["captioning"]["requests"] == records
    assert two.report["captioning"]["cache_hits"] == records
    assert one.report["caption_quality"]["caption_sources"] == {"openai:test-vlm:prompt-v1": records}
    assert "cache" not in one.report["settings"]["captioner"]
    assert validate_dataset(one.out) == []
