"""Validation on a held-out split: image-caption retrieval and region classification.

Retrieval ranks the split's captions for each image (and images for each caption) by cosine
similarity; R@k is the share of queries whose own pair ranks in the top k. Region classification
encodes each region crop that carries a category prompt and picks the closest prompt among the
categories seen in the split; the prompts come from the batches' own region tokens, so no category
list is needed.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from typing import Any, ContextManager, Callable

import torch
import torch.nn.functional as F

from farslip.data import DataConfig, RecordStream, ViewSettings, make_loader

logger = logging.getLogger(__name__)

RECALL_AT = (1, 5, 10)


def validation_stream(data: DataConfig, settings: ViewSettings, split: str, path: str | None, seed: int) -> RecordStream:
    """Open the held-out split in file order (every row, last batch possibly short)."""
    cfg = replace(data, path=path or data.path, num_workers=min(data.num_workers, 2))
    return RecordStream(cfg, settings, seed=seed, split=split, ordered=True)


@torch.no_grad()
def evaluate(
    model: Any,
    stream: RecordStream,
    device: torch.device,
    autocast: Callable[[], ContextManager] = contextlib.nullcontext,
    max_batches: int | None = None,
) -> dict[str, float]:
    """Return retrieval R@1/5/10 in both directions and region accuracy on `stream`.

    `model` is the unwrapped FarSLIPModel; it is put in eval mode and restored afterwards.
    """
    was_training = model.training
    model.eval()
    images, captions, regions, labels, prompts = [], [], [], [], {}
    try:
        for n, batch in enumerate(make_loader(stream)):
            if max_batches is not None and n >= max_batches:
                break
            with autocast():
                images.append(model.encode_image(batch["image"].to(device)).float())
                captions.append(model.encode_text(batch["caption_tokens"].to(device)).float())
                if "region_valid" in batch:
                    keep = batch["region_valid"] & (batch["region_labels"] >= 0)  # (B, R)
                    if keep.any():
                        regions.append(model.encode_image(batch["region_images"][keep].to(device)).float())
                        labels.append(batch["region_labels"][keep])
                        for label, tokens in zip(batch["region_labels"][keep].tolist(), batch["region_tokens"][keep]):
                            prompts.setdefault(label, tokens)
    finally:
        model.train(was_training)

    metrics = retrieval_metrics(torch.cat(images), torch.cat(captions))
    if labels:
        classes = sorted(prompts)
        with autocast():
            prompt_features = model.encode_text(torch.stack([prompts[c] for c in classes]).to(device)).float()
        metrics.update(region_accuracy(torch.cat(regions), torch.cat(labels).to(device), prompt_features, classes))
    return metrics


def retrieval_metrics(image_features: torch.Tensor, text_features: torch.Tensor) -> dict[str, float]:
    """Return R@k for image->text and text->image; row i of both (n, D) inputs is a pair."""
    similarity = F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T  # (n, n)
    metrics = {"images": float(similarity.shape[0])}
    for name, scores in (("image_to_text", similarity), ("text_to_image", similarity.T)):
        own = scores.diagonal().unsqueeze(1)
        rank = (scores > own).sum(dim=1)  # (n,) how many candidates beat the true pair
        for k in RECALL_AT:
            metrics[f"{name}_R@{k}"] = (rank < k).float().mean().item()
    return metrics


def region_accuracy(features: torch.Tensor, labels: torch.Tensor, prompt_features: torch.Tensor, classes: list[int]) -> dict[str, float]:
    """Return the share of regions whose closest category prompt is their own category."""
    similarity = F.normalize(features, dim=-1) @ F.normalize(prompt_features, dim=-1).T  # (M, C)
    predicted = torch.tensor(classes, device=labels.device)[similarity.argmax(dim=1)]
    return {"region_accuracy": (predicted == labels).float().mean().item(), "regions": float(labels.numel()), "region_classes": float(len(classes))}
