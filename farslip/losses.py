"""FarSLIP losses. Each is an nn.Module that returns a dict of named loss terms.

Shapes: B batch, R regions per image, K local boxes per image, D embedding. `scale` is the
exponentiated logit scale (a scalar tensor).

Features are gathered across ranks with `gather_with_grad`, so every rank computes the loss of the
whole global batch and the gradient does not depend on the world size.
"""

import logging

import torch
import torch.nn.functional as F
from torch import nn

from farslip.distributed import gather_with_grad

logger = logging.getLogger(__name__)

REGION_LOSSES = ("multipositive", "infonce")
DISTILL_TARGETS = ("roi2dense", "roi2cls", "both")


def soft_cross_entropy(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Return -mean_i sum_j target_ij log softmax(logits_i)_j for (M, M) target and logits."""
    return -(target * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def symmetric_infonce(first: torch.Tensor, second: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Return the symmetric InfoNCE of matched rows of normalised (M, D) features."""
    logits = scale * first @ second.T  # (M, M)
    labels = torch.arange(first.shape[0], device=first.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def zero_with_grad(*tensors: torch.Tensor) -> torch.Tensor:
    """Return a zero that depends on `tensors`, so backward runs and every parameter gets a gradient."""
    return sum(t.sum() * 0.0 for t in tensors)


class GlobalLoss(nn.Module):
    """Symmetric InfoNCE between image and caption embeddings of the global batch."""

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Compute `global_loss` from (B, D) image and (B, D) caption embeddings (unnormalised)."""
        images = F.normalize(gather_with_grad(image_features), dim=-1)
        texts = F.normalize(gather_with_grad(text_features), dim=-1)
        return {"global_loss": symmetric_infonce(images, texts, scale)}


class RegionLoss(nn.Module):
    """Region embeddings against region-text embeddings, multi-positive or InfoNCE.

    Multi-positive: target P_ij = 1[c_i = c_j] / sum_j 1[c_i = c_j] over the valid regions of the
    global batch with a category (label >= 0); loss = (CE(P, s V Tᵀ) + CE(P, s T Vᵀ)) / 2. Regions
    with label -1 (their own caption as text) are left out of this loss.
    InfoNCE: region i matches text i; padded regions are left out of both sides.
    Without any region that qualifies the loss is a zero that keeps the graph.
    """

    def __init__(self, kind: str = "multipositive"):
        super().__init__()
        if kind not in REGION_LOSSES:
            raise ValueError(f"invalid region loss {kind!r}; choose one of {', '.join(REGION_LOSSES)}")
        self.kind = kind

    def forward(
        self,
        region_features: torch.Tensor,
        text_features: torch.Tensor,
        labels: torch.Tensor,
        valid: torch.Tensor,
        scale: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Compute `region_loss` from (B, R, D) region and text embeddings, (B, R) labels and validity."""
        dim = region_features.shape[-1]
        regions = gather_with_grad(region_features.reshape(-1, dim))  # (B*R, D) over all ranks
        texts = gather_with_grad(text_features.reshape(-1, dim))
        labels = gather_with_grad(labels.reshape(-1))
        keep = gather_with_grad(valid.reshape(-1))
        if self.kind == "multipositive":
            keep = keep & (labels >= 0)

        if not bool(keep.any()):
            return {"region_loss": zero_with_grad(regions, texts, scale)}

        regions = F.normalize(regions[keep], dim=-1)  # (M, D)
        texts = F.normalize(texts[keep], dim=-1)
        if self.kind == "infonce":
            return {"region_loss": symmetric_infonce(regions, texts, scale)}

        kept_labels = labels[keep]
        same = (kept_labels[:, None] == kept_labels[None, :]).to(regions.dtype)  # (M, M)
        target = same / same.sum(dim=1, keepdim=True)
        logits = scale * regions @ texts.T  # (M, M)
        loss = 0.5 * (soft_cross_entropy(target, logits) + soft_cross_entropy(target, logits.T))
        return {"region_loss": loss}


class DistillLoss(nn.Module):
    """Patch-to-patch distillation: 1 - mean cosine between RoI-pooled student tokens and teacher crops.

    Targets: `roi2dense` the mean of the teacher's dense tokens of the crop, `roi2cls` the teacher's
    pooled embedding of the crop, `both` the average of the two losses. The mean runs over the
    valid boxes of the global batch.
    """

    def __init__(self, target: str = "roi2dense"):
        super().__init__()
        if target not in DISTILL_TARGETS:
            raise ValueError(f"invalid distillation target {target!r}; choose one of {', '.join(DISTILL_TARGETS)}")
        self.target = target

    def _one_minus_cosine(self, student: torch.Tensor, teacher: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        cosine = F.cosine_similarity(student, teacher, dim=-1, eps=1e-8)  # (B*K,)
        cosine = gather_with_grad(cosine)
        if not bool(keep.any()):
            return zero_with_grad(cosine)
        return 1.0 - cosine[keep].mean()

    def forward(
        self,
        student_roi: torch.Tensor,
        valid: torch.Tensor,
        teacher_dense: torch.Tensor | None = None,
        teacher_cls: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Compute `distill_loss`.

        Args:
            student_roi: (B, K, D) RoI-pooled student dense tokens of each box.
            valid: (B, K) bool, False for padded boxes.
            teacher_dense: (B, K, D) mean dense token of each crop (needed by roi2dense and both).
            teacher_cls: (B, K, D) pooled embedding of each crop (needed by roi2cls and both).
        """
        dim = student_roi.shape[-1]
        student = student_roi.reshape(-1, dim)  # (B*K, D)
        keep = gather_with_grad(valid.reshape(-1))

        terms = []
        if self.target in ("roi2dense", "both"):
            if teacher_dense is None:
                raise ValueError(f"distillation target {self.target} needs teacher_dense")
            terms.append(self._one_minus_cosine(student, teacher_dense.reshape(-1, dim), keep))
        if self.target in ("roi2cls", "both"):
            if teacher_cls is None:
                raise ValueError(f"distillation target {self.target} needs teacher_cls")
            terms.append(self._one_minus_cosine(student, teacher_cls.reshape(-1, dim), keep))
        return {"distill_loss": sum(terms) / len(terms)}
