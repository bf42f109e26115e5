"""The `farslip eval` commands end to end on small generated datasets with known results.

Most tests use `ColourModel`, a stub whose embeddings are colours: an image (or patch) embeds to its
mean colour mapped to [-1, 1]^3, and a text embeds to the colour word it contains (zero without
one). Pure colours then score 1 against their own word and -1/3 against the other primaries, so every
prediction is known. One test runs the real FarSLIP-Tiny model through the suite.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from farslip.cli import app
from farslip.evaluate import loading
from mgrs.schema import Record, Region, Tile
from tests.conftest_shards import encode_png, write_dataset

COLOURS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
}
GREY = (128, 128, 128)


class ColourModel(nn.Module):
    """Stub with the evaluation interface of FarSLIPModel whose embeddings are colours (D = 3)."""

    image_size = 32
    grid_size = (4, 4)
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)

    def __init__(self):
        super().__init__()
        self.words = list(COLOURS)
        table = [[2 * c / 255 - 1 for c in COLOURS[word]] for word in self.words] + [[0.0, 0.0, 0.0]]
        self.register_buffer("table", torch.tensor(table))
        self.anchor = nn.Parameter(torch.zeros(1))

    def tokenize(self, texts):
        ids = []
        for text in texts:
            found = [i for i, word in enumerate(self.words) if re.search(rf"\b{word}\b", text)]
            ids.append(found[0] if found else len(self.words))
        return torch.tensor(ids)

    def encode_text(self, tokens):
        return self.table[tokens]

    @staticmethod
    def _colour(pixels):
        vectors = pixels * 2 - 1
        # Near-grey pixels embed to zero, which scores 0 against every text.
        return torch.where(vectors.norm(dim=-1, keepdim=True) < 0.1, torch.zeros_like(vectors), vectors)

    def encode_image(self, images):
        return self._colour(images.mean(dim=(2, 3)))

    def encode_image_dense(self, images):
        batch = images.shape[0]
        patches = torch.nn.functional.avg_pool2d(images, images.shape[-1] // self.grid_size[0])  # (B, 3, 4, 4)
        dense = self._colour(patches.flatten(2).transpose(1, 2))  # (B, 16, 3)
        return self.encode_image(images), dense.reshape(batch, -1, 3)


@pytest.fixture
def stub(monkeypatch):
    """Make every command load ColourModel."""
    model = ColourModel()
    monkeypatch.setattr(loading, "load_model", lambda *args, **kwargs: model)
    return model


def paint(path: Path, colour, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def invoke(*args: str):
    result = CliRunner().invoke(app, ["eval", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# Classification ---------------------------------------------------------------------------------


def make_folder_dataset(root: Path) -> Path:
    """Folders blue/, green/, red/ with two images each; one red image is painted magenta."""
    for name in ("blue", "green", "red"):
        paint(root / name / "a.png", COLOURS[name])
        paint(root / name / "sub" / "b.png", COLOURS[name if name != "red" else "magenta"])
    return root


def test_classify_image_folder(tmp_path, stub):
    data = make_folder_dataset(tmp_path / "scenes")
    out = tmp_path / "out"
    invoke("classify", str(data), "--model", "stub", "--out", str(out), "--name", "scenes")
    result = read_json(out / "scenes.json")

    # Magenta scores 1/3 against both red and blue; the tie goes to blue (index 0), a miss.
    assert result["classes"] == ["blue", "green", "red"]
    assert result["metrics"]["top1_accuracy"] == pytest.approx(5 / 6)
    assert result["metrics"]["top5_accuracy"] == pytest.approx(1.0)
    assert result["per_class"]["red"]["accuracy"] == pytest.approx(0.5)
    assert result["confusion"] == [[2, 0, 0], [0, 2, 0], [1, 0, 1]]
    assert (out / "scenes-confusion.png").is_file()
    assert "| red | 2 | 50.00 |" in (out / "scenes.md").read_text()


def test_classify_csv_with_synonyms(tmp_path, stub):
    images = tmp_path / "images"
    rows = []
    for index, name in enumerate(("red", "green", "blue")):
        paint(images / f"{name}.png", COLOURS[name])
        rows.append({"filepath": f"images/{name}.png", "label": index})
    with (tmp_path / "test.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["filepath", "label"])
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "classes.txt").write_text("crimson,red\ngreen\nblue\n")
    out = tmp_path / "out"

    invoke("classify", str(tmp_path / "test.csv"), "--classnames", str(tmp_path / "classes.txt"), "--model", "stub", "--out", str(out), "--name", "csv")
    result = read_json(out / "csv.json")
    assert result["classes"] == ["crimson", "green", "blue"]
    assert result["metrics"]["top1_accuracy"] == pytest.approx(1.0)


def test_classify_csv_bad_label(tmp_path, stub):
    paint(tmp_path / "x.png", COLOURS["red"])
    (tmp_path / "test.csv").write_text("filepath,label\nx.png,7\n")
    (tmp_path / "classes.txt").write_text("red\ngreen\n")
    result = CliRunner().invoke(app, ["eval", "classify", str(tmp_path / "test.csv"), "--classnames", str(tmp_path / "classes.txt"), "--model", "stub", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "line 2" in result.output


# Retrieval --------------------------------------------------------------------------------------


def test_retrieve_several_captions(tmp_path, stub):
    for name in ("red", "green", "blue"):
        paint(tmp_path / f"{name}.png", COLOURS[name])
    rows = [("red.png", "a red field"), ("red.png", "a green field"), ("green.png", "a green lawn"),
            ("blue.png", "a blue lake"), ("blue.png", "a blue pool")]
    with (tmp_path / "captions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filepath", "caption"])
        writer.writerows(rows)
    out = tmp_path / "out"

    invoke("retrieve", str(tmp_path / "captions.csv"), "--model", "stub", "--out", str(out), "--name", "caps")
    values = read_json(out / "caps.json")["metrics"]

    # Image green: its caption ties with "a green field" (caption 1, a lower index), so it ranks second.
    assert values["image_to_text_R@1"] == pytest.approx(2 / 3)
    assert values["image_to_text_R@5"] == pytest.approx(1.0)
    # Caption "a green field" belongs to the red image but matches the green one.
    assert values["text_to_image_R@1"] == pytest.approx(4 / 5)
    assert values["mean_recall"] == pytest.approx((2 / 3 + 1 + 1 + 4 / 5 + 1 + 1) / 6)
    assert values["images"] == 3
    assert values["captions"] == 5


def test_retrieve_caption_json_split(tmp_path, stub):
    paint(tmp_path / "imgs" / "r.png", COLOURS["red"])
    paint(tmp_path / "imgs" / "g.png", COLOURS["green"])
    paint(tmp_path / "imgs" / "b.png", COLOURS["blue"])
    document = {"images": [
        {"filename": "r.png", "split": "test", "sentences": [{"raw": "red roofs"}, {"raw": "many red roofs"}]},
        {"filename": "g.png", "split": "test", "sentences": [{"raw": "green trees"}]},
        {"filename": "b.png", "split": "train", "sentences": [{"raw": "blue water"}]},
    ]}
    (tmp_path / "dataset.json").write_text(json.dumps(document))
    out = tmp_path / "out"
    invoke("retrieve", str(tmp_path / "dataset.json"), "--images", str(tmp_path / "imgs"), "--model", "stub", "--out", str(out), "--name", "js")
    values = read_json(out / "js.json")["metrics"]
    assert values["images"] == 2
    assert values["mean_recall"] == pytest.approx(1.0)


# Segmentation -----------------------------------------------------------------------------------

SEGMENT_CONFIG = """\
name: colours
classes: [blue, 'crimson,red', green, clutter]
palette: [[0, 0, 255], [255, 0, 0], [0, 255, 0], [90, 90, 90]]
threshold: 0.5
background: 3
images: img_dir/val
masks: ann_dir/val
"""


def make_segmentation_dataset(root: Path) -> Path:
    """Image a: red left half, green right half; image b: grey (every score 0, so background)."""
    image = np.zeros((448, 448, 3), dtype=np.uint8)
    image[:, :224] = COLOURS["red"]
    image[:, 224:] = COLOURS["green"]
    mask = np.full((448, 448), 2, dtype=np.uint8)
    mask[:, :168] = 1  # columns 168..223 are labelled green but painted red
    mask[:56, :56] = 255  # ignored
    (root / "img_dir" / "val").mkdir(parents=True)
    (root / "ann_dir" / "val").mkdir(parents=True)
    Image.fromarray(image).save(root / "img_dir" / "val" / "a.png")
    Image.fromarray(mask).save(root / "ann_dir" / "val" / "a.png")

    paint(root / "img_dir" / "val" / "b.png", GREY, size=(224, 336))
    Image.fromarray(np.full((336, 224), 3, dtype=np.uint8)).save(root / "ann_dir" / "val" / "b.png")
    (root / "colours.yaml").write_text(SEGMENT_CONFIG)
    return root


def test_segment_known_iou(tmp_path, stub):
    root = make_segmentation_dataset(tmp_path / "seg")
    out = tmp_path / "out"
    invoke("segment", str(root), "--dataset", str(root / "colours.yaml"), "--model", "stub", "--out", str(out), "--name", "seg")
    result = read_json(out / "seg.json")
    iou = {name: entry["iou"] for name, entry in result["per_class"].items()}

    red_iou = (168 * 448 - 56 * 56) / (168 * 448 - 56 * 56 + 56 * 448)
    assert iou["blue"] is None  # neither in the ground truth nor predicted
    assert iou["crimson"] == pytest.approx(red_iou)
    assert iou["green"] == pytest.approx(0.8)
    assert iou["clutter"] == pytest.approx(1.0)  # the grey image, below the threshold
    assert result["metrics"]["mIoU"] == pytest.approx((red_iou + 0.8 + 1.0) / 3)
    assert result["per_class"]["clutter"]["pixels"] == 224 * 336
    assert sorted(p.name for p in (out / "seg-pictures").iterdir()) == ["a.png", "b.png"]
    assert "| blue | 0 | n/a |" in (out / "seg.md").read_text()


def test_segment_missing_mask(tmp_path, stub):
    root = make_segmentation_dataset(tmp_path / "seg")
    (root / "ann_dir" / "val" / "b.png").unlink()
    result = CliRunner().invoke(app, ["eval", "segment", str(root), "--dataset", str(root / "colours.yaml"), "--model", "stub", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "have no mask" in result.output


@pytest.mark.samples
def test_segment_isaid_sample(samples, tmp_path):
    from farslip.evaluate.seg_datasets import DATASETS
    from farslip.evaluate.segment import decode_mask, evaluate_segmentation, find_pairs

    dataset = DATASETS["isaid"]
    pairs = find_pairs(samples / "isaid", dataset, "train/images", "train/images")
    assert [(image.name, mask.name) for image, mask in pairs] == [("P0005.png", "P0005_instance_color_RGB.png")]

    labels = decode_mask(pairs[0][1], dataset)
    values, counts = np.unique(labels, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist())) == {0: 708285, 8: 135058, 9: 20325}

    # The stub embeds no iSAID class name: every probability is 1/16, below 0.4, so all is background.
    result = evaluate_segmentation(ColourModel(), pairs, dataset, pictures_dir=tmp_path / "pictures", pictures=1)
    iou = result["per_class"]
    assert iou["background"]["iou"] == pytest.approx(708285 / (708285 + 135058 + 20325))
    assert iou["large vehicle"]["iou"] == 0.0
    assert iou["small vehicle"]["pixels"] == 20325
    assert math.isnan(iou["plane"]["iou"])
    assert result["metrics"]["mIoU"] == pytest.approx(708285 / 863668 / 3)
    assert (tmp_path / "pictures" / "P0005.png").is_file()


# Region classification --------------------------------------------------------------------------


def region_record(index: int, boxes: list[tuple[tuple[int, int, int, int], str, str]]) -> Record:
    """A 64x64 grey record; each (box, category, painted colour) is painted into the image."""
    image = Image.new("RGB", (64, 64), GREY)
    regions = []
    for box, category, colour in boxes:
        image.paste(COLOURS[colour], box)
        regions.append(Region(bbox=tuple(float(v) for v in box), category=category, category_id=0, source_category=category,
                              caption=f"a satellite image of {category}", visible_fraction=1.0))
    return Record(image_bytes=encode_png(image), image_path=None, image_id=f"syn-{index:03d}", source="synthetic",
                  source_image=f"{index}.png", source_sha256="0" * 64, tile=Tile(0, 0, 64, 64), width=64, height=64, gsd=None,
                  split="validation", license="CC-BY-4.0", regions=regions, short_caption="x", long_caption="x", caption_source="test")


def make_region_dataset(root: Path) -> Path:
    records = [
        region_record(0, [((4, 4, 30, 30), "red-car", "red"), ((34, 34, 60, 60), "blue-pool", "blue")]),
        region_record(1, [((10, 10, 50, 40), "green-field", "green")]),
        # Painted red but labelled blue-pool: a miss.
        region_record(2, [((0, 0, 20, 20), "blue-pool", "red"), ((30, 30, 62, 62), "red-car", "red"), ((1, 40, 3, 42), "green-field", "green")]),
    ]
    return write_dataset(root, records={"validation": records})


def test_regions_accuracy(tmp_path, stub):
    data = make_region_dataset(tmp_path / "mgrs")
    out = tmp_path / "out"
    invoke("regions", str(data), "--model", "stub", "--out", str(out), "--min-size", "4")
    result = read_json(out / "regions-validation.json")

    assert result["classes"] == ["blue-pool", "green-field", "red-car"]
    assert result["metrics"]["regions"] == 5  # the 2x2 box is below --min-size 4
    assert result["metrics"]["accuracy"] == pytest.approx(4 / 5)
    assert result["per_class"]["blue-pool"]["accuracy"] == pytest.approx(0.5)
    assert result["metrics"]["mean_class_accuracy"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert (out / "regions-validation-confusion.png").is_file()


def test_regions_unknown_split(tmp_path, stub):
    data = make_region_dataset(tmp_path / "mgrs")
    result = CliRunner().invoke(app, ["eval", "regions", str(data), "--split", "test", "--model", "stub", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "split 'test'" in result.output


# Suite and loading ------------------------------------------------------------------------------


def write_suite(path: Path, tmp_path: Path, model: str | None = None) -> Path:
    head = f"model: {model}\n" if model else ""
    path.write_text(head + f"""\
device: cpu
batch_size: 4
tasks:
  - {{name: scenes, task: classify, data: {make_folder_dataset(tmp_path / 'scenes')}}}
  - {{name: seg, task: segment, dataset: {make_segmentation_dataset(tmp_path / 'seg') / 'colours.yaml'}, data: {tmp_path / 'seg'}, pictures: 0}}
  - {{name: regions, task: regions, data: {make_region_dataset(tmp_path / 'mgrs')}, split: validation}}
""")
    return path


def test_suite_summary(tmp_path, stub):
    suite = write_suite(tmp_path / "suite.yaml", tmp_path)
    out = tmp_path / "out"
    invoke("suite", "--config", str(suite), "--model", "stub", "--out", str(out))
    rows = read_json(out / "summary.json")["tasks"]

    assert [(row["name"], row["metric"]) for row in rows] == [("scenes", "top1_accuracy"), ("seg", "mIoU"), ("regions", "accuracy")]
    assert rows[0]["value"] == pytest.approx(5 / 6)
    assert rows[2]["value"] == pytest.approx(5 / 6)  # without --min-size the 2x2 region counts, and is right
    assert "| scenes | classify | top1_accuracy | 83.33 |" in (out / "summary.md").read_text()
    assert (out / "seg.json").is_file()


def test_suite_rejects_unknown_task_key(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("tasks:\n  - {task: classify, data: x, clasnames: y}\n")
    result = CliRunner().invoke(app, ["eval", "suite", "--config", str(suite), "--model", "stub"])
    assert result.exit_code == 2
    assert "clasnames" in result.output


def save_tiny_run(run: Path) -> Path:
    from farslip.model import ModelConfig, build_model, save_weights

    torch.manual_seed(0)
    model = build_model(ModelConfig(name="FarSLIP-Tiny"))
    step = run / "checkpoints" / "step-00000002"
    step.mkdir(parents=True)
    save_weights(model, step / "model.safetensors")
    torch.save({}, step / "state.pt")
    return step


@pytest.mark.slow
def test_load_model_run_and_export(tmp_path):
    from farslip.export import export_checkpoint

    step = save_tiny_run(tmp_path / "run")
    from_run = loading.load_model(str(tmp_path / "run"), device="cpu")
    assert from_run.config.name == "FarSLIP-Tiny"
    assert not from_run.training

    exported = tmp_path / "tiny.safetensors"
    export_checkpoint(step, exported)
    with pytest.raises(ValueError, match="--arch"):
        loading.load_model(str(exported), device="cpu")
    from_export = loading.load_model(str(exported), arch="FarSLIP-Tiny", device="cpu")
    images = torch.rand(2, 3, 64, 64)
    assert torch.allclose(from_export.encode_image(images), from_run.encode_image(images), atol=1e-6)


def test_parse_arch_suffixes():
    config = loading.parse_arch("ViT-B-16-long248-quickgelu")
    assert (config.name, config.long_clip, config.force_quick_gelu) == ("ViT-B-16", True, True)
    with pytest.raises(ValueError, match="invalid --device"):
        loading.resolve_device("gpu0")


@pytest.mark.slow
def test_suite_tiny_model_from_run(tmp_path):
    save_tiny_run(tmp_path / "run")
    suite = write_suite(tmp_path / "suite.yaml", tmp_path, model=str(tmp_path / "run"))
    with (tmp_path / "caps.csv").open("w", newline="") as handle:
        handle.write("filepath,caption\nscenes/red/a.png,a red field\nscenes/green/a.png,a green lawn\n")
    text = suite.read_text() + f"  - {{name: caps, task: retrieve, data: {tmp_path / 'caps.csv'}}}\n"
    suite.write_text(text)
    out = tmp_path / "out"

    invoke("suite", "--config", str(suite), "--out", str(out))
    rows = read_json(out / "summary.json")["tasks"]
    assert [row["name"] for row in rows] == ["scenes", "seg", "regions", "caps"]
    for row in rows:
        assert 0.0 <= row["value"] <= 1.0, row
