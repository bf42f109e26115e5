"""Load a model to evaluate: a training run, a checkpoint, an exported or open_clip weights file, or a
plain open_clip architecture (random weights or a pretrained tag), all the same way.

The model spec is one string:

- a run folder (`RUN`, newest checkpoint under `RUN/checkpoints/`), a checkpoint folder holding
  `model.safetensors`, or a weights file (`.safetensors` or `.pt`);
- an open_clip architecture name, optionally with a pretrained tag: `ViT-B-16`, `ViT-B-16:openai`.

Files written by this project store their model configuration. Other files (exported weights,
open_clip checkpoints, released FarSLIP `.pt` files) need `arch`, which may carry the export
suffixes `-long248` (Long-CLIP) and `-quickgelu`, e.g. `ViT-B-16-long248-quickgelu`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

LONG_SUFFIX = "-long248"
QUICK_GELU_SUFFIX = "-quickgelu"


def resolve_device(device: str) -> torch.device:
    """Return the torch device for `auto` (CUDA when available, else CPU), `cpu`, `cuda` or `cuda:N`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"invalid --device {device!r}; use auto, cpu, cuda or cuda:N") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device} requested but CUDA is not available; use --device cpu")
    return resolved


def parse_arch(arch: str):
    """Return the ModelConfig of an architecture name with optional `-long248` / `-quickgelu` suffixes."""
    from farslip.model import ModelConfig

    name = arch
    long_clip = quick_gelu = False
    for _ in range(2):
        if name.endswith(QUICK_GELU_SUFFIX):
            name, quick_gelu = name[: -len(QUICK_GELU_SUFFIX)], True
        if name.endswith(LONG_SUFFIX):
            name, long_clip = name[: -len(LONG_SUFFIX)], True
    return ModelConfig(name=name, long_clip=long_clip, force_quick_gelu=quick_gelu)


def weights_file(spec: str) -> Path | None:
    """Return the weights file that a path spec names, or None when `spec` is not an existing path."""
    from farslip.checkpoint import latest_checkpoint

    path = Path(spec)
    if path.is_file():
        return path
    if not path.is_dir():
        return None
    if (path / "model.safetensors").is_file():
        return path / "model.safetensors"
    run = path.parent if path.name == "checkpoints" else path
    found = latest_checkpoint(run)
    if found is None:
        raise FileNotFoundError(
            f"no checkpoint found in {path}; give a run folder with checkpoints/step-NNNNNNNN/, a checkpoint "
            "folder with model.safetensors, or a weights file"
        )
    return found / "model.safetensors"


def load_model(spec: str, arch: str | None = None, device: str = "auto", dense: str | None = None):
    """Build the FarSLIPModel that `spec` names, in eval mode on `device`.

    Args:
        spec: a run folder, checkpoint folder, weights file, or `ARCH[:TAG]` (see the module docstring).
        arch: architecture of a weights file that stores no model configuration; it overrides the
            stored configuration when both exist.
        device: `auto`, `cpu`, `cuda` or `cuda:N`.
        dense: dense-token mode (`farslip` or `maskclip`); None keeps the stored or default one.
    """
    from farslip.model import build_model, read_model_config

    target = resolve_device(device)
    path = weights_file(spec)
    if path is not None:
        config = parse_arch(arch) if arch else read_model_config(path)
        if config is None:
            raise ValueError(
                f"{path} stores no model configuration; give its architecture with --arch, e.g. --arch ViT-B-16 "
                "(add -long248 for Long-CLIP weights and -quickgelu for QuickGELU weights)"
            )
        config = replace(config, pretrained=str(path))
    else:
        name, _, tag = spec.partition(":")
        try:
            config = replace(parse_arch(name), pretrained=tag or None)
        except ValueError as error:
            raise ValueError(
                f"model {spec!r} is neither an existing path nor an open_clip architecture: {error}"
            ) from error
        if not tag:
            logger.warning("model %s has random weights; add :TAG (e.g. %s:openai) for pretrained ones", name, name)
    if dense is not None:
        config = replace(config, dense=dense)

    model = build_model(config).to(target).eval()
    logger.info("evaluating %s on %s", spec, target)
    return model
