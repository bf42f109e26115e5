"""Types shared by the source adapters, and the registry of formats.

A source adapter works in two steps, so that planning stays cheap and the heavy work runs in workers:

1. `scan(root, split_filter)` pairs images with annotation files and yields one `SceneRef` per image,
   or a `Skip` for an input that cannot become a record (a label file without an image, say).
2. `load(ref)` parses the annotations of one scene and returns `SceneAnnotations`: the objects in
   raw-image pixels, metadata such as the ground sample distance, and a `Skip` for every annotation
   that could not be parsed.

Every input ends in a record or in a counted skip; adapters never raise for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

from shapely.geometry.base import BaseGeometry

ANNOTATION = "annotation"
IMAGE = "image"


@dataclass(frozen=True)
class Skip:
    """An input that did not become a record or a region, with the reason and the file."""

    reason: str
    file: str
    detail: str = ""
    unit: str = ANNOTATION


@dataclass
class SceneRef:
    """One raw image found by `scan`, with the files needed to load its annotations.

    Paths are relative to `root`, and `root` itself is never written into the data, so the same
    data read from two places gives the same records.
    """

    source: str
    native_id: str
    root: str
    image: str
    annotations: tuple[str, ...]
    split: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def image_path(self) -> Path:
        return Path(self.root) / self.image


@dataclass
class SourceObject:
    """One annotated object in raw-image pixels.

    `points` is the outline as written by the source (a quad for oriented boxes, four corners for
    horizontal boxes); `geometry` is used instead for outlines that come as shapely geometry, such as
    instance masks. `where` names the place in the file (a line number, an object index) for messages.
    """

    label: str
    points: list[tuple[float, float]] | None = None
    geometry: BaseGeometry | None = None
    oriented: bool = True
    difficult: int | None = None
    where: str = ""


@dataclass
class SceneAnnotations:
    """What `load` returns for one scene."""

    objects: list[SourceObject] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    gsd: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Whether every object of the labelled classes is annotated; captions only claim absences then.
    exhaustive: bool = False

    def add(self, parsed: SourceObject | Skip) -> None:
        """Append a parsed object to `objects`, or a skip to `skips`."""
        if isinstance(parsed, Skip):
            self.skips.append(parsed)
        else:
            self.objects.append(parsed)


def read_annotation_files(ref: SceneRef, kind: str, result: SceneAnnotations) -> Iterator[tuple[str, bytes]]:
    """Yield (file, bytes) for each annotation file of `ref`; an unreadable file becomes a skip in `result`.

    `kind` names the file in the skip message, such as "XML" or "label".
    """
    for file in ref.annotations:
        try:
            data = (Path(ref.root) / file).read_bytes()
        except OSError as error:
            result.skips.append(Skip("unreadable_annotation", file, f"cannot read the {kind} file: {error}"))
            continue
        yield file, data


class Source:
    """Base class of the source adapters; subclasses set the class attributes and both methods."""

    format: ClassVar[str]
    license: ClassVar[str]
    homepage: ClassVar[str]
    citation: ClassVar[str]
    # Re-encoding of tiles and converted images: "png" for lossless sources, "jpeg" for JPEG sources.
    encoding: ClassVar[str] = "png"

    # The versions `FORMAT@VERSION` accepts; None accepts any version string.
    versions: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, version: str | None = None):
        if version is not None and self.versions is not None and version not in self.versions:
            raise KeyError(
                f"unknown {self.format} version {version!r}; known versions: {', '.join(self.versions)}"
            )
        self.version = version

    @property
    def name(self) -> str:
        """The `source` value of records: the format, with the version when one is given."""
        return self.format if self.version is None else f"{self.format}-v{self.version}"

    def scan(self, root: Path) -> Iterator[SceneRef | Skip]:
        raise NotImplementedError

    def load(self, ref: SceneRef) -> SceneAnnotations:
        raise NotImplementedError


FORMATS: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    """Add a source adapter to `FORMATS` under its `format` name."""
    FORMATS[cls.format] = cls
    return cls


def get_source(format_name: str, version: str | None = None) -> Source:
    """Return an adapter for `format_name`, raising `KeyError` with the known names when unknown."""
    from mgrs import sources  # noqa: F401  (imports every adapter, which registers it)

    if format_name not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise KeyError(f"unknown source format {format_name!r}; known formats: {known}")
    return FORMATS[format_name](version)
