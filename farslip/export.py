"""Export trained weights as an open_clip safetensors file.

A model with the architecture's own settings loads with
`open_clip.create_model_and_transforms(NAME, pretrained=FILE)`. A Long-CLIP or forced-QuickGELU
model needs a model config that open_clip does not ship, so the export writes `NAME.json` next to
the weights, where NAME is the base name plus `-long248` and/or `-quickgelu`. Register it first:

    open_clip.add_model_config("out/ViT-B-16-long248-quickgelu.json")
    model, _, preprocess = open_clip.create_model_and_transforms(
        "ViT-B-16-long248-quickgelu", pretrained="out/model.safetensors")
    tokenizer = open_clip.get_tokenizer("ViT-B-16-long248-quickgelu")  # context 248
"""

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

from farslip.longclip import LONG_CONTEXT
from farslip.model import FarSLIPModel, ModelConfig, build_model, load_weights, make_readable, read_model_config, text_tower

logger = logging.getLogger(__name__)

CHECKPOINT_WEIGHTS = "model.safetensors"


def export_model_name(cfg: ModelConfig) -> str:
    """Return the open_clip model name under which the exported weights load."""
    name = cfg.name
    if cfg.long_clip:
        name += f"-long{LONG_CONTEXT}"
    base_quick_gelu = open_clip.get_model_config(cfg.name).get("quick_gelu", False)
    if cfg.force_quick_gelu and not base_quick_gelu:
        name += "-quickgelu"
    return name


def export_model_config(cfg: ModelConfig) -> dict:
    """Return the open_clip model config of the exported weights."""
    config = open_clip.get_model_config(cfg.name)
    if cfg.force_quick_gelu:
        config["quick_gelu"] = True
    if cfg.long_clip:
        config["text_cfg"]["context_length"] = LONG_CONTEXT
    return config


def open_clip_state_dict(model: FarSLIPModel) -> dict[str, torch.Tensor]:
    """Return the state dict of `model.clip` with the Long-CLIP positional tables merged into one."""
    state = {key: value.detach().cpu().contiguous() for key, value in model.clip.state_dict().items()}
    if model.text_pos_tail is not None:
        prefix = "" if text_tower(model.clip) is model.clip else "text."
        state[prefix + "positional_embedding"] = model.text_positional_embedding().detach().cpu().contiguous()
    return state


def resolve_weights_file(ckpt_path: str | os.PathLike) -> Path:
    """Return the weights file of a checkpoint given as a file or a directory with model.safetensors."""
    path = Path(ckpt_path)
    if path.is_dir():
        path = path / CHECKPOINT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint weights {path} not found; give a weights file or a checkpoint directory "
            f"that contains {CHECKPOINT_WEIGHTS}"
        )
    return path


def export_checkpoint(
    ckpt_path: str | os.PathLike, out_file: str | os.PathLike, model_config: ModelConfig | None = None
) -> str:
    """Write the weights of a checkpoint as open_clip safetensors and return the model name to load them.

    The model config is read from the checkpoint's metadata (written by `save_weights`) unless
    `model_config` is given. For Long-CLIP or forced-QuickGELU models, `NAME.json` is written next
    to `out_file` and registered with open_clip in this process.
    """
    weights = resolve_weights_file(ckpt_path)
    cfg = model_config or read_model_config(weights)
    if cfg is None:
        raise ValueError(
            f"{weights} has no model configuration in its metadata, so it was not written by `farslip train`; "
            "export a run or checkpoint folder, or call export_checkpoint with model_config=ModelConfig(...)"
        )

    model = build_model(replace(cfg, pretrained=None))
    load_weights(model, weights)

    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    save_file(open_clip_state_dict(model), str(out_file), metadata={"format": "pt"})
    make_readable(out_file)

    name = export_model_name(cfg)
    if name != cfg.name:
        config_file = out_file.parent / f"{name}.json"
        config_file.write_text(json.dumps(export_model_config(cfg), indent=2) + "\n")
        open_clip.add_model_config(config_file)
        logger.info("wrote open_clip config %s; call open_clip.add_model_config on it before loading", config_file)
    logger.info("exported %s to %s (open_clip model name %s)", weights, out_file, name)
    return name
