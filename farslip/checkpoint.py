"""Atomic training checkpoints: weights as safetensors plus everything an exact resume needs.

A checkpoint is a folder `OUT/checkpoints/step-NNNNNNNN/` with `model.safetensors` (the model
weights, loadable by `farslip export` and `farslip.model.load_weights`), `state.pt` (optimizer,
scheduler, scaler, teacher, data position, RNG states) and `config.yaml`. It is written under a
temporary name and renamed into place, and `OUT/checkpoints/latest` names the newest complete one,
so an interrupted write never leaves a checkpoint that looks complete.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from farslip.model import save_weights

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
LATEST_FILE = "latest"


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def rng_state() -> dict[str, Any]:
    """Return the Python, NumPy and torch RNG states as plain data that `torch.load(weights_only=True)` reads."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states returned by `rng_state`."""
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out_dir: str | Path, step: int, model: torch.nn.Module, state: dict[str, Any], config_yaml: str, keep: int) -> Path:
    """Write the checkpoint of `step` atomically, point `latest` at it and keep the newest `keep`."""
    root = checkpoint_dir(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    temporary = root / f".{final.name}.tmp-{os.getpid()}"
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir()

    try:
        save_weights(model, temporary / WEIGHTS_FILE)
        torch.save(state, temporary / STATE_FILE)
        (temporary / CONFIG_FILE).write_text(config_yaml, encoding="utf-8")
        for path in temporary.iterdir():
            _fsync(path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise

    # NOTE: replacing an existing folder of the same step (a resumed run that saves that step again)
    # is two renames, so a crash between them leaves the previous checkpoint as `latest`.
    if final.exists():
        shutil.rmtree(final)
    os.rename(temporary, final)
    _write_atomic(root / LATEST_FILE, final.name + "\n")
    _fsync(root)

    prune_checkpoints(root, keep)
    logger.info("saved checkpoint %s", final)
    return final


def prune_checkpoints(root: Path, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints."""
    complete = sorted(p for p in root.glob("step-*") if p.is_dir() and (p / STATE_FILE).is_file())
    for old in complete[:-keep]:
        shutil.rmtree(old)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """Return the newest complete checkpoint folder under `out_dir`, or None."""
    root = checkpoint_dir(out_dir)
    pointer = root / LATEST_FILE
    if pointer.is_file():
        candidate = root / pointer.read_text(encoding="utf-8").strip()
        if (candidate / STATE_FILE).is_file():
            return candidate
    complete = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file() and (p / WEIGHTS_FILE).is_file())
    return complete[-1] if complete else None


def load_state(path: Path) -> dict[str, Any]:
    """Read `state.pt` of a checkpoint folder."""
    return torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    _fsync(temporary)
    os.replace(temporary, path)


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
