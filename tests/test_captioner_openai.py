"""The OpenAI-compatible captioner against a real chat-completions server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from mgrs.captions.cache import CaptionCache
from mgrs.captions.openai import CaptionerError, InvalidResponse, OpenAICaptioner, parse_captions
from mgrs.captions.prompts import load_prompt
from mgrs.captions.template import TemplateCaptioner
from mgrs.recipe import CaptionerConfig, RecipeError
from tests.chat_server import ChatServer, echo_captions
from tests.conftest_shards import make_records


@pytest.fixture
def server():
    with ChatServer() as running:
        yield running


@pytest.fixture
def records():
    return make_records({"train": 6}, seed=3)["train"]


def make_config(server: ChatServer, tmp_path: Path, **overrides) -> CaptionerConfig:
    settings = {
        "kind": "openai",
        "base_url": server.base_url,
        "model": "test-vlm",
        "api_key_env": "MGRS_TEST_CHAT_KEY",
        "timeout": 5.0,
        "max_concurrency": 2,
        "max_retries": 2,
        "retry_backoff": 0.01,
        "cache": str(tmp_path / "cache.duckdb"),
    }
    settings.update(overrides)
    return CaptionerConfig(**settings)


def run(config: CaptionerConfig, records, progress=None):
    with OpenAICaptioner(config) as captioner:
        return captioner.caption_many([(record, False) for record in records], progress)


def test_success_echoes_objects(server, records, tmp_path):
    outcomes, report = run(make_config(server, tmp_path), records)

    assert server.requests == len(records)
    assert report.requests == len(records)
    assert report.fallbacks == {}
    by_image = {hashlib.sha256(record.image_bytes).hexdigest()[:12]: record for record in records}
    for record, outcome in zip(records, outcomes):
        assert outcome.source == "openai:test-vlm:prompt-v2"
        checksum = hashlib.sha256(record.image_bytes).hexdigest()[:12]
        assert checksum in outcome.captions.long
        assert by_image[checksum] is record
    assert report.prompt_tokens == 100 * len(records)
    assert report.completion_tokens == 40 * len(records)


def test_request_carries_settings_and_image(server, records, tmp_path, monkeypatch):
    monkeypatch.setenv("MGRS_TEST_CHAT_KEY", "secret-key")
    run(make_config(server, tmp_path, temperature=0.3, seed=7, max_tokens=300), records[:1])

    body = server.bodies[0]
    assert body["model"] == "test-vlm"
    assert body["temperature"] == 0.3
    assert body["seed"] == 7
    assert body["max_tokens"] == 300
    user = body["messages"][1]["content"]
    assert user[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert server.headers[0]["Authorization"] == "Bearer secret-key"


def test_prompt_lists_objects_and_gsd(server, records, tmp_path):
    record = next(r for r in records if r.regions and r.gsd)
    run(make_config(server, tmp_path), [record])

    text = server.bodies[0]["messages"][1]["content"][0]["text"]
    assert "ground sample distance is about" in text
    assert f"The attached overhead image measures {record.width} × {record.height} pixels." in text
    assert "- 1 " in text or "- 2 " in text or "- 3 " in text or "- 4 " in text


def test_default_prompt_is_v2():
    assert CaptionerConfig().prompt_version == "v2"


@pytest.mark.parametrize("version, sentence", [
    ("v1", "The attached image is a 800 x 800 pixel overhead image."),
    ("v2", "The attached overhead image measures 800 × 800 pixels."),
])
def test_prompt_versions_keep_their_wording(records, version, sentence):
    record = records[0]
    record.width = record.height = 800
    user = load_prompt(version).render(record, False).user

    assert user.splitlines()[0] == sentence


def test_tokens_count_rejected_replies(server, records, tmp_path):
    server.behaviours = ["missing"]
    outcomes, report = run(make_config(server, tmp_path, max_concurrency=1, max_retries=1), records[:1])

    assert server.requests == 2
    assert report.failed_requests == {"missing_caption": 1}
    assert outcomes[0].source.startswith("openai:")
    assert report.prompt_tokens == 200
    assert report.completion_tokens == 80


def test_tokens_count_fallback_replies(server, records, tmp_path):
    server.default = "refusal"
    outcomes, report = run(make_config(server, tmp_path, max_retries=0), records[:2])

    assert report.fallbacks == {"refusal": 2}
    assert report.prompt_tokens == 200
    assert report.completion_tokens == 80


def test_no_key_sends_no_authorization(server, records, tmp_path, monkeypatch):
    monkeypatch.delenv("MGRS_TEST_CHAT_KEY", raising=False)
    run(make_config(server, tmp_path), records[:1])

    assert "Authorization" not in server.headers[0]


def test_key_never_logged(server, records, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MGRS_TEST_CHAT_KEY", "secret-key")
    server.default = "500"
    with caplog.at_level("DEBUG"):
        run(make_config(server, tmp_path, max_retries=1), records[:1])

    assert "secret-key" not in caplog.text


@pytest.mark.parametrize("failure, reason", [("429", "rate_limited"), ("500", "server_error"), ("malformed", "malformed_response")])
def test_retry_then_success(server, records, tmp_path, failure, reason):
    server.behaviours = [failure]
    outcomes, report = run(make_config(server, tmp_path, max_concurrency=1), records[:1])

    assert server.requests == 2
    assert report.retries == 1
    assert report.failed_requests == {reason: 1}
    assert outcomes[0].source.startswith("openai:")


@pytest.mark.parametrize(
    "failure, reason",
    [("500", "server_error"), ("429", "rate_limited"), ("refusal", "refusal"), ("missing", "missing_caption"), ("malformed", "malformed_response")],
)
def test_fallback_after_retries(server, records, tmp_path, failure, reason):
    server.default = failure
    record = records[1]
    outcomes, report = run(make_config(server, tmp_path, max_retries=2), [record])

    assert server.requests == 3
    assert report.fallbacks == {reason: 1}
    assert report.failed_requests == {reason: 3}
    assert outcomes[0].source == TemplateCaptioner.name
    assert outcomes[0].captions == TemplateCaptioner().caption(record, False)


def test_fallback_is_not_cached(server, records, tmp_path):
    server.default = "500"
    run(make_config(server, tmp_path, max_retries=0), records[:2])
    server.default = "ok"
    server.reset_counts()
    outcomes, report = run(make_config(server, tmp_path, max_retries=0), records[:2])

    assert server.requests == 2
    assert report.fallbacks == {}
    assert all(outcome.source.startswith("openai:") for outcome in outcomes)


def test_timeout_falls_back(server, records, tmp_path):
    server.default = "slow"
    server.slow_seconds = 1.0
    outcomes, report = run(make_config(server, tmp_path, timeout=0.2, max_retries=0), records[:1])

    assert report.fallbacks == {"timeout": 1}
    assert outcomes[0].source == TemplateCaptioner.name


def test_connection_error_falls_back(records, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = CaptionerConfig(
        kind="openai", base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, retry_backoff=0.01,
        cache=str(tmp_path / "cache.duckdb"),
    )
    outcomes, report = run(config, records[:1])

    assert report.fallbacks == {"connection_error": 1}
    assert report.retries == 1
    assert outcomes[0].source == TemplateCaptioner.name


def test_rejected_key_stops_run(server, records, tmp_path):
    server.default = "401"
    with pytest.raises(CaptionerError, match="HTTP 401"):
        run(make_config(server, tmp_path), records)


def test_code_fence_accepted(server, records, tmp_path):
    server.default = "fence"
    outcomes, report = run(make_config(server, tmp_path), records[:1])

    assert report.fallbacks == {}
    assert outcomes[0].captions.long == echo_captions(server.bodies[0])["long_caption"]


def test_second_run_sends_no_request(server, records, tmp_path):
    first, _ = run(make_config(server, tmp_path), records)
    server.reset_counts()
    second, report = run(make_config(server, tmp_path), records)

    assert server.requests == 0
    assert report.cache_hits == len(records)
    assert second == first


def test_cache_key_changes_with_model(server, records, tmp_path):
    run(make_config(server, tmp_path), records[:2])
    server.reset_counts()
    run(make_config(server, tmp_path, model="other-vlm"), records[:2])

    assert server.requests == 2


def test_interrupted_run_resumes(server, records, tmp_path):
    finished = []

    def interrupt(count: int) -> None:
        finished.append(count)
        if len(finished) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(make_config(server, tmp_path, max_concurrency=1), records, interrupt)
    with CaptionCache(tmp_path / "cache.duckdb") as cache:
        stored = len(cache)
    server.reset_counts()
    _, report = run(make_config(server, tmp_path, max_concurrency=1), records)

    assert stored == 3
    assert report.cache_hits == 3
    assert server.requests == len(records) - 3


def test_concurrency_limit_holds(server, tmp_path):
    many = make_records({"train": 8}, seed=5)["train"]
    server.gate = 4
    server.gate_seconds = 0.2
    run(make_config(server, tmp_path, max_concurrency=3), many)

    assert server.requests == 8
    assert server.max_in_flight == 3


def test_concurrency_of_one(server, tmp_path):
    many = make_records({"train": 4}, seed=5)["train"]
    server.gate = 2
    server.gate_seconds = 0.1
    run(make_config(server, tmp_path, max_concurrency=1), many)

    assert server.max_in_flight == 1


def test_identical_records_share_request(server, records, tmp_path):
    outcomes, report = run(make_config(server, tmp_path), [records[0], records[0]])

    assert server.requests == 1
    assert outcomes[0] == outcomes[1]
    assert report.records == 2


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty_output"),
        ("   ", "empty_output"),
        ("I'm sorry, I cannot help with that.", "refusal"),
        ("Here are captions without JSON.", "invalid_captions"),
        (json.dumps({"short_caption": "A port.", "long_caption": ""}), "missing_caption"),
        (json.dumps({"short_caption": "A port.", "long_caption": "As an AI I cannot see images at all, sorry about that."}), "refusal"),
        (json.dumps({"short_caption": "word " * 60, "long_caption": "A long caption with enough words to pass the limit here."}), "caption_length"),
        (json.dumps({"short_caption": "A port.", "long_caption": "Too short."}), "caption_length"),
    ],
)
def test_invalid_replies_rejected(text, reason):
    with pytest.raises(InvalidResponse) as raised:
        parse_captions(text)

    assert raised.value.reason == reason


def test_reply_whitespace_collapsed():
    captions = parse_captions(json.dumps({"short_caption": " A  port. ", "long_caption": "Ships lie\nat the quay near two\tcranes and a road."}))

    assert captions.short == "A port."
    assert captions.long == "Ships lie at the quay near two cranes and a road."


@pytest.mark.parametrize(
    "settings, option",
    [
        ({"kind": "openai"}, "captioner.model"),
        ({"kind": "openai", "model": "m", "max_concurrency": 0}, "captioner.max_concurrency"),
        ({"kind": "openai", "model": "m", "base_url": "127.0.0.1:8000"}, "captioner.base_url"),
        ({"kind": "openai", "model": "m", "timeout": 0}, "captioner.timeout"),
        ({"kind": "llm"}, "captioner.kind"),
    ],
)
def test_config_errors_name_option(settings, option):
    with pytest.raises(RecipeError, match=option.replace(".", r"\.")):
        CaptionerConfig(**settings).validate()


def test_fingerprint_ignores_server_settings():
    from mgrs.recipe import BuildConfig

    first = BuildConfig(captioner=CaptionerConfig(kind="openai", model="m"))
    second = BuildConfig(captioner=CaptionerConfig(kind="openai", model="m", base_url="http://other:1/v1", max_concurrency=1))
    third = BuildConfig(captioner=CaptionerConfig(kind="openai", model="m", temperature=0.5))

    assert first.fingerprint() == second.fingerprint()
    assert first.fingerprint() != third.fingerprint()
