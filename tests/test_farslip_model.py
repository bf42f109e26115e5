"""FarSLIP model: encode shapes, dense tokens, Long-CLIP stretch, RoIAlign pooling and weight loading."""

import open_clip
import pytest
import torch
import torch.nn.functional as F

from farslip.dense import roi_pool_dense
from farslip.longclip import stretch_positional_embedding
from farslip.model import ModelConfig, build_model, load_weights, save_weights

TINY = "FarSLIP-Tiny"


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(name=TINY)).eval()


@pytest.fixture(scope="module")
def long_model():
    torch.manual_seed(1)
    return build_model(ModelConfig(name=TINY, long_clip=True, force_quick_gelu=True)).eval()


def images(batch, seed=0):
    return torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_tiny_model_attributes(tiny_model):
    assert tiny_model.image_size == 64
    assert tiny_model.grid_size == (4, 4)
    assert tiny_model.context_length == 77
    assert len(tiny_model.mean) == 3
    assert len(tiny_model.std) == 3
    assert tiny_model.logit_scale.requires_grad


def test_tiny_model_encode_shapes(tiny_model):
    tokens = tiny_model.tokenize(["a satellite image of a farm", "a harbour"])
    pooled, dense = tiny_model.encode_image_dense(images(2))

    assert tokens.shape == (2, 77)
    assert tiny_model.encode_text(tokens).shape == (2, 64)
    assert tiny_model.encode_image(images(2)).shape == (2, 64)
    assert pooled.shape == (2, 64)
    assert dense.shape == (2, 16, 64)


def test_dense_pooled_equals_open_clip(tiny_model):
    x = images(3)
    pooled, _ = tiny_model.encode_image_dense(x)
    assert torch.allclose(pooled, tiny_model.clip.encode_image(x), atol=1e-6)


def randomize(model, seed):
    """Add noise to every parameter so zero biases and unit norms cannot hide a mistake."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))


def direct_dense(visual, x, mode):
    """Dense tokens written out step by step, one head at a time."""
    tokens = visual._embeds(x)
    for block in visual.transformer.resblocks[:-1]:
        tokens = block(tokens)
    block = visual.transformer.resblocks[-1]
    attn = block.attn
    width = tokens.shape[-1]
    heads = attn.num_heads
    head_dim = width // heads
    w_q, w_k, w_v = attn.in_proj_weight.split(width)
    b_q, b_k, b_v = attn.in_proj_bias.split(width)

    h = block.ln_1(tokens)
    q = h @ w_q.T + b_q
    k = h @ w_k.T + b_k
    v = h @ w_v.T + b_v

    if mode == "farslip":
        outputs = []
        for head in range(heads):
            cols = slice(head * head_dim, (head + 1) * head_dim)
            qh, kh, vh = q[..., cols], k[..., cols], v[..., cols]
            s = head_dim**-0.5
            weights = (
                torch.softmax(qh @ qh.transpose(1, 2) * s, dim=-1)
                + torch.softmax(kh @ kh.transpose(1, 2) * s, dim=-1)
                + torch.softmax(vh @ vh.transpose(1, 2) * s, dim=-1)
            )
            outputs.append(weights @ vh)
        out = torch.cat(outputs, dim=-1) @ attn.out_proj.weight.T + attn.out_proj.bias
    else:
        y = tokens + (v @ attn.out_proj.weight.T + attn.out_proj.bias)
        out = y + block.mlp(block.ln_2(y))

    return visual.ln_post(out[:, 1:]) @ visual.proj


@pytest.mark.parametrize("mode", ["farslip", "maskclip"])
def test_dense_tokens_match_direct_computation(mode):
    torch.manual_seed(2)
    model = build_model(ModelConfig(name=TINY, dense=mode)).eval()
    randomize(model, seed=11)
    x = images(2, seed=3)

    _, dense = model.encode_image_dense(x)
    expected = direct_dense(model.clip.visual, x, mode)

    assert torch.allclose(dense, expected, atol=1e-5)


def test_dense_attention_rows_sum_to_three(tiny_model):
    # The three softmaxes are summed without renormalising: with v = 1 in every head the
    # attended value of every token is 3.
    from farslip.dense import self_similarity_attention

    generator = torch.Generator().manual_seed(4)
    q = torch.randn(1, 2, 5, 4, generator=generator)
    k = torch.randn(1, 2, 5, 4, generator=generator)
    v = torch.ones(1, 2, 5, 4)
    assert torch.allclose(self_similarity_attention(q, k, v), torch.full((1, 2, 5, 4), 3.0))


def test_dense_tokens_sequence_first_layout():
    torch.manual_seed(5)
    model = build_model(ModelConfig(name=TINY)).eval()
    randomize(model, seed=12)
    x = images(2, seed=6)
    pooled_first, dense_first = model.encode_image_dense(x)

    model.clip.visual.transformer.batch_first = False
    for block in model.clip.visual.transformer.resblocks:
        block.attn.batch_first = False
    pooled_seq, dense_seq = model.encode_image_dense(x)

    assert torch.allclose(pooled_first, pooled_seq, atol=1e-6)
    assert torch.allclose(dense_first, dense_seq, atol=1e-6)


def test_long_clip_stretch_definition():
    table = torch.randn(77, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    stretched = stretch_positional_embedding(table)

    assert stretched.shape == (248, 6)
    for p in range(20):
        assert torch.equal(stretched[p], table[p])
    for i in range(56):
        for t in range(4):
            expected = table[20 + i] + t / 4 * (table[21 + i] - table[20 + i])
            assert torch.allclose(stretched[20 + 4 * i + t], expected)
    for t in range(4):
        expected = table[76] + t / 4 * (table[76] - table[75])
        assert torch.allclose(stretched[244 + t], expected)


def test_long_clip_stretch_rejects_short_table():
    with pytest.raises(ValueError, match="at least 22"):
        stretch_positional_embedding(torch.zeros(21, 4))


def test_long_clip_model_tables(long_model):
    table = long_model.clip.positional_embedding
    assert long_model.context_length == 248
    assert table.shape == (248, 64)
    assert not table.requires_grad
    assert long_model.text_pos_tail.shape == (228, 64)
    assert long_model.text_pos_tail.requires_grad
    assert long_model.clip.attn_mask.shape == (248, 248)
    assert torch.isinf(long_model.clip.attn_mask[0, 1])
    assert long_model.clip.attn_mask[1, 0] == 0


def test_long_clip_tokenizer_and_gradient(long_model):
    tokens = long_model.tokenize(["a satellite image of " + "a field " * 60, "a road"])
    assert tokens.shape == (2, 248)
    assert (tokens[0] != 0).sum() > 77

    long_model.zero_grad()
    long_model.encode_text(tokens).sum().backward()
    assert long_model.text_pos_tail.grad is not None
    assert long_model.text_pos_tail.grad.abs().sum() > 0
    assert long_model.clip.positional_embedding.grad is None


def test_long_clip_encode_text_uses_tail(long_model):
    tokens = long_model.tokenize(["a satellite image of " + "a field " * 40])
    before = long_model.encode_text(tokens)
    with torch.no_grad():
        long_model.text_pos_tail[50] += 1.0
    after = long_model.encode_text(tokens)
    with torch.no_grad():
        long_model.text_pos_tail[50] -= 1.0
    assert not torch.allclose(before, after)


def test_long_clip_rejects_short_tokens(long_model):
    with pytest.raises(ValueError, match="context length 248"):
        long_model.encode_text(torch.zeros(1, 77, dtype=torch.long))


def naive_roi_align_mean(feature, box, out_h, out_w):
    """RoIAlign (aligned, one bilinear sample per bin centre) averaged over the output bins."""
    channels, height, width = feature.shape
    x1, y1, x2, y2 = (float(c) - 0.5 for c in box)
    bin_h = (y2 - y1) / out_h
    bin_w = (x2 - x1) / out_w
    total = torch.zeros(channels, dtype=feature.dtype)
    for i in range(out_h):
        for j in range(out_w):
            y = min(max(y1 + (i + 0.5) * bin_h, 0.0), height - 1)
            x = min(max(x1 + (j + 0.5) * bin_w, 0.0), width - 1)
            y0, x0 = int(y), int(x)
            y1i, x1i = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
            dy, dx = y - y0, x - x0
            total += (
                (1 - dy) * (1 - dx) * feature[:, y0, x0]
                + (1 - dy) * dx * feature[:, y0, x1i]
                + dy * (1 - dx) * feature[:, y1i, x0]
                + dy * dx * feature[:, y1i, x1i]
            )
    return total / (out_h * out_w)


def test_roi_pool_full_box_is_token_mean():
    dense = torch.randn(2, 12, 5, generator=torch.Generator().manual_seed(8))
    boxes = torch.tensor([[[0.0, 0.0, 1.0, 1.0]], [[0.0, 0.0, 1.0, 1.0]]])
    pooled = roi_pool_dense(dense, (3, 4), boxes)
    assert torch.allclose(pooled[:, 0], dense.mean(dim=1), atol=1e-6)


def test_roi_pool_matches_naive_bilinear():
    generator = torch.Generator().manual_seed(9)
    dense = torch.randn(2, 16, 3, generator=generator, dtype=torch.float64)
    boxes = torch.tensor(
        [[[0.1, 0.2, 0.6, 0.9], [0.5, 0.5, 0.75, 0.8]], [[0.0, 0.0, 0.3, 0.4], [0.25, 0.1, 1.0, 0.6]]],
        dtype=torch.float64,
    )
    pooled = roi_pool_dense(dense, (4, 4), boxes)

    for b in range(2):
        feature = dense[b].T.reshape(3, 4, 4)
        for k in range(2):
            grid_box = boxes[b, k] * 4
            expected = naive_roi_align_mean(feature, grid_box, 4, 4)
            assert torch.allclose(pooled[b, k], expected, atol=1e-9), (b, k)


def test_save_and_load_weights_round_trip(tmp_path, long_model):
    path = tmp_path / "model.safetensors"
    save_weights(long_model, path)
    torch.manual_seed(10)
    other = build_model(ModelConfig(name=TINY, long_clip=True, force_quick_gelu=True)).eval()
    load_weights(other, path)

    tokens = long_model.tokenize(["a satellite image of a lake"])
    assert torch.equal(other.encode_text(tokens), long_model.encode_text(tokens))
    assert torch.equal(other.encode_image(images(1)), long_model.encode_image(images(1)))


def test_open_clip_checkpoint_stretches_into_long_model(tmp_path, tiny_model):
    path = tmp_path / "open_clip.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in tiny_model.clip.state_dict().items()}}, path)
    model = build_model(ModelConfig(name=TINY, pretrained=str(path), long_clip=True))

    expected = stretch_positional_embedding(tiny_model.clip.positional_embedding.detach())
    assert torch.equal(model.text_positional_embedding(), expected)
    assert torch.equal(model.encode_image(images(1)), tiny_model.encode_image(images(1)))


def test_long_weights_into_short_model_rejected(tmp_path, long_model):
    path = tmp_path / "long.safetensors"
    save_weights(long_model, path)
    model = build_model(ModelConfig(name=TINY, force_quick_gelu=True))
    with pytest.raises(ValueError, match="long_clip=True"):
        load_weights(model, path)


def test_unknown_pretrained_tag_rejected():
    with pytest.raises(ValueError, match="neither an existing file nor an open_clip tag"):
        build_model(ModelConfig(name=TINY, pretrained="no-such-tag"))


def test_model_config_rejects_unknown_values():
    with pytest.raises(ValueError, match="model.dense"):
        ModelConfig(name=TINY, dense="segearth")
    with pytest.raises(ValueError, match="model.name"):
        ModelConfig(name="ViT-Q-99")


def test_forward_returns_named_outputs(tiny_model):
    tokens = tiny_model.tokenize(["a port"])
    outputs = tiny_model(images={"image": images(1)}, texts={"caption": tokens}, dense={"image"})
    assert set(outputs) == {"image", "image_dense", "caption", "logit_scale"}
    assert F.normalize(outputs["image"], dim=-1).shape == (1, 64)
    with pytest.raises(ValueError, match="not among the image names"):
        tiny_model(images={"image": images(1)}, dense={"crop"})


def test_long_clip_residual_layout_loads(tmp_path, long_model):
    # Long-CLIP checkpoints store two 248-row tables: one used below position 20, one from 20 on.
    state = {k: v.clone() for k, v in long_model.clip.state_dict().items()}
    generator = torch.Generator().manual_seed(13)
    state["positional_embedding"] = torch.randn(248, 64, generator=generator)
    state["positional_embedding_res"] = torch.randn(248, 64, generator=generator)
    path = tmp_path / "longclip.pt"
    torch.save(state, path)

    model = build_model(ModelConfig(name=TINY, long_clip=True, force_quick_gelu=True))
    load_weights(model, path)

    expected = torch.cat([state["positional_embedding"][:20], state["positional_embedding_res"][20:]])
    assert torch.equal(model.text_positional_embedding(), expected)


def test_tiny_config_registered_with_open_clip():
    assert TINY in open_clip.list_models()
    clip = open_clip.create_model(TINY)
    assert clip.visual.grid_size == (4, 4)
    assert clip.context_length == 77


def test_dense_tokens_with_grad_checkpointing():
    torch.manual_seed(14)
    model = build_model(ModelConfig(name=TINY))
    x = images(2, seed=15)
    pooled, dense = model.encode_image_dense(x)

    model.clip.set_grad_checkpointing(True)
    pooled_ckpt, dense_ckpt = model.encode_image_dense(x)
    dense_ckpt.sum().backward()

    assert torch.allclose(pooled, pooled_ckpt, atol=1e-6)
    assert torch.allclose(dense, dense_ckpt, atol=1e-6)
    assert model.clip.visual.conv1.weight.grad is not None
