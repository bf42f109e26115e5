"""Rank information and a feature gather whose gradient keeps the loss independent of the world size.

Every rank computes the loss of the whole global batch from gathered features. The backward pass of
`gather_with_grad` sums the incoming gradients over ranks before it keeps the local slice, so each
rank's local features receive world_size times the gradient of that loss. DDP then averages the
parameter gradients over ranks, which cancels the factor: the update equals the single-process
update on the same global batch.
"""

import logging
import os
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)


class WorldInfo(NamedTuple):
    """Position of this process in the job."""

    rank: int
    world_size: int
    local_rank: int


def is_distributed() -> bool:
    """Return True when a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_info() -> WorldInfo:
    """Return rank, world size and local rank; (0, 1, 0) without a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return WorldInfo(0, 1, 0)
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return WorldInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def is_main() -> bool:
    """Return True on rank 0 (and in a single process)."""
    return world_info().rank == 0


def unwrap(model: nn.Module) -> nn.Module:
    """Return the module inside a DistributedDataParallel (or DataParallel) wrapper."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 (sizes may differ per rank) with a summing backward."""

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        world_size = dist.get_world_size()
        size = torch.tensor([local.shape[0]], dtype=torch.long, device=local.device)
        sizes = [torch.zeros_like(size) for _ in range(world_size)]
        dist.all_gather(sizes, size)
        sizes = [int(s.item()) for s in sizes]

        # Pad to the largest local size, because all_gather needs equal shapes.
        max_size = max(sizes)
        padded = local.new_zeros((max_size, *local.shape[1:]))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(world_size)]
        dist.all_gather(parts, padded.contiguous())

        rank = dist.get_rank()
        ctx.start = sum(sizes[:rank])
        ctx.stop = ctx.start + sizes[rank]
        return torch.cat([part[:n] for part, n in zip(parts, sizes)], dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Each rank computed the gradient of its own copy of the loss, and the local features
        # receive the sum over ranks. all_reduce is used because gloo lacks reduce_scatter.
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop]


def gather_with_grad(local: torch.Tensor) -> torch.Tensor:
    """Concatenate `local` (n_r, ...) of every rank in rank order, keeping gradients.

    Returns `local` itself without a process group of more than one rank. Works for bool and
    integer tensors too (no gradient flows through those).
    """
    if not is_distributed():
        return local
    if not local.is_floating_point():
        return _GatherWithGrad.apply(local.to(torch.float64)).round().to(local.dtype)
    return _GatherWithGrad.apply(local)


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Return the sum of `value` over ranks (no gradient), or `value` in a single process."""
    if not is_distributed():
        return value
    total = value.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total
