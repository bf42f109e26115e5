"""Publish MGRS dataset folders to the Hugging Face Hub and pull them back.

Repository layout: the default config lives at the root (`data/<split>-*.parquet`, `build-report.json`);
a subset NAME lives in `NAME/` (`NAME/data/...`, `NAME/build-report.json` and the folder's own card as
`NAME/README.md`, so the subset folder is itself a dataset folder). The root `README.md` lists one
config per subset with the exact files of each split (see `mgrs.hub_card`).

A push compares each local file's SHA-256 with the LFS object id the Hub reports (`paths-info`) and
uploads only what differs, shards first in several commits of at most `files_per_commit` files /
`bytes_per_commit` bytes, then the card, the build report and the deletion of shards that are no longer
part of the dataset in one last commit. Until that last commit the card still describes the previous
shards, which are all still there; a push that stops half-way resumes when run again (committed shards
are skipped, LFS objects uploaded but not committed are not sent again).
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mgrs.hub_card import DEFAULT_CONFIG, merge_card
from mgrs.hub_errors import HubError, call, get_token, hub_errors

logger = logging.getLogger(__name__)

REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
SUBSET = re.compile(r"^[A-Za-z0-9][\w.-]*$")
FILES_PER_COMMIT = 50
BYTES_PER_COMMIT = 10 * 1024**3
HASH_CHUNK = 8 * 1024 * 1024


@dataclass
class PushResult:
    repo_id: str
    config: str
    revision: str
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    commits: int = 0
    pr_url: str | None = None
    pr_revision: str | None = None
    commit: str | None = None


def check_repo_id(repo_id: str) -> str:
    if not REPO_ID.match(repo_id):
        raise HubError(f"{repo_id!r} is not a dataset name of the form OWNER/NAME.")
    return repo_id


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _api(token: str | None):
    from huggingface_hub import HfApi

    return HfApi(token=token, library_name="mgrs")


def _local_files(folder: Path, split: str | None) -> tuple[list[Path], list[Path]]:
    """Return the shards to push and the metadata files (card, report) of a dataset folder."""
    if not (folder / "data").is_dir():
        raise HubError(f"{folder} is not a dataset folder: it has no data/ folder. Pass the folder `mgrs build` wrote.")
    shards = sorted((folder / "data").glob(f"{split}-*.parquet" if split else "*.parquet"))
    if not shards:
        raise HubError(f"no shards {'of split ' + repr(split) + ' ' if split else ''}in {folder / 'data'}.")
    if not (folder / "README.md").is_file():
        raise HubError(f"{folder} has no dataset card README.md; rebuild it with `mgrs build`.")
    meta = [folder / name for name in ("README.md", "build-report.json") if (folder / name).is_file()]
    return shards, meta


def _remote_file_ids(api, repo_id: str, paths: list[str], revision: str) -> dict[str, str]:
    """Return path -> content id (LFS SHA-256, or git blob SHA-1 for plain files) of the paths present."""
    from huggingface_hub.hf_api import RepoFile

    found: dict[str, str] = {}
    for start in range(0, len(paths), 500):
        chunk = paths[start : start + 500]
        infos = call(
            "paths-info",
            lambda: api.get_paths_info(repo_id, chunk, repo_type="dataset", revision=revision),
            repo_id, revision,
        )
        for info in infos:
            if isinstance(info, RepoFile):
                found[info.path] = info.lfs.sha256 if info.lfs else info.blob_id
    return found


def _remote_tree(api, repo_id: str, folder: str, revision: str) -> list[str]:
    from huggingface_hub import errors
    from huggingface_hub.hf_api import RepoFile

    def listing() -> list[str]:
        try:
            return [
                entry.path
                for entry in api.list_repo_tree(repo_id, path_in_repo=folder, recursive=True, repo_type="dataset", revision=revision)
                if isinstance(entry, RepoFile)
            ]
        except errors.RemoteEntryNotFoundError:
            return []

    return call("list files", listing, repo_id, revision)


def _remote_text(api, repo_id: str, path: str, revision: str) -> str | None:
    from huggingface_hub import errors

    def read() -> str | None:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = api.hf_hub_download(repo_id, path, repo_type="dataset", revision=revision, local_dir=tmp)
            except errors.RemoteEntryNotFoundError:
                return None
            return Path(local).read_text(encoding="utf-8")

    return call(f"download {path}", read, repo_id, revision)


def push(
    folder: str | Path,
    repo_id: str,
    *,
    subset: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    private: bool = False,
    message: str | None = None,
    token: str | None = None,
    files_per_commit: int = FILES_PER_COMMIT,
    bytes_per_commit: int = BYTES_PER_COMMIT,
    progress: Callable[[str], None] | None = None,
) -> PushResult:
    """Publish the dataset folder `folder` to the dataset repository `repo_id` (as `subset` when given).

    `split` pushes the shards of one split only (the card keeps the config's other splits).
    `revision` is the branch to commit to (created from main when missing, or `refs/pr/N` to continue a
    pull request); `create_pr` opens a pull request against main instead of committing to it.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    say = progress or (lambda text: logger.info("%s", text))
    folder = Path(folder)
    check_repo_id(repo_id)
    if subset is not None and (not SUBSET.match(subset) or subset in (DEFAULT_CONFIG, "data")):
        raise HubError(f"subset name {subset!r} is not allowed: use letters, digits, '-', '_' or '.', and not 'default' or 'data'.")
    if create_pr and revision not in (None, "main"):
        raise HubError("--create-pr opens a pull request against main; leave out --revision (use --revision refs/pr/N to add to an open pull request).")
    shards, meta = _local_files(folder, split)
    token = token or get_token(required=True)
    api = _api(token)
    config = subset or DEFAULT_CONFIG
    prefix = f"{subset}/" if subset else ""

    call("create repository", lambda: api.create_repo(repo_id, repo_type="dataset", private=True if private else None, exist_ok=True), repo_id)
    base = revision or "main"
    if not base.startswith("refs/pr/") and base != "main":
        if not call("check branch", lambda: api.revision_exists(repo_id, base, repo_type="dataset"), repo_id, base):
            call("create branch", lambda: api.create_branch(repo_id, branch=base, repo_type="dataset", exist_ok=True), repo_id, base)
    result = PushResult(repo_id=repo_id, config=config, revision=base)

    # What the target revision holds now.
    shard_paths = {f"{prefix}data/{shard.name}": shard for shard in shards}
    remote_ids = _remote_file_ids(api, repo_id, sorted(shard_paths), base)
    remote_shards = [p for p in _remote_tree(api, repo_id, f"{prefix}data", base) if p.endswith(".parquet")]
    pattern = re.compile(rf"^{re.escape(prefix)}data/{re.escape(split) + '-' if split else ''}[^/]*\.parquet$")
    stale = sorted(p for p in remote_shards if pattern.match(p) and p not in shard_paths)

    changed: list[tuple[str, Path]] = []
    for path_in_repo, local in sorted(shard_paths.items()):
        if remote_ids.get(path_in_repo) == sha256_of(local):
            result.unchanged.append(path_in_repo)
        else:
            changed.append((path_in_repo, local))
    say(f"{len(changed)} of {len(shard_paths)} shards to upload ({len(result.unchanged)} unchanged on the Hub), {len(stale)} to remove")

    summary = message or f"Update {'subset ' + subset if subset else 'dataset'} with mgrs"
    target = base

    def commit(operations: list, title: str) -> None:
        nonlocal target
        first_pr = create_pr and result.pr_revision is None
        info = call(
            "commit",
            lambda: api.create_commit(
                repo_id, operations, commit_message=title, repo_type="dataset",
                revision=None if first_pr else target, create_pr=first_pr,
            ),
            repo_id, target,
        )
        result.commits += 1
        result.commit = info.oid
        if first_pr:
            result.pr_url = info.pr_url
            result.pr_revision = info.pr_revision or f"refs/pr/{info.pr_num}"
            target = result.pr_revision
            say(f"opened pull request {info.pr_url}; continue an interrupted push with --revision {target}")

    batches: list[list[tuple[str, Path]]] = []
    for path_in_repo, local in changed:
        size = local.stat().st_size
        if not batches or len(batches[-1]) >= files_per_commit or sum(p.stat().st_size for _, p in batches[-1]) + size > bytes_per_commit:
            batches.append([])
        batches[-1].append((path_in_repo, local))
    done = 0
    for number, batch in enumerate(batches, 1):
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(local)) for p, local in batch]
        title = summary if len(batches) == 1 else f"{summary} (shards, part {number} of {len(batches)})"
        commit(operations, title)
        done += len(batch)
        result.uploaded += [p for p, _ in batch]
        say(f"committed {done} of {len(changed)} shards")

    # Last commit: the card that describes exactly the shards now present, the report, stale shards removed.
    files_by_split: dict[str, list[str]] = {}
    for path_in_repo in shard_paths:
        files_by_split.setdefault(Path(path_in_repo).name.split("-")[0], []).append(path_in_repo)
    remote_card = _remote_text(api, repo_id, "README.md", target)
    local_card = (folder / "README.md").read_text(encoding="utf-8")
    card = merge_card(remote_card, local_card, config, prefix, files_by_split, repo_id, only_splits=split is not None)
    operations: list = [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8"))]
    for local in meta:
        if subset is None and local.name == "README.md":
            continue
        operations.append(CommitOperationAdd(path_in_repo=f"{prefix}{local.name}", path_or_fileobj=str(local)))
    operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
    meta_ids = _remote_file_ids(api, repo_id, [op.path_in_repo for op in operations if isinstance(op, CommitOperationAdd)], target)
    needed = [
        op for op in operations
        if not isinstance(op, CommitOperationAdd) or meta_ids.get(op.path_in_repo) != _content_id(op)
    ]
    if needed:
        commit(needed, summary if not batches else f"{summary} (card and build report)")
    result.deleted = stale
    if result.commits == 0:
        say("nothing changed: the Hub already holds this dataset")
    return result


def _content_id(operation) -> str:
    """Content id as the Hub reports it: SHA-256 for LFS files (shards), git blob SHA-1 for text files."""
    source = operation.path_or_fileobj
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if operation.path_in_repo.endswith(".parquet"):
        return hashlib.sha256(data).hexdigest()
    return git_blob_sha(data)


def parse_hf_path(path: str) -> tuple[str, str | None, str]:
    """Split `hf://datasets/OWNER/NAME[@REV][/SUBPATH]` into (repo_id, revision or None, subpath)."""
    match = re.match(r"^hf://datasets/([^/@]+/[^/@]+)(?:@([^/]+(?:/pr/\d+)?))?(?:/(.*))?$", path.rstrip("/"))
    if not match:
        raise HubError(f"{path!r} is not a Hub dataset path; write hf://datasets/OWNER/NAME[@REVISION][/SUBSET].")
    revision = match[2]
    if revision is not None:
        from urllib.parse import unquote

        revision = unquote(revision)
    return match[1], revision, match[3] or ""


def is_hf_path(path: Any) -> bool:
    return isinstance(path, str) and path.startswith("hf://")


# `pull` lives in mgrs.hub_pull (it uses the helpers above); imported last to re-export it from here.
from mgrs.hub_pull import PullResult, pull  # noqa: E402

__all__ = ["HubError", "PullResult", "PushResult", "hub_errors", "is_hf_path", "parse_hf_path", "pull", "push"]
