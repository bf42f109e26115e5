"""A captioner that sends requests to an OpenAI-compatible chat-completions server with image input.

Servers such as vLLM, SGLang, Ollama and LMDeploy serve vision-language models (Qwen-VL, InternVL and
others) behind `POST {base_url}/chat/completions`. For each record the captioner sends the record's
own image bytes as a base64 data URL together with a grounded prompt (mgrs.captions.prompts), and
expects one JSON object with a short and a long caption.

- Concurrency. `caption_many` runs at most `max_concurrency` requests at once, from a thread pool in
  the calling process. The build calls it from its main process, so the limit holds for the whole
  build whatever the number of conversion workers.
- Retries. Timeouts, connection errors, HTTP 429, HTTP 5xx and replies that fail validation are
  retried up to `max_retries` times. The n-th retry waits `retry_backoff * 2**(n-1)` seconds (at most
  60, with up to 25 % random jitter), or the server's Retry-After for a 429 when that is longer.
- Fatal responses. HTTP 401, 403 and 404 mean a wrong key, model or URL, so they stop the run with
  CaptionerError instead of degrading every record. So do MAX_FAILED_IN_A_ROW records in a row that
  all failed, which usually means that the server is down.
- Fallback. A record whose requests all failed gets the template captioner's captions, and its
  `caption_source` names the template captioner. Fallbacks are counted by their last failure reason.
- Cache. Validated captions are stored in a CaptionCache as they arrive (see mgrs.captions.cache).
- Secrets. The API key is read from the environment variable named by `api_key_env` and is never
  logged or stored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import httpx2

from mgrs.captions.base import Captioner, Captions
from mgrs.captions.cache import CachedCaptions, CaptionCache, cache_key, default_cache_path
from mgrs.captions.prompts import RenderedPrompt, load_prompt
from mgrs.captions.template import TemplateCaptioner
from mgrs.recipe import CaptionerConfig
from mgrs.schema import Record

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0
BACKOFF_JITTER = 0.25
# Records in a row whose requests all failed before the run stops; the larger of this and 4 x max_concurrency.
MAX_FAILED_IN_A_ROW = 32
# Fallbacks logged one by one at WARNING; the rest go to DEBUG and into the report's counts.
MAX_FALLBACK_WARNINGS = 10
FATAL_STATUS = {401: "the API key was rejected", 403: "access was denied", 404: "the URL or the model was not found"}

ProgressCallback = Callable[[int], None]


class CaptionerError(RuntimeError):
    """A captioning run that cannot continue; the message names the cause and the fix."""


# --- Responses ---------------------------------------------------------------------------------
#
# The model is asked for one JSON object `{"short_caption": ..., "long_caption": ...}`. A reply is
# accepted when both captions are present and non-empty after whitespace is collapsed, the short one
# has at most SHORT_MAX_WORDS words, the long one has LONG_MIN_WORDS to LONG_MAX_WORDS words, the server
# did not cut the reply at the token limit, and neither caption reads as a refusal. A JSON object inside
# a Markdown code fence or surrounding text is accepted too, because many served models add one.

SHORT_MAX_WORDS = 50
LONG_MIN_WORDS = 8
LONG_MAX_WORDS = 400

SHORT_KEYS = ("short_caption", "short")
LONG_KEYS = ("long_caption", "long")

REFUSAL = re.compile(
    r"\b(i['’]?m sorry|i am sorry|i apologi[sz]e|i (?:can(?:not|['’]t)|am unable to|['’]m unable to|won['’]t)"
    r"|as an ai\b|unable to (?:help|assist|provide|describe|view|see|process|analy[sz]e))",
    re.IGNORECASE,
)
FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


class InvalidResponse(ValueError):
    """A response that cannot become captions; `reason` is the counted failure reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ParsedResponse:
    """Validated captions and the token usage the server reported."""

    captions: Captions
    prompt_tokens: int | None
    completion_tokens: int | None


def parse_completion(body: Any) -> ParsedResponse:
    """Return the captions of a decoded chat-completions response body; raises InvalidResponse."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
        raise InvalidResponse("malformed_response", "the response has no `choices` list")
    choice = body["choices"][0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise InvalidResponse("malformed_response", "the first choice has no `message` object")

    if message.get("refusal"):
        raise InvalidResponse("refusal", f"the model refused: {str(message['refusal'])[:200]}")
    if choice.get("finish_reason") == "length":
        raise InvalidResponse("truncated", "the reply was cut at max_tokens; raise captioner.max_tokens")

    captions = parse_captions(message_text(message.get("content")))
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return ParsedResponse(captions, _token_count(usage.get("prompt_tokens")), _token_count(usage.get("completion_tokens")))


def reported_tokens(body: Any) -> tuple[int, int]:
    """Return the prompt and completion tokens in a response body's `usage`, 0 for what it leaves out."""
    usage = body.get("usage") if isinstance(body, dict) and isinstance(body.get("usage"), dict) else {}
    return _token_count(usage.get("prompt_tokens")) or 0, _token_count(usage.get("completion_tokens")) or 0


def message_text(content: Any) -> str:
    """Return the text of a message content given as a string or as a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        return "".join(text for text in texts if isinstance(text, str))
    return ""


def parse_captions(text: str) -> Captions:
    """Return the two validated captions in a reply text; raises InvalidResponse."""
    if not text.strip():
        raise InvalidResponse("empty_output", "the reply has no text")

    data = _json_object(text)
    if data is None:
        if REFUSAL.search(text):
            raise InvalidResponse("refusal", f"the reply reads as a refusal: {text[:200]!r}")
        raise InvalidResponse("invalid_captions", f"the reply contains no JSON object: {text[:200]!r}")

    short = normalise_caption(_first_string(data, SHORT_KEYS))
    long = normalise_caption(_first_string(data, LONG_KEYS))
    if not short or not long:
        missing = " and ".join(name for name, value in (("short_caption", short), ("long_caption", long)) if not value)
        raise InvalidResponse("missing_caption", f"{missing} is missing or empty")

    for name, caption in (("short_caption", short), ("long_caption", long)):
        if REFUSAL.search(caption):
            raise InvalidResponse("refusal", f"{name} reads as a refusal: {caption[:200]!r}")

    short_words = len(short.split())
    long_words = len(long.split())
    if short_words > SHORT_MAX_WORDS:
        raise InvalidResponse("caption_length", f"short_caption has {short_words} words, above {SHORT_MAX_WORDS}")
    if not LONG_MIN_WORDS <= long_words <= LONG_MAX_WORDS:
        raise InvalidResponse("caption_length", f"long_caption has {long_words} words, outside {LONG_MIN_WORDS} to {LONG_MAX_WORDS}")
    return Captions(short=short, long=long)


def normalise_caption(text: str | None) -> str:
    """Collapse runs of whitespace, line breaks included, into single spaces."""
    return " ".join((text or "").split())


def _json_object(text: str) -> dict | None:
    candidates = [match.group(1) for match in FENCE.finditer(text)] + [text]
    for candidate in candidates:
        start = candidate.find("{")
        end = candidate.rfind("}")
        if start < 0 or end <= start:
            continue
        try:
            data = json.loads(candidate[start : end + 1])
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            return data
    return None


def _first_string(data: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str):
            return value
    return None


def _token_count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- Report ------------------------------------------------------------------------------------


@dataclass
class CaptioningReport:
    """Counts of one captioning run; `add` sums runs (shards) and `to_dict` round-trips through JSON."""

    records: int = 0
    cache_hits: int = 0
    # HTTP requests sent, retries included.
    requests: int = 0
    retries: int = 0
    # Requests that did not give valid captions, by reason.
    failed_requests: Counter = field(default_factory=Counter)
    # Records that got the template captions after every request for them failed, by last reason.
    fallbacks: Counter = field(default_factory=Counter)
    # Tokens of every reply that reported usage, rejected replies included; cache hits add none.
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Wall-clock seconds spent captioning.
    seconds: float = 0.0

    def add(self, other: CaptioningReport) -> None:
        self.records += other.records
        self.cache_hits += other.cache_hits
        self.requests += other.requests
        self.retries += other.retries
        self.failed_requests.update(other.failed_requests)
        self.fallbacks.update(other.fallbacks)
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.seconds += other.seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "cache_hits": self.cache_hits,
            "requests": self.requests,
            "retries": self.retries,
            "failed_requests": dict(sorted(self.failed_requests.items())),
            "fallbacks": dict(sorted(self.fallbacks.items())),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaptioningReport:
        return cls(
            records=int(data.get("records", 0)),
            cache_hits=int(data.get("cache_hits", 0)),
            requests=int(data.get("requests", 0)),
            retries=int(data.get("retries", 0)),
            failed_requests=Counter(data.get("failed_requests", {})),
            fallbacks=Counter(data.get("fallbacks", {})),
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            completion_tokens=int(data.get("completion_tokens", 0)),
            seconds=float(data.get("seconds", 0.0)),
        )


# --- Captioner ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptionOutcome:
    """The captions of one record and the `caption_source` to write with them."""

    captions: Captions
    source: str


@dataclass
class _Request:
    """One distinct request: records with the same image and prompt share it."""

    key: str
    image_sha256: str
    body: bytes
    image_id: str


@dataclass
class _Attempts:
    """What the requests for one key gave: captions, or the last failure reason."""

    parsed: ParsedResponse | None = None
    reason: str = ""
    detail: str = ""
    requests: int = 0
    retries: int = 0
    failures: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class OpenAICaptioner(Captioner):
    """Captions records through an OpenAI-compatible chat-completions server, with a cache and a fallback."""

    def __init__(self, config: CaptionerConfig, cache: CaptionCache | None = None):
        config.validate()
        if config.kind != "openai":
            raise CaptionerError(f"captioner.kind is {config.kind!r}; OpenAICaptioner needs kind openai")
        self.config = config
        self.prompt = load_prompt(config.prompt_version)
        self.name = f"openai:{config.model}:prompt-{config.prompt_version}"
        self.fallback = TemplateCaptioner()
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.parameters = {"temperature": config.temperature, "seed": config.seed, "max_tokens": config.max_tokens}
        self._own_cache = cache is None
        self.cache = cache if cache is not None else CaptionCache(config.cache or default_cache_path())
        self._client = httpx2.Client(
            timeout=httpx2.Timeout(config.timeout),
            limits=httpx2.Limits(max_connections=config.max_concurrency, max_keepalive_connections=config.max_concurrency),
            headers=self._headers(),
        )
        self._warnings = 0
        self._lock = threading.Lock()
        logger.info(
            "captioning with %s at %s (at most %d requests at once, cache %s)",
            config.model, config.base_url, config.max_concurrency, self.cache.path,
        )

    def __enter__(self) -> OpenAICaptioner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()
        if self._own_cache:
            self.cache.close()

    def caption(self, record: Record, exhaustive: bool = False) -> Captions:
        """Return the captions of one record; see `caption_many` for the source of a fallback."""
        outcomes, _ = self.caption_many([(record, exhaustive)])
        return outcomes[0].captions

    def caption_many(
        self, items: Sequence[tuple[Record, bool]], progress: ProgressCallback | None = None
    ) -> tuple[list[CaptionOutcome], CaptioningReport]:
        """Caption (record, exhaustive) pairs; returns one outcome per pair, in order, and the run's report.

        Cached captions are used without a request. The others are requested with at most
        `max_concurrency` requests in flight and stored in the cache as they arrive, so an interrupted
        call loses no finished caption. `progress(n)` is called as records finish.
        """
        started = time.monotonic()
        report = CaptioningReport(records=len(items))
        requests = [self._prepare(record, exhaustive) for record, exhaustive in items]

        cached = self.cache.get_many([request.key for request in requests])
        report.cache_hits = sum(1 for request in requests if request.key in cached)
        if progress and report.cache_hits:
            progress(report.cache_hits)

        pending: dict[str, _Request] = {}
        for request in requests:
            if request.key not in cached:
                pending.setdefault(request.key, request)
        waiting = Counter(request.key for request in requests if request.key not in cached)
        attempts = self._run(list(pending.values()), cached, report, waiting, progress)

        outcomes = []
        for (record, exhaustive), request in zip(items, requests):
            entry = cached.get(request.key)
            if entry is not None:
                outcomes.append(CaptionOutcome(Captions(entry.short, entry.long), self.name))
                continue
            failed = attempts[request.key]
            report.fallbacks[failed.reason] += 1
            self._warn_fallback(record.image_id, failed)
            outcomes.append(CaptionOutcome(self.fallback.caption(record, exhaustive), self.fallback.name))

        report.seconds = time.monotonic() - started
        return outcomes, report

    def _prepare(self, record: Record, exhaustive: bool) -> _Request:
        rendered = self.prompt.render(record, exhaustive)
        image_sha256 = hashlib.sha256(record.image_bytes).hexdigest()
        key = cache_key(image_sha256, rendered.version, rendered.sha256(), self.config.model, self.parameters)
        return _Request(key, image_sha256, self._body(record, rendered), record.image_id)

    def _body(self, record: Record, rendered: RenderedPrompt) -> bytes:
        image_url = f"data:{image_mime_type(record.image_bytes)};base64,{base64.b64encode(record.image_bytes).decode('ascii')}"
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": rendered.system},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": rendered.user},
                        {"type": "image_url", "image_url": {"url": image_url}},
                    ],
                },
            ],
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        if self.config.seed is not None:
            body["seed"] = self.config.seed
        return json.dumps(body).encode("utf-8")

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        else:
            logger.info("environment variable %s is not set; sending requests without an API key", self.config.api_key_env)
        return headers

    def _run(self, requests: list[_Request], cached: dict, report: CaptioningReport, waiting: Counter, progress) -> dict[str, _Attempts]:
        """Send `requests` with bounded concurrency, store results in `cached` and the cache file."""
        failed: dict[str, _Attempts] = {}
        if not requests:
            return failed
        failed_in_a_row = 0
        limit = max(MAX_FAILED_IN_A_ROW, 4 * self.config.max_concurrency)
        queue = iter(requests)
        executor = ThreadPoolExecutor(max_workers=self.config.max_concurrency, thread_name_prefix="caption")
        running: dict[Future, _Request] = {}
        try:
            # Submitting at most max_concurrency at a time keeps an interrupted run from leaving a long queue.
            for request in queue:
                running[executor.submit(self._attempt_all, request)] = request
                if len(running) >= self.config.max_concurrency:
                    break
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    request = running.pop(future)
                    result = future.result()
                    report.requests += result.requests
                    report.retries += result.retries
                    report.failed_requests.update(result.failures)
                    report.prompt_tokens += result.prompt_tokens
                    report.completion_tokens += result.completion_tokens
                    if result.parsed is None:
                        failed[request.key] = result
                        failed_in_a_row += 1
                    else:
                        failed_in_a_row = 0
                        self._store(request, result.parsed, cached, report)
                    if progress:
                        progress(waiting[request.key])
                    if failed_in_a_row >= limit:
                        raise CaptionerError(
                            f"{failed_in_a_row} records in a row failed at {self.url} (last: {result.reason}: {result.detail}); "
                            "check that the server is running and serves the model, then run again: finished captions are cached"
                        )
                    next_request = next(queue, None)
                    if next_request is not None:
                        running[executor.submit(self._attempt_all, next_request)] = next_request
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
        return failed

    def _store(self, request: _Request, parsed: ParsedResponse, cached: dict, report: CaptioningReport) -> None:
        entry = CachedCaptions(parsed.captions.short, parsed.captions.long, parsed.prompt_tokens, parsed.completion_tokens)
        cached[request.key] = entry
        self.cache.put(request.key, entry, request.image_sha256, self.prompt.version, self.config.model, self.parameters)

    def _attempt_all(self, request: _Request) -> _Attempts:
        """Send one request with retries; runs in a pool thread and raises CaptionerError on fatal responses."""
        result = _Attempts()
        retry_after: float | None = None
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                result.retries += 1
                delay = backoff_seconds(attempt, self.config.retry_backoff, retry_after)
                logger.debug("retrying %s in %.2f s after %s: %s", request.image_id, delay, result.reason, result.detail)
                time.sleep(delay)
            result.requests += 1
            retry_after = None
            try:
                response = self._client.post(self.url, content=request.body)
            except httpx2.TimeoutException as error:
                self._fail(result, "timeout", f"no answer within {self.config.timeout} s ({type(error).__name__})")
                continue
            except httpx2.TransportError as error:
                self._fail(result, "connection_error", f"{type(error).__name__}: {error}")
                continue

            if response.status_code in FATAL_STATUS:
                raise CaptionerError(
                    f"{self.url} returned HTTP {response.status_code}: {FATAL_STATUS[response.status_code]} "
                    f"({_snippet(response.text)}); check captioner.base_url, captioner.model ({self.config.model}) "
                    f"and the key in ${self.config.api_key_env}"
                )
            if response.status_code == 429 or response.status_code >= 500:
                reason = "rate_limited" if response.status_code == 429 else "server_error"
                self._fail(result, reason, f"HTTP {response.status_code}: {_snippet(response.text)}")
                retry_after = _retry_after(response)
                continue
            if response.status_code != 200:
                # Other client errors (a 400 for an image the server cannot read, say) do not improve on retry.
                self._fail(result, "rejected", f"HTTP {response.status_code}: {_snippet(response.text)}")
                return result

            try:
                body = response.json()
            except json.JSONDecodeError as error:
                self._fail(result, "malformed_response", f"the body is not JSON ({error}): {_snippet(response.text)}")
                continue
            prompt_tokens, completion_tokens = reported_tokens(body)
            result.prompt_tokens += prompt_tokens
            result.completion_tokens += completion_tokens
            try:
                result.parsed = parse_completion(body)
            except InvalidResponse as error:
                self._fail(result, error.reason, error.detail)
                continue
            return result
        return result

    @staticmethod
    def _fail(result: _Attempts, reason: str, detail: str) -> None:
        result.reason = reason
        result.detail = detail
        result.failures[reason] += 1

    def _warn_fallback(self, image_id: str, failed: _Attempts) -> None:
        with self._lock:
            self._warnings += 1
            count = self._warnings
        level = logging.WARNING if count <= MAX_FALLBACK_WARNINGS else logging.DEBUG
        logger.log(level, "%s: using template captions after %d request(s) failed, last with %s: %s",
                   image_id, failed.requests, failed.reason, failed.detail)
        if count == MAX_FALLBACK_WARNINGS:
            logger.warning("further fallbacks are logged at DEBUG only; the report counts all of them")


def backoff_seconds(retry: int, base: float, retry_after: float | None = None) -> float:
    """Return the wait before the `retry`-th retry: base * 2**(retry-1), capped, with jitter."""
    delay = min(base * 2 ** (retry - 1), MAX_BACKOFF_SECONDS)
    delay *= 1 + random.uniform(-BACKOFF_JITTER, BACKOFF_JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_BACKOFF_SECONDS))
    return delay


def image_mime_type(data: bytes) -> str:
    """Return the MIME type of PNG, JPEG or WebP bytes (PNG when the bytes are none of those)."""
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _snippet(text: str, limit: int = 200) -> str:
    return re.sub(r"\s+", " ", text)[:limit]
