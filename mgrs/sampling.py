"""Per-source filters and seeded sampling of planned scenes (`splits`, `sample_fraction`, `limit`).

Each scene gets a draw in [0, 1) from a hash of the source's seed, the source name and the scene name.
The sample therefore does not depend on the order of files on disk, and patches cut from one scene
share a draw. `sample_fraction` keeps the scenes whose draw is below it, and `limit` then keeps the scenes
with the smallest draws. A smaller fraction or limit with the same seed gives a subset of the larger
sample.
"""

from __future__ import annotations

import hashlib
import logging

from mgrs.recipe import BuildConfig
from mgrs.report import Tally

logger = logging.getLogger(__name__)


def scene_draw(seed: int, source: str, scene_name: str) -> float:
    """Return the seeded draw in [0, 1) of one scene."""
    key = f"{seed}/{source}/{scene_name}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


def sample_scenes(scenes: list, config: BuildConfig, tally: Tally) -> list:
    """Apply each source's `splits`, `sample_fraction` and `limit` to planned scenes.

    `scenes` are `PlannedScene`s; the result keeps their order. Scenes left out are counted as the
    notes `not_in_source_splits` and `not_sampled`, which are filters, not skips.
    """
    by_source: dict[int, list] = {}
    for scene in scenes:
        by_source.setdefault(scene.source_index, []).append(scene)

    kept_ids: set[int] = set()
    for source_index, source_scenes in by_source.items():
        spec = config.sources[source_index]
        chosen = source_scenes
        if spec.splits is not None:
            allowed = set(spec.splits)
            chosen = [scene for scene in chosen if scene.ref.split in allowed]
            tally.note("not_in_source_splits", len(source_scenes) - len(chosen))

        if spec.sample_fraction is not None or spec.limit is not None:
            before = len(chosen)
            chosen = _sample(chosen, spec.sample_fraction, spec.limit, spec.seed)
            tally.note("not_sampled", before - len(chosen))
            logger.info("sampled %d of %d scenes of %s", len(chosen), before, spec.format)
        kept_ids.update(id(scene) for scene in chosen)

    return [scene for scene in scenes if id(scene) in kept_ids]


def _sample(scenes: list, fraction: float | None, limit: int | None, seed: int) -> list:
    drawn = []
    for scene in scenes:
        ref = scene.ref
        scene_name = ref.meta.get("patch_of", {}).get("scene", ref.native_id)
        drawn.append((scene_draw(seed, ref.source, scene_name), scene.image_ids[0], scene))
    if fraction is not None:
        drawn = [item for item in drawn if item[0] < fraction]
    drawn.sort(key=lambda item: (item[0], item[1]))
    if limit is not None:
        # NOTE: the limit counts scenes; patches of one scene share a draw, so they stay together
        # only when the limit does not fall between them.
        drawn = drawn[:limit]
    return [item[2] for item in drawn]
