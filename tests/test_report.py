"""Tests of build accounting in `mgrs.report`: skips, merging, JSON round trip and the skip table."""

from __future__ import annotations

import json
from collections import Counter

from mgrs.report import MAX_EXAMPLES, Tally, skip_table
from mgrs.sources.base import ANNOTATION, IMAGE, Skip


def filled_tally() -> Tally:
    tally = Tally(images_read=3, annotations_read=4, regions=12)
    tally.records.update({"train": 5, "validation": 1})
    tally.regions_by_source.update({"dota": 12})
    tally.records_by_source.update({"dota": 6})
    tally.skip(Skip("missing_image", "labelTxt/P0001.txt", "no image named P0001.*", ANNOTATION))
    tally.skip(Skip("unreadable_image", "images/P0002.png", "", IMAGE), count=2)
    tally.note("repaired_polygon", 3)
    return tally


def test_skip_counts_by_unit_and_reason():
    tally = Tally()

    tally.skip(Skip("bad_line", "a.txt", "line 3", ANNOTATION))
    tally.skip(Skip("bad_line", "a.txt", "line 4", ANNOTATION), count=2)
    tally.skip(Skip("missing_image", "b.png", "", IMAGE))

    assert tally.skipped[ANNOTATION]["bad_line"] == 3
    assert tally.skipped[IMAGE]["missing_image"] == 1
    assert tally.annotations_skipped == 3
    assert tally.images_skipped == 1


def test_skip_example_text():
    tally = Tally()

    tally.skip(Skip("bad_line", "a.txt", "line 3"))
    tally.skip(Skip("missing_image", "b.png", "", IMAGE))

    assert tally.examples[ANNOTATION]["bad_line"] == ["a.txt: line 3"]
    assert tally.examples[IMAGE]["missing_image"] == ["b.png"]


def test_skip_examples_capped_and_unique():
    tally = Tally()

    for index in range(MAX_EXAMPLES + 4):
        tally.skip(Skip("bad_line", f"file{index}.txt"))
        tally.skip(Skip("bad_line", f"file{index}.txt"))

    assert tally.skipped[ANNOTATION]["bad_line"] == 2 * (MAX_EXAMPLES + 4)
    assert tally.examples[ANNOTATION]["bad_line"] == [f"file{i}.txt" for i in range(MAX_EXAMPLES)]


def test_note_counts():
    tally = Tally()

    tally.note("mapped_to_other")
    tally.note("mapped_to_other", 4)

    assert tally.notes["mapped_to_other"] == 5


def test_add_sums_counts():
    total = filled_tally()

    total.add(filled_tally())

    assert total.images_read == 6
    assert total.annotations_read == 8
    assert total.regions == 24
    assert total.records == Counter({"train": 10, "validation": 2})
    assert total.regions_by_source["dota"] == 24
    assert total.records_by_source["dota"] == 12
    assert total.skipped[ANNOTATION]["missing_image"] == 2
    assert total.skipped[IMAGE]["unreadable_image"] == 4
    assert total.notes["repaired_polygon"] == 6
    # The same example from both sides is kept once.
    assert total.examples[ANNOTATION]["missing_image"] == ["labelTxt/P0001.txt: no image named P0001.*"]


def test_add_into_empty_tally():
    total = Tally()

    total.add(filled_tally())

    assert total.to_dict() == filled_tally().to_dict()


def test_add_new_unit():
    total = Tally()
    other = Tally()
    other.skip(Skip("no_scene", "x", unit="scene"))

    total.add(other)

    assert total.skipped["scene"]["no_scene"] == 1


def test_add_examples_capped():
    total = Tally()
    for index in range(3):
        total.skip(Skip("bad_line", f"mine{index}.txt"))
    other = Tally()
    for index in range(4):
        other.skip(Skip("bad_line", f"theirs{index}.txt"))

    total.add(other)

    assert len(total.examples[ANNOTATION]["bad_line"]) == MAX_EXAMPLES
    assert total.examples[ANNOTATION]["bad_line"][:3] == ["mine0.txt", "mine1.txt", "mine2.txt"]
    assert total.examples[ANNOTATION]["bad_line"][3:] == ["theirs0.txt", "theirs1.txt"]
    assert total.skipped[ANNOTATION]["bad_line"] == 7


def test_add_leaves_other_unchanged():
    other = filled_tally()
    before = other.to_dict()

    filled_tally().add(other)

    assert other.to_dict() == before


def test_dict_round_trip_through_json():
    tally = filled_tally()

    restored = Tally.from_dict(json.loads(json.dumps(tally.to_dict())))

    assert restored.to_dict() == tally.to_dict()
    assert restored.images_skipped == tally.images_skipped
    assert restored.annotations_skipped == tally.annotations_skipped
    assert isinstance(restored.records, Counter)
    assert isinstance(restored.skipped[IMAGE], Counter)


def test_restored_tally_keeps_adding():
    restored = Tally.from_dict(filled_tally().to_dict())

    restored.add(filled_tally())
    restored.skip(Skip("unreadable_image", "images/P0003.png", "", IMAGE))

    assert restored.skipped[IMAGE]["unreadable_image"] == 5
    assert restored.records["train"] == 10


def test_from_empty_dict():
    tally = Tally.from_dict({})

    assert tally.to_dict() == Tally().to_dict()
    assert tally.images_skipped == 0
    assert tally.annotations_skipped == 0


def test_to_dict_sorted_keys():
    tally = Tally()
    tally.records.update({"validation": 1, "train": 2})
    tally.skip(Skip("zeta", "z"))
    tally.skip(Skip("alpha", "a"))

    data = tally.to_dict()

    assert list(data["records"]) == ["train", "validation"]
    assert list(data["skipped"][ANNOTATION]) == ["alpha", "zeta"]
    assert list(data["examples"][ANNOTATION]) == ["alpha", "zeta"]


def test_skip_table_order():
    tally = Tally()
    tally.skip(Skip("bad_line", "a.txt"), count=2)
    tally.skip(Skip("missing_image", "b.png", unit=IMAGE), count=5)
    tally.skip(Skip("bad_label", "c.txt"), count=2)

    rows = skip_table(tally)

    assert [row["reason"] for row in rows] == ["missing_image", "bad_label", "bad_line"]
    assert rows[0] == {"unit": IMAGE, "reason": "missing_image", "count": 5, "examples": ["b.png"]}


def test_skip_table_empty():
    assert skip_table(Tally()) == []
