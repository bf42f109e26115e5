"""Source adapters; importing this package registers every format in `base.FORMATS`."""

from mgrs.sources import dior, dota, isaid  # noqa: F401
from mgrs.sources import fair1m, hrsc2016, nwpu_vhr10, xview  # noqa: F401
from mgrs.sources import coco, voc, yolo  # noqa: F401
from mgrs.sources.base import FORMATS, SceneAnnotations, SceneRef, Skip, Source, SourceObject, get_source

__all__ = ["FORMATS", "SceneAnnotations", "SceneRef", "Skip", "Source", "SourceObject", "get_source"]
