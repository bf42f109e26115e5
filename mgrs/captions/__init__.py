"""Captioners: the interface and the offline template captioner."""

from mgrs.captions.base import REGION_TEMPLATE, Captioner, Captions

__all__ = ["REGION_TEMPLATE", "Captioner", "Captions"]
