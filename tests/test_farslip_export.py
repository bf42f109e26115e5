"""Export to open_clip safetensors, then load with open_clip and compare embeddings."""

import json

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from farslip.export import export_checkpoint
from farslip.model import ModelConfig, build_model, save_weights

TINY = "FarSLIP-Tiny"


def perturb(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def compare_with_open_clip(model, name, weights):
    clip, _, _ = open_clip.create_model_and_transforms(name, pretrained=str(weights))
    clip.eval()
    model.eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    texts = ["a satellite image of a harbor", "a satellite image of " + "a green field " * 30]
    tokens = open_clip.get_tokenizer(name)(texts)

    assert torch.equal(tokens, model.tokenize(texts))
    with torch.no_grad():
        assert torch.allclose(clip.encode_image(images), model.encode_image(images), atol=1e-6)
        assert torch.allclose(clip.encode_text(tokens), model.encode_text(tokens), atol=1e-6)


def test_export_plain_model(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=TINY))
    perturb(model, seed=1)
    save_weights(model, tmp_path / "model.safetensors")

    name = export_checkpoint(tmp_path, tmp_path / "out" / "tiny.safetensors")

    assert name == TINY
    compare_with_open_clip(model, name, tmp_path / "out" / "tiny.safetensors")


def test_export_long_clip_quick_gelu(tmp_path):
    torch.manual_seed(2)
    model = build_model(ModelConfig(name=TINY, long_clip=True, force_quick_gelu=True))
    perturb(model, seed=3)
    save_weights(model, tmp_path / "ckpt.safetensors")
    out = tmp_path / "export" / "model.safetensors"

    name = export_checkpoint(tmp_path / "ckpt.safetensors", out)

    assert name == "FarSLIP-Tiny-long248-quickgelu"
    config_file = out.parent / f"{name}.json"
    config = json.loads(config_file.read_text())
    assert config["quick_gelu"] is True
    assert config["text_cfg"]["context_length"] == 248
    open_clip.add_model_config(config_file)
    compare_with_open_clip(model, name, out)


def test_export_without_stored_config(tmp_path):
    torch.manual_seed(4)
    model = build_model(ModelConfig(name=TINY))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "bare.safetensors"))

    with pytest.raises(ValueError, match="model_config=ModelConfig"):
        export_checkpoint(tmp_path / "bare.safetensors", tmp_path / "out.safetensors")

    name = export_checkpoint(tmp_path / "bare.safetensors", tmp_path / "out.safetensors", ModelConfig(name=TINY))
    assert name == TINY


def test_export_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        export_checkpoint(tmp_path, tmp_path / "out.safetensors")
