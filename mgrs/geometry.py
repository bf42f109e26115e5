"""Object geometry with shapely: repair, clipping to an image or tile, and the tiling grid.

All coordinates are continuous pixel coordinates with the origin at the top-left corner of the raw
image, x to the right and y down.
"""

from __future__ import annotations

from dataclasses import dataclass

import shapely
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry

# Below this area (px²) a polygon carries no visible object.
MIN_AREA = 1e-6


@dataclass
class Shape:
    """A repaired object outline; `repaired` records whether it had to be fixed."""

    geometry: BaseGeometry
    repaired: bool = False
    # The vertices as written by the source, kept when the outline is valid as written.
    ring: list[tuple[float, float]] | None = None


class InvalidGeometry(ValueError):
    """An outline that cannot become a region; `reason` is the skip reason of the build report."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def make_shape(points: list[tuple[float, float]], repair: bool = True) -> Shape:
    """Turn a vertex list into a valid polygon.

    A self-intersecting quad (a bow-tie, from vertices written in the wrong order) is replaced by its
    convex hull, which is the rectangle the annotator meant; a longer self-intersecting outline is
    repaired with `make_valid`. Raises `InvalidGeometry` for too few vertices, non-finite values,
    zero area, or an invalid outline when `repair` is off.
    """
    if len(points) >= 2 and points[0] == points[-1]:
        points = points[:-1]
    if len(points) < 3:
        raise InvalidGeometry("degenerate_polygon", f"{len(points)} distinct vertices, need at least 3")
    if not all(map(_finite, (c for point in points for c in point))):
        raise InvalidGeometry("invalid_coordinates", f"non-finite coordinate in {points}")

    polygon = Polygon(points)
    # The two lobes of a bow-tie cancel in the signed area, so zero area is tested on the convex hull.
    if polygon.convex_hull.area <= MIN_AREA or (polygon.is_valid and polygon.area <= MIN_AREA):
        raise InvalidGeometry("degenerate_polygon", f"zero-area outline {points}")
    if polygon.is_valid:
        return Shape(polygon, repaired=False, ring=list(points))
    if not repair:
        raise InvalidGeometry("invalid_polygon", f"self-intersecting outline {points}")

    fixed = polygon.convex_hull if len(points) == 4 else shapely.make_valid(polygon)
    fixed = polygonal_part(fixed)
    if fixed is None or fixed.area <= MIN_AREA:
        raise InvalidGeometry("degenerate_polygon", f"outline {points} has no area after repair")
    return Shape(fixed, repaired=True)


def box_shape(x1: float, y1: float, x2: float, y2: float) -> Shape:
    """Make a shape from a horizontal box, accepting corners in either order."""
    values = (x1, y1, x2, y2)
    if not all(map(_finite, values)):
        raise InvalidGeometry("invalid_coordinates", f"non-finite box {values}")
    left, right = sorted((x1, x2))
    top, bottom = sorted((y1, y2))
    if right - left <= 0 or bottom - top <= 0:
        raise InvalidGeometry("degenerate_box", f"box {values} has no area")
    return Shape(box(left, top, right, bottom), ring=None)


def polygonal_part(geometry: BaseGeometry) -> BaseGeometry | None:
    """Return the polygons of a geometry (dropping lines and points), or None when there are none."""
    if isinstance(geometry, (Polygon, MultiPolygon)):
        return geometry if not geometry.is_empty else None
    parts = [g for g in getattr(geometry, "geoms", []) if isinstance(g, Polygon) and not g.is_empty]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def largest_polygon(geometry: BaseGeometry) -> Polygon | None:
    """Return the largest polygon of a (multi)polygon, or None when the geometry has no area."""
    part = polygonal_part(geometry)
    if part is None:
        return None
    if isinstance(part, Polygon):
        return part
    return max(part.geoms, key=lambda g: g.area)


@dataclass
class Clipped:
    """An outline clipped to a window, in the window's pixel coordinates."""

    bbox: tuple[float, float, float, float]
    polygon: list[float] | None
    visible_fraction: float


def clip_to_window(
    shape: Shape,
    window: tuple[int, int, int, int],
    keep_polygon: bool = True,
    simplify_tolerance: float = 0.0,
) -> Clipped | None:
    """Clip a shape to the window (x, y, width, height) and shift it to window coordinates.

    Returns None when nothing of the shape lies inside the window. `visible_fraction` is the clipped
    area over the full area of the shape. The polygon is the exterior ring of the clipped outline (the
    largest part when clipping splits it, holes dropped); a shape that lies wholly inside keeps its
    vertices in the source's order. `simplify_tolerance` (px) thins the stored ring, not the box.
    """
    x, y, width, height = window
    full_area = shape.geometry.area
    frame = box(x, y, x + width, y + height)

    if frame.contains(shape.geometry):
        clipped = shape.geometry
        fraction = 1.0
    else:
        clipped = polygonal_part(shape.geometry.intersection(frame))
        if clipped is None or clipped.area <= MIN_AREA:
            return None
        fraction = min(1.0, clipped.area / full_area)

    left, top, right, bottom = clipped.bounds
    bbox = (left - x, top - y, right - x, bottom - y)

    polygon = None
    if keep_polygon:
        if clipped is shape.geometry and shape.ring is not None:
            ring = shape.ring
        else:
            outline = largest_polygon(clipped)
            if simplify_tolerance > 0:
                outline = outline.simplify(simplify_tolerance, preserve_topology=True)
            ring = list(outline.exterior.coords)[:-1]
        polygon = [c for px, py in ring for c in (px - x, py - y)]
    return Clipped(bbox=bbox, polygon=polygon, visible_fraction=fraction)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Return tile offsets along one axis; the last tile is shifted inward to end at the edge."""
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap {overlap} must be at least 0 and smaller than the tile size {tile}")
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def tile_windows(width: int, height: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Return the windows (x, y, width, height) that cover an image, row by row.

    An image no larger than `tile` in either dimension gives one window over the whole image; a
    dimension smaller than the tile keeps its full size, so windows are never padded.
    """
    tile_width = min(tile, width)
    tile_height = min(tile, height)
    return [
        (x, y, tile_width, tile_height)
        for y in tile_starts(height, tile, overlap)
        for x in tile_starts(width, tile, overlap)
    ]


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))
