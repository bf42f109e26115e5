"""Evaluation metrics as pure functions on tensors.

Shapes: M queries (images, regions or captions), C classes or candidates.

Ties are broken towards the lower index, the order that a stable sort and `torch.argmax` give. A
candidate therefore ranks ahead of the true one when its score is higher, or equal with a lower
index. A model that gives every candidate the same score then scores like always choosing the first
candidate, never perfectly.

Segmentation IoU is computed from totals over the whole dataset (not averaged per image). A class
whose union is empty (absent from the ground truth and never predicted) has IoU NaN and is left out
of the mean. A class absent from the ground truth but predicted somewhere has IoU 0 and counts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

logger = logging.getLogger(__name__)


def ranks_of(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Return the 0-based rank of each row's target among its candidates.

    Args:
        scores: (M, C) scores, higher is better.
        targets: (M,) index of the true candidate of each row.

    Returns:
        (M,) the number of candidates placed ahead of the target: higher score, or equal score and a
        lower index.
    """
    own = scores.gather(1, targets.view(-1, 1))  # (M, 1)
    index = torch.arange(scores.shape[1], device=scores.device).view(1, -1)  # (1, C)
    ahead = (scores > own) | ((scores == own) & (index < targets.view(-1, 1)))  # (M, C)
    return ahead.sum(dim=1)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Return the share of rows whose label ranks in the top k, for each k in `ks`.

    Args:
        scores: (M, C) class scores.
        labels: (M,) true class indices.

    A k larger than C counts every row as a hit. An empty input gives NaN.
    """
    if labels.numel() == 0:
        return {k: math.nan for k in ks}
    ranks = ranks_of(scores, labels)
    return {k: (ranks < k).float().mean().item() for k in ks}


def predictions(scores: torch.Tensor) -> torch.Tensor:
    """Return the (M,) top-1 class of each (M, C) row; a tie goes to the lowest class index."""
    best = scores.max(dim=1, keepdim=True).values
    index = torch.arange(scores.shape[1], device=scores.device).expand_as(scores)
    # argmax's tie rule is documented only for recent torch versions, so it is spelled out here.
    return torch.where(scores == best, index, scores.shape[1]).min(dim=1).values


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Return the (C, C) int64 confusion matrix: row = true class, column = predicted class.

    Entries of `labels` outside [0, C) (for example the ignore index 255) are left out. A prediction
    outside [0, C) for a valid label raises ValueError.
    """
    labels = labels.reshape(-1).long()
    predicted = predicted.reshape(-1).long()
    valid = (labels >= 0) & (labels < num_classes)
    labels = labels[valid]
    predicted = predicted[valid]
    if predicted.numel() and (predicted.min() < 0 or predicted.max() >= num_classes):
        raise ValueError(f"predicted classes must lie in [0, {num_classes}); got {predicted.min()}..{predicted.max()}")
    flat = labels * num_classes + predicted
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def per_class_accuracy(confusion: torch.Tensor) -> list[float]:
    """Return the recall of each class from a (C, C) confusion matrix; NaN for a class without samples."""
    totals = confusion.sum(dim=1).double()
    correct = confusion.diagonal().double()
    return [c / t if t > 0 else math.nan for c, t in zip(correct.tolist(), totals.tolist())]


def iou_from_confusion(confusion: torch.Tensor) -> list[float]:
    """Return the IoU of each class from a (C, C) pixel confusion matrix.

    IoU = TP / (TP + FP + FN). It is NaN when the class is neither in the ground truth nor predicted,
    and 0 when the class is predicted but absent from the ground truth.
    """
    confusion = confusion.double()
    intersection = confusion.diagonal()
    union = confusion.sum(dim=0) + confusion.sum(dim=1) - intersection
    return [i / u if u > 0 else math.nan for i, u in zip(intersection.tolist(), union.tolist())]


def nanmean(values: Sequence[float]) -> float:
    """Return the mean of the non-NaN values, or NaN when there are none."""
    kept = [value for value in values if not math.isnan(value)]
    return sum(kept) / len(kept) if kept else math.nan


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """Return the share of valid pixels predicted correctly, from a (C, C) confusion matrix."""
    total = confusion.sum().item()
    return confusion.diagonal().sum().item() / total if total else math.nan


def retrieval_recall(
    similarity: torch.Tensor, caption_image: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Return R@k in both directions for images that may each have several captions.

    Args:
        similarity: (I, T) image-caption similarity.
        caption_image: (T,) index of the image each caption describes.

    Image to text: a hit when any of the image's captions ranks in the top k of all T captions.
    Text to image: a hit when the caption's image ranks in the top k of all I images. `mean_recall`
    is the mean of the six values. An image without captions raises ValueError.
    """
    num_images, num_texts = similarity.shape
    caption_image = caption_image.to(similarity.device).long()
    counts = torch.bincount(caption_image, minlength=num_images)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()[:5]
        raise ValueError(f"images {missing} have no caption; every image needs at least one")

    # Image to text: rank each image's best positive (highest score, lowest index on ties). No other
    # positive is ahead of it, so its rank counts negatives only.
    rows = torch.arange(num_images, device=similarity.device)
    positive = caption_image.view(1, -1) == rows.view(-1, 1)  # (I, T)
    positive_scores = similarity.masked_fill(~positive, -math.inf)
    best = predictions(positive_scores)  # (I,)
    image_ranks = ranks_of(similarity, best)  # (I,)

    text_ranks = ranks_of(similarity.T, caption_image)  # (T,)

    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"image_to_text_R@{k}"] = (image_ranks < k).float().mean().item()
    for k in ks:
        metrics[f"text_to_image_R@{k}"] = (text_ranks < k).float().mean().item()
    metrics["mean_recall"] = sum(metrics.values()) / len(metrics)
    return metrics
