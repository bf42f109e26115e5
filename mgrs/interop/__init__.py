"""Interoperability with the released MGRS-200k dataset and the reference FarSLIP trainer's JSON layout.

The layout is a JSON list of items; see docs/interop.md for every field and `mgrs.interop.layout`
for the shared readers.
"""
