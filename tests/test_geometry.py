"""Tests of outline repair, clipping to windows and the tiling grid in `mgrs.geometry`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import MultiPolygon, Polygon

from mgrs.geometry import (
    InvalidGeometry,
    Shape,
    box_shape,
    clip_to_window,
    make_shape,
    tile_starts,
    tile_windows,
)

SQUARE = [(10.0, 10.0), (30.0, 10.0), (30.0, 30.0), (10.0, 30.0)]


def ring_points(flat: list[float]) -> list[tuple[float, float]]:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


# make_shape ---------------------------------------------------------------------------------------


def test_make_shape_keeps_vertex_order():
    # Counter-clockwise in image coordinates, starting at a chosen vertex: both must survive.
    points = [(30.0, 10.0), (10.0, 10.0), (10.0, 30.0), (30.0, 30.0)]

    shape = make_shape(points)

    assert shape.repaired is False
    assert shape.ring == points
    assert list(shape.geometry.exterior.coords)[:-1] == points
    assert shape.geometry.area == pytest.approx(400.0)


def test_make_shape_accepts_closed_ring():
    shape = make_shape([*SQUARE, SQUARE[0]])

    assert shape.repaired is False
    assert shape.ring == SQUARE
    assert shape.geometry.area == pytest.approx(400.0)


@pytest.mark.parametrize(
    "bow_tie",
    [
        # A rectangle with its last two vertices swapped: the signed lobe areas cancel to zero.
        [(0.0, 0.0), (20.0, 0.0), (0.0, 10.0), (20.0, 10.0)],
        [(0.0, 0.0), (10.0, 10.0), (10.0, 0.0), (0.0, 10.0)],
        # An asymmetric bow-tie whose lobes do not cancel.
        [(0.0, 0.0), (30.0, 0.0), (0.0, 10.0), (10.0, 10.0)],
    ],
)
def test_make_shape_repairs_bow_tie(bow_tie):
    shape = make_shape(bow_tie)

    hull = Polygon(bow_tie).convex_hull
    assert shape.repaired is True
    assert shape.ring is None
    assert shape.geometry.is_valid
    assert shape.geometry.equals(hull)
    assert shape.geometry.area == pytest.approx(hull.area)


def test_make_shape_bow_tie_no_repair():
    bow_tie = [(0.0, 0.0), (20.0, 0.0), (0.0, 10.0), (20.0, 10.0)]

    with pytest.raises(InvalidGeometry) as caught:
        make_shape(bow_tie, repair=False)

    assert caught.value.reason == "invalid_polygon"


def test_make_shape_repairs_crossing_outline():
    # Five vertices whose first and fourth edges cross: `make_valid` splits the outline in two lobes.
    points = [(0.0, 0.0), (20.0, 10.0), (20.0, 0.0), (12.0, 3.0), (0.0, 10.0)]

    shape = make_shape(points)

    assert shape.repaired is True
    assert shape.ring is None
    assert shape.geometry.is_valid
    assert shape.geometry.geom_type == "MultiPolygon"
    assert len(shape.geometry.geoms) == 2


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        ([], "degenerate_polygon"),
        ([(0.0, 0.0)], "degenerate_polygon"),
        ([(0.0, 0.0), (5.0, 5.0)], "degenerate_polygon"),
        ([(0.0, 0.0), (5.0, 5.0), (0.0, 0.0)], "degenerate_polygon"),
        ([(0.0, 0.0), (5.0, 5.0), (10.0, 10.0)], "degenerate_polygon"),
        ([(0.0, 0.0), (5.0, 5.0), (10.0, 10.0), (20.0, 20.0)], "degenerate_polygon"),
        ([(3.0, 3.0), (3.0, 3.0), (3.0, 3.0), (3.0, 3.0)], "degenerate_polygon"),
        ([(0.0, 0.0), (10.0, 0.0), (10.0, 0.0), (0.0, 0.0), (0.0, 0.0)], "degenerate_polygon"),
        ([(0.0, 0.0), (10.0, math.nan), (10.0, 10.0), (0.0, 10.0)], "invalid_coordinates"),
        ([(0.0, 0.0), (10.0, 0.0), (math.inf, 10.0), (0.0, 10.0)], "invalid_coordinates"),
        ([(0.0, 0.0), (10.0, 0.0), (10.0, -math.inf), (0.0, 10.0)], "invalid_coordinates"),
    ],
)
@pytest.mark.parametrize("repair", [True, False])
def test_make_shape_rejects(points, reason, repair):
    with pytest.raises(InvalidGeometry) as caught:
        make_shape(points, repair=repair)

    assert caught.value.reason == reason


def test_invalid_geometry_is_value_error():
    with pytest.raises(ValueError):
        make_shape([(0.0, 0.0), (1.0, 1.0)])


# box_shape ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "corners",
    [(10, 20, 50, 60), (50, 60, 10, 20), (50, 20, 10, 60), (10, 60, 50, 20)],
)
def test_box_shape_any_corner_order(corners):
    shape = box_shape(*corners)

    assert shape.geometry.bounds == (10.0, 20.0, 50.0, 60.0)
    assert shape.geometry.area == pytest.approx(1600.0)
    assert shape.repaired is False
    assert shape.ring is None


@pytest.mark.parametrize(
    ("corners", "reason"),
    [
        ((10, 20, 10, 60), "degenerate_box"),
        ((10, 20, 50, 20), "degenerate_box"),
        ((5, 5, 5, 5), "degenerate_box"),
        ((math.nan, 20, 50, 60), "invalid_coordinates"),
        ((10, 20, math.inf, 60), "invalid_coordinates"),
    ],
)
def test_box_shape_rejects(corners, reason):
    with pytest.raises(InvalidGeometry) as caught:
        box_shape(*corners)

    assert caught.value.reason == reason


# clip_to_window -----------------------------------------------------------------------------------


def test_clip_inside_shifts_to_window():
    points = [(130.0, 110.0), (110.0, 110.0), (110.0, 140.0), (130.0, 140.0)]
    shape = make_shape(points)

    clipped = clip_to_window(shape, (100, 100, 50, 50))

    assert clipped is not None
    assert clipped.visible_fraction == 1.0
    assert clipped.bbox == (10.0, 10.0, 30.0, 40.0)
    assert clipped.polygon == [30.0, 10.0, 10.0, 10.0, 10.0, 40.0, 30.0, 40.0]


def test_clip_touching_edge_is_inside():
    shape = box_shape(0, 0, 50, 50)

    clipped = clip_to_window(shape, (0, 0, 50, 50))

    assert clipped is not None
    assert clipped.visible_fraction == 1.0
    assert clipped.bbox == (0.0, 0.0, 50.0, 50.0)


def test_clip_partly_outside_image():
    # A 40 x 20 box hanging 10 px over the left edge of a 100 x 100 image.
    shape = make_shape([(-10.0, 30.0), (30.0, 30.0), (30.0, 50.0), (-10.0, 50.0)])

    clipped = clip_to_window(shape, (0, 0, 100, 100))

    assert clipped is not None
    assert clipped.visible_fraction == pytest.approx(30.0 * 20.0 / (40.0 * 20.0))
    assert clipped.bbox == (0.0, 30.0, 30.0, 50.0)
    xs = clipped.polygon[0::2]
    ys = clipped.polygon[1::2]
    assert min(xs) == 0.0
    assert max(xs) == 30.0
    assert min(ys) == 30.0
    assert max(ys) == 50.0
    assert Polygon(ring_points(clipped.polygon)).area == pytest.approx(600.0)


def test_clip_quad_bbox_from_clipped():
    # A diamond centred on the window's right edge: half of it is visible.
    shape = make_shape([(100.0, 40.0), (120.0, 60.0), (100.0, 80.0), (80.0, 60.0)])

    clipped = clip_to_window(shape, (50, 20, 50, 80))

    assert clipped is not None
    assert clipped.visible_fraction == pytest.approx(0.5)
    assert clipped.bbox == (30.0, 20.0, 50.0, 60.0)
    assert Polygon(ring_points(clipped.polygon)).area == pytest.approx(400.0)


def test_clip_second_tile_coordinates():
    shape = box_shape(610, 420, 650, 460)

    clipped = clip_to_window(shape, (600, 400, 800, 800))

    assert clipped is not None
    assert clipped.bbox == (10.0, 20.0, 50.0, 60.0)


@pytest.mark.parametrize(
    "window",
    [(100, 100, 50, 50), (0, 0, 10, 10), (30, 0, 20, 20)],
)
def test_clip_outside_returns_none(window):
    assert clip_to_window(make_shape(SQUARE), window) is None


def test_clip_shared_edge_is_none():
    # The square ends at x = 30, where this window begins: no area is shared.
    assert clip_to_window(make_shape(SQUARE), (30, 0, 50, 50)) is None


def test_clip_split_concave_keeps_largest_part():
    # A U shape: two legs joined at the bottom. The window cuts the bottom off, leaving both legs.
    u_shape = [
        (0.0, 0.0), (10.0, 0.0), (10.0, 40.0), (20.0, 40.0), (20.0, 0.0),
        (40.0, 0.0), (40.0, 50.0), (0.0, 50.0),
    ]
    shape = make_shape(u_shape)

    clipped = clip_to_window(shape, (0, 0, 100, 30))

    assert clipped is not None
    left_leg = 10.0 * 30.0
    right_leg = 20.0 * 30.0
    assert clipped.visible_fraction == pytest.approx((left_leg + right_leg) / shape.geometry.area)
    largest_part = Polygon(ring_points(clipped.polygon))
    assert largest_part.area == pytest.approx(right_leg)
    assert largest_part.bounds == (20.0, 0.0, 40.0, 30.0)
    # The box covers every visible part, not only the kept polygon.
    assert clipped.bbox == (0.0, 0.0, 40.0, 30.0)


def test_clip_multipolygon_mask():
    mask = MultiPolygon([Polygon([(0, 0), (4, 0), (4, 4), (0, 4)]), Polygon([(10, 10), (20, 10), (20, 20), (10, 20)])])
    shape = Shape(mask)

    inside = clip_to_window(shape, (0, 0, 30, 30))

    assert inside is not None
    assert inside.visible_fraction == 1.0
    assert inside.bbox == (0.0, 0.0, 20.0, 20.0)
    assert Polygon(ring_points(inside.polygon)).area == pytest.approx(100.0)

    cut = clip_to_window(shape, (2, 0, 28, 30))

    assert cut is not None
    assert cut.visible_fraction == pytest.approx((8.0 + 100.0) / 116.0)
    assert cut.bbox == (0.0, 0.0, 18.0, 20.0)


def test_clip_mask_with_hole_drops_hole():
    outer = [(0, 0), (20, 0), (20, 20), (0, 20)]
    hole = [(5, 5), (15, 5), (15, 15), (5, 15)]
    shape = Shape(Polygon(outer, [hole]))

    clipped = clip_to_window(shape, (0, 0, 50, 50))

    assert clipped is not None
    assert Polygon(ring_points(clipped.polygon)).area == pytest.approx(400.0)


def test_clip_without_polygon():
    clipped = clip_to_window(make_shape(SQUARE), (0, 0, 100, 100), keep_polygon=False)

    assert clipped is not None
    assert clipped.polygon is None
    assert clipped.bbox == (10.0, 10.0, 30.0, 30.0)


def test_clip_simplify_tolerance_thins_ring():
    # A circle of 64 vertices, cut by the window so the clipped outline is rebuilt.
    angles = np.linspace(0.0, 2.0 * np.pi, 64, endpoint=False)
    circle = [(50.0 + 40.0 * np.cos(a), 50.0 + 40.0 * np.sin(a)) for a in angles]
    shape = make_shape([(float(x), float(y)) for x, y in circle])
    window = (0, 0, 60, 100)

    plain = clip_to_window(shape, window)
    thinned = clip_to_window(shape, window, simplify_tolerance=2.0)

    assert plain is not None
    assert thinned is not None
    assert len(thinned.polygon) < len(plain.polygon)
    assert thinned.bbox == plain.bbox
    assert thinned.visible_fraction == plain.visible_fraction
    assert Polygon(ring_points(thinned.polygon)).area == pytest.approx(
        Polygon(ring_points(plain.polygon)).area, rel=0.05
    )


# tile_starts and tile_windows ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "tile", "overlap", "starts"),
    [
        (500, 800, 200, [0]),
        (800, 800, 200, [0]),
        (801, 800, 200, [0, 1]),
        (1111, 800, 200, [0, 311]),
        (1182, 800, 200, [0, 382]),
        (1400, 800, 200, [0, 600]),
        (2000, 800, 200, [0, 600, 1200]),
        (1000, 400, 0, [0, 400, 600]),
    ],
)
def test_tile_starts(size, tile, overlap, starts):
    assert tile_starts(size, tile, overlap) == starts


@pytest.mark.parametrize(
    ("tile", "overlap"),
    [(800, 800), (800, 900), (800, -1)],
)
@pytest.mark.parametrize("size", [500, 2000])
def test_tile_starts_rejects_overlap(size, tile, overlap):
    with pytest.raises(ValueError):
        tile_starts(size, tile, overlap)


def test_tile_windows_overlap_small_image():
    with pytest.raises(ValueError):
        tile_windows(300, 200, 800, 800)


@pytest.mark.parametrize(
    ("width", "height", "windows"),
    [
        (500, 300, [(0, 0, 500, 300)]),
        (800, 800, [(0, 0, 800, 800)]),
        (
            1111,
            1182,
            [(0, 0, 800, 800), (311, 0, 800, 800), (0, 382, 800, 800), (311, 382, 800, 800)],
        ),
        (2000, 500, [(0, 0, 800, 500), (600, 0, 800, 500), (1200, 0, 800, 500)]),
        (500, 1111, [(0, 0, 500, 800), (0, 311, 500, 800)]),
    ],
)
def test_tile_windows(width, height, windows):
    assert tile_windows(width, height, 800, 200) == windows


@pytest.mark.parametrize(
    ("width", "height", "tile", "overlap"),
    [
        (1111, 1182, 800, 200),
        (2000, 2000, 800, 200),
        (2001, 777, 800, 200),
        (97, 61, 16, 5),
        (64, 100, 64, 0),
        (1000, 30, 100, 99),
    ],
)
def test_tile_windows_cover_image(width, height, tile, overlap):
    windows = tile_windows(width, height, tile, overlap)
    covered = np.zeros((height, width), dtype=np.int32)
    for x, y, w, h in windows:
        assert x >= 0
        assert y >= 0
        assert x + w <= width
        assert y + h <= height
        assert w == min(tile, width)
        assert h == min(tile, height)
        covered[y : y + h, x : x + w] += 1

    assert covered.min() >= 1
    assert len(set(windows)) == len(windows)


def test_tile_windows_row_major():
    windows = tile_windows(2000, 1111, 800, 200)

    assert windows == sorted(windows, key=lambda w: (w[1], w[0]))
