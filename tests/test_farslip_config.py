"""Tests of the typed training config: recipes, overrides and their error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from farslip.config import ConfigError, TrainConfig, build, dump_config, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["stage1", "stage2", "tiny"])
def test_shipped_recipes_load(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert isinstance(cfg, TrainConfig)
    assert build(TrainConfig, yaml.safe_load(dump_config(cfg)), "") == cfg


def test_reference_settings():
    stage1 = load_config(CONFIGS / "stage1.yaml")
    stage2 = load_config(CONFIGS / "stage2.yaml")
    assert (stage1.optim.lr, stage1.optim.warmup_steps, stage1.train.epochs) == (1e-6, 1000, 1)
    assert (stage1.data.local_views, stage1.data.max_regions) == (4, 0)
    assert (stage2.optim.lr, stage2.optim.warmup_steps, stage2.train.epochs) == (4e-9, 250, 10)
    assert (stage2.data.max_regions, stage2.objective.region_loss) == (4, "multipositive")
    assert stage2.model.long_clip and stage2.model.force_quick_gelu
    for cfg in (stage1, stage2):
        assert (cfg.model.name, cfg.data.batch_size, cfg.optim.weight_decay) == ("ViT-B-16", 40, 1.0)


def test_overrides_typed():
    cfg = load_config(
        CONFIGS / "tiny.yaml",
        [
            "optim.lr=1e-5",
            "data.batch_size=7",
            "data.path=hf://datasets/owner/name",
            "data.local_scale=[0.2, 0.6]",
            "optim.grad_clip=null",
            "validation.enabled=false",
            "data.split=2017",
            "train.max_steps=3",
        ],
    )
    assert cfg.optim.lr == 1e-5
    assert cfg.data.batch_size == 7
    assert cfg.data.path == "hf://datasets/owner/name"
    assert cfg.data.local_scale == (0.2, 0.6)
    assert cfg.optim.grad_clip is None
    assert cfg.validation.enabled is False
    assert cfg.data.split == "2017"
    assert cfg.train.max_steps == 3


def test_later_override_wins():
    cfg = load_config(None, ["data.batch_size=3", "data.batch_size=5"])
    assert cfg.data.batch_size == 5


@pytest.mark.parametrize(
    "override,expected",
    [
        ("data.batch_size=abc", r"invalid value for data.batch_size: expected an integer, got 'abc'"),
        ("data.batch_size=2.5", r"data.batch_size: expected an integer, got 2.5"),
        ("data.batchsize=3", r"unknown option 'data.batchsize': section data has path, format"),
        ("nosection.x=1", r"unknown option 'nosection.x': the config has model, objective"),
        ("data.path.deeper=1", r"data.path is a value, not a section"),
        ("optim.lr=0", r"invalid value for optim.lr: must be > 0.0, got 0.0"),
        ("checkpoint.keep=0", r"checkpoint.keep: must be >= 1, got 0"),
        ("data.global_view=crop", r"data.global_view: expected one of 'squash', 'center_crop', got 'crop'"),
        ("validation.enabled=maybe", r"validation.enabled: expected true or false, got 'maybe'"),
        ("data.local_scale=[0.5]", r"data.local_scale: expected a list of 2 values \(a number each\)"),
        ("data.min_size=2000", r"data.min_size: must be in \[0, data.max_size=1024\], got 2000"),
        ("model.dense=other", r"invalid section model: invalid model.dense 'other'"),
        ("objective.teacher=student", r"invalid section objective:.*objective.teacher"),
        ("lr", r"expected key.path=value"),
    ],
)
def test_override_errors(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(CONFIGS / "tiny.yaml", [override])


def test_error_names_fix():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["train.precision=bf17"])
    message = str(error.value)
    assert "train.precision" in message
    assert "'bf17'" in message
    assert "--set train.precision=" in message


def test_recipe_errors(tmp_path):
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("data:\n  batch: 3\n")
    with pytest.raises(ConfigError, match="unknown option 'data.batch'"):
        load_config(bad_key)

    bad_section = tmp_path / "bad_section.yaml"
    bad_section.write_text("optim: 3\n")
    with pytest.raises(ConfigError, match="invalid section optim: expected a mapping"):
        load_config(bad_section)

    not_yaml = tmp_path / "broken.yaml"
    not_yaml.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(not_yaml)


def test_recipe_is_not_executed(tmp_path):
    recipe = tmp_path / "unsafe.yaml"
    recipe.write_text("data: !!python/object/apply:os.system ['echo unsafe']\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(recipe)
