"""Image-text retrieval with several captions per image (RSICD, RSITMD, UCM-captions).

Inputs:

- a CSV with an image-path column and a caption column (default `filepath` and `caption`), one row
  per caption. Rows with the same path are captions of one image, and images keep the order of their
  first row;
- a caption JSON in the layout that RSICD, RSITMD and UCM-captions are distributed in: `{"images":
  [{"filename": ..., "split": ..., "sentences": [{"raw": ...}, ...]}, ...]}`, filtered by `split`.

Relative image paths are resolved against `images_root`, or else the file's folder. Captions get the
prefix `a satellite image. ` by default, as the FarSLIP reference evaluation does.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from farslip.evaluate import metrics
from farslip.evaluate.images import encode_views, open_rgb, resize_center_crop
from farslip.evaluate.report import write_json, write_markdown

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "a satellite image. "
RECALL_AT = (1, 5, 10)


@dataclass
class RetrievalData:
    """Image paths, the captions, and the (T,) image index of each caption."""

    images: list[Path]
    captions: list[str]
    caption_image: list[int]


def _resolve(path: str, root: Path) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else root / candidate


def read_csv(path: Path, root: Path, image_key: str, caption_key: str) -> RetrievalData:
    """Read a CSV with one row per (image, caption) pair."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"CSV {path} has no rows")
    for key in (image_key, caption_key):
        if key not in rows[0]:
            raise ValueError(f"CSV {path} has no column {key!r} (columns: {', '.join(rows[0])}); set the column name option")

    index: dict[str, int] = {}
    images, captions, owners = [], [], []
    for row in rows:
        image = row[image_key].strip()
        if image not in index:
            index[image] = len(images)
            images.append(_resolve(image, root))
        captions.append(row[caption_key].strip())
        owners.append(index[image])
    return RetrievalData(images, captions, owners)


def read_caption_json(path: Path, root: Path, split: str | None) -> RetrievalData:
    """Read the `images` / `sentences` caption JSON, keeping the images of `split` (all when None)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise ValueError(f"caption JSON {path} has no 'images' list; expected the RSICD / RSITMD / UCM-captions layout")
    images, captions, owners = [], [], []
    for entry in document["images"]:
        if split is not None and entry.get("split") != split:
            continue
        sentences = [s.get("raw", "").strip() for s in entry.get("sentences", []) if s.get("raw", "").strip()]
        if not sentences:
            logger.warning("image %s in %s has no caption; it is left out", entry.get("filename"), path)
            continue
        folder = entry.get("filepath", "")
        images.append(_resolve(str(Path(folder) / entry["filename"]), root))
        owners.extend([len(images) - 1] * len(sentences))
        captions.extend(sentences)
    if not images:
        splits = sorted({str(entry.get("split")) for entry in document["images"]})
        raise ValueError(f"caption JSON {path} has no image in split {split!r} (splits: {', '.join(splits)}); choose one with --split")
    return RetrievalData(images, captions, owners)


def read_dataset(
    data: str | Path,
    images_root: str | Path | None = None,
    split: str | None = "test",
    image_key: str = "filepath",
    caption_key: str = "caption",
) -> RetrievalData:
    """Read a retrieval dataset from a CSV or a caption JSON file."""
    data = Path(data)
    if not data.is_file():
        raise FileNotFoundError(f"retrieval data {data} not found; give a CSV (filepath, caption) or a caption JSON file")
    root = Path(images_root) if images_root else data.parent
    if data.suffix.lower() == ".json":
        return read_caption_json(data, root, split)
    return read_csv(data, root, image_key, caption_key)


@torch.no_grad()
def encode_captions(model, captions: list[str], device: torch.device, batch_size: int) -> torch.Tensor:
    """Return (T, D) normalised caption embeddings."""
    chunks = []
    for start in range(0, len(captions), batch_size):
        tokens = model.tokenize(captions[start : start + batch_size]).to(device)
        chunks.append(F.normalize(model.encode_text(tokens).float(), dim=-1).cpu())
    return torch.cat(chunks)


def evaluate_retrieval(
    model,
    dataset: RetrievalData,
    device: torch.device = torch.device("cpu"),
    batch_size: int = 64,
    prefix: str = DEFAULT_PREFIX,
) -> dict:
    """Return R@1, R@5, R@10 in both directions and their mean."""
    size = model.image_size
    image_features = encode_views(model, dataset.images, lambda path: resize_center_crop(open_rgb(path), size), device, batch_size, "retrieve")
    text_features = encode_captions(model, [prefix + caption for caption in dataset.captions], device, batch_size)
    similarity = image_features @ text_features.T  # (I, T)
    recall = metrics.retrieval_recall(similarity, torch.tensor(dataset.caption_image), RECALL_AT)
    return {
        "task": "retrieve",
        "metrics": recall | {"images": len(dataset.images), "captions": len(dataset.captions)},
        "headline": "mean_recall",
        "prefix": prefix,
    }


def write_retrieval(result: dict, out_dir: str | Path, name: str) -> list[Path]:
    """Write NAME.json and NAME.md and return their paths."""
    out_dir = Path(out_dir)
    values = result["metrics"]
    rows = [
        (direction.replace("_", " "), *(values[f"{direction}_R@{k}"] for k in RECALL_AT))
        for direction in ("image_to_text", "text_to_image")
    ]
    note = (
        f"Recall in percent over {values['images']} images and {values['captions']} captions; "
        f"mean recall {100 * values['mean_recall']:.2f}. Captions prefixed with {result['prefix']!r}."
    )
    return [
        write_json(out_dir / f"{name}.json", result),
        write_markdown(out_dir / f"{name}.md", f"Image-text retrieval: {name}", [("", ["direction", *(f"R@{k}" for k in RECALL_AT)], rows)], note=note),
    ]
