"""Tests of the offline template captioner: English forms, counts, places, scale and sentence form."""

from __future__ import annotations

import random
import re

import pytest

from mgrs.captions.template import (
    OPENINGS,
    TemplateCaptioner,
    choose_opening,
    count_phrase,
    indefinite_article,
    join_list,
    noun_for,
    pluralise,
)
from mgrs.schema import Record, Region, Tile
from mgrs.taxonomy import load_taxonomy

SIZE = 900
CELL = SIZE // 3


def make_region(category: str, bbox: tuple[float, float, float, float], difficult: int | None = None) -> Region:
    return Region(
        bbox=bbox,
        category=category,
        category_id=0,
        source_category=category,
        caption=f"a satellite image of {category}",
        visible_fraction=1.0,
        difficult=difficult,
    )


def make_record(
    regions: list[Region], gsd: float | None = None, image_id: str = "test/0001", width: int = SIZE, height: int = SIZE
) -> Record:
    return Record(
        image_bytes=b"",
        image_path=None,
        image_id=image_id,
        source="test",
        source_image="images/0001.png",
        source_sha256="0" * 64,
        tile=Tile(x=0, y=0, width=width, height=height),
        width=width,
        height=height,
        gsd=gsd,
        split="train",
        license="test",
        regions=regions,
    )


def boxes_in_cell(row: int, col: int, count: int, side: float = 10.0, seed: int = 0) -> list[tuple]:
    """Return `count` small boxes placed at random inside one grid cell, away from its borders."""
    rng = random.Random(seed)
    boxes = []
    for _ in range(count):
        x = col * CELL + rng.uniform(side, CELL - 2 * side)
        y = row * CELL + rng.uniform(side, CELL - 2 * side)
        boxes.append((x, y, x + side, y + side))
    return boxes


def split_sentences(text: str) -> list[str]:
    return re.split(r"(?<=\.) +(?=[A-Z])", text)


def category_sentence(long: str, noun: str) -> str:
    """Return the sentence of the long caption whose subject names `noun`."""
    matches = [s for s in split_sentences(long) if noun in s and not s.startswith("The ")]
    assert len(matches) == 1, f"expected one sentence about {noun!r} in {long!r}"
    return matches[0]


CAPTIONER = TemplateCaptioner()


# --- English forms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("singular", "plural"),
    [
        ("vehicle", "vehicles"),
        ("small vehicle", "small vehicles"),
        ("harbor", "harbors"),
        ("ship", "ships"),
        ("bus", "buses"),
        ("storage tank", "storage tanks"),
        ("ground track field", "ground track fields"),
        ("overpass", "overpasses"),
        ("chimney", "chimneys"),
        ("factory", "factories"),
        ("box", "boxes"),
        ("church", "churches"),
        ("person", "people"),
        ("aircraft", "aircraft"),
        ("expressway service area", "expressway service areas"),
    ],
)
def test_pluralise_table(singular, plural):
    assert pluralise(singular) == plural


@pytest.mark.parametrize(
    ("phrase", "article"),
    [
        ("harbor", "a"),
        ("airplane", "an"),
        ("expressway service area", "an"),
        ("overpass", "an"),
        ("ship", "a"),
        ("university", "a"),
        ("utility pole", "a"),
        ("unidentified object", "an"),
        ("hour", "an"),
        ("urban area", "an"),
    ],
)
def test_indefinite_article_table(phrase, article):
    assert indefinite_article(phrase) == article


@pytest.mark.parametrize(
    ("category", "count", "expected"),
    [
        ("ship", 1, "a ship"),
        ("airplane", 1, "an airplane"),
        ("ship", 2, "two ships"),
        ("bus", 3, "three buses"),
        ("ship", 10, "ten ships"),
        ("ship", 11, "more than ten ships"),
        ("ship", 20, "more than ten ships"),
        ("ship", 21, "more than twenty ships"),
        ("ship", 51, "more than fifty ships"),
        ("ship", 100, "more than fifty ships"),
        ("ship", 101, "more than a hundred ships"),
        ("other", 1, "an unclassified object"),
        ("other", 3, "three unclassified objects"),
        ("small_vehicle", 2, "two small vehicles"),
        ("Ground-Track-Field", 1, "a ground track field"),
    ],
)
def test_count_phrase_table(category, count, expected):
    assert count_phrase(noun_for(category), count) == expected


def test_join_list_without_serial_comma():
    assert join_list(["a"]) == "a"
    assert join_list(["a", "b"]) == "a and b"
    assert join_list(["a", "b", "c"]) == "a, b and c"


# --- Short caption -------------------------------------------------------------------------------


def test_short_caption_names_three_main_categories():
    regions = [make_region("small vehicle", box) for box in boxes_in_cell(2, 0, 12)]
    regions += [make_region("large vehicle", box) for box in boxes_in_cell(2, 1, 3, seed=1)]
    regions += [make_region("harbor", (0, 0, 200, 200))]
    regions += [make_region("airplane", (400, 400, 450, 450))]
    captions = CAPTIONER.caption(make_record(regions, image_id="short/0001"))

    opening = choose_opening("short/0001")
    # Harbor and airplane tie at one object each, so the name breaks the tie.
    assert captions.short == f"{opening} with more than ten small vehicles, three large vehicles and an airplane."
    assert "harbor" not in captions.short
    assert "harbor" in captions.long


def test_short_caption_counts_above_threshold():
    regions = [make_region("storage tank", box) for box in boxes_in_cell(1, 1, 25)]
    captions = CAPTIONER.caption(make_record(regions))

    assert "more than twenty storage tanks" in captions.short
    assert "25" not in captions.short
    assert "25" not in captions.long


def test_difficult_objects_are_counted():
    regions = [make_region("ship", box, difficult=1) for box in boxes_in_cell(0, 0, 2)]
    regions.append(make_region("ship", (700, 700, 710, 710), difficult=0))
    captions = CAPTIONER.caption(make_record(regions))

    assert "three ships" in captions.short


def test_other_reads_naturally():
    regions = [make_region("other", box) for box in boxes_in_cell(1, 1, 3)]
    regions.append(make_region("ship", (10, 10, 20, 20)))
    captions = CAPTIONER.caption(make_record(regions))

    assert "three unclassified objects" in captions.short
    assert "Three unclassified objects are" in captions.long
    assert re.search(r"\bothers?\b", captions.long) is None

    single = CAPTIONER.caption(make_record([make_region("other", (10, 10, 20, 20))]))
    assert "with an unclassified object." in single.short
    assert "An unclassified object appears" in single.long


# --- Long caption: places, spacing and size ------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "col", "phrase"),
    [
        (0, 0, "in the upper left"),
        (0, 1, "at the top"),
        (0, 2, "in the upper right"),
        (1, 0, "on the left"),
        (1, 1, "in the centre"),
        (1, 2, "on the right"),
        (2, 0, "in the lower left"),
        (2, 1, "at the bottom"),
        (2, 2, "in the lower right"),
    ],
)
def test_position_of_single_box_per_cell(row, col, phrase):
    (box,) = boxes_in_cell(row, col, 1, seed=row * 3 + col)
    long = CAPTIONER.caption(make_record([make_region("ship", box)])).long

    assert f"A ship appears {phrase} and" in long


@pytest.mark.parametrize(
    ("cells", "phrase"),
    [
        ([(2, 0), (2, 1), (2, 2)], "along the bottom edge"),
        ([(0, 0), (0, 1), (0, 2)], "along the top edge"),
        ([(0, 2), (1, 2), (2, 2)], "along the right edge"),
        ([(0, 1), (1, 1), (2, 1)], "down the middle"),
        ([(1, 0), (1, 1), (1, 2)], "across the middle"),
        ([(0, 0), (0, 1), (0, 2), (1, 0), (1, 2)], "across the upper half"),
        ([(0, 0), (1, 1)], "towards the upper left"),
        ([(1, 1), (2, 1)], "towards the bottom"),
        ([(0, 0), (2, 2)], "across the image"),
        ([(0, 2), (2, 0)], "across the image"),
    ],
)
def test_position_of_groups(cells, phrase):
    regions = []
    for index, (row, col) in enumerate(cells):
        regions += [make_region("storage tank", box) for box in boxes_in_cell(row, col, 2, seed=index)]
    long = CAPTIONER.caption(make_record(regions)).long

    assert phrase in category_sentence(long, "storage tanks")


def test_position_ignores_single_outlier():
    regions = [make_region("small vehicle", box) for box in boxes_in_cell(0, 0, 15)]
    regions.append(make_region("small vehicle", (880, 880, 890, 890)))
    long = CAPTIONER.caption(make_record(regions)).long

    assert "in the upper left" in category_sentence(long, "small vehicles")


def test_single_box_placed_by_centre():
    long = CAPTIONER.caption(make_record([make_region("harbor", (0, 0, 900, 250))])).long

    assert "A harbor appears at the top" in long


def test_large_group_spans_cells():
    regions = [make_region("harbor", (x, 0, x + 200, 250)) for x in (0, 350, 700)]
    long = CAPTIONER.caption(make_record(regions)).long

    assert "Three harbors are" in long
    assert "along the top edge" in long


@pytest.mark.parametrize(
    ("spacing", "phrase"),
    [(11.0, "densely packed"), (30.0, "grouped"), (120.0, "scattered")],
)
def test_density_words(spacing, phrase):
    regions = [make_region("small vehicle", (20 + i * spacing, 400, 30 + i * spacing, 410)) for i in range(6)]
    long = CAPTIONER.caption(make_record(regions)).long

    assert f"Six small vehicles are {phrase}" in long


@pytest.mark.parametrize(
    ("gap", "phrase"),
    [(0.0, "side by side"), (25.0, "close together"), (600.0, "far apart")],
)
def test_density_words_for_pair(gap, phrase):
    regions = [make_region("ship", (100, 100, 120, 120)), make_region("ship", (120 + gap, 100, 140 + gap, 120))]
    long = CAPTIONER.caption(make_record(regions)).long

    assert f"Two ships lie {phrase}" in long


@pytest.mark.parametrize(
    ("side", "word"),
    [(20, "tiny"), (60, "small"), (150, "moderately sized"), (300, "large"), (600, "very large")],
)
def test_size_words(side, word):
    long = CAPTIONER.caption(make_record([make_region("stadium", (0, 0, side, side))])).long

    assert f"looks {word} relative to the image" in long


def test_size_comparison_between_categories():
    regions = [make_region("harbor", (0, 0, 300, 300))]
    regions += [make_region("ship", box) for box in boxes_in_cell(2, 2, 4, side=15)]
    long = CAPTIONER.caption(make_record(regions)).long

    assert "The harbor is much larger than the ships." in long


def test_no_size_comparison_for_similar_sizes():
    regions = [make_region("ship", (0, 0, 20, 20)), make_region("small vehicle", (400, 400, 421, 421))]
    long = CAPTIONER.caption(make_record(regions)).long

    assert "larger than" not in long


# --- Scale ---------------------------------------------------------------------------------------


def test_gsd_present():
    long = CAPTIONER.caption(make_record([], gsd=0.26, width=800, height=800)).long

    assert "The ground sample distance is about 0.26 m per pixel." in long
    assert "The image covers about 208 by 208 metres on the ground." in long


def test_gsd_float32_rounding():
    # gsd is stored as float32, so 0.3 comes back as 0.30000001192...
    long = CAPTIONER.caption(make_record([], gsd=0.30000001192092896, width=1024, height=512)).long

    assert "about 0.3 m per pixel." in long
    assert "about 307 by 154 metres" in long


def test_gsd_extent_in_kilometres():
    long = CAPTIONER.caption(make_record([], gsd=2.0, width=800, height=600)).long

    assert "about 2 m per pixel." in long
    assert "about 1.6 by 1.2 kilometres on the ground." in long


@pytest.mark.parametrize("gsd", [None, 0.0, -1.0, float("nan")])
def test_gsd_absent_or_invalid(gsd):
    long = CAPTIONER.caption(make_record([make_region("ship", (0, 0, 10, 10))], gsd=gsd)).long

    assert "ground sample distance" not in long
    assert "metres" not in long
    assert f"of {SIZE} by {SIZE} pixels." in long


# --- Empty records and absences ------------------------------------------------------------------


def test_empty_record_not_exhaustive():
    captions = CAPTIONER.caption(make_record([], gsd=0.5, image_id="empty/1"), exhaustive=False)
    opening = choose_opening("empty/1")

    assert captions.short == f"{opening}."
    assert captions.long.startswith(f"{opening} of {SIZE} by {SIZE} pixels.")
    assert "ground sample distance is about 0.5 m" in captions.long
    assert re.search(r"\b(no|not|none|without)\b", captions.long, re.IGNORECASE) is None


def test_empty_record_exhaustive():
    captions = CAPTIONER.caption(make_record([], image_id="empty/1"), exhaustive=True)

    assert captions.short == f"{choose_opening('empty/1')}."
    assert captions.long.endswith(" No labelled objects are visible.")


def test_non_empty_record_states_no_absence():
    regions = [make_region("ship", (0, 0, 10, 10))]
    for exhaustive in (False, True):
        captions = CAPTIONER.caption(make_record(regions), exhaustive=exhaustive)

        assert re.search(r"\b(no|not|none|without)\b", captions.short + captions.long, re.IGNORECASE) is None


# --- Determinism ---------------------------------------------------------------------------------


def test_same_record_same_text():
    rng = random.Random(7)
    categories = ["small vehicle", "ship", "harbor", "storage tank", "other"]
    regions = []
    for _ in range(60):
        x, y = rng.uniform(0, SIZE - 30), rng.uniform(0, SIZE - 30)
        regions.append(make_region(rng.choice(categories), (x, y, x + rng.uniform(5, 30), y + rng.uniform(5, 30))))
    first = CAPTIONER.caption(make_record(regions, gsd=0.5))
    second = TemplateCaptioner().caption(make_record(list(regions), gsd=0.5))
    shuffled = regions[:]
    random.Random(8).shuffle(shuffled)
    third = CAPTIONER.caption(make_record(shuffled, gsd=0.5))

    assert first == second
    assert first == third


def test_opening_fixed_by_image_id():
    # Fixed values: a change here means the captions of existing records changed, which needs a new `name`.
    assert choose_opening("dota/P0001") == "An aerial image"
    assert choose_opening("dior/00002") == "An overhead image"
    assert choose_opening("dior/00006") == "A remote sensing image"
    openings = {choose_opening(f"scene/{index}") for index in range(50)}
    assert openings == set(OPENINGS)


def test_golden_captions():
    regions = [make_region("small vehicle", (10 + 30 * i, 700, 30 + 30 * i, 740)) for i in range(12)]
    regions += [make_region("harbor", (0, 0, 300, 250)), make_region("airplane", (420, 420, 470, 470))]
    captions = CAPTIONER.caption(make_record(regions, gsd=0.26, image_id="dota/P0001", width=800, height=800))

    assert captions.short == "An aerial image with more than ten small vehicles, an airplane and a harbor."
    assert captions.long == (
        "An aerial image of 800 by 800 pixels. "
        "More than ten small vehicles are densely packed towards the lower left and look small relative to the image. "
        "An airplane appears in the centre and looks small relative to the image. "
        "A harbor appears in the upper left and looks large relative to the image. "
        "The harbor is much larger than the small vehicles. "
        "The ground sample distance is about 0.26 m per pixel. "
        "The image covers about 208 by 208 metres on the ground."
    )


def test_captioner_name_and_region_caption():
    assert CAPTIONER.name == "template-v2"
    assert CAPTIONER.region_caption("storage tank") == "a satellite image of storage tank"


# --- Every category of the taxonomy --------------------------------------------------------------


def all_category_names() -> list[str]:
    return [category.name for category in load_taxonomy().categories()]


def assert_sentence_form(text: str) -> None:
    sentences = split_sentences(text)
    for sentence in sentences:
        assert sentence[0].isupper(), f"sentence does not start with a capital: {sentence!r}"
        assert sentence.endswith("."), f"sentence does not end with a period: {sentence!r}"
    assert "  " not in text
    assert " ." not in text
    assert ",." not in text


@pytest.mark.parametrize("count", [1, 2, 3, 15])
def test_taxonomy_categories_read_as_english(count):
    names = all_category_names()
    for index, name in enumerate(names):
        regions = [make_region(name, box) for box in boxes_in_cell(index % 3, (index // 3) % 3, count, seed=index)]
        captions = CAPTIONER.caption(make_record(regions, gsd=0.5, image_id=f"taxonomy/{name}"))
        text = f"{captions.short} {captions.long}"

        assert "-" not in text, f"hyphen in captions of {name!r}: {text!r}"
        assert "_" not in text, f"underscore in captions of {name!r}: {text!r}"
        # "a utility truck", "a unit" and "a user" start with a consonant sound.
        assert re.search(r"\ba (?!u(?:ti|ni|se|su|ra|ro))[aeiou]", text, re.IGNORECASE) is None, text
        assert re.search(r"\ban [^aeiou\s]", text, re.IGNORECASE) is None, text
        assert captions.short.count(".") == 1, f"short caption is not one sentence: {captions.short!r}"
        assert_sentence_form(captions.short)
        assert_sentence_form(captions.long)


def test_all_taxonomy_categories_in_one_record():
    names = all_category_names()
    rng = random.Random(3)
    regions = []
    for name in names:
        for _ in range(rng.randint(1, 14)):
            x, y = rng.uniform(0, SIZE - 40), rng.uniform(0, SIZE - 40)
            regions.append(make_region(name, (x, y, x + rng.uniform(4, 40), y + rng.uniform(4, 40))))
    captions = CAPTIONER.caption(make_record(regions, gsd=0.3))

    for name in names:
        noun = noun_for(name)
        assert noun.singular in captions.long or noun.plural in captions.long, name
    assert "-" not in captions.long
    assert "_" not in captions.long
    assert_sentence_form(captions.short)
    assert_sentence_form(captions.long)
    assert captions.short.count(",") <= 1


# --- Input checks and scale of input -------------------------------------------------------------


def test_invalid_image_size_names_record():
    with pytest.raises(ValueError, match="bad/1"):
        CAPTIONER.caption(make_record([], image_id="bad/1", width=0))


def test_empty_category_names_record():
    with pytest.raises(ValueError, match="bad/2.*region 0"):
        CAPTIONER.caption(make_record([make_region(" ", (0, 0, 1, 1))], image_id="bad/2"))


def test_boxes_outside_and_degenerate():
    regions = [
        make_region("ship", (-50, -50, 5, 5)),
        make_region("ship", (880, 880, 950, 950)),
        make_region("ship", (450, 450, 450, 450)),
        make_region("ship", (2000, 2000, 2100, 2100)),
    ]
    captions = CAPTIONER.caption(make_record(regions))

    assert "four ships" in captions.short
    assert_sentence_form(captions.long)


def test_thousands_of_boxes():
    rng = random.Random(11)
    regions = []
    for _ in range(3000):
        x, y = rng.uniform(0, SIZE - 8), rng.uniform(0, SIZE - 8)
        regions.append(make_region("small vehicle", (x, y, x + 8, y + 8)))
    long = CAPTIONER.caption(make_record(regions)).long

    assert "More than a hundred small vehicles are" in long
    assert "across the image" in long
