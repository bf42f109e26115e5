"""The planning pass of a build: find every scene, fix its tiles, ids and split, and deal rows to shards.

Planning reads image headers only. It fixes the full list of record ids before any pixel is decoded,
so shard names (`-of-NNNNN`) are known up front, and the same inputs give the same shards whatever the
number of workers.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from mgrs.dedup import dedup_scenes
from mgrs.geometry import tile_windows
from mgrs.imaging import ImageReadError, read_size
from mgrs.recipe import BuildConfig
from mgrs.report import Tally
from mgrs.sampling import sample_scenes
from mgrs.sources.base import IMAGE, SceneRef, Skip, Source, get_source

logger = logging.getLogger(__name__)

HOLDOUT_SPLIT = "validation"


@dataclass
class PlannedScene:
    """One raw image and the records it becomes: one per window."""

    source_index: int
    ref: SceneRef
    width: int
    height: int
    windows: list[tuple[int, int, int, int]]
    image_ids: list[str]
    split: str
    file_size: int
    # Sizes and modification times of the image and annotation files, so edited inputs are rebuilt.
    input_stamp: str = ""
    # Duplicates removed by deduplication, as (source index, ref); their annotations are merged into this scene.
    merged: list[tuple[int, SceneRef]] = field(default_factory=list)

    @property
    def tiled(self) -> bool:
        return is_tiled(self.windows, self.width, self.height)


@dataclass
class ShardPlan:
    """One output shard: its file name and the record ids it contains, in order."""

    split: str
    index: int
    count: int
    image_ids: list[str]

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index, self.count)


@dataclass
class Plan:
    scenes: list[PlannedScene] = field(default_factory=list)
    shards: list[ShardPlan] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    estimated_bytes: int = 0
    # The `dedup` section of the build report: removed duplicates and the copies they matched.
    dedup: dict = field(default_factory=dict)

    def fingerprint(self, config_fingerprint: str) -> str:
        """Return a hash of the planned ids and the settings, which identifies a build for resuming."""
        digest = hashlib.sha256(config_fingerprint.encode())
        for scene in self.scenes:
            digest.update(scene.input_stamp.encode())
            for source_index, ref in scene.merged:
                digest.update(f"merged:{source_index}:{ref.source}:{ref.image}".encode())
        for shard in self.shards:
            digest.update(shard.name.encode())
            digest.update("\n".join(shard.image_ids).encode())
        return digest.hexdigest()[:16]


def shard_name(split: str, index: int, count: int) -> str:
    """Return the shard path relative to the dataset folder, in the layout the Hub reads."""
    return f"data/{split}-{index:05d}-of-{count:05d}.parquet"


def is_tiled(windows: list[tuple[int, int, int, int]], width: int, height: int) -> bool:
    """Return whether the windows cut the image, rather than being one window over all of it."""
    return len(windows) > 1 or windows[0] != (0, 0, width, height)


def record_id(source: str, native_id: str, window: tuple[int, int, int, int] | None) -> str:
    """Return the stable id of a record: source, native id and, for tiles, the window."""
    if window is None:
        return f"{source}/{native_id}"
    x, y, width, height = window
    return f"{source}/{native_id}/x{x:05d}_y{y:05d}_w{width:05d}_h{height:05d}"


def make_sources(config: BuildConfig) -> list[Source]:
    """Return one adapter per configured source, with the recipe's adapter options applied."""
    sources = []
    for spec in config.sources:
        source = get_source(spec.format, spec.version)
        if hasattr(source, "min_instance_area"):
            source.min_instance_area = config.geometry.min_mask_area
        sources.append(source)
    return sources


def make_plan(config: BuildConfig, workers: int = 1) -> Plan:
    """Scan every source, read image sizes, sample, remove duplicates, and assign records to shards.

    `workers` processes decode images for deduplication; the plan does not depend on their number.
    """
    plan = Plan()
    scenes: list[PlannedScene] = []
    seen_ids: set[str] = set()
    sources = make_sources(config)

    for source_index, (spec, source) in enumerate(zip(config.sources, sources)):
        root = Path(spec.path)
        for item in source.scan(root):
            if isinstance(item, Skip):
                plan.tally.skip(item)
                continue
            scene = _plan_scene(source, source_index, item, config, plan.tally)
            if scene is None:
                continue
            if scene.image_ids[0] in seen_ids:
                plan.tally.skip(Skip("duplicate_image_id", item.image, f"id {scene.image_ids[0]} is already used", IMAGE))
                continue
            seen_ids.add(scene.image_ids[0])
            scenes.append(scene)

    scenes = sample_scenes(scenes, config, plan.tally)
    if config.dedup.enabled:
        scenes, plan.dedup = dedup_scenes(scenes, config, [source.name for source in sources], workers)

    scenes.sort(key=lambda s: s.image_ids[0])
    if config.limit is not None:
        scenes = scenes[: config.limit]
    plan.scenes = scenes
    plan.estimated_bytes = sum(s.file_size for s in scenes)
    plan.shards = _deal_shards(scenes, config)
    return plan


def _plan_scene(
    source: Source, source_index: int, ref: SceneRef, config: BuildConfig, tally: Tally
) -> PlannedScene | None:
    try:
        width, height = read_size(ref.image_path, config.images.max_pixels, config.images.huge)
    except ImageReadError as error:
        tally.skip(Skip(error.reason, ref.image, str(error), IMAGE))
        return None

    windows = tile_windows(width, height, config.tiling.size, config.tiling.overlap)
    # A scene above the pixel limit is read one window at a time, so a window must stay below the limit.
    window_pixels = windows[0][2] * windows[0][3]
    if width * height > config.images.max_pixels and window_pixels > config.images.max_pixels:
        detail = f"{width}x{height} scene with {windows[0][2]}x{windows[0][3]} tiles above images.max_pixels ({config.images.max_pixels}); lower tiling.size"
        tally.skip(Skip("image_too_large", ref.image, detail, IMAGE))
        return None
    tiled = is_tiled(windows, width, height)
    ids = [record_id(ref.source, ref.native_id, window if tiled else None) for window in windows]
    split = _holdout_split(ref, config)
    return PlannedScene(
        source_index=source_index,
        ref=ref,
        width=width,
        height=height,
        windows=windows,
        image_ids=ids,
        split=split,
        file_size=ref.image_path.stat().st_size,
        input_stamp=_input_stamp(ref),
    )


def _input_stamp(ref: SceneRef) -> str:
    parts = []
    for relative in (ref.image, *ref.annotations):
        try:
            status = (Path(ref.root) / relative).stat()
        except OSError:
            parts.append(f"{relative}:missing")
            continue
        parts.append(f"{relative}:{status.st_size}:{status.st_mtime_ns}")
    return "|".join(parts)


def _holdout_split(ref: SceneRef, config: BuildConfig) -> str:
    fraction = config.splits.holdout_fraction
    if fraction <= 0:
        return ref.split
    # Patches cut from one scene share the scene's name, so they land in the same split.
    scene = ref.meta.get("patch_of", {}).get("scene", ref.native_id)
    key = f"{config.splits.holdout_seed}/{ref.source}/{scene}".encode()
    draw = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    return HOLDOUT_SPLIT if draw < fraction else ref.split


def _deal_shards(scenes: list[PlannedScene], config: BuildConfig) -> list[ShardPlan]:
    ids_by_split: dict[str, list[str]] = {}
    bytes_by_split: dict[str, int] = {}
    for scene in scenes:
        ids_by_split.setdefault(scene.split, []).extend(scene.image_ids)
        bytes_by_split[scene.split] = bytes_by_split.get(scene.split, 0) + scene.file_size

    shards: list[ShardPlan] = []
    for split in sorted(ids_by_split):
        ids = sorted(ids_by_split[split])
        count = _shard_count(len(ids), bytes_by_split[split], config)
        bounds = [round(i * len(ids) / count) for i in range(count + 1)]
        for index in range(count):
            shards.append(ShardPlan(split, index, count, ids[bounds[index] : bounds[index + 1]]))
    return shards


def _shard_count(rows: int, estimated_bytes: int, config: BuildConfig) -> int:
    output = config.output
    if output.num_shards is not None:
        return max(1, min(output.num_shards, rows))
    if output.rows_per_shard is not None:
        return max(1, math.ceil(rows / output.rows_per_shard))
    # A shard contains at least one row, however large the images are.
    return max(1, min(rows, math.ceil(estimated_bytes / output.target_shard_bytes)))
