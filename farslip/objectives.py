"""Turn a collated batch into the weighted FarSLIP loss terms, and the distillation teacher.

Shapes: B batch, R regions per image, K local views per image, S image side, L text tokens,
N patches, D embedding.

Every batch contains `image` (B, 3, S, S) and `caption_tokens` (B, L). Stage-2 batches add
`region_images` (B, R, 3, S, S), `region_tokens` (B, R, L), `region_labels` (B, R),
`region_boxes` (B, R, 4) and `region_valid` (B, R). Stage-1 batches add `local_images`
(B, K, 3, S, S), `local_boxes` (B, K, 4) and `local_valid` (B, K). Boxes are x1, y1, x2, y2 in
[0, 1] of `image`.
"""

import copy
import logging
from dataclasses import dataclass

import torch
from torch import nn

from farslip.dense import roi_pool_dense
from farslip.distributed import unwrap
from farslip.losses import DISTILL_TARGETS, REGION_LOSSES, DistillLoss, GlobalLoss, RegionLoss

logger = logging.getLogger(__name__)

REGION_EMBEDDINGS = ("crop_cls", "crop_dense", "roi")
TEACHER_MODES = ("active", "ema", "frozen")


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"invalid {option}={value!r}; choose one of {', '.join(choices)}")


@dataclass
class ObjectiveConfig:
    """Loss weights and the variants of the region and distillation objectives."""

    w_distill: float = 0.1
    w_region: float = 1.0
    w_global: float = 1.0
    region_embedding: str = "crop_cls"
    region_loss: str = "multipositive"
    distill: str = "roi2dense"
    teacher: str = "active"
    ema_momentum: float = 0.99

    def __post_init__(self) -> None:
        _check_choice("objective.region_embedding", self.region_embedding, REGION_EMBEDDINGS)
        _check_choice("objective.region_loss", self.region_loss, REGION_LOSSES)
        _check_choice("objective.distill", self.distill, DISTILL_TARGETS)
        _check_choice("objective.teacher", self.teacher, TEACHER_MODES)
        if not 0.0 <= self.ema_momentum <= 1.0:
            raise ValueError(f"invalid objective.ema_momentum={self.ema_momentum}; use a value in [0, 1]")
        for name in ("w_distill", "w_region", "w_global"):
            if getattr(self, name) < 0:
                raise ValueError(f"invalid objective.{name}={getattr(self, name)}; weights must be >= 0")


class Teacher:
    """Encoder of the distillation crops: the student itself, an EMA copy or a frozen copy.

    `active` uses the student with gradients; `ema` and `frozen` keep a copy without gradients.
    """

    def __init__(self, model: nn.Module, mode: str = "active", momentum: float = 0.99):
        _check_choice("objective.teacher", mode, TEACHER_MODES)
        self.mode = mode
        self.momentum = momentum
        model = unwrap(model)
        if mode == "active":
            self.module = model
            return
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.module.eval()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the EMA weights towards `model`: t = m t + (1 - m) s (no-op unless mode is `ema`)."""
        if self.mode != "ema":
            return
        student = unwrap(model).state_dict()
        for name, value in self.module.state_dict().items():
            if value.is_floating_point():
                value.lerp_(student[name].to(value.dtype), 1.0 - self.momentum)
            else:
                value.copy_(student[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Return the teacher weights (empty for `active`, which shares the student's)."""
        if self.mode == "active":
            return {}
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore weights saved by `state_dict`."""
        if self.mode != "active":
            self.module.load_state_dict(state)


def _flatten_views(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, *x.shape[2:])  # (B*R, ...) from (B, R, ...)


def _plan_forward(batch: dict, cfg: ObjectiveConfig, has_regions: bool, has_local: bool, active: bool):
    """Return the images, texts and dense names that the student encodes in its one forward call."""
    images = {"image": batch["image"]}
    texts = {"caption": batch["caption_tokens"]}
    dense = set()

    if has_regions:
        texts["region_text"] = _flatten_views(batch["region_tokens"])  # (B*R, L)
        if cfg.region_embedding == "roi":
            dense.add("image")
        else:
            images["region"] = _flatten_views(batch["region_images"])  # (B*R, 3, S, S)
            if cfg.region_embedding == "crop_dense":
                dense.add("region")

    if has_local:
        dense.add("image")
        if active:
            images["local"] = _flatten_views(batch["local_images"])  # (B*K, 3, S, S)
            if cfg.distill != "roi2cls":
                dense.add("local")
    return images, texts, dense


def _region_features(outputs: dict, batch: dict, cfg: ObjectiveConfig, grid_size) -> torch.Tensor:
    batch_size, regions = batch["region_valid"].shape
    if cfg.region_embedding == "roi":
        return roi_pool_dense(outputs["image_dense"], grid_size, batch["region_boxes"])
    if cfg.region_embedding == "crop_dense":
        features = outputs["region_dense"].mean(dim=1)  # (B*R, D)
    else:
        features = outputs["region"]
    return features.reshape(batch_size, regions, -1)  # (B, R, D)


def _teacher_crops(outputs: dict, batch: dict, teacher: Teacher, cfg: ObjectiveConfig):
    """Return the teacher's (B, K, D) mean dense token and pooled embedding of each crop (None if unused)."""
    batch_size, views = batch["local_valid"].shape
    need_dense = cfg.distill != "roi2cls"
    if teacher.mode == "active":
        pooled = outputs["local"]
        dense = outputs.get("local_dense")
    else:
        crops = _flatten_views(batch["local_images"])  # (B*K, 3, S, S)
        with torch.no_grad():
            encoded = teacher.module(images={"local": crops}, dense={"local"} if need_dense else ())
        pooled, dense = encoded["local"], encoded.get("local_dense")

    dense_mean = dense.mean(dim=1).reshape(batch_size, views, -1) if need_dense else None  # (B, K, D)
    return dense_mean, pooled.reshape(batch_size, views, -1)  # (B, K, D)


def compute_losses(model: nn.Module, teacher: Teacher | None, batch: dict, cfg: ObjectiveConfig) -> dict:
    """Compute the loss terms that apply to `batch` and their weighted sum `total`.

    `model` is the FarSLIPModel or its DDP wrapper. It is called once per batch, because DDP
    expects one forward pass before each backward pass.
    Returns `global_loss` always, `region_loss` when the batch has regions, `distill_loss` when it
    has local views and w_distill > 0, and `total`.
    """
    core = unwrap(model)
    has_regions = "region_valid" in batch
    has_local = "local_valid" in batch and cfg.w_distill > 0
    if has_local and teacher is None:
        raise ValueError("the batch has local views and w_distill > 0, so compute_losses needs a Teacher")
    active = has_local and teacher.mode == "active"

    images, texts, dense = _plan_forward(batch, cfg, has_regions, has_local, active)
    outputs = model(images=images, texts=texts, dense=dense)
    scale = outputs["logit_scale"].exp()

    terms = GlobalLoss()(outputs["image"], outputs["caption"], scale)
    weights = {"global_loss": cfg.w_global}

    if has_regions:
        region_texts = outputs["region_text"].reshape(*batch["region_valid"].shape, -1)  # (B, R, D)
        region_features = _region_features(outputs, batch, cfg, core.grid_size)
        terms.update(
            RegionLoss(cfg.region_loss)(
                region_features, region_texts, batch["region_labels"], batch["region_valid"], scale
            )
        )
        weights["region_loss"] = cfg.w_region

    if has_local:
        student_roi = roi_pool_dense(outputs["image_dense"], core.grid_size, batch["local_boxes"])  # (B, K, D)
        teacher_dense, teacher_cls = _teacher_crops(outputs, batch, teacher, cfg)
        terms.update(DistillLoss(cfg.distill)(student_roi, batch["local_valid"], teacher_dense, teacher_cls))
        weights["distill_loss"] = cfg.w_distill

    terms["total"] = sum(weights[name] * terms[name] for name in weights)
    return terms
