"""Caption quality: category mentions through aliases and plurals, coverage, hallucination, lengths."""

from __future__ import annotations

import pytest

from mgrs.captions.quality import CategoryMatcher, length_stats, quality_lines, rows_quality
from mgrs.taxonomy import Taxonomy

# A fixed taxonomy, so that categories added to manifests/categories.yaml do not change these cases.
TAXONOMY = Taxonomy.from_dict(
    {
        "categories": [
            {"id": 0, "name": "other", "level": "coarse"},
            {"id": 1, "name": "airplane", "level": "coarse", "aliases": ["plane", "aeroplane", "aircraft"]},
            {"id": 5, "name": "bridge", "level": "coarse"},
            {"id": 11, "name": "ground track field", "level": "coarse", "aliases": ["ground-track-field"]},
            {"id": 12, "name": "harbor", "level": "coarse", "aliases": ["harbour"]},
            {"id": 13, "name": "overpass", "level": "coarse"},
            {"id": 14, "name": "ship", "level": "coarse"},
            {"id": 16, "name": "storage tank", "level": "coarse", "aliases": ["storage-tank"]},
            {"id": 17, "name": "tennis court", "level": "coarse", "aliases": ["tennis-court"]},
            {"id": 19, "name": "vehicle", "level": "coarse"},
            {"id": 101, "name": "small vehicle", "level": "fine", "parent": "vehicle", "aliases": ["small-vehicle"]},
            {"id": 102, "name": "large vehicle", "level": "fine", "parent": "vehicle", "aliases": ["large-vehicle"]},
        ]
    },
    path="test taxonomy",
)


def load_taxonomy() -> Taxonomy:
    return TAXONOMY


@pytest.fixture(scope="module")
def matcher():
    return CategoryMatcher(TAXONOMY)


def row(long: str, categories: list[str], short: str = "An aerial image.", source: str = "test") -> dict:
    return {"short_caption": short, "long_caption": long, "caption_source": source, "regions": [{"category": c} for c in categories]}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Two storage tanks beside a harbour.", {"storage tank", "harbor"}),
        ("Planes and aircraft on the apron.", {"airplane"}),
        ("Several small vehicles are parked.", {"small vehicle"}),
        ("Vehicles line the road.", {"vehicle"}),
        ("A ground-track-field and tennis courts.", {"ground track field", "tennis court"}),
        ("Overpasses cross the roads.", {"overpass"}),
        ("Other objects are scattered.", set()),
        ("A park with trees and a lake.", set()),
        ("A storage, tank farm.", set()),
    ],
)
def test_mentions_through_aliases_and_plurals(matcher, text, expected):
    assert matcher.mentions(text) == expected


def test_longest_phrase_wins(matcher):
    assert "vehicle" not in matcher.mentions("Many small vehicles and large vehicles.")


def test_coverage_and_hallucination():
    rows = [
        row("Two ships lie at a harbor.", ["ship", "ship", "harbor"]),
        row("A ship near a bridge.", ["ship", "storage-tank"]),
        row("An empty field.", []),
    ]
    quality = rows_quality(rows, load_taxonomy())

    assert quality["coverage"]["records_with_categories"] == 2
    assert quality["coverage"]["categories_present"] == 4
    assert quality["coverage"]["categories_mentioned"] == 3
    assert quality["coverage"]["mean"] == 0.75
    assert quality["hallucination"]["records_flagged"] == 1
    assert quality["hallucination"]["by_category"] == {"bridge": 1}
    assert quality["hallucination"]["rate"] == round(1 / 3, 4)


def test_parent_and_child_stand_for_each_other():
    rows = [
        row("Vehicles are parked in rows.", ["small-vehicle"]),
        row("Small vehicles are parked in rows.", ["vehicle"]),
    ]
    quality = rows_quality(rows, load_taxonomy())

    assert quality["coverage"]["mean"] == 1.0
    assert quality["hallucination"]["records_flagged"] == 0


def test_sibling_is_hallucination():
    quality = rows_quality([row("Large vehicles wait.", ["small vehicle"])], load_taxonomy())

    assert quality["hallucination"]["by_category"] == {"large vehicle": 1}
    assert quality["coverage"]["mean"] == 0.0


def test_unknown_labels_ignored():
    quality = rows_quality([row("A ship.", ["ship", "unheard-of-thing", "other"])], load_taxonomy())

    assert quality["coverage"]["categories_present"] == 1
    assert quality["coverage"]["mean"] == 1.0


def test_length_stats_values():
    stats = length_stats([1, 2, 3, 4, 10])

    assert stats["min"] == 1
    assert stats["max"] == 10
    assert stats["mean"] == 4.0
    assert stats["median"] == 3.0
    assert stats["p95"] == pytest.approx(8.8)


def test_length_stats_empty():
    assert length_stats([]) == {"min": None, "mean": None, "median": None, "p95": None, "max": None}


def test_caption_sources_counted():
    quality = rows_quality([row("A ship.", ["ship"], source="a"), row("A ship.", ["ship"], source="b"), row("A ship.", [], source="a")], load_taxonomy())

    assert quality["caption_sources"] == {"a": 2, "b": 1}


def test_card_lines_render_empty_dataset():
    quality = rows_quality([], load_taxonomy())
    lines = quality_lines(quality)

    assert quality["records"] == 0
    assert lines[0].startswith("| caption |")
    assert not any("Coverage" in line for line in lines)
