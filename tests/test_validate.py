import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from conftest_shards import make_records, shard_name, uniform_image, write_dataset

from mgrs.schema import Region, rows_to_table
from mgrs.validate import Problem, validate_dataset


def messages(problems: list[Problem]) -> str:
    return "\n".join(str(problem) for problem in problems)


def region(bbox, polygon=None, category="plane", category_id=0, visible_fraction=1.0) -> Region:
    return Region(
        bbox=bbox, category=category, category_id=category_id, source_category=category,
        caption=f"a satellite image of {category}", visible_fraction=visible_fraction, polygon=polygon,
    )


def dataset_with(tmp_path: Path, change, **options) -> Path:
    """Write seeded records after `change(records)` has edited them in place."""
    records = make_records({"train": 6, "validation": 3}, seed=3)
    change(records)
    return write_dataset(tmp_path / "ds", records=records, **options)


def single_problem(problems: list[Problem], text: str) -> Problem:
    found = [problem for problem in problems if text in problem.message]
    assert len(found) == 1, messages(problems)
    return found[0]


def test_valid_dataset_has_no_problems(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 9, "validation": 4}, seed=1, shards_per_split=3, row_group_size=2)

    assert validate_dataset(root) == []


def test_valid_dataset_without_report(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 3}, report=False)

    assert validate_dataset(root) == []


def test_missing_folder(tmp_path):
    problems = validate_dataset(tmp_path / "absent")

    assert len(problems) == 1
    assert "not found" in problems[0].message


def test_missing_card(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 3}, card=False)

    problem = single_problem(validate_dataset(root), "README.md is missing")
    assert problem.file == "README.md"


def test_card_num_examples_mismatch(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 4, "test": 2})
    card = root / "README.md"
    card.write_text(card.read_text().replace("num_examples: 2", "num_examples: 5"))

    problem = single_problem(validate_dataset(root), "num_examples")
    assert "'test'" in problem.message
    assert "5" in problem.message
    assert "2 rows" in problem.message


def test_card_without_front_matter(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 2})
    (root / "README.md").write_text("# A dataset\n")

    single_problem(validate_dataset(root), "no YAML front matter")


def test_card_split_without_shards(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 2, "test": 2})
    for shard in (root / "data").glob("test-*"):
        shard.unlink()

    problems = validate_dataset(root)

    single_problem(problems, "card lists split 'test'")
    single_problem(problems, "'test': report says 2 records")


def test_report_rows_mismatch(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 4}, shards_per_split=2)
    report = json.loads((root / "build-report.json").read_text())
    report["shards"][1]["rows"] = 7
    (root / "build-report.json").write_text(json.dumps(report))

    problem = single_problem(validate_dataset(root), "report says 7 rows")
    assert "data/train-00001-of-00002.parquet" in problem.message
    assert "holds 2" in problem.message


def test_report_not_json(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 2})
    (root / "build-report.json").write_text("{not json")

    single_problem(validate_dataset(root), "not valid JSON")


def test_shard_name_pattern(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 2})
    shutil.copy(root / "data" / shard_name("train", 0, 1), root / "data" / "train-0-of-1.parquet")

    problem = single_problem(validate_dataset(root), "does not match")
    assert problem.file == "data/train-0-of-1.parquet"


def test_shard_count_disagrees_with_files(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 4}, shards_per_split=2, report=False)
    (root / "data" / shard_name("train", 1, 2)).unlink()
    card = root / "README.md"
    card.write_text(card.read_text().replace("num_examples: 4", "num_examples: 2"))

    problems = validate_dataset(root)

    single_problem(problems, "-of-00002 but 1 shards are present")
    single_problem(problems, "shard indices [1] are missing")
    assert len(problems) == 2, messages(problems)


def test_shards_disagree_on_count(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 4}, shards_per_split=2, report=False)
    (root / "data" / shard_name("train", 1, 2)).rename(root / "data" / shard_name("train", 1, 3))

    single_problem(validate_dataset(root), "disagree on the total count")


def test_schema_wrong_type(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 3})
    shard = root / "data" / shard_name("train", 0, 1)
    table = pq.read_table(shard)
    index = table.schema.get_field_index("width")
    table = table.set_column(index, "width", table["width"].cast(pa.int64()))
    pq.write_table(table, shard)

    problems = validate_dataset(root)

    problem = single_problem(problems, "column 'width' has type int64")
    assert problem.file == "data/train-00000-of-00001.parquet"
    single_problem(problems, "row checks skipped")


def test_schema_missing_column(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 3})
    shard = root / "data" / shard_name("train", 0, 1)
    pq.write_table(pq.read_table(shard).drop_columns(["gsd"]), shard)

    problem = single_problem(validate_dataset(root), "missing ['gsd']")
    assert problem.row is None


def test_schema_without_huggingface_metadata(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 3})
    shard = root / "data" / shard_name("train", 0, 1)
    pq.write_table(pq.read_table(shard).replace_schema_metadata(None), shard)

    problems = validate_dataset(root)

    single_problem(problems, "lacks the 'huggingface' key")
    assert len(problems) == 1, messages(problems)


def test_unreadable_parquet(tmp_path):
    root = write_dataset(tmp_path / "ds", {"train": 3}, report=False)
    (root / "data" / shard_name("train", 0, 1)).write_bytes(b"not parquet at all")

    single_problem(validate_dataset(root), "failed to read the Parquet file")


def test_duplicate_image_id_across_splits(tmp_path):
    def duplicate(records):
        records["validation"][0].image_id = records["train"][2].image_id

    problems = validate_dataset(dataset_with(tmp_path, duplicate))

    problem = single_problem(problems, "is not unique")
    assert problem.file == "data/validation-00000-of-00001.parquet"
    assert problem.image_id == "synthetic-train-00002"
    assert "data/train-00000-of-00001.parquet" in problem.message


def test_unsorted_rows(tmp_path):
    def reverse(records):
        records["train"].reverse()

    problems = validate_dataset(dataset_with(tmp_path, reverse, sort=False))

    unsorted = [problem for problem in problems if "not sorted" in problem.message]
    assert len(unsorted) == 5, messages(problems)
    assert unsorted[0].row == 1
    assert unsorted[0].image_id == "synthetic-train-00004"


def test_image_does_not_decode(tmp_path):
    def corrupt(records):
        records["train"][1].image_bytes = b"\x89PNG garbage"

    problem = single_problem(validate_dataset(dataset_with(tmp_path, corrupt)), "failed to decode")
    assert problem.image_id == "synthetic-train-00001"
    assert problem.row == 1


def test_image_size_differs_from_columns(tmp_path):
    def resize(records):
        records["train"][0].width += 1

    problem = single_problem(validate_dataset(dataset_with(tmp_path, resize)), "image decodes to")
    assert problem.image_id == "synthetic-train-00000"


def test_image_not_rgb(tmp_path):
    def grey(records):
        record = records["train"][0]
        buffer = io.BytesIO()
        Image.new("L", (record.width, record.height), 7).save(buffer, format="PNG")
        record.image_bytes = buffer.getvalue()

    single_problem(validate_dataset(dataset_with(tmp_path, grey)), "mode is L")


def test_image_size_checked_in_later_row_group(tmp_path):
    def resize(records):
        records["train"][5].height += 3

    problems = validate_dataset(dataset_with(tmp_path, resize, row_group_size=2))

    problem = single_problem(problems, "image decodes to")
    assert problem.row == 5
    assert problem.image_id == "synthetic-train-00005"


def small_record_dataset(tmp_path: Path, regions: list[Region], **options) -> tuple[Path, str]:
    """Write one 100 x 50 record with the given regions; return the folder and the record's image_id."""
    records = make_records({"train": 1}, seed=0)
    record = replace(records["train"][0], width=100, height=50, image_bytes=uniform_image(100, 50), regions=regions)
    root = write_dataset(tmp_path / "ds", records={"train": [record]}, **options)
    return root, record.image_id


@pytest.mark.parametrize(
    ("bbox", "text"),
    [
        ((10, 10, 10, 20), "does not satisfy x1 < x2"),
        ((10, 20, 30, 5), "does not satisfy x1 < x2"),
        ((-0.5, 0, 10, 10), "lies outside the 100 x 50 image"),
        ((0, 0, 100.01, 10), "lies outside the 100 x 50 image"),
        ((0, 0, 10, 51), "lies outside the 100 x 50 image"),
        ((0, float("nan"), 10, 10), "not four finite numbers"),
    ],
)
def test_bbox_invalid(tmp_path, bbox, text):
    root, image_id = small_record_dataset(tmp_path, [region((1, 1, 5, 5)), region(bbox)])

    problem = single_problem(validate_dataset(root), text)
    assert problem.image_id == image_id
    assert problem.message.startswith("region 1:")


def test_bbox_on_image_edge_within_tolerance(tmp_path):
    root, _ = small_record_dataset(tmp_path, [region((0, 0, 100, 50)), region((-0.0005, 0, 100.0005, 50.0005))])

    assert validate_dataset(root) == []


@pytest.mark.parametrize(
    ("polygon", "text"),
    [
        ([1, 1, 5, 1, 5], "has 5 values"),
        ([1, 1, 5, 5], "has 4 values"),
        ([1, 1, 5, 1, 5, 60], "lies outside"),
        ([1, 1, 101, 1, 5, 5, 1, 5], "lies outside"),
    ],
)
def test_polygon_invalid(tmp_path, polygon, text):
    root, _ = small_record_dataset(tmp_path, [region((1, 1, 5, 5), polygon=polygon)])

    single_problem(validate_dataset(root), text)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_visible_fraction_out_of_range(tmp_path, fraction):
    root, _ = small_record_dataset(tmp_path, [region((1, 1, 5, 5), visible_fraction=fraction)])

    problem = single_problem(validate_dataset(root), "visible_fraction")
    assert "outside (0, 1]" in problem.message


def test_visible_fraction_one_is_valid(tmp_path):
    root, _ = small_record_dataset(tmp_path, [region((1, 1, 5, 5), visible_fraction=1.0)])

    assert validate_dataset(root) == []


def test_category_with_two_ids(tmp_path):
    def relabel(records):
        records["validation"][1].regions = [region((1, 1, 5, 5), category="plane", category_id=9)]

    problems = validate_dataset(dataset_with(tmp_path, relabel))

    problem = single_problem(problems, "category 'plane' has several category_id values")
    assert "id 9 first in data/validation-00000-of-00001.parquet (synthetic-validation-00001)" in problem.message
    assert not any("category_id 9 is used" in problem.message for problem in problems)


def test_category_id_shared_by_two_names(tmp_path):
    def relabel(records):
        records["validation"][1].regions = [region((1, 1, 5, 5), category="airport", category_id=0)]

    problem = single_problem(validate_dataset(dataset_with(tmp_path, relabel)), "category_id 0 is used by several")
    assert "'airport'" in problem.message
    assert "'plane'" in problem.message


@pytest.mark.parametrize(("column", "value"), [("short_caption", ""), ("long_caption", "  \n")])
def test_empty_caption(tmp_path, column, value):
    def blank(records):
        setattr(records["train"][3], column, value)

    problem = single_problem(validate_dataset(dataset_with(tmp_path, blank)), f"{column} is empty")
    assert problem.image_id == "synthetic-train-00003"


def test_split_column_differs_from_shard(tmp_path):
    def move(records):
        records["train"][0].split = "test"

    single_problem(validate_dataset(dataset_with(tmp_path, move)), "split column is 'test'")


def test_hand_written_table_with_schema_passes(tmp_path):
    records = make_records({"train": 2}, seed=5)["train"]
    root = write_dataset(tmp_path / "ds", records={"train": records})
    table = rows_to_table([record.to_row() for record in records])
    pq.write_table(table, root / "data" / shard_name("train", 0, 1), row_group_size=1)

    assert validate_dataset(root) == []


def test_problem_text_names_file_row_and_id():
    problem = Problem("data/train-00000-of-00001.parquet", "bbox is bad", row=3, image_id="x-1")

    assert str(problem) == "data/train-00000-of-00001.parquet row 3 (image_id 'x-1'): bbox is bad"


def test_helper_output_loads_with_datasets(tmp_path):
    from datasets import load_dataset

    root = write_dataset(tmp_path / "ds", {"train": 3, "validation": 2}, seed=2)

    loaded = load_dataset(str(root), cache_dir=str(tmp_path / "cache"))

    assert loaded["train"].num_rows == 3
    assert loaded["validation"].num_rows == 2
    image = loaded["train"][0]["image"]
    assert image.size == (loaded["train"][0]["width"], loaded["train"][0]["height"])
