"""An in-process fake of the Hugging Face Hub's HTTP API, for tests.

It replaces only the remote service: `huggingface_hub` (and through it `datasets`, `HfFileSystem`,
DuckDB's registered filesystem and the trainer's fsspec reader) run their real code, and every HTTP
request they send goes through an `httpx2.MockTransport` to `FakeHub.handle` instead of the network.

`install(monkeypatch, hub)` plugs it in: it sets huggingface_hub's client factories, points the
endpoint constants that the libraries read at import time (`HF_ENDPOINT`) at `ENDPOINT`, turns Xet off
(`HF_HUB_DISABLE_XET`) so uploads take the plain LFS path, and puts the Hugging Face caches in a
temporary folder. Requests to any other host fail as they would without a network.

Endpoints: repo creation, repo info (optionally at a revision), branch creation, YAML validation,
pre-upload, LFS batch and upload, commit (NDJSON, with `create_pr`), tree listing, paths-info,
whoami, and file resolve (HEAD/GET with ETag, X-Repo-Commit and ranges). Tokens: `WRITE_TOKEN` may
write to the `OWNER` namespace, `READ_TOKEN` may only read; anything else is refused as invalid.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, unquote

import httpx2

ENDPOINT = "https://fake-hub.invalid"
HOST = "fake-hub.invalid"
OWNER = "mgrs-tester"
WRITE_TOKEN = "hf_fake_write_0123456789abcdef"
READ_TOKEN = "hf_fake_read_0123456789abcdef"
LFS_EXTENSIONS = (".parquet", ".arrow", ".bin", ".safetensors", ".png", ".jpg")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Blob:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def blob_id(self) -> str:
        return git_blob_sha(lfs_pointer(self.sha256, len(self.data)) if self.lfs else self.data)

    def entry(self, path: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "path": path, "size": len(self.data), "oid": self.blob_id}
        if self.lfs:
            pointer = lfs_pointer(self.sha256, len(self.data))
            entry["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": len(pointer)}
        return entry


@dataclass
class Commit:
    oid: str
    files: dict[str, Blob]
    message: str
    parent: str | None
    date: str = "2025-01-01T00:00:00.000Z"


@dataclass
class Repo:
    repo_id: str
    private: bool
    refs: dict[str, str] = field(default_factory=dict)  # branch or refs/pr/N -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)
    pull_requests: int = 0


@dataclass
class Fault:
    """Respond to matching requests with `status` (or raise a network error when status is None), `times` times."""

    method: str
    pattern: str
    status: int | None
    times: int
    headers: dict[str, str] = field(default_factory=dict)


class HubHTTPException(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.lfs_uploads: list[str] = []  # oids, in upload order
        self.commit_log: list[dict[str, Any]] = []  # {repo, revision, message, added, deleted}
        self.faults: list[Fault] = []
        self.yaml_validations = 0
        self.seen_authorization: list[str] = []
        self._lock = threading.RLock()
        self._counter = itertools.count(1)

    # ------------------------------------------------------------------ helpers for tests
    def fail(self, method: str, pattern: str, status: int | None, times: int = 1, headers: dict[str, str] | None = None) -> None:
        """Respond to the next `times` requests whose path matches `pattern` with `status` (None: network error)."""
        self.faults.append(Fault(method, pattern, status, times, headers or {}))

    def files(self, repo_id: str, revision: str = "main") -> dict[str, Blob]:
        repo = self.repos[repo_id]
        return dict(repo.commits[self._resolve(repo, revision)].files)

    def head(self, repo_id: str, revision: str = "main") -> str:
        return self._resolve(self.repos[repo_id], revision)

    # ------------------------------------------------------------------ transport entry point
    def handle(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.host != HOST:
            raise httpx2.ConnectError(f"fake hub: no network access to {request.url.host}", request=request)
        raw = request.url.raw_path.decode()
        path, _, query = raw.partition("?")
        segments = [unquote(part) for part in path.strip("/").split("/")]
        with self._lock:
            self.requests.append((request.method, path))
            self.seen_authorization.append(request.headers.get("authorization", ""))
            for fault in self.faults:
                if fault.times > 0 and fault.method == request.method and re.search(fault.pattern, path):
                    fault.times -= 1
                    if fault.status is None:
                        raise httpx2.ConnectError("fake hub: connection reset", request=request)
                    return httpx2.Response(fault.status, headers=fault.headers, json={"error": "injected fault"})
        try:
            with self._lock:
                return self._route(request, segments, parse_qs(query))
        except HubHTTPException as error:
            headers = dict(error.headers)
            if error.code:
                headers["X-Error-Code"] = error.code
            headers["X-Error-Message"] = error.message
            return httpx2.Response(error.status, headers=headers, json={"error": error.message})

    def _route(self, request: httpx2.Request, s: list[str], query: dict[str, list[str]]) -> httpx2.Response:
        method = request.method
        if s[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create_repo(request)
        if s[:2] == ["api", "whoami-v2"]:
            user = self._user(request)
            if user is None:
                raise HubHTTPException(401, "Invalid credentials in Authorization header")
            return httpx2.Response(200, json={"type": "user", "name": user, "auth": {"accessToken": {"role": self._role(request)}}})
        if s[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml(request)
        if s[:2] == ["api", "datasets"] and len(s) >= 4:
            repo_id = f"{s[2]}/{s[3]}"
            rest = s[4:]
            if not rest and method == "GET":
                return self._repo_info(request, repo_id, "main")
            action, args = rest[0], rest[1:]
            if action == "revision" and method == "GET":
                return self._repo_info(request, repo_id, "/".join(args))
            if action == "branch" and method == "POST":
                return self._create_branch(request, repo_id, "/".join(args))
            if action == "preupload" and method == "POST":
                return self._preupload(request, repo_id, "/".join(args))
            if action == "commit" and method == "POST":
                return self._commit(request, repo_id, "/".join(args), query)
            if action == "tree" and method == "GET":
                return self._tree(request, repo_id, args, query)
            if action == "paths-info" and method == "POST":
                return self._paths_info(request, repo_id, "/".join(args))
        if s[:1] == ["datasets"] and len(s) >= 3 and s[2].endswith(".git") and s[3:] == ["info", "lfs", "objects", "batch"]:
            return self._lfs_batch(request, f"{s[1]}/{s[2][:-4]}")
        if s[:1] == ["fake-lfs"] and method == "PUT":
            return self._lfs_put(request, s[1])
        if s[:1] == ["datasets"] and len(s) >= 6 and s[3] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve_file(request, f"{s[1]}/{s[2]}", s[4], "/".join(s[5:]))
        raise HubHTTPException(404, f"fake hub: no route for {method} /{'/'.join(s)}")

    # ------------------------------------------------------------------ auth
    def _token(self, request: httpx2.Request) -> str | None:
        value = request.headers.get("authorization", "")
        return value[len("Bearer "):] if value.startswith("Bearer ") else None

    def _user(self, request: httpx2.Request) -> str | None:
        return OWNER if self._token(request) in (WRITE_TOKEN, READ_TOKEN) else None

    def _role(self, request: httpx2.Request) -> str:
        return "write" if self._token(request) == WRITE_TOKEN else "read"

    def _check_token(self, request: httpx2.Request) -> None:
        token = self._token(request)
        if token is not None and token not in (WRITE_TOKEN, READ_TOKEN):
            raise HubHTTPException(401, "Invalid credentials in Authorization header")

    def _repo(self, request: httpx2.Request, repo_id: str, write: bool = False) -> Repo:
        self._check_token(request)
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and self._user(request) != repo_id.split("/")[0]):
            raise HubHTTPException(404, "Repository not found", "RepoNotFound")
        if write:
            if self._token(request) is None:
                raise HubHTTPException(401, "You must be authenticated to write", None)
            if self._role(request) != "write" or repo_id.split("/")[0] != OWNER:
                raise HubHTTPException(403, f"You don't have the rights to write to {repo_id}", None)
        return repo

    def _resolve(self, repo: Repo, revision: str) -> str:
        if revision in repo.refs:
            return repo.refs[revision]
        if revision in repo.commits:
            return revision
        raise HubHTTPException(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _new_oid(self) -> str:
        return hashlib.sha1(f"commit-{next(self._counter)}".encode()).hexdigest()

    # ------------------------------------------------------------------ endpoints
    def _create_repo(self, request: httpx2.Request) -> httpx2.Response:
        self._check_token(request)
        body = json.loads(request.content)
        namespace = body.get("organization") or OWNER
        repo_id = f"{namespace}/{body['name']}"
        if self._token(request) is None:
            raise HubHTTPException(401, "You must be authenticated to create a repo")
        if self._role(request) != "write" or namespace != OWNER:
            raise HubHTTPException(403, f"You don't have the rights to create a repo under {namespace}")
        if repo_id in self.repos:
            # The Hub responds with 409 and the repository's URL in the body.
            return httpx2.Response(409, headers={"X-Error-Message": "You already created this dataset repo"},
                                   json={"error": "You already created this dataset repo", "url": f"{ENDPOINT}/datasets/{repo_id}"})
        repo = Repo(repo_id=repo_id, private=bool(body.get("private")) or body.get("visibility") == "private")
        oid = self._new_oid()
        repo.commits[oid] = Commit(oid, {".gitattributes": Blob(GITATTRIBUTES, False)}, "initial commit", None)
        repo.refs["main"] = oid
        self.repos[repo_id] = repo
        return httpx2.Response(200, json={"url": f"{ENDPOINT}/datasets/{repo_id}", "name": repo_id})

    def _repo_info(self, request: httpx2.Request, repo_id: str, revision: str) -> httpx2.Response:
        repo = self._repo(request, repo_id)
        oid = self._resolve(repo, revision)
        files = repo.commits[oid].files
        return httpx2.Response(200, json={
            "id": repo_id, "_id": repo_id, "author": repo_id.split("/")[0], "sha": oid, "private": repo.private,
            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
            "lastModified": "2025-01-01T00:00:00.000Z", "createdAt": "2025-01-01T00:00:00.000Z",
            "siblings": [{"rfilename": name} for name in sorted(files)],
        })

    def _create_branch(self, request: httpx2.Request, repo_id: str, branch: str) -> httpx2.Response:
        repo = self._repo(request, repo_id, write=True)
        if branch in repo.refs:
            raise HubHTTPException(409, "Reference already exists")
        body = json.loads(request.content or b"{}")
        repo.refs[branch] = self._resolve(repo, body.get("startingPoint") or "main")
        return httpx2.Response(200, json={})

    def _validate_yaml(self, request: httpx2.Request) -> httpx2.Response:
        import yaml

        self.yaml_validations += 1
        content = json.loads(request.content)["content"]
        if content.startswith("---"):
            try:
                yaml.safe_load(content.split("---", 2)[1])
            except yaml.YAMLError as error:
                return httpx2.Response(400, json={"errors": [{"message": str(error)}]})
        return httpx2.Response(200, json={"errors": [], "warnings": []})

    def _preupload(self, request: httpx2.Request, repo_id: str, revision: str) -> httpx2.Response:
        repo = self._repo(request, repo_id, write=True)
        files = repo.commits[self._resolve(repo, revision)].files if revision in repo.refs else {}
        out = []
        for item in json.loads(request.content)["files"]:
            lfs = item["path"].endswith(LFS_EXTENSIONS) or item["size"] >= LFS_MIN_SIZE
            existing = files.get(item["path"])
            oid = None
            if existing is not None:
                oid = existing.sha256 if existing.lfs else git_blob_sha(existing.data)
            out.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return httpx2.Response(200, json={"files": out})

    def _lfs_batch(self, request: httpx2.Request, repo_id: str) -> httpx2.Response:
        self._repo(request, repo_id, write=True)
        body = json.loads(request.content)
        objects = []
        for obj in body["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{ENDPOINT}/fake-lfs/{obj['oid']}", "header": {}}}
            objects.append(entry)
        return httpx2.Response(200, json={"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_put(self, request: httpx2.Request, oid: str) -> httpx2.Response:
        data = request.content
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubHTTPException(400, "uploaded content does not match its oid")
        self.lfs_objects[oid] = data
        self.lfs_uploads.append(oid)
        return httpx2.Response(200)

    def _commit(self, request: httpx2.Request, repo_id: str, revision: str, query: dict[str, list[str]]) -> httpx2.Response:
        repo = self._repo(request, repo_id, write=True)
        lines = [json.loads(line) for line in request.content.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        create_pr = query.get("create_pr", ["0"])[0] in ("1", "true", "True")
        base = self._resolve(repo, revision)
        if header.get("parentCommit") and header["parentCommit"] != base:
            raise HubHTTPException(412, "A commit has happened since the parent commit")
        files = dict(repo.commits[base].files)
        added, deleted = [], []
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = Blob(base64.b64decode(value["content"]), False)
                added.append(value["path"])
            elif key == "lfsFile":
                if value["oid"] not in self.lfs_objects:
                    raise HubHTTPException(400, f"LFS object {value['oid']} was not uploaded")
                files[value["path"]] = Blob(self.lfs_objects[value["oid"]], True)
                added.append(value["path"])
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubHTTPException(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[value["path"]]
                deleted.append(value["path"])
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for name in [n for n in files if n.startswith(prefix)]:
                    del files[name]
                    deleted.append(name)
        oid = self._new_oid()
        repo.commits[oid] = Commit(oid, files, header["summary"], base)
        target = revision
        pr_url = None
        if create_pr:
            repo.pull_requests += 1
            target = f"refs/pr/{repo.pull_requests}"
            pr_url = f"{ENDPOINT}/datasets/{repo_id}/discussions/{repo.pull_requests}"
        elif revision not in repo.refs:
            raise HubHTTPException(400, f"Cannot commit to {revision}: not a branch")
        repo.refs[target] = oid
        self.commit_log.append({"repo": repo_id, "revision": target, "message": header["summary"], "added": added, "deleted": deleted})
        return httpx2.Response(200, json={
            "success": True, "commitOid": oid, "commitUrl": f"{ENDPOINT}/datasets/{repo_id}/commit/{oid}",
            "pullRequestUrl": pr_url,
        })

    def _entries(self, files: dict[str, Blob], prefix: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = prefix.strip("/")
        start = prefix + "/" if prefix else ""
        entries: dict[str, dict[str, Any]] = {}
        for name in sorted(files):
            if not name.startswith(start):
                continue
            rest = name[len(start):].split("/")
            for depth in range(1, len(rest)):
                folder = start + "/".join(rest[:depth])
                if recursive or depth == 1:
                    entries.setdefault(folder, {"type": "directory", "path": folder, "oid": git_blob_sha(folder.encode()), "size": 0})
                if not recursive:
                    break
            if recursive or len(rest) == 1:
                entries[name] = files[name].entry(name)
        return list(entries.values())

    def _last_commit(self, repo: Repo, oid: str, path: str) -> dict[str, Any]:
        """The commit that last changed `path` (walking back while the file stays the same)."""
        commit = repo.commits[oid]
        while commit.parent is not None and repo.commits[commit.parent].files.get(path) == commit.files.get(path):
            commit = repo.commits[commit.parent]
        return {"id": commit.oid, "title": commit.message, "date": commit.date}

    def _expand(self, repo: Repo, oid: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**entry, "lastCommit": self._last_commit(repo, oid, entry["path"])} for entry in entries]

    def _tree(self, request: httpx2.Request, repo_id: str, args: list[str], query: dict[str, list[str]]) -> httpx2.Response:
        repo = self._repo(request, repo_id)
        revision, path = args[0], "/".join(args[1:])
        oid = self._resolve(repo, revision)
        files = repo.commits[oid].files
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries = self._entries(files, path, recursive)
        if query.get("expand", ["false"])[0].lower() in ("1", "true"):
            entries = self._expand(repo, oid, entries)
        if path and not entries and path not in files:
            raise HubHTTPException(404, f"{path} does not exist", "EntryNotFound")
        return httpx2.Response(200, json=entries)

    def _paths_info(self, request: httpx2.Request, repo_id: str, revision: str) -> httpx2.Response:
        repo = self._repo(request, repo_id)
        oid = self._resolve(repo, revision)
        files = repo.commits[oid].files
        content_type = request.headers.get("content-type", "")
        if "json" in content_type:
            body = json.loads(request.content)
            paths, expand = body["paths"], bool(body.get("expand"))
        else:
            form = parse_qs(request.content.decode())
            paths, expand = form.get("paths", []), form.get("expand", ["False"])[0].lower() in ("1", "true")
        out = []
        for path in paths:
            path = path.strip("/")
            if path in files:
                out.append(files[path].entry(path))
            elif any(name.startswith(path + "/") for name in files):
                out.append({"type": "directory", "path": path, "oid": git_blob_sha(path.encode()), "size": 0})
        return httpx2.Response(200, json=self._expand(repo, oid, out) if expand else out)

    def _resolve_file(self, request: httpx2.Request, repo_id: str, revision: str, path: str) -> httpx2.Response:
        repo = self._repo(request, repo_id)
        oid = self._resolve(repo, revision)
        blob = repo.commits[oid].files.get(path)
        if blob is None:
            raise HubHTTPException(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": oid})
        etag = blob.sha256 if blob.lfs else blob.blob_id
        headers = {"ETag": f'"{etag}"', "X-Repo-Commit": oid, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if blob.lfs:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(len(blob.data))
        data = blob.data
        status = 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("range", ""))
        if match and (match[1] or match[2]):
            size = len(data)
            if match[1]:
                start, stop = int(match[1]), (int(match[2]) + 1 if match[2] else size)
            else:
                start, stop = max(0, size - int(match[2])), size
            stop = min(stop, size)
            if start >= size:
                return httpx2.Response(416, headers={"Content-Range": f"bytes */{size}"})
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
            data, status = data[start:stop], 206
        headers["Content-Length"] = str(len(data))
        if request.method == "HEAD":
            return httpx2.Response(status, headers=headers)
        return httpx2.Response(status, headers=headers, content=data)


def install(monkeypatch: Any, hub: FakeHub, cache_dir: Any) -> None:
    """Route huggingface_hub's HTTP clients to `hub` and point the libraries at `ENDPOINT`."""
    import datasets.config
    import huggingface_hub
    from huggingface_hub import constants, hf_api
    from huggingface_hub.hf_file_system import HfFileSystem
    from huggingface_hub.utils import _http

    monkeypatch.setenv("HF_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "ENDPOINT", ENDPOINT)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", ENDPOINT + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(cache_dir / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(cache_dir / "stored_tokens"))
    monkeypatch.setattr(hf_api.api, "endpoint", ENDPOINT)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", ENDPOINT)
    monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL", ENDPOINT + "/datasets/{repo_id}/resolve/{revision}/{path}")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache_dir / "datasets")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)

    def client() -> httpx2.Client:
        return httpx2.Client(
            transport=httpx2.MockTransport(hub.handle),
            event_hooks={"request": [_http.hf_request_event_hook]},
            follow_redirects=True,
            timeout=None,
        )

    def async_client() -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            transport=httpx2.MockTransport(hub.handle),
            event_hooks={"request": [_http.async_hf_request_event_hook]},
            follow_redirects=True,
            timeout=None,
        )

    HfFileSystem.clear_instance_cache()
    huggingface_hub.set_client_factory(client)
    huggingface_hub.set_async_client_factory(async_client)
    monkeypatch.setattr(_http, "_GLOBAL_CLIENT_FACTORY", client)
    monkeypatch.setattr(_http, "_GLOBAL_ASYNC_CLIENT_FACTORY", async_client)


def uninstall() -> None:
    import huggingface_hub
    from huggingface_hub.hf_file_system import HfFileSystem

    HfFileSystem.clear_instance_cache()
    huggingface_hub.close_session()


def matching(log: list[tuple[str, str]], method: str, pattern: str) -> list[str]:
    return [path for m, path in log if m == method and re.search(pattern, path)]


Predicate = Callable[[str], bool]
