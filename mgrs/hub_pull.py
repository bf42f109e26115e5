"""`mgrs pull`: download a published dataset, or one subset, into a folder every mgrs command reads."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mgrs.hub import _api, _remote_text, check_repo_id, git_blob_sha, sha256_of
from mgrs.hub_card import configs_of
from mgrs.hub_errors import HubError, call, get_token

logger = logging.getLogger(__name__)


@dataclass
class PullResult:
    repo_id: str
    revision: str
    commit: str
    out: Path
    downloaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def pull(
    repo_id: str,
    out: str | Path,
    *,
    subset: str | None = None,
    revision: str | None = None,
    token: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> PullResult:
    """Download a published dataset (or one subset) into the folder `out`, which every mgrs command reads.

    Files already in `out` with the right content are kept; every download is checked against the
    SHA-256 the Hub reports before it is moved into place, and shards in `out/data` that the Hub no
    longer has are removed.
    """
    from huggingface_hub import HfFileSystem
    from huggingface_hub.hf_api import RepoFile

    say = progress or (lambda text: logger.info("%s", text))
    check_repo_id(repo_id)
    token = token or get_token()
    api = _api(token)
    revision = revision or "main"
    info = call("repository info", lambda: api.dataset_info(repo_id, revision=revision), repo_id, revision)
    commit = info.sha
    prefix = f"{subset}/" if subset else ""

    def listing() -> list[RepoFile]:
        return [
            entry for entry in api.list_repo_tree(repo_id, path_in_repo=subset, recursive=True, repo_type="dataset", revision=commit)
            if isinstance(entry, RepoFile)
        ]

    from huggingface_hub import errors

    try:
        files = call("list files", listing, repo_id, revision)
    except HubError as error:
        if subset is None or not isinstance(error.__cause__, errors.RemoteEntryNotFoundError):
            raise
        files = []
    if subset is not None and not any(f.path.startswith(f"{prefix}data/") for f in files):
        card = _remote_text(api, repo_id, "README.md", commit)
        known = ", ".join(configs_of(card)) or "none"
        raise HubError(f"subset {subset!r} not found in {repo_id} at {revision} (its configs: {known}).")
    files = [f for f in files if f.path != ".gitattributes"]

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = PullResult(repo_id=repo_id, revision=revision, commit=commit, out=out)
    fs = HfFileSystem(token=token)
    for number, entry in enumerate(files, 1):
        relative = entry.path[len(prefix):]
        local = out / relative
        expected = entry.lfs.sha256 if entry.lfs else entry.blob_id
        if local.is_file() and local.stat().st_size == entry.size and _local_id(local, bool(entry.lfs)) == expected:
            result.unchanged.append(relative)
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(local.name + ".part")

        def fetch(entry=entry, partial=partial) -> None:
            fs.get_file(f"datasets/{repo_id}@{commit}/{entry.path}", str(partial))

        call(f"download {entry.path}", fetch, repo_id, revision)
        if _local_id(partial, bool(entry.lfs)) != expected:
            partial.unlink(missing_ok=True)
            raise HubError(f"{entry.path} arrived damaged (its checksum differs from the Hub's); run the pull again.")
        os.replace(partial, local)
        result.downloaded.append(relative)
        say(f"downloaded {number} of {len(files)}: {relative}")

    wanted = {entry.path[len(prefix):] for entry in files}
    for stale in sorted((out / "data").glob("*.parquet")) if (out / "data").is_dir() else []:
        relative = f"data/{stale.name}"
        if relative not in wanted:
            stale.unlink()
            result.removed.append(relative)
    return result


def _local_id(path: Path, lfs: bool) -> str:
    return sha256_of(path) if lfs else git_blob_sha(path.read_bytes())
