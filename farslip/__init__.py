"""FarSLIP: fine-tune open_clip models on MGRS shards with global, region and distillation objectives."""

__version__ = "0.1.0"
