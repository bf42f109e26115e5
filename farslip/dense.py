"""Dense patch tokens of an open_clip VisionTransformer and RoIAlign pooling over them.

Shapes: B images, T = N + 1 tokens (class token first), N = gh * gw patches, W transformer width,
H heads, D embedding, K boxes per image.

The pooled embedding comes from the unmodified network. The dense tokens come from running the
last residual block a second time on the same input with its attention replaced:

- `farslip`: q, k, v from the block's in_proj applied to ln_1(x); per head
  A = softmax(q qᵀ s) + softmax(k kᵀ s) + softmax(v vᵀ s) with s = head_dim ** -0.5 (rows sum to 3,
  no renormalisation); output out_proj(A v). No residual and no MLP.
- `maskclip`: the value path only, out_proj(v), added to the block input, then the block's MLP with
  its residual.

Both then go through ln_post and the visual projection.
"""

import logging

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.ops import roi_align

logger = logging.getLogger(__name__)

DENSE_MODES = ("farslip", "maskclip")


def check_dense_support(visual: nn.Module) -> None:
    """Raise ValueError when `visual` is not a VisionTransformer that dense tokens support."""
    if not isinstance(visual, VisionTransformer):
        raise ValueError(
            f"dense tokens need an open_clip VisionTransformer image tower, got {type(visual).__name__}; "
            "choose a ViT architecture (ViT-B-16, ViT-B-32, ...)"
        )
    if visual.attn_pool is not None:
        raise ValueError(
            "dense tokens are not supported for image towers with attentional pooling; "
            "choose a ViT architecture without attentional_pool"
        )
    if not isinstance(visual.patch_dropout, nn.Identity):
        raise ValueError(
            "dense tokens need every patch, but the image tower uses patch dropout; "
            "build the model with patch_dropout 0"
        )
    last = visual.transformer.resblocks[-1]
    if not isinstance(last, ResidualAttentionBlock) or hasattr(last, "ln_1_kv"):
        raise ValueError(
            f"dense tokens need standard residual attention blocks, got {type(last).__name__}; "
            "choose a ViT without qk_norm or scaled attention options"
        )


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """Reshape (B, T, W) to (B, H, T, W / H)."""
    batch, tokens, width = x.shape
    return x.reshape(batch, tokens, heads, width // heads).transpose(1, 2)  # (B, H, T, W/H)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Reshape (B, H, T, W / H) to (B, T, W)."""
    batch, heads, tokens, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * head_dim)  # (B, T, W)


def self_similarity_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Apply softmax(q qᵀ s) + softmax(k kᵀ s) + softmax(v vᵀ s) to v, per head.

    Args:
        q, k, v: (B, H, T, hd) projections.

    Returns:
        (B, H, T, hd) attended values; the summed weights are not renormalised.
    """
    scale = q.shape[-1] ** -0.5
    weights = sum(torch.softmax(z @ z.transpose(-2, -1) * scale, dim=-1) for z in (q, k, v))
    return weights @ v


def dense_block(block: ResidualAttentionBlock, x: torch.Tensor, mode: str) -> torch.Tensor:
    """Run the dense variant of `block` on its input.

    Args:
        block: the last residual attention block of the image tower.
        x: (B, T, W) block input, batch first.
        mode: "farslip" or "maskclip".

    Returns:
        (B, T, W) dense token states before ln_post.
    """
    attn = block.attn
    width = x.shape[-1]
    heads = attn.num_heads

    h = block.ln_1(x)
    qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias)  # (B, T, 3W)
    q, k, v = qkv.split(width, dim=-1)

    if mode == "farslip":
        out = self_similarity_attention(split_heads(q, heads), split_heads(k, heads), split_heads(v, heads))
        out = attn.out_proj(merge_heads(out))  # (B, T, W)
        return block.ls_1(out)

    if mode == "maskclip":
        y = x + block.ls_1(attn.out_proj(v))
        return y + block.ls_2(block.mlp(block.ln_2(y)))

    raise ValueError(f"invalid dense mode {mode!r}; choose one of {', '.join(DENSE_MODES)}")


def encode_image_dense(
    visual: VisionTransformer, images: torch.Tensor, mode: str = "farslip"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode images into the pooled embedding and dense patch embeddings.

    Args:
        visual: open_clip VisionTransformer (checked with `check_dense_support`).
        images: (B, 3, S, S) normalised images.
        mode: "farslip" or "maskclip".

    Returns:
        pooled (B, D) exactly as `visual(images)` computes it, and dense (B, N, D).
    """
    x = visual._embeds(images)  # (B, T, W)
    transformer = visual.transformer
    blocks = transformer.resblocks

    # The blocks run sequence first when the transformer was built with batch_first=False.
    if not transformer.batch_first:
        x = x.transpose(0, 1).contiguous()  # (T, B, W)
    checkpointing = transformer.grad_checkpointing and torch.is_grad_enabled()
    for block in blocks[:-1]:
        x = checkpoint(block, x, use_reentrant=False) if checkpointing else block(x)
    last_input = x
    x = blocks[-1](last_input)
    if not transformer.batch_first:
        x = x.transpose(0, 1)  # (B, T, W)
        last_input = last_input.transpose(0, 1)  # (B, T, W)

    pooled, _ = visual._pool(x)
    if visual.proj is not None:
        pooled = pooled @ visual.proj

    dense = dense_block(blocks[-1], last_input, mode)[:, 1:]  # (B, N, W), class token dropped
    dense = visual.ln_post(dense)
    if visual.proj is not None:
        dense = dense @ visual.proj  # (B, N, D)
    return pooled, dense


def roi_pool_dense(dense: torch.Tensor, grid_size: tuple[int, int], boxes: torch.Tensor) -> torch.Tensor:
    """Pool dense tokens under boxes with RoIAlign and average each box's output grid.

    Args:
        dense: (B, N, D) dense tokens in row-major patch order.
        grid_size: (gh, gw) patch grid, gh * gw = N.
        boxes: (B, K, 4) x1, y1, x2, y2 normalised to [0, 1] of the image.

    Returns:
        (B, K, D) mean of the (gh, gw) RoIAlign output of each box (aligned=True, one sample per bin
        centre when the box is no larger than the grid), not normalised.
    """
    batch, _, dim = dense.shape
    grid_h, grid_w = grid_size
    count = boxes.shape[1]

    feature_map = dense.transpose(1, 2).reshape(batch, dim, grid_h, grid_w)  # (B, D, gh, gw)
    scale = boxes.new_tensor([grid_w, grid_h, grid_w, grid_h])
    grid_boxes = (boxes * scale).reshape(batch * count, 4)  # (B*K, 4) in patch units
    image_index = torch.arange(batch, device=boxes.device, dtype=boxes.dtype).repeat_interleave(count)
    rois = torch.cat([image_index[:, None], grid_boxes], dim=1)  # (B*K, 5)

    pooled = roi_align(
        feature_map, rois.to(feature_map.dtype), output_size=(grid_h, grid_w), spatial_scale=1.0, aligned=True
    )  # (B*K, D, gh, gw)
    return pooled.mean(dim=(2, 3)).reshape(batch, count, dim)  # (B, K, D)
