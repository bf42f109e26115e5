"""Check a raw source download against its manifest in `manifests/sources/<name>.yaml`.

The check has two parts:

1. When the manifest names a registered `format`, that adapter's `scan` reads the folder as
   `mgrs build` does while planning (file names only, no image is decoded). A layout the adapter
   rejects, or one in which it finds no image, is a problem. Otherwise the images per split, the
   annotation files and the inputs skipped while pairing files are reported.
2. A manifest lists under `expect` what a complete download contains. Each entry has:

   - `what`: a short description used in messages;
   - `glob`: a pattern relative to the source folder, or a list of patterns for layouts that differ
     between releases (their matches are counted together);
   - `split` (optional): the split name, or list of names, the adapter gives the entry's files;
   - `required` (default true): whether a download without any match is a problem;
   - `count` (optional): the number of matching files in the full release, with `count_verified`
     saying whether that number was checked against a real download;
   - `sha256` (optional, single-file entries only): the expected checksum of the matching file.

When the adapter accepted the layout and found images, a missing entry or an unverified count is
only a warning, because partial downloads (one split) and other layouts the adapter reads are
common. A verified count that differs is a problem unless the entry's split is absent, and a
checksum that differs is always a problem. Without an accepted layout (or without a `format`),
a missing required entry and a verified count that differs are problems.

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
from mgrs.sources.base import SceneRef, Skip

logger = logging.getLogger(__name__)

DEFAULT_MANIFEST_DIR = Path(__file__).resolve().parents[1] / "manifests" / "sources"
ERROR = "error"
WARNING = "warning"


class ManifestError(ValueError):
    """A manifest that is missing or malformed."""


@dataclass
class LayoutSummary:
    """The images, annotation files and skips that a format's adapter finds while pairing files, before any image is decoded."""

    format: str
    images_by_split: dict[str, int] = field(default_factory=dict)
    annotation_files: int = 0
    images_without_annotations: int = 0
    # Skips of the scan as {unit: {reason: count}}, as `planned.skipped` of the build report counts them.
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    # The adapter's error message when it rejects the layout.
    rejected: str | None = None

    @property
    def images(self) -> int:
        return sum(self.images_by_split.values())


@dataclass
class Check:
    """The outcome of one `expect` entry."""

    what: str
    patterns: list[str]
    found: int
    expected: int | None = None
    status: str = "ok"  # ok, missing, count_differs, checksum_differs, layout_rejected, no_images, scan_skips
    severity: str | None = None  # None when ok, else ERROR or WARNING
    message: str = ""


@dataclass
class VerifyResult:
    name: str
    path: Path
    manifest: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    # What the format's adapter found; None when the manifest names no registered format.
    layout: LayoutSummary | None = None

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


def _entry_splits(entry: dict[str, Any]) -> list[str]:
    value = entry.get("split")
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _matches(root: Path, patterns: list[str]) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        found.update(path for path in root.glob(pattern) if not path.name.startswith("."))
    return sorted(found)


def scan_layout(format_name: str, root: Path) -> LayoutSummary:
    """Run the `scan` of the adapter of `format_name` on `root`, as the build's planning does, and count what it finds.

    An adapter raises FileNotFoundError or ValueError for a layout it cannot read; the message is kept
    in `rejected` instead of being raised.
    """
    from mgrs.sources import get_source

    summary = LayoutSummary(format=format_name)
    source = get_source(format_name)
    try:
        for item in source.scan(root):
            if isinstance(item, Skip):
                by_reason = summary.skipped.setdefault(item.unit, {})
                by_reason[item.reason] = by_reason.get(item.reason, 0) + 1
                continue
            _count_scene(summary, item)
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:
        summary.rejected = str(error)
    return summary


def _count_scene(summary: LayoutSummary, ref: SceneRef) -> None:
    summary.images_by_split[ref.split] = summary.images_by_split.get(ref.split, 0) + 1
    summary.annotation_files += len(ref.annotations)
    if not ref.annotations:
        summary.images_without_annotations += 1


def _layout_checks(summary: LayoutSummary) -> list[Check]:
    """Turn the adapter's findings into checks: a rejected layout or no image is a problem, skips a warning."""
    what = f"layout read by the {summary.format} adapter"
    check = Check(what=what, patterns=[], found=summary.images)
    if summary.rejected is not None:
        check.status, check.severity = "layout_rejected", ERROR
        check.message = f"{what}: rejected: {summary.rejected}"
        return [check]
    if summary.images == 0:
        check.status, check.severity = "no_images", ERROR
        check.message = f"{what}: no image found; pass the folder the {summary.format} download was unpacked to"
        return [check]

    splits = ", ".join(f"{split} {count}" for split, count in sorted(summary.images_by_split.items()))
    check.message = (
        f"{what}: {summary.images} images (by split: {splits}), {summary.annotation_files} annotation files, "
        f"{summary.images_without_annotations} images without annotation files"
    )
    checks = [check]

    skipped = {unit: counts for unit, counts in summary.skipped.items() if counts}
    if skipped:
        total = sum(sum(counts.values()) for counts in skipped.values())
        listed = "; ".join(
            f"{unit}: " + ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items()))
            for unit, counts in sorted(skipped.items())
        )
        message = f"inputs skipped while pairing files: {total} ({listed}); the build report lists them under planned.skipped"
        checks.append(Check(what="inputs skipped while pairing files", patterns=[], found=total, status="scan_skips", severity=WARNING, message=message))
    return checks


def _check_entry(root: Path, entry: dict[str, Any], layout: LayoutSummary | None) -> Check:
    patterns = _patterns(entry)
    what = str(entry.get("what") or patterns[0])
    matches = _matches(root, patterns)
    expected = entry.get("count")
    check = Check(what=what, patterns=patterns, found=len(matches), expected=expected)
    shown = " or ".join(patterns)

    # The adapter is the authority on the layout: once it has read images here, a missing entry is
    # a partial download or another layout that the adapter also reads.
    accepted = layout is not None and layout.rejected is None and layout.images > 0
    splits = _entry_splits(entry)
    split_absent = accepted and bool(splits) and not any(split in layout.images_by_split for split in splits)
    if split_absent:
        note = f" (the {' / '.join(splits)} split is absent, as in a partial download)"
    elif accepted:
        note = f" (the {layout.format} adapter reads this folder without it)"
    else:
        note = ""

    if not matches:
        if not entry.get("required", True):
            check.message = f"{what}: absent (optional)"
            return check
        check.status, check.severity = "missing", WARNING if accepted else ERROR
        check.message = f"{what}: nothing matches {shown}{note}"
        return check

    if expected is not None and len(matches) != int(expected):
        verified = bool(entry.get("count_verified", False))
        check.status, check.severity = "count_differs", ERROR if verified and not split_absent else WARNING
        if not verified:
            note = " (the expected count is not verified)"
        elif not split_absent:
            note = ""
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
    """Check the folder `path` with the adapter of the manifest's format and against the manifest of source `name`.

    Raises ManifestError for an unknown or malformed manifest and FileNotFoundError for a missing folder.
    """
    from mgrs.sources import FORMATS

    manifest = load_manifest(name, folder)
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"source folder {root} does not exist; pass the folder the {name} download was unpacked to")
    result = VerifyResult(name=name, path=root, manifest=manifest)

    format_name = manifest.get("format")
    if format_name in FORMATS:
        result.layout = scan_layout(format_name, root)
        result.checks.extend(_layout_checks(result.layout))
    elif format_name is not None:
        logger.warning("%s: format %r is not a registered source format, so only the expected files are checked", name, format_name)

    for entry in manifest.get("expect", []):
        result.checks.append(_check_entry(root, entry, result.layout))
    logger.info("%s: %d checks, %d problems, %d warnings", root, len(result.checks), len(result.problems), len(result.warnings))
    return result
