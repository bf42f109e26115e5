"""The caption cache: validated captions of a model captioner in a local DuckDB file.

An entry is keyed by the SHA-256 of the record's own image bytes (the tile, not the raw scene file),
the prompt version, the checksum of the rendered prompt (which carries the record's objects), the
model and the generation parameters. Each caption is committed as soon as it arrives, so a rerun
sends no request for it and an interrupted run resumes where it stopped. Responses that failed
validation are not stored and are requested again next time.

One DuckDB file can be open in one process at a time; concurrent builds need their own cache files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

logger = logging.getLogger(__name__)

CACHE_FILE_NAME = "captions.duckdb"
# Keys looked up in one query.
LOOKUP_BATCH = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS captions (
    key VARCHAR PRIMARY KEY,
    image_sha256 VARCHAR NOT NULL,
    prompt_version VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    parameters VARCHAR NOT NULL,
    short_caption VARCHAR NOT NULL,
    long_caption VARCHAR NOT NULL,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    created_at TIMESTAMP DEFAULT current_timestamp
)
"""


class CacheError(RuntimeError):
    """A cache file that cannot be opened; the message names the file and the fix."""


@dataclass(frozen=True)
class CachedCaptions:
    """One cache entry."""

    short: str
    long: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def default_cache_path() -> Path:
    """Return `mgrs/captions.duckdb` under $XDG_CACHE_HOME, or under ~/.cache when that is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mgrs" / CACHE_FILE_NAME


def cache_key(image_sha256: str, prompt_version: str, prompt_sha256: str, model: str, parameters: dict[str, Any]) -> str:
    """Return the key of one request: a SHA-256 over every input that changes the captions."""
    material = json.dumps(
        {
            "image_sha256": image_sha256,
            "prompt_version": prompt_version,
            "prompt_sha256": prompt_sha256,
            "model": model,
            "parameters": parameters,
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class CaptionCache:
    """A DuckDB table of captions by key. Use it from one thread; the captioner writes from its main thread."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connection = duckdb.connect(str(self.path))
        except duckdb.IOException as error:
            raise CacheError(
                f"cannot open the caption cache {self.path}: {error}. Another process may be using it; "
                "wait for it to finish or set captioner.cache (--cache) to another file"
            ) from error
        except duckdb.Error as error:
            raise CacheError(
                f"the caption cache {self.path} is not a readable DuckDB file ({error}); "
                "move it away or set captioner.cache (--cache) to another file"
            ) from error
        self._connection.execute(SCHEMA)

    def __enter__(self) -> CaptionCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._connection.close()

    def __len__(self) -> int:
        return int(self._connection.execute("SELECT count(*) FROM captions").fetchone()[0])

    def get_many(self, keys: list[str]) -> dict[str, CachedCaptions]:
        """Return the cached entries among `keys`."""
        found: dict[str, CachedCaptions] = {}
        unique = sorted(set(keys))
        for start in range(0, len(unique), LOOKUP_BATCH):
            batch = unique[start : start + LOOKUP_BATCH]
            rows = self._connection.execute(
                "SELECT key, short_caption, long_caption, prompt_tokens, completion_tokens "
                "FROM captions WHERE list_contains(?, key)",
                [batch],
            ).fetchall()
            for key, short, long, prompt_tokens, completion_tokens in rows:
                found[key] = CachedCaptions(short, long, prompt_tokens, completion_tokens)
        return found

    def put(
        self,
        key: str,
        entry: CachedCaptions,
        image_sha256: str,
        prompt_version: str,
        model: str,
        parameters: dict[str, Any],
    ) -> None:
        """Store one entry and commit it, replacing an entry with the same key."""
        self._connection.execute(
            "INSERT OR REPLACE INTO captions "
            "(key, image_sha256, prompt_version, model, parameters, short_caption, long_caption, prompt_tokens, completion_tokens) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                key,
                image_sha256,
                prompt_version,
                model,
                json.dumps(parameters, sort_keys=True),
                entry.short,
                entry.long,
                entry.prompt_tokens,
                entry.completion_tokens,
            ],
        )
