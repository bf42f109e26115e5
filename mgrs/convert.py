"""The conversion of one planned scene into records: geometry, categories, tiles, image bytes, captions.

Runs in worker processes. Every object of the scene ends in at least one region or in one counted skip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgrs.captions.base import Captioner
from mgrs.geometry import InvalidGeometry, Shape, box_shape, clip_to_window, make_shape, polygonal_part
from mgrs.imaging import ImageReadError, encode, keeps_original_bytes, load_scene, sha256_file
from mgrs.merge import duplicate_boxes
from mgrs.plan import PlannedScene
from mgrs.recipe import BuildConfig
from mgrs.report import Tally
from mgrs.schema import Record, Region, Tile
from mgrs.sources.base import ANNOTATION, IMAGE, SceneAnnotations, SceneRef, Skip, Source, SourceObject
from mgrs.taxonomy import Category, Taxonomy

logger = logging.getLogger(__name__)

# Outlines from masks are simplified by this many pixels before they are stored as polygons.
MASK_SIMPLIFY_PX = 0.5
SUFFIX_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


@dataclass
class SceneResult:
    """The rows of one scene, keyed by image id, and its accounting."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)


@dataclass
class _Object:
    """A source object whose outline and category are resolved."""

    source: SourceObject
    shape: Shape
    category: Category
    polygon_kind: str  # "quad", "mask" or "box"
    placed: bool = False
    best_fraction: float = 0.0


class SceneConverter:
    """Converts planned scenes with one configuration, taxonomy and captioner."""

    def __init__(self, config: BuildConfig, sources: list[Source], taxonomy: Taxonomy, captioner: Captioner):
        self.config = config
        self.sources = sources
        self.taxonomy = taxonomy
        self.captioner = captioner

    def convert(self, scene: PlannedScene) -> SceneResult:
        result = SceneResult()
        tally = result.tally
        source = self.sources[scene.source_index]
        ref = scene.ref
        tally.images_read += 1

        annotations = self._load_annotations(source, ref, tally)
        tally.annotations_read += len(annotations.objects) + sum(1 for s in annotations.skips if s.unit == ANNOTATION)
        for skip in annotations.skips:
            tally.skip(skip)
        copies = self._load_copies(scene, tally)

        try:
            # A scene above images.max_pixels comes back as a WindowedScene that decodes one band of tiles at a time.
            loaded = load_scene(ref.image_path, self.config.images.max_pixels, self.config.images.huge)
        except ImageReadError as error:
            tally.skip(Skip(error.reason, ref.image, str(error), IMAGE))
            for obj in [*annotations.objects, *(obj for _, copy in copies for obj in copy.objects)]:
                tally.skip(Skip("image_not_readable", ref.image, obj.where))
            return result
        if loaded.size != (scene.width, scene.height):
            tally.skip(Skip("image_size_changed", ref.image, f"header {scene.width}x{scene.height}, decoded {loaded.size}", IMAGE))
            loaded.close()
            return result

        label_file = ref.annotations[0] if ref.annotations else ref.image
        objects = self._resolve_objects(annotations, label_file, tally, ref.source)
        objects = self._merge_copies(objects, copies, annotations, tally)
        checksum = sha256_file(ref.image_path)
        tiled = scene.tiled
        for image_id, window in zip(scene.image_ids, scene.windows):
            regions = self._regions_in_window(objects, window, tally, tiled)
            if not regions and self.config.skip_empty:
                tally.skip(Skip("empty_record", image_id, "no regions", "record"))
                continue
            record = self._record(scene, source, loaded, window, tiled, image_id, regions, annotations, checksum)
            captions = self.captioner.caption(record, exhaustive=annotations.exhaustive)
            record.short_caption = captions.short
            record.long_caption = captions.long
            record.caption_source = self.captioner.name
            result.rows[image_id] = record.to_row()
            tally.records[scene.split] += 1
            tally.records_by_source[ref.source] += 1
            tally.regions += len(regions)
            tally.regions_by_source[ref.source] += len(regions)

        loaded.close()
        self._account_unplaced(objects, label_file, tiled, tally)
        return result

    def _load_annotations(self, source: Source, ref: SceneRef, tally: Tally) -> SceneAnnotations:
        try:
            return source.load(ref)
        except Exception as error:  # noqa: BLE001 (an adapter bug must not stop the build; it is counted)
            logger.warning("reading the annotations of %s failed: %s", ref.image, error, exc_info=logger.isEnabledFor(logging.DEBUG))
            tally.skip(Skip("unreadable_annotation", ref.image, f"{type(error).__name__}: {error}"))
            return SceneAnnotations()

    def _load_copies(self, scene: PlannedScene, tally: Tally) -> list[tuple[SceneRef, SceneAnnotations]]:
        """Load the annotations of the duplicates that deduplication merged into this scene, counted like its own."""
        copies = []
        for source_index, copy_ref in scene.merged:
            annotations = self._load_annotations(self.sources[source_index], copy_ref, tally)
            tally.annotations_read += len(annotations.objects) + sum(1 for s in annotations.skips if s.unit == ANNOTATION)
            for skip in annotations.skips:
                tally.skip(skip)
            copies.append((copy_ref, annotations))
        return copies

    def _format_of(self, source_name: str) -> str | None:
        """Return the format of the source whose records are named `source_name`, for per-source aliases."""
        for source in self.sources:
            if source.name == source_name:
                return source.format
        return None

    def _merge_copies(
        self, objects: list[_Object], copies: list[tuple[SceneRef, SceneAnnotations]], annotations: SceneAnnotations, tally: Tally
    ) -> list[_Object]:
        """Add the objects of duplicate copies that the kept scene does not already have.

        A copy's object is dropped (skip reason `duplicate_region`) when an object already kept has the
        same category and a box IoU above `dedup.merge_iou`. Facts about each copy go to `merged_from`
        in the record's `extra`.
        """
        if not copies:
            return objects
        merged = list(objects)
        facts = []
        for copy_ref, copy_annotations in copies:
            copy_file = copy_ref.annotations[0] if copy_ref.annotations else copy_ref.image
            added = self._resolve_objects(copy_annotations, copy_file, tally, copy_ref.source)
            repeated = duplicate_boxes(
                [(obj.shape.geometry.bounds, obj.category.id) for obj in merged],
                [(obj.shape.geometry.bounds, obj.category.id) for obj in added],
                self.config.dedup.merge_iou,
            )
            for index, obj in enumerate(added):
                where = f"{copy_ref.source}:{copy_ref.image} {obj.source.where}".strip()
                if index in repeated:
                    tally.skip(Skip("duplicate_region", copy_ref.image, f"{obj.source.where} ({obj.source.label}): the kept copy has this object"))
                    continue
                obj.source.where = where
                merged.append(obj)

            if annotations.gsd is None and copy_annotations.gsd is not None:
                annotations.gsd = copy_annotations.gsd
            fact = {"source": copy_ref.source, "image": copy_ref.image, "regions_added": len(added) - len(repeated), "regions_repeated": len(repeated)}
            if copy_annotations.extra:
                fact["extra"] = dict(copy_annotations.extra)
            facts.append(fact)
        annotations.extra["merged_from"] = facts
        return merged

    def _resolve_objects(self, annotations: SceneAnnotations, file: str, tally: Tally, source_name: str) -> list[_Object]:
        resolved = []
        unknown = self.config.categories.unknown
        granularity = self.config.categories.granularity
        repair = self.config.geometry.invalid_polygons == "repair"

        source_format = self._format_of(source_name)
        for obj in annotations.objects:
            where = f"{obj.where} ({obj.label})" if obj.where else obj.label
            category = self.taxonomy.resolve(obj.label, granularity, source_format)
            if category is None:
                if unknown == "skip":
                    tally.skip(Skip("unknown_category", file, where))
                    continue
                category = self.taxonomy.other
                tally.note("unknown_category_as_other")

            try:
                shape, kind = self._shape(obj, repair)
            except InvalidGeometry as error:
                tally.skip(Skip(error.reason, file, f"{where}: {error}"))
                continue
            if shape.repaired:
                tally.note("repaired_polygon")
            resolved.append(_Object(obj, shape, category, kind))
        return resolved

    @staticmethod
    def _shape(obj: SourceObject, repair: bool) -> tuple[Shape, str]:
        if obj.geometry is not None:
            geometry = polygonal_part(obj.geometry)
            if geometry is None or geometry.area <= 0:
                raise InvalidGeometry("degenerate_polygon", "mask outline has no area")
            return Shape(geometry), "mask"
        if obj.points is None:
            raise InvalidGeometry("invalid_coordinates", "object has neither points nor geometry")
        if obj.oriented:
            return make_shape(obj.points, repair=repair), "quad"
        xs = [p[0] for p in obj.points]
        ys = [p[1] for p in obj.points]
        return box_shape(min(xs), min(ys), max(xs), max(ys)), "box"

    def _regions_in_window(
        self, objects: list[_Object], window: tuple[int, int, int, int], tally: Tally, tiled: bool
    ) -> list[Region]:
        regions = []
        threshold = self.config.tiling.min_visible_fraction
        for obj in objects:
            tolerance = MASK_SIMPLIFY_PX if obj.polygon_kind == "mask" else 0.0
            clipped = clip_to_window(obj.shape, window, keep_polygon=obj.polygon_kind != "box", simplify_tolerance=tolerance)
            if clipped is None:
                continue
            obj.best_fraction = max(obj.best_fraction, clipped.visible_fraction)
            if clipped.visible_fraction < threshold:
                if tiled:
                    tally.note("region_cut_at_window_border")
                continue
            obj.placed = True
            regions.append(
                Region(
                    bbox=clipped.bbox,
                    polygon=clipped.polygon,
                    category=obj.category.name,
                    category_id=obj.category.id,
                    source_category=obj.source.label,
                    caption=self.captioner.region_caption(obj.category.name),
                    difficult=obj.source.difficult,
                    visible_fraction=clipped.visible_fraction,
                )
            )
        return regions

    def _account_unplaced(self, objects: list[_Object], file: str, tiled: bool, tally: Tally) -> None:
        for obj in objects:
            if obj.placed:
                tally.annotations_placed += 1
                continue
            where = f"{obj.source.where} ({obj.source.label})"
            if obj.best_fraction == 0.0:
                tally.skip(Skip("outside_image", file, where))
            elif tiled:
                tally.skip(Skip("cut_by_tiling", file, f"{where}: at most {obj.best_fraction:.2f} visible in one tile"))
            else:
                tally.skip(Skip("mostly_outside_image", file, f"{where}: {obj.best_fraction:.2f} visible"))

    def _record(self, scene, source, loaded, window, tiled, image_id, regions, annotations, checksum) -> Record:
        ref = scene.ref
        x, y, width, height = window
        extra: dict[str, Any] = dict(annotations.extra)
        extra.update(loaded.facts)
        if ref.meta:
            extra.update(ref.meta)
        if not annotations.exhaustive:
            extra["exhaustive_labels"] = False

        image_path = None
        if not tiled and keeps_original_bytes(loaded):
            image_bytes = ref.image_path.read_bytes()
            if SUFFIX_FORMATS.get(Path(ref.image).suffix.lower()) == loaded.format:
                image_path = ref.image
            else:
                extra["stored_format"] = loaded.format
        else:
            pixels = loaded.crop(window)
            image_bytes = encode(pixels, self._encoding(source, loaded), self.config.images.jpeg_quality)
            if tiled:
                extra["reencoded"] = "tile"
            else:
                extra["reencoded"] = f"converted from {loaded.original_mode} {loaded.format}"

        return Record(
            image_bytes=image_bytes,
            image_path=image_path,
            image_id=image_id,
            source=ref.source,
            source_image=ref.image,
            source_sha256=checksum,
            tile=Tile(x, y, width, height),
            width=width,
            height=height,
            gsd=annotations.gsd,
            split=scene.split,
            license=source.license,
            regions=regions,
            extra=extra,
        )

    def _encoding(self, source: Source, loaded) -> str:
        chosen = self.config.images.encoding
        if chosen != "auto":
            return chosen
        if loaded.format == "JPEG":
            return "jpeg"
        return source.encoding if source.encoding in ("png", "jpeg") else "png"
