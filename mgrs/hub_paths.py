"""`hf://datasets/OWNER/NAME[@REV][/SUBSET]` as a dataset folder for `validate`, `stats` and `preview`.

`dataset_path(text)` returns a `pathlib.Path` for a local folder, or a `HubPath` for a Hub dataset: a
small path object over huggingface_hub's `HfFileSystem` with the few `Path` methods those commands
use (`/`, `name`, `glob`, `is_dir`, `is_file`, `read_text`, `relative_to`, `open`). The revision is
resolved to a commit once, so one command reads one consistent snapshot. Files are opened as
random-access file objects that fetch byte ranges, so Parquet footers and single row groups are read
without downloading whole shards.
"""

from __future__ import annotations

from functools import total_ordering
from pathlib import Path, PurePosixPath
from typing import Any

from mgrs.hub import is_hf_path, parse_hf_path
from mgrs.hub_errors import call, get_token, hub_errors

# Bytes fetched per range request when reading a shard (a Parquet row group is read in a few requests).
BLOCK_SIZE = 8 * 1024 * 1024


@total_ordering
class HubPath:
    """A file or folder of a Hub dataset repository at one commit."""

    def __init__(self, fs: Any, path: str, repo_id: str = "", revision: str | None = None):
        self.fs = fs
        self.path = path.rstrip("/")
        self.repo_id = repo_id
        self.revision = revision

    def _child(self, path: str) -> "HubPath":
        return HubPath(self.fs, path, self.repo_id, self.revision)

    def __truediv__(self, name: str) -> "HubPath":
        return self._child(f"{self.path}/{name}")

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self.path).stem

    @property
    def parent(self) -> "HubPath":
        return self._child(str(PurePosixPath(self.path).parent))

    def is_dir(self) -> bool:
        with hub_errors(self.repo_id, self.revision):
            return self.fs.isdir(self.path)

    def is_file(self) -> bool:
        with hub_errors(self.repo_id, self.revision):
            return self.fs.isfile(self.path)

    def exists(self) -> bool:
        with hub_errors(self.repo_id, self.revision):
            return self.fs.exists(self.path)

    def glob(self, pattern: str) -> list["HubPath"]:
        with hub_errors(self.repo_id, self.revision):
            return [self._child(found) for found in sorted(self.fs.glob(f"{self.path}/{pattern}"))]

    def read_text(self, encoding: str = "utf-8") -> str:
        with hub_errors(self.repo_id, self.revision):
            return self.fs.read_text(self.path, encoding=encoding)

    def read_bytes(self) -> bytes:
        with hub_errors(self.repo_id, self.revision):
            return self.fs.cat_file(self.path)

    def open(self, mode: str = "rb") -> Any:
        with hub_errors(self.repo_id, self.revision):
            return self.fs.open(self.path, mode, block_size=BLOCK_SIZE)

    def relative_to(self, other: "HubPath") -> PurePosixPath:
        return PurePosixPath(self.path).relative_to(PurePosixPath(other.path))

    def __str__(self) -> str:
        return f"hf://{self.path}"

    def __repr__(self) -> str:
        return f"HubPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HubPath) and other.path == self.path

    def __lt__(self, other: "HubPath") -> bool:
        return self.path < other.path

    def __hash__(self) -> int:
        return hash(self.path)


def dataset_path(path: str | Path) -> Path | HubPath:
    """Return a local `Path`, or a `HubPath` at the commit that the revision of an hf:// path points to."""
    text = str(path)
    if not is_hf_path(text):
        return Path(path)
    from huggingface_hub import HfApi, HfFileSystem

    repo_id, revision, subpath = parse_hf_path(text)
    token = get_token()
    api = HfApi(token=token, library_name="mgrs")
    sha = call("repository info", lambda: api.dataset_info(repo_id, revision=revision).sha, repo_id, revision)
    fs = HfFileSystem(token=token)
    root = f"datasets/{repo_id}@{sha}" + (f"/{subpath}" if subpath else "")
    return HubPath(fs, root, repo_id, revision or "main")


def parquet_source(path: Path | HubPath) -> Any:
    """What pyarrow's Parquet readers take: the local path, or a ranged file object for a Hub file."""
    return path.open("rb") if isinstance(path, HubPath) else path


def register_filesystems(connection: Any, paths: list[Any]) -> None:
    """Let DuckDB read hf:// files through HfFileSystem (its httpfs extension is not needed)."""
    hub = [path for path in paths if isinstance(path, HubPath)]
    if hub:
        connection.register_filesystem(hub[0].fs)
