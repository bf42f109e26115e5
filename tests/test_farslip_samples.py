"""Stage-1 and stage-2 training runs on shards built from the real samples, then export."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from typer.testing import CliRunner

import farslip.model  # noqa: F401  (registers FarSLIP-Tiny with open_clip)
from farslip.cli import app

pytestmark = [pytest.mark.samples, pytest.mark.slow]

REPOSITORY = Path(__file__).resolve().parents[1]
runner = CliRunner()


def train(data: Path, out: Path, *overrides: str):
    args = ["train", "--config", str(REPOSITORY / "configs" / "tiny.yaml"), "--data", str(data), "--out", str(out)]
    for override in overrides:
        args += ["--set", override]
    return runner.invoke(app, args, catch_exceptions=False)


def logged_steps(out: Path) -> list[dict]:
    lines = (out / "train.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_stage2_on_samples_then_export(demo_build, tmp_path):
    out = tmp_path / "stage2"
    result = train(demo_build.out, out, "train.max_steps=4")

    assert result.exit_code == 0, result.output
    steps = [entry for entry in logged_steps(out) if "region_loss" in entry]
    assert steps
    assert all(entry["region_loss"] > 0 for entry in steps)

    exported = tmp_path / "tiny.safetensors"
    export = runner.invoke(app, ["export", str(out), "--out", str(exported)], catch_exceptions=False)
    assert export.exit_code == 0, export.output
    model, _, _ = open_clip.create_model_and_transforms("FarSLIP-Tiny", pretrained=str(exported))
    with torch.no_grad():
        features = model.encode_image(torch.zeros(1, 3, 64, 64))
    assert features.shape == (1, model.visual.output_dim)


def test_stage1_on_samples(demo_build, tmp_path):
    out = tmp_path / "stage1"
    result = train(
        demo_build.out,
        out,
        "train.max_steps=2",
        "objective.w_region=0",
        "objective.w_distill=0.1",
        "data.max_regions=0",
        "data.local_views=2",
        "validation.enabled=false",
    )

    assert result.exit_code == 0, result.output
    steps = [entry for entry in logged_steps(out) if "distill_loss" in entry]
    assert steps
    assert all("region_loss" not in entry for entry in steps)


def test_suite_runs_after_epoch(demo_build, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "device: cpu\nbatch_size: 8\ntasks:\n"
        f"  - {{name: regions-train, task: regions, data: {demo_build.out}, split: train}}\n"
    )
    out = tmp_path / "run"
    result = train(demo_build.out, out, "train.epochs=2", "train.max_steps=4", f"validation.suite={suite}")

    assert result.exit_code == 0, result.output
    produced = sorted(path.name for path in (out / "eval").iterdir())
    assert produced == ["epoch-0000", "epoch-0001"]
    assert any((out / "eval" / "epoch-0000").rglob("*.json"))
