"""Typed training configuration: nested dataclasses, YAML recipes and `--set key.path=value` overrides.

A recipe is read with `yaml.safe_load` and every value is checked against the type of its field
(and the bounds in the field's metadata) before any dataclass is built. Errors name the option, the
rule, the value and how to fix it.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from farslip.data import DataConfig
from farslip.model import ModelConfig
from farslip.objectives import ObjectiveConfig

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """An invalid option in a recipe or an override."""


def bounded(default: Any, *, minimum: float | None = None, above: float | None = None, maximum: float | None = None) -> Any:
    """Declare a dataclass field whose value must be >= minimum, > above and <= maximum."""
    return field(default=default, metadata={"minimum": minimum, "above": above, "maximum": maximum})


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule (linear warm-up, then cosine decay to zero)."""

    lr: float = bounded(5e-6, above=0.0)
    weight_decay: float = bounded(0.2, minimum=0.0)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = bounded(1e-6, above=0.0)
    warmup_steps: int = bounded(0, minimum=0)
    # Maximum gradient norm; null disables clipping.
    grad_clip: float | None = bounded(None, above=0.0)
    # Batches per optimizer step. Contrastive negatives still come from one batch only.
    accum_steps: int = bounded(1, minimum=1)


@dataclass
class LoopConfig:
    """Length, device, precision and logging of the run."""

    epochs: int = bounded(1, minimum=1)
    # Stop after this many optimizer steps (the schedule spans them); null runs all epochs.
    max_steps: int | None = bounded(None, minimum=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # `auto`: bf16 autocast on a GPU, fp32 on the CPU.
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    log_every: int = bounded(10, minimum=1)
    out_dir: str = "runs/farslip"


@dataclass
class CheckpointConfig:
    """When checkpoints are written (always at the end of a run) and how many are kept."""

    # Steps between checkpoints; 0 writes only the final one.
    every: int = bounded(1000, minimum=0)
    keep: int = bounded(2, minimum=1)


@dataclass
class ValidationConfig:
    """Retrieval and region classification on a held-out split, at the end and every N steps."""

    enabled: bool = True
    split: str = "validation"
    # Shards of the held-out split; null uses data.path (WebDataset data needs its own folder).
    path: str | None = None
    # Steps between evaluations; 0 evaluates only at the end.
    every: int = bounded(0, minimum=0)
    # Limit on evaluation batches; null reads the whole split.
    max_batches: int | None = bounded(None, minimum=1)
    # An evaluation suite file (see `farslip eval suite`) run after every epoch; null runs none.
    suite: str | None = None


@dataclass
class TrainConfig:
    """Everything `farslip train` needs; each section is a YAML mapping of the same name."""

    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML recipe (or start from the defaults), apply `key.path=value` overrides and check it."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(loaded).__name__}.")
        raw = loaded or {}

    for override in overrides or []:
        apply_override(raw, override)
    config = build(TrainConfig, raw, "")
    check_config(config)
    return config


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set `key.path=value` in the raw recipe after checking that the option exists."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"invalid override {override!r}: expected key.path=value, e.g. --set optim.lr=1e-5.")

    parts = key.split(".")
    cls: Any = TrainConfig
    for depth, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        prefix = ".".join(parts[:depth])
        if part not in fields:
            where = f"section {prefix}" if prefix else "the config"
            raise ConfigError(f"unknown option {key!r}: {where} has {', '.join(fields)}; check the spelling.")
        hint = typing.get_type_hints(cls)[part]
        if depth < len(parts) - 1:
            if not dataclasses.is_dataclass(hint):
                raise ConfigError(f"unknown option {key!r}: {'.'.join(parts[: depth + 1])} is a value, not a section.")
            cls = hint

    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = parse_value(text.strip(), hint)


def parse_value(text: str, hint: Any) -> Any:
    """Parse override text: strings stay as written (null/none means None), others are YAML values."""
    allowed = _union_args(hint)
    if str in allowed or _literal_choices(hint):
        if text.lower() in ("null", "none") and type(None) in allowed:
            return None
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def build(cls: Any, raw: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a raw mapping, checking each value against its field."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"invalid section {prefix or 'config'}: expected a mapping of options, got {raw!r}. "
            f"Write it as `{prefix.rsplit('.', 1)[-1] or 'section'}:` followed by indented options."
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        name = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"unknown option {name!r}: {prefix or 'the config'} has {', '.join(fields)}; check the spelling.")

    values = {}
    for name, value in raw.items():
        option = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = build(hint, value, option)
        else:
            values[name] = coerce(value, hint, option)
            check_bounds(values[name], fields[name].metadata, option)
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"invalid section {prefix or 'config'}: {error}") from error


def coerce(value: Any, hint: Any, option: str) -> Any:
    """Return `value` converted to the type `hint`, or raise ConfigError naming the option."""
    allowed = _union_args(hint)
    if value is None:
        if type(None) in allowed:
            return None
        raise _type_error(option, value, hint)
    for kind in (k for k in allowed if k is not type(None)):
        converted = _convert(value, kind)
        if converted is not _INVALID:
            return converted
    raise _type_error(option, value, hint)


_INVALID = object()


def _convert(value: Any, kind: Any) -> Any:
    choices = _literal_choices(kind)
    if choices:
        return value if value in choices else _INVALID
    if kind is bool:
        return value if isinstance(value, bool) else _INVALID
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = _convert(value, float)
        return int(number) if number is not _INVALID and float(number).is_integer() else _INVALID
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads `1e-6` (no dot) as a string, so numbers in strings are accepted.
            try:
                return float(value)
            except ValueError:
                return _INVALID
        return _INVALID
    if kind is str:
        return value if isinstance(value, str) else _INVALID
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            return _INVALID
        items = [_convert(item, arg) for item, arg in zip(value, args)]
        return _INVALID if any(item is _INVALID for item in items) else tuple(items)
    return _INVALID


def _union_args(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _literal_choices(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else ()


def describe_type(hint: Any) -> str:
    """Describe a type annotation in words, for error messages."""
    parts = []
    for kind in _union_args(hint):
        choices = _literal_choices(kind)
        if choices:
            parts.append("one of " + ", ".join(repr(c) for c in choices))
        elif kind is type(None):
            parts.append("null")
        elif typing.get_origin(kind) is tuple:
            args = typing.get_args(kind)
            parts.append(f"a list of {len(args)} values ({describe_type(args[0])} each)")
        else:
            parts.append({bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(kind, str(kind)))
    return " or ".join(parts)


def _type_error(option: str, value: Any, hint: Any) -> ConfigError:
    return ConfigError(
        f"invalid value for {option}: expected {describe_type(hint)}, got {value!r} ({type(value).__name__}). "
        f"Set it to {describe_type(hint)}, e.g. in the recipe or with --set {option}=VALUE."
    )


def check_bounds(value: Any, metadata: Any, option: str) -> None:
    """Raise ConfigError when a number breaks the bounds declared with `bounded`."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    minimum, above, maximum = metadata.get("minimum"), metadata.get("above"), metadata.get("maximum")
    if minimum is not None and value < minimum:
        raise ConfigError(f"invalid value for {option}: must be >= {minimum}, got {value}. Set it to at least {minimum}.")
    if above is not None and value <= above:
        raise ConfigError(f"invalid value for {option}: must be > {above}, got {value}. Set it to a value above {above}.")
    if maximum is not None and value > maximum:
        raise ConfigError(f"invalid value for {option}: must be <= {maximum}, got {value}. Set it to at most {maximum}.")


def check_config(config: TrainConfig) -> None:
    """Check the rules that involve more than one option, or options of other modules' sections."""
    data = config.data
    rules = [
        ("data.batch_size", data.batch_size, data.batch_size >= 1, "must be >= 1", "set a positive batch size per rank"),
        ("data.num_workers", data.num_workers, data.num_workers >= 0, "must be >= 0", "use 0 to read in the main process"),
        ("data.shuffle_blocks", data.shuffle_blocks, data.shuffle_blocks >= 1, "must be >= 1", "use 1 to shuffle within each row group only"),
        ("data.max_regions", data.max_regions, data.max_regions >= 0, "must be >= 0", "use 0 for caption-only data"),
        ("data.local_views", data.local_views, data.local_views >= 0, "must be >= 0", "use 0 to disable local views"),
        ("data.min_size", data.min_size, 0 <= data.min_size <= data.max_size, f"must be in [0, data.max_size={data.max_size}]", "lower data.min_size or raise data.max_size"),
        ("data.local_scale", data.local_scale, 0 < data.local_scale[0] <= data.local_scale[1] <= 1, "must be [low, high] with 0 < low <= high <= 1", "e.g. --set data.local_scale=[0.3,0.7]"),
        ("data.local_ratio", data.local_ratio, 0 < data.local_ratio[0] <= data.local_ratio[1], "must be [low, high] with 0 < low <= high", "e.g. --set data.local_ratio=[0.75,1.333]"),
        ("optim.betas", config.optim.betas, all(0 <= b < 1 for b in config.optim.betas), "must lie in [0, 1)", "e.g. --set optim.betas=[0.9,0.98]"),
    ]
    for option, value, ok, rule, fix in rules:
        if not ok:
            raise ConfigError(f"invalid value for {option}: {rule}, got {value!r}. Fix: {fix}.")


def unused_loss_weights(config: TrainConfig) -> list[str]:
    """Return a message for each loss weight whose loss the data settings never let the trainer compute."""
    objective, data = config.objective, config.data
    messages = []
    if objective.w_distill > 0 and data.local_views == 0:
        messages.append(
            f"objective.w_distill is {objective.w_distill} but data.local_views is 0, so no distill_loss is computed; "
            "set data.local_views to 1 or more, or objective.w_distill to 0"
        )
    if objective.w_region > 0 and data.max_regions == 0:
        messages.append(
            f"objective.w_region is {objective.w_region} but data.max_regions is 0, so no region_loss is computed; "
            "set data.max_regions to 1 or more, or objective.w_region to 0"
        )
    return messages


def config_to_dict(config: Any) -> dict[str, Any]:
    """Return the config as plain YAML-safe data (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def dump_config(config: TrainConfig) -> str:
    """Return the config as a YAML recipe that `load_config` reads back to an equal config."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
