"""Evaluation metrics against hand-computed values: ties, empty and absent classes, several captions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from farslip.evaluate import metrics
from farslip.evaluate.prompts import OPENAI_IMAGENET_TEMPLATES, best_synonym, flatten_classes, resolve_templates
from farslip.evaluate.seg_datasets import DATASETS, SegmentationDataset, load_dataset_config
from farslip.evaluate.segment import decode_mask, resized_size, window_starts


def test_topk_ties_count_for_lower_index():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.2, 0.1], [0.3, 0.3, 0.3]])
    labels = torch.tensor([0, 1, 0])
    accuracy = metrics.topk_accuracy(scores, labels, (1, 2, 5))
    # Row 1: class 0 ties with the label and has the lower index, so the label ranks second.
    assert accuracy[1] == pytest.approx(2 / 3)
    assert accuracy[2] == pytest.approx(1.0)
    assert accuracy[5] == pytest.approx(1.0)


def test_topk_constant_scores_not_perfect():
    scores = torch.zeros(4, 3)
    labels = torch.tensor([2, 2, 1, 0])
    assert metrics.topk_accuracy(scores, labels, (1,))[1] == pytest.approx(0.25)


def test_topk_empty_input_is_nan():
    assert math.isnan(metrics.topk_accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), (1,))[1])


def test_predictions_tie_goes_to_lowest_index():
    scores = torch.tensor([[0.1, 0.7, 0.7], [0.5, 0.5, 0.5], [0.0, 0.0, 0.2]])
    assert metrics.predictions(scores).tolist() == [1, 0, 2]


def test_confusion_matrix_drops_ignored_labels():
    labels = torch.tensor([0, 0, 1, 255, 2])
    predicted = torch.tensor([0, 1, 1, 2, 2])
    confusion = metrics.confusion_matrix(labels, predicted, 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_confusion_matrix_rejects_invalid_prediction():
    with pytest.raises(ValueError, match="predicted classes"):
        metrics.confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 3]), 2)


def test_iou_empty_and_absent_classes():
    labels = torch.tensor([0, 0, 1, 1, 255, 1])
    predicted = torch.tensor([0, 1, 1, 3, 0, 1])
    confusion = metrics.confusion_matrix(labels, predicted, 4)
    iou = metrics.iou_from_confusion(confusion)

    assert iou[0] == pytest.approx(1 / 2)  # TP 1, FN 1
    assert iou[1] == pytest.approx(2 / 4)  # TP 2, FP 1, FN 1
    assert math.isnan(iou[2])  # neither in the ground truth nor predicted
    assert iou[3] == 0.0  # predicted once, absent from the ground truth
    assert metrics.nanmean(iou) == pytest.approx(1 / 3)
    assert metrics.pixel_accuracy(confusion) == pytest.approx(3 / 5)


def test_per_class_accuracy_without_samples_is_nan():
    accuracy = metrics.per_class_accuracy(torch.tensor([[2, 0], [0, 0]]))
    assert accuracy[0] == 1.0
    assert math.isnan(accuracy[1])


def test_nanmean_all_nan():
    assert math.isnan(metrics.nanmean([math.nan, math.nan]))


def test_recall_several_captions_per_image():
    similarity = torch.tensor([[0.1, 0.9, 0.5, 0.2], [0.8, 0.1, 0.3, 0.7]])
    caption_image = torch.tensor([0, 0, 1, 1])
    recall = metrics.retrieval_recall(similarity, caption_image, (1, 5, 10))

    assert recall["image_to_text_R@1"] == pytest.approx(0.5)  # image 1: caption 0 (0.8) beats its best, 0.7
    assert recall["image_to_text_R@5"] == pytest.approx(1.0)
    assert recall["text_to_image_R@1"] == pytest.approx(0.5)  # captions 0 and 2 rank their image second
    assert recall["text_to_image_R@5"] == pytest.approx(1.0)
    assert recall["mean_recall"] == pytest.approx(5 / 6)


def test_recall_tie_with_lower_negative_counts_against():
    similarity = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    recall = metrics.retrieval_recall(similarity, torch.tensor([1, 0]), (1,))
    # Image 0 owns caption 1, which ties with caption 0 of lower index.
    assert recall["image_to_text_R@1"] == pytest.approx(0.0)


def test_recall_image_without_caption_raises():
    with pytest.raises(ValueError, match="no caption"):
        metrics.retrieval_recall(torch.zeros(3, 2), torch.tensor([0, 0]))


def test_openai_templates_complete():
    assert len(OPENAI_IMAGENET_TEMPLATES) == 80
    assert len(set(OPENAI_IMAGENET_TEMPLATES)) == 80
    assert all(template.count("{}") == 1 for template in OPENAI_IMAGENET_TEMPLATES)


def test_resolve_templates_rejects_missing_placeholder():
    with pytest.raises(ValueError, match="exactly one"):
        resolve_templates(["a photo"])
    with pytest.raises(ValueError, match="neither a template set"):
        resolve_templates("no-such-set")


def test_best_synonym_keeps_maximum():
    names, owner = flatten_classes([["a"], ["b", "c"], ["d"]])
    assert names == ["a", "b", "c", "d"]
    scores = torch.tensor([[0.1, 0.2, 0.9, 0.3]])
    assert best_synonym(scores, owner, 3).tolist() == [[pytest.approx(0.1), pytest.approx(0.9), pytest.approx(0.3)]]


def test_window_starts_cover_edges():
    assert window_starts(448) == [0, 112, 224]
    assert window_starts(300) == [0, 76]
    assert window_starts(224) == [0]
    assert window_starts(100) == [0]


def test_resized_size_fits_448():
    assert resized_size(977, 884) == (448, 405)
    assert resized_size(224, 336) == (299, 448)
    assert resized_size(100, 100) == (448, 448)


def test_reduce_zero_label_mask(tmp_path):
    mask = np.array([[0, 1, 2], [7, 255, 8]], dtype=np.uint8)
    Image.fromarray(mask).save(tmp_path / "m.png")
    labels = decode_mask(tmp_path / "m.png", DATASETS["loveda"])
    # 0 is no-data, 255 stays ignored, 8 is beyond the 7 LoveDA classes.
    assert labels.tolist() == [[255, 0, 1], [6, 255, 255]]


def test_colour_mask_unknown_colour_ignored(tmp_path):
    mask = np.zeros((2, 2, 3), dtype=np.uint8)
    mask[0, 1] = (0, 127, 255)  # plane
    mask[1, 1] = (1, 2, 3)  # no iSAID colour
    Image.fromarray(mask).save(tmp_path / "m.png")
    labels = decode_mask(tmp_path / "m.png", DATASETS["isaid"])
    assert labels.tolist() == [[0, 14], [0, 255]]


def test_builtin_datasets_protocol_values():
    expected = {"openearthmap": (0.1, 0), "loveda": (0.3, 0), "potsdam": (0.1, 5), "vaihingen": (0.1, 5),
                "udd5": (0.4, 4), "vdd": (0.3, 0), "uavid": (0.3, 0), "isaid": (0.4, 0)}
    assert {name: (d.threshold, d.background) for name, d in DATASETS.items()} == expected


def test_dataset_yaml_checks_keys(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text("classes: [sky, 'ground,soil']\nthreshold: 0.2\nbackground: 1\nmask_sufix: .png\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_dataset_config(path)
    path.write_text("classes: [sky, 'ground,soil']\nthreshold: 0.2\nbackground: 1\n")
    config = load_dataset_config(path)
    assert isinstance(config, SegmentationDataset)
    assert config.classes == (("sky",), ("ground", "soil"))
    assert config.name == "custom"
