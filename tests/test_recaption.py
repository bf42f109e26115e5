"""Recaptioning a dataset into a new folder, and builds that caption through a chat-completions server."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mgrs.build import BuildError, build
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
    assert sources == {"openai:test-vlm:prompt-v2"}
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
    assert "error: --model is not set" in result.output
    assert "captioner.model" not in result.output
    assert "Traceback" not in result.output


def test_cli_caption_rerun_summary(source, server, tmp_path):
    arguments = [
        "caption", str(source), "--out", str(tmp_path / "out"), "--captioner", "openai",
        "--base-url", server.base_url, "--model", "test-vlm", "--cache", str(tmp_path / "cache.duckdb"),
    ]
    first = CliRunner().invoke(app, arguments)
    server.reset_counts()
    second = CliRunner().invoke(app, arguments)
    # Rich wraps long lines at the console width, so compare with the line breaks removed.
    first_text, second_text = " ".join(first.output.split()), " ".join(second.output.split())

    assert first.exit_code == 0, first.output
    assert "4 shards written and 0 kept from an earlier run; this run sent 8 requests for 8 records" in first_text
    assert second.exit_code == 0, second.output
    assert server.requests == 0
    assert "0 shards written and 4 kept from an earlier run; this run sent 0 requests." in second_text
    assert "Whole dataset: 8 records, 8 requests, 0 fallbacks." in second_text


def test_recaption_overwrite_rewrites_shards(source, server, tmp_path):
    recaption_dataset(source, tmp_path / "out", server_config(server, tmp_path))
    (tmp_path / "out" / "notes.txt").write_text("left from before")
    server.reset_counts()
    again = recaption_dataset(source, tmp_path / "out", server_config(server, tmp_path), overwrite=True)

    assert len(again.shards_written) == 4
    assert again.shards_kept == []
    assert not (tmp_path / "out" / "notes.txt").exists()
    # Captions still come from the cache: --overwrite rewrites the folder, not the cache.
    assert server.requests == 0
    assert again.captioning.cache_hits == 8


def test_recaption_all_fallbacks_fails(source, server, tmp_path):
    server.default = "500"
    config = server_config(server, tmp_path, max_retries=0)

    with pytest.raises(RecaptionError) as error:
        recaption_dataset(source, tmp_path / "out", config)
    server.reset_counts()
    with pytest.raises(RecaptionError) as rerun:
        recaption_dataset(source, tmp_path / "out", config)

    message = str(error.value)
    assert "all 8 records fell back to template captions" in message
    assert server.base_url in message
    assert "server_error: 8" in message
    assert "--overwrite" in message
    assert validate_dataset(tmp_path / "out") == []
    # The rerun keeps the shards of template captions, so it still fails without sending a request.
    assert server.requests == 0
    assert "all 8 records fell back" in str(rerun.value)


def test_recaption_some_fallbacks_pass(source, server, tmp_path):
    rows = shard_rows(source)
    first_image = next(iter(rows.values()))[0]["image"]["bytes"]
    server.fail_images = {hashlib.sha256(first_image).hexdigest(): "500"}
    result = recaption_dataset(source, tmp_path / "out", server_config(server, tmp_path, max_retries=0))

    assert result.captioning.fallbacks == {"server_error": 1}
    assert result.report["captioning"]["fallbacks"] == {"server_error": 1}


def test_cli_caption_all_fallbacks_exit_2(source, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(app, [
        "caption", str(source), "--out", str(tmp_path / "out"), "--captioner", "openai",
        "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "test-vlm", "--max-retries", "0",
        "--cache", str(tmp_path / "cache.duckdb"),
    ])
    text = " ".join(result.output.split())

    assert result.exit_code == 2
    assert f"requests to http://127.0.0.1:{port}/v1 failed (connection_error: 8)" in text
    assert "is written and valid" in text
    assert validate_dataset(tmp_path / "out") == []


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


def test_build_all_fallbacks_fails(server, tmp_path):
    make_dota(tmp_path / "dota", seed=0)
    server.default = "500"

    with pytest.raises(BuildError, match="no record got model captions") as error:
        build(fake_build_config(tmp_path / "dota", server_config(server, tmp_path, max_retries=0)), tmp_path / "out")

    assert server.base_url in str(error.value)
    report = json.loads((tmp_path / "out" / "build-report.json").read_text())
    assert sum(report["captioning"]["fallbacks"].values()) == report["captioning"]["records"] > 0
    assert validate_dataset(tmp_path / "out") == []


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
    assert one.report["caption_quality"]["caption_sources"] == {"openai:test-vlm:prompt-v2": records}
    assert "cache" not in one.report["settings"]["captioner"]
    assert validate_dataset(one.out) == []
