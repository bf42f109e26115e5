"""compute_losses on synthetic batches, region-embedding options and the distillation teacher."""

import copy

import pytest
import torch

from farslip.dense import roi_pool_dense
from farslip.losses import DistillLoss, GlobalLoss, RegionLoss
from farslip.model import ModelConfig, build_model
from farslip.objectives import ObjectiveConfig, Teacher, compute_losses

TINY = "FarSLIP-Tiny"
B, R, K, S = 2, 3, 2, 64


@pytest.fixture(scope="module")
def base_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(name=TINY))


@pytest.fixture()
def model(base_model):
    return copy.deepcopy(base_model)


def stage2_batch(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    categories = ["farmland", "harbor", "forest"]
    labels = torch.tensor([[0, 1, -1], [1, 2, 0]])
    region_texts = [f"a satellite image of {categories[max(int(c), 0)]}" for c in labels.flatten()]
    return {
        "image": torch.randn(B, 3, S, S, generator=generator),
        "caption_tokens": model.tokenize(["fields along a river", "a port with ships"]),
        "index": torch.arange(B),
        "region_images": torch.randn(B, R, 3, S, S, generator=generator),
        "region_tokens": model.tokenize(region_texts).reshape(B, R, -1),
        "region_labels": labels,
        "region_boxes": torch.tensor(
            [[[0.1, 0.1, 0.5, 0.5], [0.4, 0.2, 0.9, 0.7], [0.0, 0.0, 0.0, 0.0]],
             [[0.2, 0.3, 0.6, 0.9], [0.0, 0.5, 0.5, 1.0], [0.5, 0.0, 1.0, 0.4]]]
        ),
        "region_valid": torch.tensor([[True, True, False], [True, True, True]]),
    }


def stage1_batch(model, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(B, 3, S, S, generator=generator),
        "caption_tokens": model.tokenize(["fields along a river", "a port with ships"]),
        "index": torch.arange(B),
        "local_images": torch.randn(B, K, 3, S, S, generator=generator),
        "local_boxes": torch.tensor([[[0.0, 0.0, 0.6, 0.6], [0.3, 0.2, 1.0, 0.9]], [[0.1, 0.4, 0.7, 1.0], [0, 0, 0, 0]]]),
        "local_valid": torch.tensor([[True, True], [True, False]]),
    }


def manual_region_features(model, batch, option):
    if option == "crop_cls":
        return model.encode_image(batch["region_images"].reshape(-1, 3, S, S)).reshape(B, R, -1)
    if option == "crop_dense":
        _, dense = model.encode_image_dense(batch["region_images"].reshape(-1, 3, S, S))
        return dense.mean(dim=1).reshape(B, R, -1)
    _, dense = model.encode_image_dense(batch["image"])
    return roi_pool_dense(dense, model.grid_size, batch["region_boxes"])


@pytest.mark.parametrize("option", ["crop_cls", "crop_dense", "roi"])
@pytest.mark.parametrize("kind", ["multipositive", "infonce"])
def test_stage2_terms_match_manual(model, option, kind):
    batch = stage2_batch(model)
    cfg = ObjectiveConfig(region_embedding=option, region_loss=kind, w_region=0.5, w_global=2.0)

    terms = compute_losses(model, None, batch, cfg)

    with torch.no_grad():
        scale = model.logit_scale.exp()
        image = model.encode_image(batch["image"])
        caption = model.encode_text(batch["caption_tokens"])
        texts = model.encode_text(batch["region_tokens"].reshape(B * R, -1)).reshape(B, R, -1)
        regions = manual_region_features(model, batch, option)
        expected_global = GlobalLoss()(image, caption, scale)["global_loss"]
        expected_region = RegionLoss(kind)(regions, texts, batch["region_labels"], batch["region_valid"], scale)
    assert set(terms) == {"global_loss", "region_loss", "total"}
    assert torch.allclose(terms["global_loss"], expected_global, atol=1e-5)
    assert torch.allclose(terms["region_loss"], expected_region["region_loss"], atol=1e-5)
    assert torch.allclose(terms["total"], 2.0 * terms["global_loss"] + 0.5 * terms["region_loss"])


def test_stage2_no_valid_region(model):
    batch = stage2_batch(model)
    batch["region_valid"][:] = False
    terms = compute_losses(model, None, batch, ObjectiveConfig())
    terms["total"].backward()

    assert terms["region_loss"].item() == 0.0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("target", ["roi2dense", "roi2cls", "both"])
def test_stage1_active_distill_matches_manual(model, target):
    batch = stage1_batch(model)
    cfg = ObjectiveConfig(distill=target)
    teacher = Teacher(model, "active")

    terms = compute_losses(model, teacher, batch, cfg)

    with torch.no_grad():
        _, dense = model.encode_image_dense(batch["image"])
        roi = roi_pool_dense(dense, model.grid_size, batch["local_boxes"])
        crop_pooled, crop_dense = model.encode_image_dense(batch["local_images"].reshape(-1, 3, S, S))
        expected = DistillLoss(target)(
            roi, batch["local_valid"], crop_dense.mean(dim=1).reshape(B, K, -1), crop_pooled.reshape(B, K, -1)
        )["distill_loss"]
    assert set(terms) == {"global_loss", "distill_loss", "total"}
    assert torch.allclose(terms["distill_loss"], expected, atol=1e-5)
    assert torch.allclose(terms["total"], terms["global_loss"] + 0.1 * terms["distill_loss"])


def test_stage1_without_distill_weight(model):
    terms = compute_losses(model, None, stage1_batch(model), ObjectiveConfig(w_distill=0.0))
    assert set(terms) == {"global_loss", "total"}


def test_frozen_teacher_gets_no_gradient(model):
    teacher = Teacher(model, "frozen")
    terms = compute_losses(model, teacher, stage1_batch(model), ObjectiveConfig(teacher="frozen"))
    terms["total"].backward()

    assert all(p.grad is None for p in teacher.module.parameters())
    assert model.clip.visual.conv1.weight.grad is not None


def test_active_teacher_gradient_flows_through_crops(model):
    batch = stage1_batch(model)
    cfg = ObjectiveConfig(w_global=0.0)

    compute_losses(model, Teacher(model, "active"), batch, cfg)["total"].backward()
    active_grad = model.clip.visual.conv1.weight.grad.clone()
    model.zero_grad()
    compute_losses(model, Teacher(model, "frozen"), batch, cfg)["total"].backward()
    frozen_grad = model.clip.visual.conv1.weight.grad.clone()

    assert not torch.allclose(active_grad, frozen_grad)


def test_ema_teacher_update(model):
    teacher = Teacher(model, "ema", momentum=0.9)
    before = teacher.module.clip.visual.proj.detach().clone()
    with torch.no_grad():
        model.clip.visual.proj.add_(1.0)

    teacher.update(model)

    expected = 0.9 * before + 0.1 * model.clip.visual.proj.detach()
    assert torch.allclose(teacher.module.clip.visual.proj, expected)
    assert not teacher.module.clip.visual.proj.requires_grad


def test_frozen_teacher_update_keeps_weights(model):
    teacher = Teacher(model, "frozen")
    before = teacher.module.clip.visual.proj.detach().clone()
    with torch.no_grad():
        model.clip.visual.proj.add_(1.0)
    teacher.update(model)
    assert torch.equal(teacher.module.clip.visual.proj, before)


def test_teacher_state_dict_round_trip(model):
    teacher = Teacher(model, "ema", momentum=0.5)
    with torch.no_grad():
        model.clip.visual.proj.add_(1.0)
    teacher.update(model)
    state = {k: v.clone() for k, v in teacher.state_dict().items()}

    restored = Teacher(model, "ema", momentum=0.5)
    restored.load_state_dict(state)

    assert torch.equal(restored.module.clip.visual.proj, teacher.module.clip.visual.proj)
    assert Teacher(model, "active").state_dict() == {}


def test_local_views_need_teacher(model):
    with pytest.raises(ValueError, match="needs a Teacher"):
        compute_losses(model, None, stage1_batch(model), ObjectiveConfig())


def test_objective_config_rejects_invalid_values():
    with pytest.raises(ValueError, match="objective.region_embedding"):
        ObjectiveConfig(region_embedding="mask")
    with pytest.raises(ValueError, match="objective.teacher"):
        ObjectiveConfig(teacher="swa")
    with pytest.raises(ValueError, match="objective.ema_momentum"):
        ObjectiveConfig(ema_momentum=1.5)
    with pytest.raises(ValueError, match="objective.w_region"):
        ObjectiveConfig(w_region=-1.0)
