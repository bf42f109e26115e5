"""Build recipes: typed configuration of a build, loaded from YAML and command-line options.

A recipe names its sources and the build settings:

    name: mgrs-demo
    sources:
      - {format: dota, version: "1.0", path: "${SAMPLES}/dota"}
      - {format: dior-r, path: "${SAMPLES}/dior"}
    tiling: {size: 800, overlap: 200, min_visible_fraction: 0.7}
    categories: {granularity: fine, unknown: other}
    output: {rows_per_shard: 1000}

Paths are relative to the `root` given when loading (the `--root` option, default the current
directory), and environment variables such as `${SAMPLES}` are expanded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mgrs.imaging import DEFAULT_MAX_PIXELS
from mgrs.taxonomy import GRANULARITIES


class RecipeError(ValueError):
    """A recipe or option that breaks a rule; the message names the option, the value and the fix."""


@dataclass
class SourceSpec:
    """One source of a build: a format, an optional version and the folder it was unpacked to."""

    format: str
    path: str
    version: str | None = None
    # Seeded sampling of this source's scenes, applied before deduplication: keep a scene when its
    # draw is below `sample_fraction`, then keep the `limit` scenes with the smallest draws.
    limit: int | None = None
    sample_fraction: float | None = None
    seed: int = 0
    # Keep only scenes of these source splits (for example train and val, leaving out test).
    splits: list[str] | None = None

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        """Parse `FORMAT[@VERSION]:PATH`, as given to `--source`."""
        match = re.fullmatch(r"([A-Za-z0-9_\-]+)(?:@([A-Za-z0-9_.\-]+))?:(.+)", text)
        if match is None:
            raise RecipeError(f"--source {text!r} is not FORMAT[@VERSION]:PATH; write for example dota@1.0:/data/DOTA")
        return cls(format=match.group(1), version=match.group(2), path=match.group(3))


@dataclass
class TilingConfig:
    """Tiling of scenes larger than `size` into overlapping tiles."""

    size: int = 800
    overlap: int = 200
    # A region is kept in a tile when at least this share of its area is visible there.
    min_visible_fraction: float = 0.7


@dataclass
class CategoryConfig:
    """Taxonomy level and what happens to labels the taxonomy does not know."""

    granularity: str = "fine"
    # `other` maps unknown labels to the `other` category; `skip` drops them. Both are counted.
    unknown: str = "other"
    taxonomy: str | None = None


@dataclass
class GeometryConfig:
    # `repair` fixes self-intersecting outlines; `drop` skips them with reason `invalid_polygon`.
    invalid_polygons: str = "repair"
    # Instances from masks with this many pixels or fewer are skipped (the iSAID devkit drops them too).
    min_mask_area: int = 10


@dataclass
class ImageConfig:
    # `auto` keeps PNG for lossless sources and JPEG for JPEG sources; `png` or `jpeg` forces one.
    encoding: str = "auto"
    jpeg_quality: int = 95
    max_pixels: int = DEFAULT_MAX_PIXELS
    # Images above max_pixels: `tile` reads PNG, TIFF and BMP scenes tile by tile with bounded memory;
    # `skip` skips them as image_too_large. JPEG and other formats above the limit are always skipped.
    huge: str = "tile"


@dataclass
class OutputConfig:
    rows_per_shard: int | None = None
    num_shards: int | None = None
    # Bytes of a shard when neither rows_per_shard nor num_shards is set (about 500 MB, as `datasets` writes).
    target_shard_bytes: int = 500_000_000
    # Bytes of a row group; the Hub's dataset viewer rejects row groups above about 300 MB.
    target_row_group_bytes: int = 100_000_000


@dataclass
class SplitConfig:
    # Share of scenes moved to a `validation` split; all tiles of a scene stay in one split.
    holdout_fraction: float = 0.0
    holdout_seed: int = 0


CAPTIONER_KINDS = ("template", "openai")


@dataclass
class DedupConfig:
    """Removal of duplicate scenes across sources, before tiling (see docs/dedup.md)."""

    enabled: bool = True
    # Near duplicates: perceptual hashes (64-bit pHash) at most this Hamming distance apart.
    max_distance: int = 1
    # Source names or formats in survival order; a copy from an earlier entry is kept. Sources not
    # listed follow in recipe order.
    priority: list[str] = field(default_factory=list)
    # A region of a removed copy is dropped when a kept region of the same category overlaps its box
    # with an IoU above this value; otherwise it is added to the kept scene.
    merge_iou: float = 0.5
    # Compare scenes of one source with each other too; off by default because blank patches of one
    # scene would otherwise match.
    within_source: bool = False


@dataclass
class CaptionerConfig:
    """The captioner of the global captions. Every field but `kind` applies to `openai` only."""

    # `template` writes captions offline from the regions; `openai` requests them from an OpenAI-compatible
    # chat-completions server with image input.
    kind: str = "template"
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str | None = None
    # Name of the environment variable that contains the API key. The key itself never enters a recipe.
    api_key_env: str = "OPENAI_API_KEY"
    # Seconds one request may take.
    timeout: float = 120.0
    # Requests in flight at once, across the whole build.
    max_concurrency: int = 8
    temperature: float = 0.0
    seed: int | None = 0
    max_tokens: int = 512
    # Attempts after the first one, for timeouts, connection errors, 429, 5xx and invalid responses.
    max_retries: int = 3
    # Seconds before the first retry; each further retry waits twice as long (at most 60 s).
    retry_backoff: float = 1.0
    prompt_version: str = "v2"
    # Cache file (DuckDB); null means `mgrs/captions.duckdb` under $XDG_CACHE_HOME or ~/.cache.
    cache: str | None = None

    def output_settings(self) -> dict[str, Any]:
        """Return the settings that change the captions written, for fingerprints and cache keys."""
        if self.kind == "template":
            return {"kind": self.kind}
        return {
            "kind": self.kind,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "temperature": self.temperature,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
        }

    def validate(self) -> None:
        """Check the captioner settings; raises RecipeError naming the option, the value and the fix."""
        if self.kind not in CAPTIONER_KINDS:
            raise RecipeError(f"captioner.kind is {self.kind!r}; use one of {', '.join(CAPTIONER_KINDS)}")
        if self.kind == "template":
            return
        if not self.model:
            raise RecipeError("captioner.model is not set; name the model the server serves, for example Qwen/Qwen2-VL-7B-Instruct")
        if not re.match(r"https?://", self.base_url):
            raise RecipeError(f"captioner.base_url is {self.base_url!r}; write an http:// or https:// URL such as http://127.0.0.1:8000/v1")
        if self.timeout <= 0:
            raise RecipeError(f"captioner.timeout is {self.timeout}; use a positive number of seconds such as 120")
        if self.max_concurrency < 1:
            raise RecipeError(f"captioner.max_concurrency is {self.max_concurrency}; use 1 or more")
        if self.max_retries < 0:
            raise RecipeError(f"captioner.max_retries is {self.max_retries}; use 0 or more")
        if self.retry_backoff < 0:
            raise RecipeError(f"captioner.retry_backoff is {self.retry_backoff}; use 0 or more seconds")
        if self.max_tokens < 16:
            raise RecipeError(f"captioner.max_tokens is {self.max_tokens}; use at least 16, such as 512")
        if not 0 <= self.temperature <= 2:
            raise RecipeError(f"captioner.temperature is {self.temperature}; use a value in [0, 2]")


@dataclass
class BuildConfig:
    """Everything a build needs besides the output folder."""

    name: str = "mgrs"
    sources: list[SourceSpec] = field(default_factory=list)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    categories: CategoryConfig = field(default_factory=CategoryConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    images: ImageConfig = field(default_factory=ImageConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    skip_empty: bool = False
    limit: int | None = None
    max_skip_rate: float | None = None

    def validate(self) -> None:
        """Check every rule once; raises RecipeError naming the option, the value and the fix."""
        if not self.sources:
            raise RecipeError("no sources: give a recipe with `sources:` or at least one --source FORMAT:PATH")
        if self.tiling.size <= 0:
            raise RecipeError(f"tiling.size is {self.tiling.size}; use a positive number of pixels such as 800")
        if not 0 <= self.tiling.overlap < self.tiling.size:
            raise RecipeError(
                f"tiling.overlap is {self.tiling.overlap}; it must be at least 0 and below tiling.size ({self.tiling.size})"
            )
        if not 0 < self.tiling.min_visible_fraction <= 1:
            raise RecipeError(
                f"tiling.min_visible_fraction is {self.tiling.min_visible_fraction}; use a share in (0, 1] such as 0.7"
            )
        if self.categories.granularity not in GRANULARITIES:
            raise RecipeError(f"categories.granularity is {self.categories.granularity!r}; use fine or coarse")
        if self.categories.unknown not in ("other", "skip"):
            raise RecipeError(f"categories.unknown is {self.categories.unknown!r}; use other or skip")
        if self.geometry.invalid_polygons not in ("repair", "drop"):
            raise RecipeError(f"geometry.invalid_polygons is {self.geometry.invalid_polygons!r}; use repair or drop")
        if self.images.encoding not in ("auto", "png", "jpeg"):
            raise RecipeError(f"images.encoding is {self.images.encoding!r}; use auto, png or jpeg")
        if self.images.huge not in ("tile", "skip"):
            raise RecipeError(f"images.huge is {self.images.huge!r}; use tile (read large scenes tile by tile) or skip")
        if self.images.max_pixels <= 0:
            raise RecipeError(f"images.max_pixels is {self.images.max_pixels}; use a positive number of pixels")
        if self.output.rows_per_shard is not None and self.output.num_shards is not None:
            raise RecipeError("output.rows_per_shard and output.num_shards are both set; set only one")
        for name in ("rows_per_shard", "num_shards"):
            value = getattr(self.output, name)
            if value is not None and value <= 0:
                raise RecipeError(f"output.{name} is {value}; use a positive number")
        if not 0 <= self.splits.holdout_fraction < 1:
            raise RecipeError(f"splits.holdout_fraction is {self.splits.holdout_fraction}; use a share in [0, 1)")
        self.captioner.validate()
        _validate_dedup(self.dedup)
        for spec in self.sources:
            _validate_sampling(spec)
        if self.max_skip_rate is not None and not 0 <= self.max_skip_rate <= 1:
            raise RecipeError(f"max_skip_rate is {self.max_skip_rate}; use a share in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Return a hash of every setting that changes the output, for resuming and provenance."""
        settings = self.to_dict()
        settings.pop("max_skip_rate")
        # Server address, concurrency, retries and cache location do not change the captions.
        settings["captioner"] = self.captioner.output_settings()
        text = json.dumps(settings, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _validate_dedup(dedup: DedupConfig) -> None:
    if not 0 <= dedup.max_distance <= 32:
        raise RecipeError(f"dedup.max_distance is {dedup.max_distance}; use a Hamming distance in [0, 32], such as 1")
    if not 0 <= dedup.merge_iou < 1:
        raise RecipeError(f"dedup.merge_iou is {dedup.merge_iou}; use a share in [0, 1), such as 0.5")
    if not isinstance(dedup.priority, list) or not all(isinstance(name, str) for name in dedup.priority):
        raise RecipeError(f"dedup.priority is {dedup.priority!r}; write a list of source names such as [isaid, dota-v1.0]")


def _validate_sampling(spec: SourceSpec) -> None:
    where = f"source {spec.format}:{spec.path}"
    if spec.limit is not None and spec.limit <= 0:
        raise RecipeError(f"{where}: limit is {spec.limit}; use a positive number of scenes or leave it out")
    if spec.sample_fraction is not None and not 0 < spec.sample_fraction <= 1:
        raise RecipeError(f"{where}: sample_fraction is {spec.sample_fraction}; use a share in (0, 1]")
    if spec.splits is not None and (not isinstance(spec.splits, list) or not all(isinstance(s, str) for s in spec.splits)):
        raise RecipeError(f"{where}: splits is {spec.splits!r}; write a list of split names such as [train, val]")


def load_recipe(path: str | Path | None, root: str | Path | None = None) -> BuildConfig:
    """Load a recipe file into a BuildConfig; with no path, return the defaults."""
    if path is None:
        return BuildConfig()
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} not found; check the path of the recipe file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise RecipeError(f"cannot read recipe {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise RecipeError(f"recipe {path} is not valid YAML{where}: {problem}") from error
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path} must be a YAML mapping with keys such as sources and tiling")
    return config_from_dict(data, root=Path(root) if root is not None else Path.cwd(), origin=str(path))


def config_from_dict(data: dict[str, Any], root: Path, origin: str = "recipe") -> BuildConfig:
    config = BuildConfig()
    known = {f.name for f in dataclasses.fields(BuildConfig)}
    for key, value in data.items():
        if key not in known:
            raise RecipeError(f"{origin}: unknown key {key!r}; known keys: {', '.join(sorted(known))}")
        if key == "sources":
            if value is not None and not isinstance(value, list):
                raise RecipeError(f"{origin}: sources must be a list; write for example `sources: [{value}]`")
            config.sources = [_source_from_dict(entry, root, origin) for entry in value or []]
        elif dataclasses.is_dataclass(getattr(config, key)):
            setattr(config, key, _section(type(getattr(config, key)), value or {}, f"{origin}: {key}"))
        else:
            _check_type(f"{origin}: {key}", value, typing.get_type_hints(BuildConfig)[key])
            setattr(config, key, value)
    return config


def resolve_path(text: str, root: Path) -> str:
    """Expand environment variables and make a path absolute against `root`."""
    expanded = os.path.expandvars(os.path.expanduser(text))
    if "$" in expanded:
        raise RecipeError(f"path {text!r} uses an environment variable that is not set; export it or give the path")
    path = Path(expanded)
    return str(path if path.is_absolute() else (root / path))


def _source_from_dict(entry: Any, root: Path, origin: str) -> SourceSpec:
    if isinstance(entry, str):
        spec = SourceSpec.parse(entry)
    elif isinstance(entry, dict) and "format" in entry and "path" in entry:
        known = [f.name for f in dataclasses.fields(SourceSpec)]
        unknown = set(entry) - set(known)
        if unknown:
            raise RecipeError(f"{origin}: source entry has unknown key(s) {', '.join(sorted(map(str, unknown)))}; known keys: {', '.join(known)}")
        version = entry.get("version")
        spec = SourceSpec(format=str(entry["format"]), path=str(entry["path"]), version=None if version is None else str(version))
        _apply_sampling(spec, entry, origin)
    else:
        raise RecipeError(f"{origin}: source entry {entry!r} needs `format` and `path`")
    spec.path = resolve_path(spec.path, root)
    return spec


def _apply_sampling(spec: SourceSpec, entry: dict[str, Any], origin: str) -> None:
    """Copy the sampling keys of a recipe source entry onto `spec`, checking their types."""
    hints = typing.get_type_hints(SourceSpec)
    for name in ("limit", "sample_fraction", "seed"):
        if name in entry:
            _check_type(f"{origin}: source {spec.format}.{name}", entry[name], hints[name])
            setattr(spec, name, entry[name])
    if entry.get("splits") is not None:
        splits = entry["splits"]
        if not isinstance(splits, list) or not all(isinstance(split, str) for split in splits):
            raise RecipeError(f"{origin}: source {spec.format}.splits is {splits!r}; write a list of split names such as [train, val]")
        spec.splits = list(splits)


def _section(cls: type, values: dict[str, Any], origin: str) -> Any:
    if not isinstance(values, dict):
        raise RecipeError(f"{origin} must be a mapping, got {values!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise RecipeError(f"{origin}: unknown key(s) {', '.join(sorted(unknown))}; known keys: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        _check_type(f"{origin}.{name}", value, hints[name])
    return cls(**values)


def _check_type(option: str, value: Any, hint: Any) -> None:
    """Raise RecipeError when a recipe value does not have the type its setting declares."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return
    for kind in allowed:
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind in (str, bool) and isinstance(value, kind):
            return
        # Element types of lists are checked by the validation of the setting that contains them.
        if typing.get_origin(kind) is list and isinstance(value, list):
            return
    names = " or ".join("null" if kind is type(None) else kind.__name__ for kind in allowed)
    raise RecipeError(f"{option} is {value!r} ({type(value).__name__}); write a value of type {names}")
