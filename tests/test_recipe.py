"""Tests of recipe parsing, path resolution, validation and fingerprints in `mgrs.recipe`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mgrs.recipe import (
    BuildConfig,
    RecipeError,
    SourceSpec,
    config_from_dict,
    load_recipe,
    resolve_path,
)


def valid_config() -> BuildConfig:
    return BuildConfig(sources=[SourceSpec(format="dota", path="/data/dota")])


def write_recipe(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# SourceSpec.parse ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "format_name", "version", "path"),
    [
        ("dota:/p", "dota", None, "/p"),
        ("dota@1.5:/p with spaces", "dota", "1.5", "/p with spaces"),
        ("dior-r:relative/dir", "dior-r", None, "relative/dir"),
        ("isaid@v1_0:/a:b", "isaid", "v1_0", "/a:b"),
        ("dota@2.0:C:/data", "dota", "2.0", "C:/data"),
    ],
)
def test_source_spec_parse(text, format_name, version, path):
    spec = SourceSpec.parse(text)

    assert spec.format == format_name
    assert spec.version == version
    assert spec.path == path


@pytest.mark.parametrize("text", ["dota", "dota:", ":/p", "dota@:/p", "do ta:/p", "dota@1 5:/p", ""])
def test_source_spec_parse_rejects(text):
    with pytest.raises(RecipeError) as caught:
        SourceSpec.parse(text)

    assert "FORMAT[@VERSION]:PATH" in str(caught.value)


# Paths --------------------------------------------------------------------------------------------


def test_resolve_path_expands_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMPLES", str(tmp_path / "samples"))

    assert resolve_path("${SAMPLES}/dota", Path("/elsewhere")) == str(tmp_path / "samples" / "dota")
    assert resolve_path("$SAMPLES/dior", Path("/elsewhere")) == str(tmp_path / "samples" / "dior")


def test_resolve_path_unset_variable(monkeypatch):
    monkeypatch.delenv("MGRS_UNSET_FOR_TEST", raising=False)

    with pytest.raises(RecipeError) as caught:
        resolve_path("${MGRS_UNSET_FOR_TEST}/dota", Path("/root"))

    assert "MGRS_UNSET_FOR_TEST" in str(caught.value)


def test_resolve_path_relative_to_root(tmp_path):
    assert resolve_path("data/dota", tmp_path) == str(tmp_path / "data" / "dota")


def test_resolve_path_absolute_kept(tmp_path):
    assert resolve_path("/abs/dota", tmp_path) == "/abs/dota"


def test_resolve_path_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))

    assert resolve_path("~/dota", Path("/root")) == str(tmp_path / "dota")


# load_recipe and config_from_dict -----------------------------------------------------------------


def test_load_recipe_full(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMPLES", "/samples")
    recipe = write_recipe(
        tmp_path / "recipe.yaml",
        {
            "name": "mgrs-demo",
            "sources": [
                {"format": "dota", "version": 1.5, "path": "${SAMPLES}/dota"},
                {"format": "dior-r", "path": "dior"},
                "isaid@1.0:isaid",
            ],
            "tiling": {"size": 512, "overlap": 128, "min_visible_fraction": 0.5},
            "categories": {"granularity": "coarse", "unknown": "skip"},
            "output": {"rows_per_shard": 100},
            "splits": {"holdout_fraction": 0.1, "holdout_seed": 3},
            "skip_empty": True,
            "limit": 5,
        },
    )

    config = load_recipe(recipe, root=tmp_path / "root")
    config.validate()

    assert config.name == "mgrs-demo"
    assert [s.format for s in config.sources] == ["dota", "dior-r", "isaid"]
    assert [s.version for s in config.sources] == ["1.5", None, "1.0"]
    assert config.sources[0].path == "/samples/dota"
    assert config.sources[1].path == str(tmp_path / "root" / "dior")
    assert config.sources[2].path == str(tmp_path / "root" / "isaid")
    assert config.tiling.size == 512
    assert config.tiling.overlap == 128
    assert config.tiling.min_visible_fraction == 0.5
    assert config.categories.granularity == "coarse"
    assert config.categories.unknown == "skip"
    assert config.output.rows_per_shard == 100
    assert config.splits.holdout_seed == 3
    assert config.skip_empty is True
    assert config.limit == 5
    # Sections the recipe leaves out keep their defaults.
    assert config.geometry.invalid_polygons == "repair"
    assert config.images.encoding == "auto"


def test_load_recipe_none_gives_defaults():
    assert load_recipe(None) == BuildConfig()


def test_load_recipe_empty_file(tmp_path):
    recipe = tmp_path / "empty.yaml"
    recipe.write_text("", encoding="utf-8")

    assert load_recipe(recipe, root=tmp_path) == BuildConfig()


def test_load_recipe_default_root_is_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path / "recipe.yaml", {"sources": ["dota:rel"]})

    config = load_recipe(recipe)

    assert config.sources[0].path == str(tmp_path / "rel")


def test_load_recipe_missing_file(tmp_path):
    with pytest.raises(RecipeError) as caught:
        load_recipe(tmp_path / "absent.yaml")

    assert "absent.yaml" in str(caught.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "a: [1, 2\n"])
def test_load_recipe_not_mapping(tmp_path, text):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text, encoding="utf-8")

    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe, root=tmp_path)

    assert "bad.yaml" in str(caught.value)


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(RecipeError) as caught:
        config_from_dict({"tilling": {"size": 10}}, root=tmp_path, origin="r.yaml")

    message = str(caught.value)
    assert "'tilling'" in message
    assert "r.yaml" in message
    assert "tiling" in message


def test_unknown_section_keys(tmp_path):
    with pytest.raises(RecipeError) as caught:
        config_from_dict({"tiling": {"size": 10, "overlapp": 2, "stride": 3}}, root=tmp_path, origin="r.yaml")

    message = str(caught.value)
    assert "overlapp" in message
    assert "stride" in message
    assert "tiling" in message


def test_unknown_source_key(tmp_path):
    with pytest.raises(RecipeError) as caught:
        config_from_dict({"sources": [{"format": "dota", "path": "p", "verison": "1.5"}]}, root=tmp_path)

    assert "verison" in str(caught.value)


@pytest.mark.parametrize("entry", [{"format": "dota"}, {"path": "p"}, 5, ["dota", "p"]])
def test_incomplete_source(tmp_path, entry):
    with pytest.raises(RecipeError) as caught:
        config_from_dict({"sources": [entry]}, root=tmp_path)

    assert "format" in str(caught.value)


def test_section_not_mapping(tmp_path):
    with pytest.raises(RecipeError) as caught:
        config_from_dict({"tiling": 800}, root=tmp_path, origin="r.yaml")

    assert "tiling" in str(caught.value)


def test_empty_section_keeps_defaults(tmp_path):
    config = config_from_dict({"tiling": None}, root=tmp_path)

    assert config.tiling == BuildConfig().tiling


# validate -----------------------------------------------------------------------------------------


def test_validate_defaults_with_source():
    valid_config().validate()


def set_value(config: BuildConfig, dotted: str, value) -> None:
    *parents, name = dotted.split(".")
    target = config
    for parent in parents:
        target = getattr(target, parent)
    setattr(target, name, value)


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("sources", [], "sources"),
        ("tiling.size", 0, "tiling.size"),
        ("tiling.size", -800, "tiling.size"),
        ("tiling.overlap", -1, "tiling.overlap"),
        ("tiling.overlap", 800, "tiling.overlap"),
        ("tiling.overlap", 900, "tiling.overlap"),
        ("tiling.min_visible_fraction", 0.0, "tiling.min_visible_fraction"),
        ("tiling.min_visible_fraction", 1.5, "tiling.min_visible_fraction"),
        ("categories.granularity", "medium", "categories.granularity"),
        ("categories.unknown", "keep", "categories.unknown"),
        ("geometry.invalid_polygons", "fix", "geometry.invalid_polygons"),
        ("images.encoding", "webp", "images.encoding"),
        ("output.rows_per_shard", 0, "output.rows_per_shard"),
        ("output.num_shards", -2, "output.num_shards"),
        ("splits.holdout_fraction", 1.0, "splits.holdout_fraction"),
        ("splits.holdout_fraction", -0.1, "splits.holdout_fraction"),
        ("captioner.kind", "llm", "captioner.kind"),
        ("max_skip_rate", 1.5, "max_skip_rate"),
        ("max_skip_rate", -0.5, "max_skip_rate"),
    ],
)
def test_validate_rejects(option, value, named):
    config = valid_config()
    set_value(config, option, value)

    with pytest.raises(RecipeError) as caught:
        config.validate()

    assert named in str(caught.value)


def test_validate_rejects_both_shard_options():
    config = valid_config()
    config.output.rows_per_shard = 10
    config.output.num_shards = 2

    with pytest.raises(RecipeError) as caught:
        config.validate()

    assert "rows_per_shard" in str(caught.value)
    assert "num_shards" in str(caught.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("tiling.overlap", 0),
        ("tiling.overlap", 799),
        ("tiling.min_visible_fraction", 1.0),
        ("categories.granularity", "coarse"),
        ("categories.unknown", "skip"),
        ("geometry.invalid_polygons", "drop"),
        ("images.encoding", "png"),
        ("images.encoding", "jpeg"),
        ("output.rows_per_shard", 1),
        ("output.num_shards", 1),
        ("splits.holdout_fraction", 0.0),
        ("splits.holdout_fraction", 0.99),
        ("max_skip_rate", 0.0),
        ("max_skip_rate", 1.0),
    ],
)
def test_validate_accepts_boundary(option, value):
    config = valid_config()
    set_value(config, option, value)

    config.validate()


# fingerprint --------------------------------------------------------------------------------------


def test_fingerprint_stable():
    assert valid_config().fingerprint() == valid_config().fingerprint()
    assert len(valid_config().fingerprint()) == 16


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("name", "other-name"),
        ("tiling.size", 512),
        ("tiling.overlap", 100),
        ("tiling.min_visible_fraction", 0.5),
        ("categories.granularity", "coarse"),
        ("categories.unknown", "skip"),
        ("geometry.invalid_polygons", "drop"),
        ("geometry.min_mask_area", 20),
        ("images.encoding", "png"),
        ("images.jpeg_quality", 80),
        ("output.rows_per_shard", 10),
        ("splits.holdout_fraction", 0.2),
        ("splits.holdout_seed", 1),
        ("skip_empty", True),
        ("limit", 3),
    ],
)
def test_fingerprint_changes_with_setting(option, value):
    config = valid_config()
    set_value(config, option, value)

    assert config.fingerprint() != valid_config().fingerprint()


def test_fingerprint_changes_with_sources():
    config = valid_config()
    config.sources.append(SourceSpec(format="dior-r", path="/data/dior"))

    assert config.fingerprint() != valid_config().fingerprint()


def test_fingerprint_ignores_max_skip_rate():
    config = valid_config()
    config.max_skip_rate = 0.1

    assert config.fingerprint() == valid_config().fingerprint()


@pytest.mark.parametrize(
    "data",
    [
        {"tiling": {"size": "800"}},
        {"tiling": {"min_visible_fraction": "high"}},
        {"output": {"rows_per_shard": 2.5}},
        {"skip_empty": "yes"},
        {"limit": True},
    ],
)
def test_recipe_wrong_type_rejected(data, tmp_path):
    with pytest.raises(RecipeError, match="write a value of type"):
        config_from_dict(data, tmp_path)


def test_recipe_sources_string_rejected(tmp_path):
    with pytest.raises(RecipeError, match="sources must be a list"):
        config_from_dict({"sources": "dota:/x"}, tmp_path)


def test_recipe_invalid_yaml_names_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: x\ntiling: {size: 800\n")

    with pytest.raises(RecipeError, match=r"bad.yaml is not valid YAML at line"):
        load_recipe(recipe)


def test_recipe_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
