"""Prompt templates and class-text embeddings.

A template is a string with one `{}` where the class name goes. A class embedding is the mean of the
normalised embeddings of all its templates, normalised again (the usual CLIP zero-shot recipe).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

# Scene classification defaults (the SkyScript benchmark prompts).
SATELLITE_TEMPLATES = ("a satellite photo of {}.", "a satellite image of {}")

# The region prompt that stage-2 training uses for region crops.
REGION_TEMPLATES = ("a satellite image of {}",)

# The 80 ImageNet prompt templates published with OpenAI's CLIP; the segmentation protocol uses them.
OPENAI_IMAGENET_TEMPLATES = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "satellite": SATELLITE_TEMPLATES,
    "region": REGION_TEMPLATES,
    "openai": OPENAI_IMAGENET_TEMPLATES,
}


def check_templates(templates: Sequence[str], origin: str) -> list[str]:
    """Return `templates` as a list after checking that each has exactly one `{}` placeholder."""
    templates = list(templates)
    if not templates:
        raise ValueError(f"{origin} gives no prompt template; give at least one, e.g. 'a satellite image of {{}}'")
    for template in templates:
        if template.count("{}") != 1:
            raise ValueError(f"prompt template {template!r} from {origin} needs exactly one '{{}}' where the class name goes")
    return templates


def resolve_templates(spec: str | Sequence[str]) -> list[str]:
    """Return the templates named by `spec`: a set name (satellite, region, openai), a text file with
    one template per line, or a list of templates."""
    if not isinstance(spec, str):
        return check_templates(spec, "the template list")
    if spec in TEMPLATE_SETS:
        return list(TEMPLATE_SETS[spec])
    path = Path(spec)
    if path.is_file():
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        return check_templates([line for line in lines if line], str(path))
    raise ValueError(
        f"templates {spec!r} is neither a template set ({', '.join(TEMPLATE_SETS)}) nor an existing file; "
        "give a set name or a file with one template per line"
    )


def read_class_names(path: str | Path) -> list[list[str]]:
    """Read a class-name file: one class per line, synonyms separated by commas.

    Returns one list of names (synonyms) per class, in file order. Blank lines are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class-name file {path} not found; give a text file with one class per line")
    classes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        names = [name.strip() for name in line.split(",") if name.strip()]
        if names:
            classes.append(names)
    if not classes:
        raise ValueError(f"class-name file {path} lists no class; write one class per line")
    return classes


@torch.no_grad()
def text_embeddings(model, names: Sequence[str], templates: Sequence[str], device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Return (Q, D) normalised embeddings of `names`, each averaged over `templates`.

    Every template embedding is normalised before the mean, and the mean is normalised again.
    """
    texts = [template.format(name) for name in names for template in templates]
    chunks = []
    for start in range(0, len(texts), batch_size):
        tokens = model.tokenize(texts[start : start + batch_size]).to(device)
        chunks.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
    features = torch.cat(chunks).view(len(names), len(templates), -1)  # (Q, templates, D)
    return F.normalize(features.mean(dim=1), dim=-1)


def flatten_classes(classes: Sequence[Sequence[str]]) -> tuple[list[str], torch.Tensor]:
    """Return every name of every class (the queries) and the (Q,) class index of each query."""
    names = [name for synonyms in classes for name in synonyms]
    owner = torch.tensor([index for index, synonyms in enumerate(classes) for _ in synonyms], dtype=torch.long)
    return names, owner


def best_synonym(scores: torch.Tensor, query_class: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Reduce (..., Q) query scores to (..., C) class scores, keeping each class's best synonym."""
    query_class = query_class.to(scores.device)
    if scores.shape[-1] == num_classes and torch.equal(query_class, torch.arange(num_classes, device=scores.device)):
        return scores
    out = torch.full((*scores.shape[:-1], num_classes), -torch.inf, dtype=scores.dtype, device=scores.device)
    return out.scatter_reduce(-1, query_class.expand_as(scores), scores, reduce="amax")
