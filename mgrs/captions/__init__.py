"""Captioners: the interface and the offline template captioner."""

from __future__ import annotations

from mgrs.captions.base import REGION_TEMPLATE, Captioner, Captions


def make_captioner(config) -> Captioner:
    """Return the captioner a recipe's `captioner:` section names."""
    if config.kind == "template":
        from mgrs.captions.template import TemplateCaptioner

        return TemplateCaptioner()
    raise ValueError(f"unknown captioner kind {config.kind!r}; use template")


__all__ = ["REGION_TEMPLATE", "Captioner", "Captions", "make_captioner"]
