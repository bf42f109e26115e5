"""Open-vocabulary semantic segmentation from the model's dense patch tokens.

Shapes: Q text queries (all synonyms of all classes), C classes, N patches, D embedding, H×W pixels
of the original image, h×w pixels of the resized image.

Per image:

1. resize the image so that its longer side is 448 px (aspect ratio kept, bilinear);
2. slide a 224 px window with stride 112 over it. Each window is resized to the model's input size
   and encoded to dense tokens. The normalised tokens are scored against the class-text embeddings,
   each the mean over the 80 OpenAI ImageNet templates;
3. upsample each window's (Q, gh, gw) scores bilinearly to the window, average overlapping windows,
   and upsample the result to the original image size;
4. multiply by the logit scale 50 and take the softmax over all queries; each class keeps the
   probability of its best synonym;
5. predict the most probable class (lowest index on ties); a pixel whose best probability is below
   the dataset's threshold takes the background class.

mIoU is computed from the pixel confusion matrix of the whole dataset (see `metrics`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from farslip.evaluate import metrics
from farslip.evaluate.images import normalise, open_rgb
from farslip.evaluate.prompts import OPENAI_IMAGENET_TEMPLATES, best_synonym, flatten_classes, text_embeddings
from farslip.evaluate.report import side_by_side, write_json, write_markdown
from farslip.evaluate.seg_datasets import SegmentationDataset

logger = logging.getLogger(__name__)

RESIZE_TO = 448
WINDOW = 224
STRIDE = 112
LOGIT_SCALE = 50.0
IGNORE_COLOUR = (64, 64, 64)


def find_pairs(root: Path, dataset: SegmentationDataset, images: str | None = None, masks: str | None = None) -> list[tuple[Path, Path]]:
    """Return (image, mask) paths under `root`; an image without a mask raises ValueError."""
    image_dir = root / (images or dataset.images)
    mask_dir = root / (masks or dataset.masks)
    for folder, option in ((image_dir, "--images"), (mask_dir, "--masks")):
        if not folder.is_dir():
            raise FileNotFoundError(f"folder {folder} not found; check --data or set the sub-folder with {option}")

    excluded = (dataset.mask_suffix.lower(), *(suffix.lower() for suffix in dataset.exclude_suffixes))
    suffix = dataset.image_suffix.lower()
    pairs, missing = [], []
    for path in sorted(image_dir.iterdir()):
        name = path.name.lower()
        if not name.endswith(suffix) or (image_dir == mask_dir and name.endswith(excluded)):
            continue
        stem = path.name[: -len(dataset.image_suffix)]
        mask = mask_dir / (stem + dataset.mask_suffix)
        if not mask.is_file():
            missing.append(mask.name)
            continue
        pairs.append((path, mask))
    if missing:
        raise ValueError(f"{len(missing)} images in {image_dir} have no mask in {mask_dir} (first: {missing[0]}); check --masks and the mask suffix")
    if not pairs:
        raise ValueError(f"no image with suffix {dataset.image_suffix} in {image_dir}; check --data and --images")
    return pairs


def decode_mask(path: Path, dataset: SegmentationDataset) -> np.ndarray:
    """Read a mask as (H, W) int64 class indices, with `ignore_index` for unlabelled pixels.

    A colour mask (RGB) is decoded through the palette and colours outside it are ignored. An index
    mask is read as is, then `reduce_zero_label` is applied. Values that are no class index become
    `ignore_index`.
    """
    with Image.open(path) as image:
        colour = image.mode in ("RGB", "RGBA")
        array = np.asarray(image.convert("RGB") if colour else image)
    if colour:
        codes = (array[..., 0].astype(np.int64) << 16) | (array[..., 1].astype(np.int64) << 8) | array[..., 2]
        labels = np.full(codes.shape, dataset.ignore_index, dtype=np.int64)
        for index, (r, g, b) in enumerate(dataset.palette):
            labels[codes == ((r << 16) | (g << 8) | b)] = index
        unknown = int((labels == dataset.ignore_index).sum())
        if unknown:
            logger.warning("%s: %d pixels have colours outside the %s palette; they are ignored", path, unknown, dataset.name)
        return labels

    labels = array.astype(np.int64)
    if labels.ndim != 2:
        raise ValueError(f"mask {path} has shape {array.shape}; expected a single-channel index image or an RGB colour mask")
    if dataset.reduce_zero_label:
        labels = np.where(labels == 0, dataset.ignore_index, labels - 1)
        labels[labels == dataset.ignore_index - 1] = dataset.ignore_index
    invalid = (labels >= len(dataset.classes)) & (labels != dataset.ignore_index)
    if invalid.any():
        logger.warning("%s: %d pixels have invalid class indices; they are ignored", path, int(invalid.sum()))
        labels[invalid] = dataset.ignore_index
    return labels


def window_starts(length: int, window: int = WINDOW, stride: int = STRIDE) -> list[int]:
    """Return window start offsets covering `length`; the last window ends at the edge."""
    if length <= window:
        return [0]
    count = -(-(length - window) // stride) + 1
    return [min(index * stride, length - window) for index in range(count)]


def resized_size(width: int, height: int, target: int = RESIZE_TO) -> tuple[int, int]:
    """Return (w, h) with the longer side equal to `target` and the aspect ratio kept."""
    scale = target / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


@torch.no_grad()
def window_scores(model, image: torch.Tensor, queries: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Return (Q, h, w) averaged cosine scores of a (3, h, w) normalised image by sliding windows."""
    _, height, width = image.shape
    size = model.image_size
    grid_h, grid_w = model.grid_size
    windows = [(top, left) for top in window_starts(height) for left in window_starts(width)]
    total = torch.zeros(queries.shape[0], height, width, device=image.device)
    count = torch.zeros(1, height, width, device=image.device)

    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        crops = []
        for top, left in chunk:
            crop = image[:, top : top + WINDOW, left : left + WINDOW]
            crops.append(F.interpolate(crop[None], size=(size, size), mode="bilinear", align_corners=False)[0])
        _, dense = model.encode_image_dense(torch.stack(crops))  # (B, N, D)
        scores = F.normalize(dense.float(), dim=-1) @ queries.T  # (B, N, Q)
        scores = scores.permute(0, 2, 1).reshape(len(chunk), -1, grid_h, grid_w)  # (B, Q, gh, gw)
        for (top, left), window in zip(chunk, scores):
            crop_h = min(WINDOW, height - top)
            crop_w = min(WINDOW, width - left)
            upsampled = F.interpolate(window[None], size=(crop_h, crop_w), mode="bilinear", align_corners=False)[0]
            total[:, top : top + crop_h, left : left + crop_w] += upsampled
            count[:, top : top + crop_h, left : left + crop_w] += 1
    return total / count


def predict_from_scores(
    scores: torch.Tensor, query_class: torch.Tensor, num_classes: int, threshold: float, background: int, logit_scale: float = LOGIT_SCALE
) -> torch.Tensor:
    """Turn (Q, H, W) cosine scores into (H, W) class predictions (steps 4 and 5 of the module docstring)."""
    probabilities = (scores * logit_scale).softmax(dim=0)  # (Q, H, W)
    per_class = best_synonym(probabilities.permute(1, 2, 0), query_class, num_classes)  # (H, W, C)
    flat = per_class.reshape(-1, num_classes)
    predicted = metrics.predictions(flat)
    predicted[flat.max(dim=1).values < threshold] = background
    return predicted.reshape(per_class.shape[:2])


@torch.no_grad()
def segment_image(model, image: Image.Image, queries: torch.Tensor, query_class: torch.Tensor, dataset: SegmentationDataset, device: torch.device, batch_size: int) -> torch.Tensor:
    """Return (H, W) class predictions for one RGB image at its original size."""
    width, height = image.size
    resized = image.resize(resized_size(width, height), Image.BILINEAR)
    tensor = normalise(np.asarray(resized, dtype=np.uint8)[None], model.mean, model.std)[0].to(device)
    scores = window_scores(model, tensor, queries, batch_size)  # (Q, h, w)
    # NOTE: the full-size (Q, H, W) scores are held in memory at once; very large scenes (several
    # thousand pixels a side) need tiling before evaluation.
    scores = F.interpolate(scores[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    return predict_from_scores(scores, query_class, len(dataset.classes), dataset.threshold, dataset.background).cpu()


def colourise(labels: np.ndarray, palette: Sequence[tuple[int, int, int]], ignore_index: int) -> Image.Image:
    """Paint (H, W) class indices with the palette; ignored pixels are dark grey."""
    table = np.array([*palette, IGNORE_COLOUR], dtype=np.uint8)
    index = np.where((labels >= 0) & (labels < len(palette)), labels, len(palette))
    return Image.fromarray(table[index])


def evaluate_segmentation(
    model,
    pairs: list[tuple[Path, Path]],
    dataset: SegmentationDataset,
    device: torch.device = torch.device("cpu"),
    batch_size: int = 16,
    pictures_dir: Path | None = None,
    pictures: int = 4,
    templates: Sequence[str] = OPENAI_IMAGENET_TEMPLATES,
) -> dict:
    """Return mIoU, pixel accuracy and per-class IoU over `pairs`; save prediction pictures of the first few."""
    names, query_class = flatten_classes(dataset.classes)
    queries = text_embeddings(model, names, templates, device)  # (Q, D)
    num_classes = len(dataset.classes)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)

    for number, (image_path, mask_path) in enumerate(tqdm(pairs, desc="segment", unit="img", disable=None, leave=False)):
        image = open_rgb(image_path)
        labels = decode_mask(mask_path, dataset)
        if labels.shape != (image.height, image.width):
            raise ValueError(f"mask {mask_path} is {labels.shape[1]}x{labels.shape[0]} but image {image_path} is {image.width}x{image.height}")
        predicted = segment_image(model, image, queries, query_class, dataset, device, batch_size)
        confusion += metrics.confusion_matrix(torch.from_numpy(labels), predicted, num_classes)
        if pictures_dir is not None and number < pictures:
            side_by_side(
                [image, colourise(predicted.numpy(), dataset.palette, dataset.ignore_index), colourise(labels, dataset.palette, dataset.ignore_index)],
                pictures_dir / f"{image_path.stem}.png",
                titles=("image", "prediction", "ground truth"),
            )

    iou = metrics.iou_from_confusion(confusion)
    pixels = confusion.sum(dim=1).tolist()
    return {
        "task": "segment",
        "metrics": {"mIoU": metrics.nanmean(iou), "pixel_accuracy": metrics.pixel_accuracy(confusion), "images": len(pairs)},
        "headline": "mIoU",
        "dataset": dataset.name,
        "threshold": dataset.threshold,
        "background": dataset.background,
        "classes": dataset.class_names,
        "per_class": {name: {"iou": value, "pixels": count} for name, value, count in zip(dataset.class_names, iou, pixels)},
        "confusion": confusion.tolist(),
    }


def write_segmentation(result: dict, out_dir: str | Path, name: str) -> list[Path]:
    """Write NAME.json and NAME.md and return their paths (pictures are written during evaluation)."""
    out_dir = Path(out_dir)
    summary = list(result["metrics"].items())
    per_class = [(cls, entry["pixels"], entry["iou"]) for cls, entry in result["per_class"].items()]
    note = (
        f"IoU in percent; n/a marks a class neither in the ground truth nor predicted (left out of mIoU). "
        f"Threshold {result['threshold']}, background class {result['classes'][result['background']]!r}."
    )
    return [
        write_json(out_dir / f"{name}.json", result),
        write_markdown(out_dir / f"{name}.md", f"Open-vocabulary segmentation: {name}", [("Summary", ["metric", "value"], summary), ("Per class", ["class", "ground-truth pixels", "IoU"], per_class)], note=note),
    ]
