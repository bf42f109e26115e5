"""Tests of the training loop: overfitting, exact resume, non-finite stop, checkpoints and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from farslip import checkpoint
from farslip import train as training
from farslip.cli import app
from farslip.config import load_config
from farslip_shards import write_region_shards, write_tar

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_region_shards(tmp_path_factory.mktemp("train") / "ds", train_rows=16, shards=2, seed=1, validation_rows=4)


def tiny_config(data: Path, out: Path, *overrides: str):
    base = [f"data.path={data}", f"train.out_dir={out}", "data.batch_size=2", "data.max_regions=2", "validation.enabled=false"]
    return load_config(CONFIGS / "tiny.yaml", base + list(overrides))


def read_steps(out: Path) -> list[dict]:
    lines = (out / "train.jsonl").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if "validation" not in entry]


def test_lr_schedule():
    factors = [training.lr_factor(step, warmup=2, total=6) for step in range(7)]
    assert factors[:2] == [0.5, 1.0]
    assert factors[2] == pytest.approx(1.0)
    assert factors[4] == pytest.approx(0.5)
    assert factors[6] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(factors[1:], factors[2:]))


def test_param_groups_no_decay():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    model.register_parameter("logit_scale", torch.nn.Parameter(torch.ones([])))
    decay, no_decay = training.param_groups(model, 0.5)
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert len(no_decay["params"]) == 4


@pytest.mark.slow
def test_overfits_one_batch(shards, tmp_path):
    cfg = tiny_config(shards, tmp_path, "optim.lr=1e-3", "optim.warmup_steps=0", "train.max_steps=1000")
    run = training.setup(cfg, torch.device("cpu"))
    batch = next(iter(training.make_loader(run.stream)))
    losses = [training.train_step(run, [batch])["total"] for _ in range(25)]
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.slow
def test_resume_equals_uninterrupted(shards, tmp_path):
    options = ("train.max_steps=6", "checkpoint.every=3", "data.num_workers=2")
    training.train(tiny_config(shards, tmp_path / "full", *options))
    training.train(tiny_config(shards, tmp_path / "parts", *options), stop_after=4)
    assert [e["step"] for e in read_steps(tmp_path / "parts")] == [1, 2, 3, 4]
    training.train(tiny_config(shards, tmp_path / "parts", *options), resume=True)

    full = read_steps(tmp_path / "full")
    parts = read_steps(tmp_path / "parts")
    assert [e["step"] for e in parts] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(full, parts):
        for key in ("total", "global_loss", "region_loss", "lr", "logit_scale"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (a["step"], key)


def test_resume_without_checkpoint(shards, tmp_path):
    with pytest.raises(FileNotFoundError, match="run without --resume"):
        training.train(tiny_config(shards, tmp_path), resume=True)


def test_non_finite_loss_stops(shards, tmp_path, monkeypatch):
    real = training.compute_losses
    calls = []

    def broken(model, teacher, batch, cfg):
        losses = real(model, teacher, batch, cfg)
        calls.append(1)
        if len(calls) == 2:
            losses["region_loss"] = torch.tensor(float("nan"))
        return losses

    monkeypatch.setattr(training, "compute_losses", broken)
    with pytest.raises(training.NonFiniteLossError, match="region_loss is nan at step 2"):
        training.train(tiny_config(shards, tmp_path, "train.max_steps=4"))


def test_checkpoint_atomic(shards, tmp_path, monkeypatch):
    cfg = tiny_config(shards, tmp_path, "train.max_steps=1", "checkpoint.keep=2")
    run = training.train(cfg)
    root = checkpoint.checkpoint_dir(tmp_path)
    first = checkpoint.latest_checkpoint(tmp_path)
    assert first == root / "step-00000001"
    assert {p.name for p in first.iterdir()} == {"model.safetensors", "state.pt", "config.yaml"}
    state = checkpoint.load_state(first)
    assert state["step"] == 1
    assert state["position"] == {"epoch": 0, "batch": 1}
    assert {"optimizer", "scheduler", "scaler", "teacher", "rng"} <= set(state)

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    run.step = 2
    with pytest.raises(OSError, match="disk full"):
        training.save(run)
    assert checkpoint.latest_checkpoint(tmp_path) == first
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000001"]


def test_checkpoint_keeps_newest(tmp_path, shards):
    cfg = tiny_config(shards, tmp_path, "train.max_steps=3", "checkpoint.every=1", "checkpoint.keep=2")
    training.train(cfg)
    names = sorted(p.name for p in checkpoint.checkpoint_dir(tmp_path).glob("step-*"))
    assert names == ["step-00000002", "step-00000003"]


@pytest.mark.slow
def test_cli_stage2_train_and_export(shards, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", "--config", str(CONFIGS / "tiny.yaml"), "--data", str(shards), "--out", str(out),
         "--set", "train.max_steps=2", "--set", "data.batch_size=2", "--set", "data.max_regions=2"],
    )
    assert result.exit_code == 0, result.output
    steps = read_steps(out)
    assert [e["step"] for e in steps] == [1, 2]
    assert {"global_loss", "region_loss", "total", "lr", "logit_scale", "samples_per_s"} <= set(steps[0])
    lines = (out / "train.jsonl").read_text().splitlines()
    metrics = json.loads(lines[-1])["validation"]
    assert {"image_to_text_R@1", "text_to_image_R@10", "region_accuracy"} <= set(metrics)

    exported = tmp_path / "model.safetensors"
    result = runner.invoke(app, ["export", str(checkpoint.latest_checkpoint(out)), "--out", str(exported)])
    assert result.exit_code == 0, result.output
    assert exported.is_file()


@pytest.mark.slow
def test_cli_stage1_webdataset(tmp_path):
    write_tar(tmp_path / "tars" / "shard-000.tar", 6, seed=1)
    write_tar(tmp_path / "tars" / "shard-001.tar", 6, seed=2)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["train", "--config", str(CONFIGS / "tiny.yaml"), "--data", str(tmp_path / "tars"), "--out", str(out),
         "--set", "train.max_steps=2", "--set", "data.batch_size=2", "--set", "data.max_regions=0",
         "--set", "data.local_views=2", "--set", "objective.w_distill=0.1", "--set", "objective.w_region=0",
         "--set", "validation.enabled=false"],
    )
    assert result.exit_code == 0, result.output
    steps = read_steps(out)
    assert [e["step"] for e in steps] == [1, 2]
    assert "distill_loss" in steps[0]
    assert "region_loss" not in steps[0]


def test_cli_bad_override(shards, tmp_path):
    result = CliRunner().invoke(app, ["train", "--config", str(CONFIGS / "tiny.yaml"), "--set", "optim.lr=fast"])
    assert result.exit_code != 0
    assert "optim.lr" in result.output


def test_fresh_run_rejects_used_output(shards, tmp_path):
    out = tmp_path / "run"
    training.train(tiny_config(shards, out, "train.max_steps=2"))

    with pytest.raises(FileExistsError, match="--resume"):
        training.train(tiny_config(shards, out, "train.max_steps=2"))


def test_resume_rejects_changed_settings(shards, tmp_path):
    out = tmp_path / "run"
    training.train(tiny_config(shards, out, "train.max_steps=4", "checkpoint.every=2"), stop_after=2)

    with pytest.raises(ValueError, match="optim.lr"):
        training.train(tiny_config(shards, out, "train.max_steps=4", "checkpoint.every=2", "optim.lr=0.001"), resume=True)


def test_cli_errors_without_traceback(shards, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["train", "--config", str(CONFIGS / "tiny.yaml"), "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")])

    assert missing.exit_code == 2
    assert "error: no Parquet shards" in missing.output
    assert "Traceback" not in missing.output


def test_cli_export_checks_suffix(shards, tmp_path):
    out = tmp_path / "run"
    training.train(tiny_config(shards, out, "train.max_steps=2"))
    runner = CliRunner()

    wrong = runner.invoke(app, ["export", str(out), "--out", str(tmp_path / "model.pt")])
    right = runner.invoke(app, ["export", str(out), "--out", str(tmp_path / "model.safetensors")])

    assert wrong.exit_code == 2
    assert ".safetensors" in wrong.output
    assert right.exit_code == 0, right.output
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o044 == 0o044


def test_resume_of_finished_run_adds_nothing(shards, tmp_path):
    out = tmp_path / "run"
    training.train(tiny_config(shards, out, "train.max_steps=2"))
    before = (out / "train.jsonl").read_text()

    training.train(tiny_config(shards, out, "train.max_steps=2"), resume=True)

    assert (out / "train.jsonl").read_text() == before
