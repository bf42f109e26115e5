"""The captioner interface: global captions for a record, and a text per region.

The build calls only this interface, so a model-based captioner can be added without touching it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mgrs.schema import Record

REGION_TEMPLATE = "a satellite image of {category}"


@dataclass
class Captions:
    """The global captions of one record."""

    short: str
    long: str


class Captioner:
    """Base class of captioners.

    `name` is written to `caption_source` and must change whenever the output for the same record
    can change (a new template version, another model).
    """

    name: str = "captioner"

    def caption(self, record: Record, exhaustive: bool = False) -> Captions:
        """Return the short and long caption of a record whose regions are final.

        `exhaustive` says whether the source labels every object of its classes, which is the only
        case where a caption may state that a category is absent.
        """
        raise NotImplementedError

    def region_caption(self, category: str) -> str:
        """Return the text of a region of `category`."""
        return REGION_TEMPLATE.format(category=category)
