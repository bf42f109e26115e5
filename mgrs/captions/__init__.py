"""Captioners: the interface and the offline template captioner."""

from __future__ import annotations

from mgrs.captions.base import REGION_TEMPLATE, Captioner, Captions


def make_captioner(config) -> Captioner:
    """Return the captioner a recipe's `captioner:` section names."""
    if config.kind == "template":
        from mgrs.captions.template import TemplateCaptioner

        return TemplateCaptioner()
    if config.kind == "openai":
        from mgrs.captions.openai import OpenAICaptioner

        return OpenAICaptioner(config)
    raise ValueError(f"unknown captioner kind {config.kind!r}; use template or openai")


def runs_in_workers(config) -> bool:
    """Return whether conversion workers may run the captioner.

    Only the offline template captioner does. A server captioner runs once in the build's main process,
    so that its concurrency limit holds for the whole build and one process writes its cache.
    """
    return config.kind == "template"


def make_worker_captioner(config) -> Captioner:
    """Return the captioner of conversion workers: the configured one, or the template captioner whose
    captions a server captioner replaces (and falls back to) in the main process."""
    if runs_in_workers(config):
        return make_captioner(config)
    from mgrs.captions.template import TemplateCaptioner

    return TemplateCaptioner()


__all__ = ["REGION_TEMPLATE", "Captioner", "Captions", "make_captioner", "make_worker_captioner", "runs_in_workers"]
