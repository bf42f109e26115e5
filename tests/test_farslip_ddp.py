"""Two gloo processes under DDP give the losses, gradients and updates of one process on the global batch."""

import copy

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from farslip.model import ModelConfig, build_model
from farslip.objectives import ObjectiveConfig, Teacher, compute_losses

TINY = "FarSLIP-Tiny"
WORLD_SIZE = 2
GLOBAL_BATCH = 4
REGIONS = 3
VIEWS = 2
STEPS = 2
LEARNING_RATE = 0.5

SCENARIOS = {
    "stage2_multipositive_crop": ObjectiveConfig(region_loss="multipositive", region_embedding="crop_cls"),
    "stage2_infonce_roi": ObjectiveConfig(region_loss="infonce", region_embedding="roi"),
    "stage1_active_both": ObjectiveConfig(distill="both", w_distill=0.5),
}


def global_batch(model, scenario, step):
    """Return a seeded global batch whose categories repeat across the two ranks' halves."""
    generator = torch.Generator().manual_seed(100 * step + len(scenario))
    batch = {
        "image": torch.randn(GLOBAL_BATCH, 3, 64, 64, generator=generator),
        "caption_tokens": model.tokenize([f"scene {i} at step {step}" for i in range(GLOBAL_BATCH)]),
        "index": torch.arange(GLOBAL_BATCH),
    }
    if scenario.startswith("stage2"):
        labels = torch.tensor([[0, 1, -1], [2, 0, 1], [1, 1, 0], [2, -1, 0]])
        batch["region_images"] = torch.randn(GLOBAL_BATCH, REGIONS, 3, 64, 64, generator=generator)
        batch["region_tokens"] = model.tokenize([f"a satellite image of class {c}" for c in labels.flatten()]).reshape(
            GLOBAL_BATCH, REGIONS, -1
        )
        batch["region_labels"] = labels
        corner = torch.rand(GLOBAL_BATCH, REGIONS, 2, generator=generator) * 0.5
        batch["region_boxes"] = torch.cat([corner, corner + 0.4], dim=-1)
        batch["region_valid"] = torch.tensor(
            [[True, True, False], [True, True, True], [True, False, False], [True, True, True]]
        )
    else:
        corner = torch.rand(GLOBAL_BATCH, VIEWS, 2, generator=generator) * 0.4
        batch["local_images"] = torch.randn(GLOBAL_BATCH, VIEWS, 3, 64, 64, generator=generator)
        batch["local_boxes"] = torch.cat([corner, corner + 0.5], dim=-1)
        batch["local_valid"] = torch.tensor([[True, True], [True, False], [False, False], [True, True]])
    return batch


def local_part(batch, rank, world_size):
    size = GLOBAL_BATCH // world_size
    return {key: value[rank * size : (rank + 1) * size] for key, value in batch.items()}


def run_steps(scenario, rank, world_size):
    """Train a fresh seeded tiny model for STEPS SGD steps.

    Returns the loss terms of each step, the gradients of the first step and the final weights.
    """
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=TINY))
    cfg = SCENARIOS[scenario]
    teacher = Teacher(model, cfg.teacher, cfg.ema_momentum)
    wrapped = DistributedDataParallel(model) if world_size > 1 else model
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)

    history = []
    first_grads = None
    for step in range(STEPS):
        batch = local_part(global_batch(model, scenario, step), rank, world_size)
        optimizer.zero_grad()
        terms = compute_losses(wrapped, teacher, batch, cfg)
        terms["total"].backward()
        if first_grads is None:
            first_grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
        optimizer.step()
        teacher.update(model)
        history.append({name: value.detach().clone() for name, value in terms.items()})

    weights = {name: value.detach().clone() for name, value in model.state_dict().items()}
    return {"terms": history, "grads": first_grads, "weights": weights}


def worker(rank, world_size, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        results = {scenario: run_steps(scenario, rank, world_size) for scenario in SCENARIOS}
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(WORLD_SIZE, str(out_dir / "init"), str(out_dir)), nprocs=WORLD_SIZE, join=True)
    distributed = [torch.load(out_dir / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    single = {scenario: run_steps(scenario, 0, 1) for scenario in SCENARIOS}
    return single, distributed


def assert_tensors_close(got, expected, context):
    assert got.keys() == expected.keys(), context
    for name in expected:
        assert torch.allclose(got[name], expected[name], rtol=1e-4, atol=1e-6), f"{context}: {name}"


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_ddp_losses_equal_single_process(runs, scenario):
    single, distributed = runs
    for rank in range(WORLD_SIZE):
        for step in range(STEPS):
            assert_tensors_close(
                distributed[rank][scenario]["terms"][step], single[scenario]["terms"][step], f"rank {rank} step {step}"
            )


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_ddp_gradients_equal_single_process(runs, scenario):
    single, distributed = runs
    for rank in range(WORLD_SIZE):
        assert_tensors_close(distributed[rank][scenario]["grads"], single[scenario]["grads"], f"rank {rank} gradients")


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_ddp_weights_equal_single_process(runs, scenario):
    single, distributed = runs
    for rank in range(WORLD_SIZE):
        assert_tensors_close(distributed[rank][scenario]["weights"], single[scenario]["weights"], f"rank {rank} weights")


@pytest.mark.slow
def test_ddp_weights_moved(runs):
    # Guard against a vacuous comparison: training must change the weights.
    single, _ = runs
    torch.manual_seed(0)
    initial = copy.deepcopy(build_model(ModelConfig(name=TINY)).state_dict())
    final = single["stage2_multipositive_crop"]["weights"]
    assert not torch.allclose(final["clip.visual.proj"], initial["clip.visual.proj"])
