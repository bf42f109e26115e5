"""The FarSLIP model: an open_clip CLIP with dense patch tokens and an optional Long-CLIP text context.

Shapes: B batch, S image side, L text tokens, N = gh * gw patches, D embedding, W text width.

Importing this module registers the `FarSLIP-Tiny` architecture with open_clip (64 px images,
16 px patches, 2 layers of width 64 in each tower), used by tests and the CPU demo.
"""

import contextlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import open_clip
import torch
from open_clip.transformer import text_global_pool
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from farslip.dense import DENSE_MODES, check_dense_support, encode_image_dense
from farslip.longclip import (
    KEEP_POSITIONS,
    LONG_CONTEXT,
    SHORT_CONTEXT,
    stretch_attention_mask,
    stretch_positional_embedding,
)

logger = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_MODEL = "FarSLIP-Tiny"
CONFIG_METADATA_KEY = "farslip_model_config"

open_clip.add_model_config(MODEL_CONFIG_DIR)


@dataclass
class ModelConfig:
    """Architecture, weights and options of the model to train."""

    name: str = "ViT-B-16"
    pretrained: str | None = None
    force_quick_gelu: bool = False
    long_clip: bool = False
    dense: str = "farslip"

    def __post_init__(self) -> None:
        if self.dense not in DENSE_MODES:
            raise ValueError(f"invalid model.dense {self.dense!r}; choose one of {', '.join(DENSE_MODES)}")
        if self.name not in open_clip.list_models():
            raise ValueError(
                f"unknown open_clip architecture model.name={self.name!r}; choose one of open_clip.list_models(), "
                f"for example ViT-B-16 or {TINY_MODEL}"
            )


def text_tower(clip: nn.Module) -> nn.Module:
    """Return the module that owns the text token/positional embeddings, transformer and mask."""
    if hasattr(clip, "positional_embedding") and hasattr(clip, "token_embedding"):
        return clip
    text = getattr(clip, "text", None)
    if text is not None and hasattr(text, "positional_embedding") and hasattr(text, "token_embedding"):
        return text
    raise ValueError(
        f"the text tower of {type(clip).__name__} has no open_clip TextTransformer layout; "
        "Long-CLIP needs a model with a built-in text transformer"
    )


class FarSLIPModel(nn.Module):
    """open_clip CLIP wrapper that adds dense patch tokens and the Long-CLIP text context.

    Embeddings are returned unnormalised. With Long-CLIP the text positional embedding of the
    open_clip model contains the stretched table and is frozen. `text_pos_tail` is the trainable
    copy used for positions >= 20.
    """

    def __init__(self, clip: nn.Module, config: ModelConfig):
        super().__init__()
        self.clip = clip
        self.config = config
        check_dense_support(clip.visual)

        image_size = clip.visual.image_size
        if image_size[0] != image_size[1]:
            raise ValueError(f"model {config.name} has non-square images {image_size}; choose a square-image ViT")
        self.image_size = int(image_size[0])
        self.grid_size = tuple(clip.visual.grid_size)

        preprocess = open_clip.get_model_preprocess_cfg(clip)
        self.mean = tuple(preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.std = tuple(preprocess.get("std", open_clip.OPENAI_DATASET_STD))

        self.text_pos_tail = None
        if config.long_clip:
            self._enable_long_clip()
        self.context_length = int(clip.context_length)
        self._tokenizer = open_clip.get_tokenizer(config.name, context_length=self.context_length)

    def _enable_long_clip(self) -> None:
        tower = text_tower(self.clip)
        if getattr(tower, "cls_emb", None) is not None:
            raise ValueError(f"Long-CLIP does not support text towers with a class token ({self.config.name})")
        table = tower.positional_embedding.detach()
        if table.shape[0] != SHORT_CONTEXT:
            raise ValueError(
                f"Long-CLIP stretches a {SHORT_CONTEXT}-position text embedding, but {self.config.name} has "
                f"{table.shape[0]}; set long_clip to false for this architecture"
            )

        stretched = stretch_positional_embedding(table)
        tower.positional_embedding = nn.Parameter(stretched.clone(), requires_grad=False)
        self.text_pos_tail = nn.Parameter(stretched[KEEP_POSITIONS:].clone())
        tower.attn_mask = stretch_attention_mask(tower.attn_mask, LONG_CONTEXT)
        tower.context_length = LONG_CONTEXT
        if hasattr(tower, "num_pos"):
            tower.num_pos = LONG_CONTEXT
        self.clip.context_length = LONG_CONTEXT

    @property
    def logit_scale(self) -> nn.Parameter:
        """Learned log of the contrastive logit scale."""
        return self.clip.logit_scale

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Tokenize texts to (B, L) token ids, truncated to the context length."""
        return self._tokenizer(texts)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Encode (B, 3, S, S) images to pooled (B, D) embeddings."""
        return self.clip.encode_image(images)

    def encode_image_dense(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode (B, 3, S, S) images to pooled (B, D) and dense (B, N, D) embeddings."""
        return encode_image_dense(self.clip.visual, images, self.config.dense)

    def text_positional_embedding(self) -> torch.Tensor:
        """Return the (L, W) text positional embedding in use (frozen head plus trainable tail)."""
        table = text_tower(self.clip).positional_embedding
        if self.text_pos_tail is None:
            return table
        return torch.cat([table[:KEEP_POSITIONS], self.text_pos_tail], dim=0)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Encode (B, L) token ids to (B, D) embeddings."""
        if self.text_pos_tail is None:
            return self.clip.encode_text(tokens)
        if tokens.shape[1] != self.context_length:
            raise ValueError(
                f"text tokens have length {tokens.shape[1]}, expected the context length {self.context_length}; "
                "tokenize with model.tokenize"
            )

        tower = text_tower(self.clip)
        cast_dtype = tower.transformer.get_cast_dtype()
        x = tower.token_embedding(tokens).to(cast_dtype)  # (B, L, W)
        x = x + self.text_positional_embedding().to(cast_dtype)
        x = tower.transformer(x, attn_mask=tower.attn_mask)
        x = tower.ln_final(x)

        if tower is self.clip:
            pool_type, eos_id = self.clip.text_pool_type, getattr(self.clip, "text_eos_id", None)
        else:
            pool_type, eos_id = tower.pool_type, getattr(tower, "eos_id", None)
        x = text_global_pool(x, tokens, pool_type, eos_token_id=eos_id)  # (B, W)

        projection = tower.text_projection
        if isinstance(projection, nn.Linear):
            return projection(x)
        if projection is not None:
            return x @ projection
        return x

    def forward(
        self,
        images: dict[str, torch.Tensor] | None = None,
        texts: dict[str, torch.Tensor] | None = None,
        dense: Iterable[str] = (),
    ) -> dict[str, torch.Tensor]:
        """Encode several named image and text batches in one call (one DDP forward per step).

        Args:
            images: name -> (B, 3, S, S) images; returns name -> (B, D) pooled embeddings.
            texts: name -> (B, L) tokens; returns name -> (B, D) embeddings.
            dense: image names that also get name + "_dense" -> (B, N, D).

        Returns:
            the embeddings by name, plus "logit_scale" (the log-scale parameter).
        """
        images = images or {}
        texts = texts or {}
        dense = set(dense)
        unknown = dense - set(images)
        if unknown:
            raise ValueError(f"dense names {sorted(unknown)} are not among the image names {sorted(images)}")

        outputs: dict[str, torch.Tensor] = {}
        for name, batch in images.items():
            if name in dense:
                outputs[name], outputs[name + "_dense"] = self.encode_image_dense(batch)
            else:
                outputs[name] = self.encode_image(batch)
        for name, tokens in texts.items():
            if name in outputs:
                raise ValueError(f"text name {name!r} repeats an image output name; rename one of them")
            outputs[name] = self.encode_text(tokens)
        outputs["logit_scale"] = self.logit_scale
        return outputs


def is_pretrained_file(pretrained: str | None) -> bool:
    """Return True when `pretrained` names an existing local file rather than an open_clip tag."""
    return pretrained is not None and os.path.isfile(pretrained)


WEIGHT_SUFFIXES = {".safetensors", ".pt", ".pth", ".bin", ".ckpt"}


@contextlib.contextmanager
def _quiet_random_weights_warning(quiet: bool):
    """Drop open_clip's "initialized randomly" warning while `quiet`; the caller reports the weights itself."""
    if not quiet:
        yield
        return

    def drop(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def build_model(cfg: ModelConfig) -> FarSLIPModel:
    """Build the model and load its weights (open_clip tag, local file, or random for None).

    A pretrained tag is downloaded by open_clip on first use. A local file is read by
    `load_weights`, which accepts open_clip checkpoints, our checkpoints and exported files.
    """
    tag = None
    if cfg.pretrained is not None and not is_pretrained_file(cfg.pretrained):
        if "/" in cfg.pretrained or Path(cfg.pretrained).suffix in WEIGHT_SUFFIXES:
            raise FileNotFoundError(
                f"model.pretrained file {cfg.pretrained} not found; give the path of a checkpoint "
                "(for example runs/stage1/checkpoints/step-NNNNNNNN/model.safetensors) or an open_clip tag"
            )
        tags = open_clip.list_pretrained_tags_by_model(cfg.name)
        if cfg.pretrained not in tags:
            raise ValueError(
                f"model.pretrained={cfg.pretrained!r} is neither an existing file nor an open_clip tag of "
                f"{cfg.name} (tags: {', '.join(tags) or 'none'}); give a checkpoint path or one of the tags"
            )
        tag = cfg.pretrained

    # Without a tag the weights come from a file right after or from a checkpoint on resume, so open_clip's
    # warning about random weights would mislead; the summary line below names the weights instead.
    with _quiet_random_weights_warning(quiet=tag is None):
        clip = open_clip.create_model(cfg.name, pretrained=tag, force_quick_gelu=cfg.force_quick_gelu)
    model = FarSLIPModel(clip, cfg)
    if is_pretrained_file(cfg.pretrained):
        load_weights(model, cfg.pretrained)
    logger.info(
        "built %s (weights: %s, quick_gelu=%s, long_clip=%s, dense=%s)",
        cfg.name,
        cfg.pretrained or "random until a checkpoint is loaded",
        cfg.force_quick_gelu,
        cfg.long_clip,
        cfg.dense,
    )
    return model


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a safetensors file or a torch checkpoint (plain or under "state_dict")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; give the path of a .safetensors or .pt file")
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    return {
        (key[len("module.") :] if key.startswith("module.") else key): value for key, value in checkpoint.items()
    }


def read_model_config(path: str | os.PathLike) -> ModelConfig | None:
    """Return the ModelConfig stored in a safetensors file by `save_weights`, or None."""
    if Path(path).suffix != ".safetensors":
        return None
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if CONFIG_METADATA_KEY not in metadata:
        return None
    stored = json.loads(metadata[CONFIG_METADATA_KEY])
    known = {field.name for field in fields(ModelConfig)}
    return ModelConfig(**{key: value for key, value in stored.items() if key in known})


def save_weights(model: FarSLIPModel, path: str | os.PathLike) -> None:
    """Write the model's state dict as safetensors, with its ModelConfig in the file metadata."""
    state = {key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()}
    save_file(state, str(path), metadata={CONFIG_METADATA_KEY: json.dumps(asdict(model.config))})
    make_readable(path)


def make_readable(path: str | os.PathLike) -> None:
    """Give a written file the permissions the umask allows; safetensors creates files readable by the owner only."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _positional_key(model: FarSLIPModel) -> str:
    tower = text_tower(model.clip)
    return "clip.positional_embedding" if tower is model.clip else "clip.text.positional_embedding"


def convert_state_dict(model: FarSLIPModel, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an open_clip, Long-CLIP or FarSLIP state dict onto the keys and text context of `model`.

    open_clip keys get the "clip." prefix. A Long-CLIP style pair (`positional_embedding` used for
    positions < 20, `positional_embedding_res` for the rest, both 248 rows) is merged into one
    table. A 77-position table is stretched when the model uses Long-CLIP.
    """
    if not any(key.startswith("clip.") for key in state):
        state = {"clip." + key: value for key, value in state.items()}
    state = dict(state)
    pos_key = _positional_key(model)
    res_key = pos_key + "_res"

    # NOTE: released Long-CLIP FarSLIP checkpoints are assumed to use Long-CLIP's key layout
    # (positional_embedding and positional_embedding_res, split at position 20). This path is
    # tested only on files written in that layout by the tests, not on a released checkpoint.
    if res_key in state:
        residual = state.pop(res_key)
        state[pos_key] = torch.cat([state[pos_key][:KEEP_POSITIONS], residual[KEEP_POSITIONS:]], dim=0)

    if pos_key not in state:
        return state
    positions = state[pos_key].shape[0]
    if model.text_pos_tail is None:
        if positions != model.context_length:
            raise ValueError(
                f"the weights have {positions} text positions but the model has {model.context_length}; "
                f"set long_clip={positions == LONG_CONTEXT} to match the weights"
            )
        return state

    if positions == SHORT_CONTEXT:
        state[pos_key] = stretch_positional_embedding(state[pos_key])
    elif positions != LONG_CONTEXT:
        raise ValueError(f"cannot load {positions} text positions into a Long-CLIP model of {LONG_CONTEXT}")
    if "text_pos_tail" not in state:
        state["text_pos_tail"] = state[pos_key][KEEP_POSITIONS:].clone()
    return state


def load_weights(model: FarSLIPModel, path: str | os.PathLike) -> None:
    """Load our checkpoints, exported safetensors, open_clip or Long-CLIP checkpoints into `model`.

    NOTE: OpenAI TorchScript archives are not read here; load those through their open_clip
    pretrained tag instead.
    """
    state = convert_state_dict(model, read_state_dict(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"weights in {path} do not match model {model.config.name}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}; check model.name, long_clip and force_quick_gelu"
        )
    logger.info("loaded weights from %s", path)
