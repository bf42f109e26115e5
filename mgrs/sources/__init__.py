"""Source adapters; importing this package registers every format in `base.FORMATS`."""

from mgrs.sources import dior, dota, isaid  # noqa: F401
from mgrs.sources.base import FORMATS, SceneAnnotations, SceneRef, Skip, Source, SourceObject, get_source

__all__ = ["FORMATS", "SceneAnnotations", "SceneRef", "Skip", "Source", "SourceObject", "get_source"]
