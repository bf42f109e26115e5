"""Each FarSLIP loss against a plain loop implementation, on values and gradients."""

import math

import pytest
import torch

from farslip.losses import DistillLoss, GlobalLoss, RegionLoss

SHAPES = [(1, 1, 8), (2, 3, 8), (4, 4, 16)]


def unit(vector):
    return vector / torch.sqrt(sum(vector[d] ** 2 for d in range(vector.shape[0])))


def dot(a, b):
    return sum(a[d] * b[d] for d in range(a.shape[0]))


def log_softmax_row(row):
    top = max(float(value.detach()) for value in row)
    total = sum(torch.exp(value - top) for value in row)
    return [value - top - torch.log(total) for value in row]


def loop_infonce(first, second, scale):
    """Symmetric InfoNCE of matched rows, one row at a time."""
    m = len(first)
    a = [unit(v) for v in first]
    b = [unit(v) for v in second]
    loss_ab = 0.0
    loss_ba = 0.0
    for i in range(m):
        loss_ab = loss_ab - log_softmax_row([scale * dot(a[i], b[j]) for j in range(m)])[i]
        loss_ba = loss_ba - log_softmax_row([scale * dot(b[i], a[j]) for j in range(m)])[i]
    return 0.5 * (loss_ab / m + loss_ba / m)


def loop_multipositive(regions, texts, labels, scale):
    """Multi-positive loss with P_ij = 1[c_i = c_j] / count_i, one row at a time."""
    m = len(regions)
    v = [unit(x) for x in regions]
    t = [unit(x) for x in texts]
    loss_vt = 0.0
    loss_tv = 0.0
    for i in range(m):
        count = sum(1 for j in range(m) if labels[j] == labels[i])
        row_vt = log_softmax_row([scale * dot(v[i], t[j]) for j in range(m)])
        row_tv = log_softmax_row([scale * dot(t[i], v[j]) for j in range(m)])
        for j in range(m):
            if labels[j] == labels[i]:
                loss_vt = loss_vt - row_vt[j] / count
                loss_tv = loss_tv - row_tv[j] / count
    return 0.5 * (loss_vt / m + loss_tv / m)


def loop_region(region_features, text_features, labels, valid, scale, kind):
    batch, regions, _ = region_features.shape
    kept_v, kept_t, kept_c = [], [], []
    for b in range(batch):
        for r in range(regions):
            if not valid[b, r]:
                continue
            if kind == "multipositive" and int(labels[b, r]) < 0:
                continue
            kept_v.append(region_features[b, r])
            kept_t.append(text_features[b, r])
            kept_c.append(int(labels[b, r]))
    if not kept_v:
        return None
    if kind == "infonce":
        return loop_infonce(kept_v, kept_t, scale)
    return loop_multipositive(kept_v, kept_t, kept_c, scale)


def loop_distill(student, targets, valid):
    losses = []
    for target in targets:
        total = 0.0
        count = 0
        for b in range(student.shape[0]):
            for k in range(student.shape[1]):
                if valid[b, k]:
                    total = total + dot(unit(student[b, k]), unit(target[b, k]))
                    count += 1
        losses.append(1.0 - total / count)
    return sum(losses) / len(losses)


def make_leaf(generator, *shape):
    return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_(True)


def gradients(loss, tensors):
    return torch.autograd.grad(loss, tensors, allow_unused=True)


def assert_close_with_grads(loss, reference, tensors):
    assert torch.allclose(loss, torch.as_tensor(reference, dtype=loss.dtype), atol=1e-10), (loss, reference)
    for got, expected in zip(gradients(loss, tensors), gradients(reference, tensors)):
        if expected is None:
            assert got is None or torch.count_nonzero(got) == 0
        else:
            assert torch.allclose(got, expected, atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
def test_global_loss_matches_loop(shape):
    generator = torch.Generator().manual_seed(0)
    batch, _, dim = shape
    images = make_leaf(generator, batch, dim)
    texts = make_leaf(generator, batch, dim)
    scale = torch.tensor(math.exp(1.5), dtype=torch.float64, requires_grad=True)

    loss = GlobalLoss()(images, texts, scale)["global_loss"]
    reference = loop_infonce(list(images), list(texts), scale)

    assert_close_with_grads(loss, reference, (images, texts, scale))


def random_region_batch(generator, shape, categories=3):
    batch, regions, dim = shape
    features = make_leaf(generator, batch, regions, dim)
    texts = make_leaf(generator, batch, regions, dim)
    labels = torch.randint(-1, categories, (batch, regions), generator=generator)
    valid = torch.rand(batch, regions, generator=generator) > 0.3
    valid[0, 0] = True
    labels[0, 0] = 0
    return features, texts, labels, valid


@pytest.mark.parametrize("kind", ["multipositive", "infonce"])
@pytest.mark.parametrize("shape", SHAPES)
def test_region_loss_matches_loop(kind, shape):
    generator = torch.Generator().manual_seed(1)
    features, texts, labels, valid = random_region_batch(generator, shape)
    scale = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)

    loss = RegionLoss(kind)(features, texts, labels, valid, scale)["region_loss"]
    reference = loop_region(features, texts, labels, valid, scale, kind)

    assert_close_with_grads(loss, reference, (features, texts, scale))


@pytest.mark.parametrize("kind", ["multipositive", "infonce"])
def test_region_loss_one_category(kind):
    generator = torch.Generator().manual_seed(2)
    features, texts, _, _ = random_region_batch(generator, (3, 2, 8))
    labels = torch.full((3, 2), 5)
    valid = torch.ones(3, 2, dtype=torch.bool)
    scale = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)

    loss = RegionLoss(kind)(features, texts, labels, valid, scale)["region_loss"]
    reference = loop_region(features, texts, labels, valid, scale, kind)

    assert_close_with_grads(loss, reference, (features, texts, scale))


def test_multipositive_one_category_is_uniform_target():
    # All regions share a category, so the target is uniform and the loss is log(M) minus the
    # mean scaled similarity when every row has the same logits.
    features = torch.ones(2, 2, 4, dtype=torch.float64)
    texts = torch.ones(2, 2, 4, dtype=torch.float64)
    labels = torch.zeros(2, 2, dtype=torch.long)
    valid = torch.ones(2, 2, dtype=torch.bool)

    loss = RegionLoss("multipositive")(features, texts, labels, valid, torch.tensor(3.0))["region_loss"]

    assert torch.allclose(loss, torch.tensor(math.log(4.0), dtype=torch.float64))


@pytest.mark.parametrize("kind", ["multipositive", "infonce"])
def test_region_loss_no_valid_region_is_zero(kind):
    generator = torch.Generator().manual_seed(3)
    features, texts, labels, _ = random_region_batch(generator, (2, 3, 8))
    valid = torch.zeros(2, 3, dtype=torch.bool)
    scale = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)

    loss = RegionLoss(kind)(features, texts, labels, valid, scale)["region_loss"]
    loss.backward()

    assert loss.item() == 0.0
    assert torch.equal(features.grad, torch.zeros_like(features))
    assert torch.equal(texts.grad, torch.zeros_like(texts))
    assert scale.grad == 0.0


def test_multipositive_only_caption_regions_is_zero():
    generator = torch.Generator().manual_seed(4)
    features, texts, _, _ = random_region_batch(generator, (2, 2, 8))
    labels = torch.full((2, 2), -1)
    valid = torch.ones(2, 2, dtype=torch.bool)

    loss = RegionLoss("multipositive")(features, texts, labels, valid, torch.tensor(5.0))["region_loss"]
    loss.backward()

    assert loss.item() == 0.0
    assert torch.isfinite(features.grad).all()


def test_infonce_keeps_caption_regions():
    generator = torch.Generator().manual_seed(5)
    features, texts, _, _ = random_region_batch(generator, (1, 3, 8))
    labels = torch.tensor([[-1, -1, 2]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    scale = torch.tensor(5.0, dtype=torch.float64)

    loss = RegionLoss("infonce")(features, texts, labels, valid, scale)["region_loss"]
    reference = loop_infonce(list(features[0]), list(texts[0]), scale)

    assert torch.allclose(loss, reference)


def test_region_loss_rejects_unknown_kind():
    with pytest.raises(ValueError, match="multipositive"):
        RegionLoss("triplet")


@pytest.mark.parametrize("target", ["roi2dense", "roi2cls", "both"])
@pytest.mark.parametrize("shape", SHAPES)
def test_distill_loss_matches_loop(target, shape):
    generator = torch.Generator().manual_seed(6)
    batch, views, dim = shape
    student = make_leaf(generator, batch, views, dim)
    teacher_dense = make_leaf(generator, batch, views, dim)
    teacher_cls = make_leaf(generator, batch, views, dim)
    valid = torch.rand(batch, views, generator=generator) > 0.3
    valid[0, 0] = True

    loss = DistillLoss(target)(student, valid, teacher_dense, teacher_cls)["distill_loss"]
    targets = {"roi2dense": [teacher_dense], "roi2cls": [teacher_cls], "both": [teacher_dense, teacher_cls]}[target]
    reference = loop_distill(student, targets, valid)

    assert_close_with_grads(loss, reference, (student, teacher_dense, teacher_cls))


def test_distill_loss_no_valid_box_is_zero():
    generator = torch.Generator().manual_seed(7)
    student = make_leaf(generator, 2, 3, 8)
    teacher = make_leaf(generator, 2, 3, 8)
    valid = torch.zeros(2, 3, dtype=torch.bool)

    loss = DistillLoss("both")(student, valid, teacher, teacher)["distill_loss"]
    loss.backward()

    assert loss.item() == 0.0
    assert torch.equal(student.grad, torch.zeros_like(student))


def test_distill_loss_zero_features_stay_finite():
    student = torch.zeros(1, 2, 4, dtype=torch.float64, requires_grad=True)
    teacher = torch.zeros(1, 2, 4, dtype=torch.float64)
    valid = torch.tensor([[True, False]])

    loss = DistillLoss("roi2dense")(student, valid, teacher)["distill_loss"]
    loss.backward()

    assert torch.isfinite(loss)
    assert torch.isfinite(student.grad).all()


def test_distill_loss_needs_its_target():
    student = torch.zeros(1, 1, 4)
    valid = torch.ones(1, 1, dtype=torch.bool)
    with pytest.raises(ValueError, match="teacher_cls"):
        DistillLoss("roi2cls")(student, valid, teacher_dense=student)
