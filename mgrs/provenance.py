"""Versions of the libraries that shape the output, for the build report and the dataset card."""

from __future__ import annotations

from importlib import metadata

LIBRARIES = ("datasets", "pyarrow", "pillow", "shapely", "numpy", "huggingface_hub")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
