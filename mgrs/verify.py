"""Check a raw source download against its manifest in `manifests/sources/<name>.yaml`.

A manifest describes a source (name, version, homepage, licence, citation) and lists under `expect`
what a complete download contains. Each entry has:

- `what`: a short description used in messages;
- `glob`: a pattern relative to the source folder, or a list of patterns for layouts that differ
  between releases (their matches are counted together);
- `required` (default true): whether a download without any match is a problem;
- `count` (optional): the number of matching files in the full release, with `count_verified`
  saying whether that number was checked against a real download. A different count is a problem
  when the number is verified and a warning when it is not, because partial downloads (one split)
  are common;
- `sha256` (optional, single-file entries only): the expected checksum of the matching file.

Checksums of the published archives are listed under `checksums` only where they are known.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mgrs.imaging import sha256_file

logger = logging.getLogger(__name__)

DEFAULT_MANIFEST_DIR = Path(__file__).resolve().parents[1] / "manifests" / "sources"
ERROR = "error"
WARNING = "warning"


class ManifestError(ValueError):
    """A manifest that is missing or malformed."""


@dataclass
class Check:
    """The outcome of one `expect` entry."""

    what: str
    patterns: list[str]
    found: int
    expected: int | None = None
    status: str = "ok"  # ok, missing, count_differs, checksum_differs
    severity: str | None = None  # None when ok, else ERROR or WARNING
    message: str = ""


@dataclass
class VerifyResult:
    name: str
    path: Path
    manifest: dict[str, Any]
    checks: list[Check] = field(default_factory=list)

    @property
    def problems(self) -> list[Check]:
        return [check for check in self.checks if check.severity == ERROR]

    @property
    def warnings(self) -> list[Check]:
        return [check for check in self.checks if check.severity == WARNING]


def manifest_dir() -> Path:
    """Return the manifest folder: `MGRS_SOURCE_MANIFESTS`, or the repository's `manifests/sources`."""
    return Path(os.environ.get("MGRS_SOURCE_MANIFESTS") or DEFAULT_MANIFEST_DIR)


def available_manifests(folder: Path | None = None) -> list[str]:
    folder = folder or manifest_dir()
    return sorted(path.stem for path in folder.glob("*.yaml"))


def load_manifest(name: str, folder: Path | None = None) -> dict[str, Any]:
    """Load and check the manifest of source `name`; raise ManifestError naming the problem."""
    folder = folder or manifest_dir()
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_manifests(folder)) or "none"
        raise ManifestError(f"no manifest for source {name!r} in {folder}; known sources: {known}")
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict) or not isinstance(data.get("expect", []), list):
        raise ManifestError(f"{path}: expected a mapping with an `expect` list; fix the file")
    for index, entry in enumerate(data.get("expect", []), start=1):
        if not isinstance(entry, dict) or not entry.get("glob"):
            raise ManifestError(f"{path}: expect entry {index} has no `glob`; give a pattern relative to the source folder")
    return data


def _patterns(entry: dict[str, Any]) -> list[str]:
    value = entry["glob"]
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _matches(root: Path, patterns: list[str]) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        found.update(path for path in root.glob(pattern) if not path.name.startswith("."))
    return sorted(found)


def _check_entry(root: Path, entry: dict[str, Any]) -> Check:
    patterns = _patterns(entry)
    what = str(entry.get("what") or patterns[0])
    matches = _matches(root, patterns)
    expected = entry.get("count")
    check = Check(what=what, patterns=patterns, found=len(matches), expected=expected)
    shown = " or ".join(patterns)

    if not matches:
        if entry.get("required", True):
            check.status, check.severity = "missing", ERROR
            check.message = f"{what}: nothing matches {shown}"
        else:
            check.message = f"{what}: absent (optional)"
        return check

    if expected is not None and len(matches) != int(expected):
        verified = bool(entry.get("count_verified", False))
        check.status, check.severity = "count_differs", ERROR if verified else WARNING
        note = "" if verified else " (the expected count is not verified)"
        check.message = f"{what}: found {len(matches)}, the full release has {expected}{note}"
        return check

    digest = entry.get("sha256")
    if digest:
        if len(matches) != 1:
            check.status, check.severity = "checksum_differs", ERROR
            check.message = f"{what}: {len(matches)} files match {shown}, expected one to checksum"
            return check
        actual = sha256_file(matches[0])
        if actual != str(digest).lower():
            check.status, check.severity = "checksum_differs", ERROR
            check.message = f"{what}: {matches[0].relative_to(root)} has sha256 {actual}, expected {digest}"
            return check
    check.message = f"{what}: {len(matches)} found"
    return check


def verify_source(name: str, path: str | Path, folder: Path | None = None) -> VerifyResult:
    """Check the folder `path` against the manifest of source `name`.

    Raises ManifestError for an unknown or malformed manifest and FileNotFoundError for a missing folder.
    """
    manifest = load_manifest(name, folder)
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"source folder {root} does not exist; pass the folder the {name} download was unpacked to")
    result = VerifyResult(name=name, path=root, manifest=manifest)
    for entry in manifest.get("expect", []):
        result.checks.append(_check_entry(root, entry))
    logger.info("%s: %d checks, %d problems, %d warnings", root, len(result.checks), len(result.problems), len(result.warnings))
    return result
