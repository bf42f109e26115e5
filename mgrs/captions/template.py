"""The offline template captioner: global captions written from a record's regions, without a model.

The captions are built from the image size, the ground sample distance and the regions alone, so
the same record always gives the same text. The rules:

- Order. Categories are listed by count, largest first, with ties broken by name.
- Short caption. One sentence naming the three most frequent categories with their counts, for
  example "An aerial image with more than ten small vehicles, three large vehicles and a harbor."
  An image without regions gets only the opening words ("An aerial image.").
- Opening words. One of a few fixed openings ("An aerial image", "An overhead image", ...) is
  chosen by the SHA-256 of `image_id`, never by random state, so it stays the same across runs.
- Counts. One object takes the indefinite article ("a harbor", "an airplane"), two to ten are
  spelled out ("three ships"). Above ten, the count is rounded down to a true lower bound:
  11 to 20 is "more than ten", 21 to 50 "more than twenty", 51 to 100 "more than fifty" and
  101 or more "more than a hundred".
- Long caption. An opening sentence with the image size in pixels, then one sentence per category
  in the same order ("Two ships lie close together in the lower right and look small relative to
  the image."), then a size comparison between categories, then the ground sample distance and the
  extent on the ground. A `gsd` that is missing, zero, negative or not finite is left out.
- Position. The image is split into a 3 x 3 grid. Each box counts as one object, split over the
  cells it overlaps in proportion to area. Cells holding less than 7 % of a category's objects
  are ignored, so that one outlier does not turn a group into "across the image"; a single object is
  placed by the cell of its centre. The occupied cells name the place: one
  cell ("in the upper left", "at the top", "in the centre"), a full row or column ("along the
  bottom edge", "down the middle"), two thirds of the image ("across the upper half"), a corner
  region ("towards the upper left") or everything ("across the image").
- Density. For two or more objects, the gap ratio is the median distance from each object's centre
  to its nearest neighbour, divided by the mean side length of the two (the square root of the box
  area). Up to 1.5 is "densely packed" ("side by side" for a pair), up to 4 is "grouped" ("close
  together"), and above that "scattered" ("far apart").
- Size. The median box area as a share of the image: under 0.1 % is "tiny", under 1 % "small",
  under 5 % "moderately sized", under 25 % "large", and "very large" above. When the median areas of
  the largest and the smallest category differ by a factor of 2 or more, one sentence compares them
  ("much larger" from a factor of 10).
- English. The last word of a category is pluralised by the usual English rules ("buses", "storage
  tanks"), and the indefinite article follows the sound of the first word. Lists read "A, B and C"
  without a serial comma. The category "other" reads as "unclassified objects" ("an unclassified
  object"), because "other objects" would suggest that the named categories are all the rest.
  Hyphens and underscores in a category name become spaces.
- Absences. Captions never state that something is missing, except that an empty record of an
  exhaustively labelled source gets "No labelled objects are visible." in its long caption.
- Difficult objects count like any other, because the build decides whether to pass them.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mgrs.captions.base import Captioner, Captions
from mgrs.schema import Record
from mgrs.taxonomy import OTHER

logger = logging.getLogger(__name__)

OPENINGS = ("An aerial image", "An overhead image", "A remote sensing image")

MAX_SHORT_CATEGORIES = 3

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
EXACT_COUNT_MAX = 10
# (bound, phrase) pairs, checked from the top: a count above `bound` is written as the phrase.
COUNT_BOUNDS = ((100, "more than a hundred"), (50, "more than fifty"), (20, "more than twenty"), (10, "more than ten"))

# (upper bound of the median box area as a share of the image, word). Above the last bound: "very large".
SIZE_CLASSES = ((0.001, "tiny"), (0.01, "small"), (0.05, "moderately sized"), (0.25, "large"))
LARGEST_SIZE_WORD = "very large"
LARGER_RATIO = 2.0
MUCH_LARGER_RATIO = 10.0

# Median nearest-neighbour distance between centres, in mean object side lengths.
DENSE_GAP = 1.5
GROUPED_GAP = 4.0
GROUP_DENSITY = {"dense": "densely packed", "grouped": "grouped", "sparse": "scattered"}
PAIR_DENSITY = {"dense": "side by side", "grouped": "close together", "sparse": "far apart"}

# Rows of the distance matrix computed at once, which bounds memory to DISTANCE_CHUNK x n floats.
DISTANCE_CHUNK = 512

GRID = 3
MIN_CELL_SHARE = 0.07
CELL_PHRASES = {
    (0, 0): "in the upper left",
    (0, 1): "at the top",
    (0, 2): "in the upper right",
    (1, 0): "on the left",
    (1, 1): "in the centre",
    (1, 2): "on the right",
    (2, 0): "in the lower left",
    (2, 1): "at the bottom",
    (2, 2): "in the lower right",
}
# Keyed by the first and last occupied row when every column is occupied.
ROW_BAND_PHRASES = {
    (0, 0): "along the top edge",
    (1, 1): "across the middle",
    (2, 2): "along the bottom edge",
    (0, 1): "across the upper half",
    (1, 2): "across the lower half",
}
# Keyed by the first and last occupied column when every row is occupied.
COLUMN_BAND_PHRASES = {
    (0, 0): "along the left edge",
    (1, 1): "down the middle",
    (2, 2): "along the right edge",
    (0, 1): "across the left half",
    (1, 2): "across the right half",
}

# Plural forms that the suffix rules below get wrong.
IRREGULAR_PLURALS = {
    "child": "children",
    "foot": "feet",
    "goose": "geese",
    "leaf": "leaves",
    "man": "men",
    "mouse": "mice",
    "person": "people",
    "shelf": "shelves",
    "woman": "women",
}
UNCHANGED_PLURALS = {"aircraft", "cattle", "deer", "equipment", "fish", "machinery", "series", "sheep", "species"}
ES_AFTER_O = {"echo", "hero", "potato", "tomato", "torpedo", "volcano"}

# Words whose first letter misleads the a/an choice.
VOWEL_SOUND_PREFIXES = ("hour", "honest", "honor", "honour", "heir", "unid", "unin", "unim")
CONSONANT_SOUND_PREFIXES = ("uni", "use", "usu", "uti", "ura", "ure", "eu", "one", "once", "ewe")

OTHER_PHRASE = "unclassified object"


@dataclass(frozen=True)
class Noun:
    """The English forms of one category."""

    singular: str
    plural: str
    # The phrase for exactly one object: "a harbor", "an airplane", "one other object".
    single_phrase: str


@dataclass(frozen=True)
class CategoryLayout:
    """Count, place, spacing and size of the objects of one category in one image."""

    noun: Noun
    count: int
    cells: frozenset[tuple[int, int]]
    # Median box area as a share of the image area.
    size_share: float
    # Median nearest-neighbour distance in mean side lengths, or None for a single object.
    gap_ratio: float | None


class TemplateCaptioner(Captioner):
    """Writes short and long captions from the regions of a record, with fixed English templates."""

    name = "template-v2"

    def caption(self, record: Record, exhaustive: bool = False) -> Captions:
        """Return the short and long caption of `record` by the rules in the module docstring."""
        validate_record(record)
        opening = choose_opening(record.image_id)
        layouts = describe_categories(record)

        short = short_caption(opening, layouts)
        long = long_caption(opening, record, layouts, exhaustive)
        return Captions(short=short, long=long)


def validate_record(record: Record) -> None:
    """Raise ValueError when the record's size or a region's category cannot be described."""
    if record.width <= 0 or record.height <= 0:
        raise ValueError(
            f"record {record.image_id!r} has the invalid image size {record.width} x {record.height}. "
            "Set width and height to the pixel size of the stored image."
        )
    for index, region in enumerate(record.regions):
        if not clean_category(region.category):
            raise ValueError(
                f"record {record.image_id!r}: region {index} has the empty category {region.category!r}. "
                f"Map its label through the taxonomy, which turns unknown labels into {OTHER!r}."
            )


def choose_opening(image_id: str) -> str:
    """Return the opening words chosen by the SHA-256 of `image_id`, stable across processes."""
    digest = hashlib.sha256(image_id.encode("utf-8")).digest()
    return OPENINGS[int.from_bytes(digest[:4], "big") % len(OPENINGS)]


# --- English ---------------------------------------------------------------------------------


def clean_category(category: str) -> str:
    """Return a category name as caption words: lower case, hyphens and underscores as spaces."""
    return " ".join(re.split(r"[\s_\-]+", category.strip().lower())).strip()


def pluralise(phrase: str) -> str:
    """Return the plural of a noun phrase by pluralising its last word ("storage tank" -> "storage tanks")."""
    words = phrase.split(" ")
    words[-1] = pluralise_word(words[-1])
    return " ".join(words)


def pluralise_word(word: str) -> str:
    """Return the plural of one lower-case English noun."""
    if word in UNCHANGED_PLURALS:
        return word
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]

    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word in ES_AFTER_O:
        return word + "es"
    return word + "s"


def indefinite_article(phrase: str) -> str:
    """Return "a" or "an" for the sound of the first word of `phrase`."""
    word = phrase.split(" ", 1)[0].lower()
    if word.startswith(VOWEL_SOUND_PREFIXES):
        return "an"
    if word.startswith(CONSONANT_SOUND_PREFIXES):
        return "a"
    return "an" if word[:1] in ("a", "e", "i", "o", "u") else "a"


def noun_for(category: str) -> Noun:
    """Return the English forms of a category, with "other" read as "unclassified object"."""
    singular = clean_category(category)
    if singular == OTHER:
        # "other objects" would suggest that the named categories are all the rest.
        singular = OTHER_PHRASE

    plural = pluralise(singular)
    single_phrase = f"{indefinite_article(singular)} {singular}"
    return Noun(singular=singular, plural=plural, single_phrase=single_phrase)


def count_words(count: int) -> str:
    """Return a count in words: exact up to ten, then the largest true "more than" bound."""
    if count <= EXACT_COUNT_MAX:
        return NUMBER_WORDS[count]
    for bound, phrase in COUNT_BOUNDS:
        if count > bound:
            return phrase
    return COUNT_BOUNDS[-1][1]


def count_phrase(noun: Noun, count: int) -> str:
    """Return "a harbor", "three ships" or "more than ten small vehicles"."""
    if count == 1:
        return noun.single_phrase
    return f"{count_words(count)} {noun.plural}"


def definite_phrase(noun: Noun, count: int) -> str:
    """Return "the harbor" for one object and "the harbors" for more."""
    return f"the {noun.singular if count == 1 else noun.plural}"


def join_list(items: Sequence[str]) -> str:
    """Join phrases as "A, B and C", without a serial comma."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def capitalise(sentence: str) -> str:
    """Upper-case the first letter only, keeping the rest as written."""
    return sentence[:1].upper() + sentence[1:]


def format_significant(value: float, digits: int = 2) -> str:
    """Format a positive number with `digits` significant digits, no exponent and no trailing zeros."""
    exponent = math.floor(math.log10(value))
    decimals = max(digits - 1 - exponent, 0)
    text = f"{round(value, decimals):.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


# --- Layout of the objects ---------------------------------------------------------------------


def describe_categories(record: Record) -> list[CategoryLayout]:
    """Return one layout per category of the record, by count (largest first), then by name."""
    boxes_by_category: dict[str, list[tuple[float, float, float, float]]] = {}
    for region in record.regions:
        boxes_by_category.setdefault(clean_category(region.category), []).append(tuple(region.bbox))

    ordered = sorted(boxes_by_category.items(), key=lambda item: (-len(item[1]), item[0]))
    return [layout_of(category, boxes, record.width, record.height) for category, boxes in ordered]


def layout_of(category: str, raw_boxes: list, width: int, height: int) -> CategoryLayout:
    """Measure where the boxes of one category lie, how far apart and how large they are."""
    boxes = clip_boxes(np.asarray(raw_boxes, dtype=np.float64).reshape(-1, 4), width, height)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    if len(boxes) == 1:
        # One object is placed by its centre, so a large box does not read as a whole band.
        centre_x = (boxes[0, 0] + boxes[0, 2]) / 2
        centre_y = (boxes[0, 1] + boxes[0, 3]) / 2
        cells = frozenset({(min(int(centre_y * GRID / height), GRID - 1), min(int(centre_x * GRID / width), GRID - 1))})
    else:
        shares = cell_shares(boxes, areas, width, height)
        cells = frozenset((int(row), int(col)) for row, col in zip(*np.nonzero(shares >= MIN_CELL_SHARE)))

    size_share = float(np.median(areas)) / (width * height)
    gap_ratio = median_gap_ratio(boxes, areas) if len(boxes) > 1 else None
    return CategoryLayout(noun_for(category), len(boxes), cells, size_share, gap_ratio)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Return (n, 4) boxes sorted corner-wise and clipped to the image."""
    x1 = np.clip(np.minimum(boxes[:, 0], boxes[:, 2]), 0, width)
    x2 = np.clip(np.maximum(boxes[:, 0], boxes[:, 2]), 0, width)
    y1 = np.clip(np.minimum(boxes[:, 1], boxes[:, 3]), 0, height)
    y2 = np.clip(np.maximum(boxes[:, 1], boxes[:, 3]), 0, height)
    return np.stack([x1, y1, x2, y2], axis=1)


def cell_shares(boxes: np.ndarray, areas: np.ndarray, width: int, height: int) -> np.ndarray:
    """Return the (3, 3) share of the boxes' area in each grid cell, each box weighing one in total.

    A box without area (a point or a line after clipping) counts fully in the cell of its centre.
    """
    x_edges = np.linspace(0.0, width, GRID + 1)
    y_edges = np.linspace(0.0, height, GRID + 1)

    overlap_x = np.clip(
        np.minimum(boxes[:, 2:3], x_edges[None, 1:]) - np.maximum(boxes[:, 0:1], x_edges[None, :-1]), 0, None
    )  # (n, 3)
    overlap_y = np.clip(
        np.minimum(boxes[:, 3:4], y_edges[None, 1:]) - np.maximum(boxes[:, 1:2], y_edges[None, :-1]), 0, None
    )  # (n, 3)
    overlap = overlap_y[:, :, None] * overlap_x[:, None, :]  # (n, rows, cols)

    has_area = areas > 0
    weights = np.zeros_like(overlap)
    weights[has_area] = overlap[has_area] / areas[has_area, None, None]

    centre_x = (boxes[~has_area, 0] + boxes[~has_area, 2]) / 2
    centre_y = (boxes[~has_area, 1] + boxes[~has_area, 3]) / 2
    cols = np.minimum((centre_x * GRID / width).astype(int), GRID - 1)
    rows = np.minimum((centre_y * GRID / height).astype(int), GRID - 1)
    weights[np.nonzero(~has_area)[0], rows, cols] = 1.0

    return weights.sum(axis=0) / len(boxes)


def median_gap_ratio(boxes: np.ndarray, areas: np.ndarray) -> float:
    """Return the median over objects of the distance to the nearest centre in mean side lengths."""
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    # A degenerate box still has a side of one pixel, which keeps the ratio finite.
    sides = np.maximum(np.sqrt(areas), 1.0)

    ratios = np.empty(len(boxes))
    for start in range(0, len(boxes), DISTANCE_CHUNK):
        stop = min(start + DISTANCE_CHUNK, len(boxes))
        rows = np.arange(stop - start)
        distances = np.linalg.norm(centres[start:stop, None, :] - centres[None, :, :], axis=2)  # (chunk, n)
        distances[rows, start + rows] = np.inf

        nearest = np.argmin(distances, axis=1)
        mean_sides = (sides[start:stop] + sides[nearest]) / 2
        ratios[start:stop] = distances[rows, nearest] / mean_sides
    return float(np.median(ratios))


def position_phrase(cells: frozenset[tuple[int, int]]) -> str:
    """Name the part of the image that the occupied grid cells span."""
    rows = [row for row, _ in cells]
    cols = [col for _, col in cells]
    row_span = (min(rows), max(rows))
    col_span = (min(cols), max(cols))
    full = (0, GRID - 1)

    if row_span == full and col_span == full:
        return "across the image"
    if row_span[0] == row_span[1] and col_span[0] == col_span[1]:
        return CELL_PHRASES[(row_span[0], col_span[0])]
    if col_span == full:
        return ROW_BAND_PHRASES[row_span]
    if row_span == full:
        return COLUMN_BAND_PHRASES[col_span]

    # Partial spans: name the side or corner they lean towards.
    vertical = None
    if row_span[0] == 0:
        vertical = "upper"
    elif row_span[1] == GRID - 1:
        vertical = "lower"

    horizontal = None
    if col_span[0] == 0:
        horizontal = "left"
    elif col_span[1] == GRID - 1:
        horizontal = "right"
    if vertical and horizontal:
        return f"towards the {vertical} {horizontal}"
    if vertical:
        return "towards the top" if vertical == "upper" else "towards the bottom"
    return f"towards the {horizontal}"


def size_word(share: float) -> str:
    """Return the size word for a median box area given as a share of the image."""
    for bound, word in SIZE_CLASSES:
        if share < bound:
            return word
    return LARGEST_SIZE_WORD


def density_level(gap_ratio: float) -> str:
    """Return "dense", "grouped" or "sparse" for a median nearest-neighbour gap ratio."""
    if gap_ratio <= DENSE_GAP:
        return "dense"
    if gap_ratio <= GROUPED_GAP:
        return "grouped"
    return "sparse"


# --- Sentences ---------------------------------------------------------------------------------


def short_caption(opening: str, layouts: list[CategoryLayout]) -> str:
    """Return one sentence naming the most frequent categories with their counts."""
    if not layouts:
        return f"{opening}."
    main = [count_phrase(layout.noun, layout.count) for layout in layouts[:MAX_SHORT_CATEGORIES]]
    return f"{opening} with {join_list(main)}."


def long_caption(opening: str, record: Record, layouts: list[CategoryLayout], exhaustive: bool) -> str:
    """Return a paragraph: image size, one sentence per category, a size comparison and the scale."""
    sentences = [f"{opening} of {record.width} by {record.height} pixels."]
    sentences.extend(category_sentence(layout) for layout in layouts)

    comparison = comparison_sentence(layouts)
    if comparison:
        sentences.append(comparison)

    sentences.extend(scale_sentences(record))

    if exhaustive and not layouts:
        sentences.append("No labelled objects are visible.")
    return " ".join(sentences)


def category_sentence(layout: CategoryLayout) -> str:
    """Return the sentence on one category: count, place, spacing and size."""
    subject = capitalise(count_phrase(layout.noun, layout.count))
    position = position_phrase(layout.cells)
    size = size_word(layout.size_share)

    if layout.gap_ratio is None:
        return f"{subject} appears {position} and looks {size} relative to the image."
    level = density_level(layout.gap_ratio)
    if layout.count == 2:
        return f"{subject} lie {PAIR_DENSITY[level]} {position} and look {size} relative to the image."
    return f"{subject} are {GROUP_DENSITY[level]} {position} and look {size} relative to the image."


def comparison_sentence(layouts: list[CategoryLayout]) -> str | None:
    """Compare the categories with the largest and the smallest median box, or None if alike."""
    if len(layouts) < 2:
        return None

    largest = max(layouts, key=lambda layout: layout.size_share)
    smallest = min(layouts, key=lambda layout: layout.size_share)
    if smallest.size_share <= 0:
        return None
    ratio = largest.size_share / smallest.size_share
    if ratio < LARGER_RATIO:
        return None

    relation = "much larger than" if ratio >= MUCH_LARGER_RATIO else "larger than"
    verb = "is" if largest.count == 1 else "are"
    subject = capitalise(definite_phrase(largest.noun, largest.count))
    return f"{subject} {verb} {relation} {definite_phrase(smallest.noun, smallest.count)}."


def scale_sentences(record: Record) -> list[str]:
    """Return the ground sample distance and the ground extent, or nothing when gsd is unknown."""
    gsd = record.gsd
    if gsd is None:
        return []
    if not math.isfinite(gsd) or gsd <= 0:
        logger.debug("record %s has gsd %r, which is not a positive number; leaving it out", record.image_id, gsd)
        return []

    extent = ground_extent(record.width * gsd, record.height * gsd)
    return [
        f"The ground sample distance is about {format_significant(gsd)} m per pixel.",
        f"The image covers about {extent} on the ground.",
    ]


def ground_extent(width_m: float, height_m: float) -> str:
    """Return "208 by 208 metres", or kilometres with two significant digits from 1000 m."""
    if max(width_m, height_m) >= 1000:
        return f"{format_significant(width_m / 1000)} by {format_significant(height_m / 1000)} kilometres"
    return f"{format_metres(width_m)} by {format_metres(height_m)} metres"


def format_metres(value: float) -> str:
    """Return whole metres from 10 m, and two significant digits below."""
    if value >= 10:
        return str(round(value))
    return format_significant(value)
