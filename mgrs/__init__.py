"""MGRS: build multi-granularity remote-sensing image/region-caption datasets."""

__version__ = "0.1.0"
