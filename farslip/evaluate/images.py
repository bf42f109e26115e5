"""Image preprocessing and batched image encoding for evaluation.

Shapes: B batch, S model image side, D embedding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

logger = logging.getLogger(__name__)


def open_rgb(path: str | Path) -> Image.Image:
    """Open an image file as 8-bit RGB, naming the file when it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read image {path}: {error}; check that the file is a valid image") from error


def resize_center_crop(image: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to `size` (bicubic) and crop the centre square: (S, S, 3) uint8.

    This is the view that open_clip's evaluation preprocessing gives.
    """
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BICUBIC)
    left = (resized.width - size) // 2
    top = (resized.height - size) // 2
    return np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.uint8)


def normalise(views: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Turn uint8 views (B, S, S, 3) into normalised float tensors (B, 3, S, S)."""
    tensor = torch.from_numpy(np.array(views, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255.0
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (tensor - mean_t) / std_t


@torch.no_grad()
def encode_views(
    model,
    items: Sequence,
    load_view: Callable[[object], np.ndarray],
    device: torch.device,
    batch_size: int,
    description: str,
) -> torch.Tensor:
    """Return (len(items), D) normalised pooled embeddings of the views that `load_view` makes.

    `load_view(item)` returns one (S, S, 3) uint8 view. A progress bar shows on a terminal.
    """
    features = []
    with tqdm(total=len(items), desc=description, unit="img", disable=None, leave=False) as progress:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            views = np.stack([load_view(item) for item in chunk])
            batch = normalise(views, model.mean, model.std).to(device)
            features.append(torch.nn.functional.normalize(model.encode_image(batch).float(), dim=-1).cpu())
            progress.update(len(chunk))
    if not features:
        return torch.zeros(0, 0)
    return torch.cat(features)
