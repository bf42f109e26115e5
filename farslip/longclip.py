"""Long-CLIP text context: stretch a 77-position text positional embedding to 248 positions.

The stretch (Zhang et al., "Long-CLIP: Unlocking the Long-Text Capability of CLIP", 2024) keeps the
first 20 positions, which CLIP trained well, and fills the rest by linear interpolation: each pair
of neighbouring positions (p, p + 1) from position 20 on gives four positions
p + t/4 (p + 1 - p), t = 0..3, and the last position is extrapolated four times along the
difference to its predecessor. 20 + 4 * 56 + 4 = 248. During training the stretched table is frozen
for positions < 20 and a trainable copy serves positions >= 20.
"""

import logging

import torch

logger = logging.getLogger(__name__)

KEEP_POSITIONS = 20
STRETCH = 4
SHORT_CONTEXT = 77
LONG_CONTEXT = STRETCH * SHORT_CONTEXT - 3 * KEEP_POSITIONS  # 248


def stretch_positional_embedding(table: torch.Tensor, keep: int = KEEP_POSITIONS) -> torch.Tensor:
    """Return the Long-CLIP stretch of a text positional embedding.

    Args:
        table: (P, W) positional embedding, P > keep + 1.
        keep: number of leading positions copied unchanged.

    Returns:
        (keep + 4 * (P - keep), W) table; 248 rows for P = 77 and keep = 20.
    """
    positions, _ = table.shape
    if positions <= keep + 1:
        raise ValueError(
            f"cannot stretch a positional embedding of {positions} positions while keeping {keep}: "
            f"it needs at least {keep + 2} positions"
        )

    head = table[:keep]
    steps = torch.arange(STRETCH, dtype=table.dtype, device=table.device) / STRETCH  # (4,)

    # Interpolate between each pair (p, p + 1) for p = keep .. P - 2.
    left = table[keep:-1]  # (P - keep - 1, W)
    right = table[keep + 1 :]
    middle = left[:, None] + steps[None, :, None] * (right - left)[:, None]  # (P - keep - 1, 4, W)
    middle = middle.reshape(-1, table.shape[1])  # (4 * (P - keep - 1), W)

    # Extrapolate past the last position along its difference to the one before.
    last, before_last = table[-1], table[-2]
    tail = last[None] + steps[:, None] * (last - before_last)[None]  # (4, W)

    return torch.cat([head, middle, tail], dim=0)


def stretch_attention_mask(mask: torch.Tensor | None, context_length: int) -> torch.Tensor | None:
    """Return a causal additive mask of `context_length` positions shaped like `mask`.

    open_clip builds its text mask as -inf above the diagonal and 0 elsewhere; a missing mask
    (bidirectional text towers) stays missing.
    """
    if mask is None:
        return None
    new_mask = torch.full((context_length, context_length), float("-inf"), dtype=mask.dtype, device=mask.device)
    return new_mask.triu_(1)
