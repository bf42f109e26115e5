"""Tests of label lookup, granularity and file checks of `mgrs.taxonomy` and manifests/categories.yaml."""

from __future__ import annotations

import pytest
import yaml

from mgrs.taxonomy import (
    COARSE,
    DEFAULT_PATH,
    FINE,
    Taxonomy,
    TaxonomyError,
    load_taxonomy,
    normalise_label,
)

DOTA_CLASSES = [
    "plane", "baseball-diamond", "bridge", "ground-track-field", "small-vehicle", "large-vehicle", "ship",
    "tennis-court", "basketball-court", "storage-tank", "soccer-ball-field", "roundabout", "harbor",
    "swimming-pool", "helicopter", "container-crane", "airport", "helipad",
]
DIOR_CLASSES = [
    "airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney", "dam",
    "Expressway-Service-area", "Expressway-toll-station", "golffield", "groundtrackfield", "harbor",
    "overpass", "ship", "stadium", "storagetank", "tenniscourt", "trainstation", "vehicle", "windmill",
]
ISAID_CLASSES = [
    "ship", "storage_tank", "baseball_diamond", "tennis_court", "basketball_court", "Ground_Track_Field",
    "Bridge", "Large_Vehicle", "Small_Vehicle", "Helicopter", "Swimming_pool", "Roundabout",
    "Soccer_ball_field", "plane", "Harbor",
]


@pytest.fixture
def taxonomy() -> Taxonomy:
    return Taxonomy.from_file(DEFAULT_PATH)


@pytest.fixture
def fresh_cache():
    load_taxonomy.cache_clear()
    yield
    load_taxonomy.cache_clear()


def write_yaml(path, data) -> str:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("label", "key"),
    [
        ("Small_Vehicle", "smallvehicle"),
        ("  small - vehicle ", "smallvehicle"),
        ("Expressway-Service-area", "expresswayservicearea"),
        ("storage\ttank", "storagetank"),
    ],
)
def test_normalise_label(label, key):
    assert normalise_label(label) == key


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("Small_Vehicle", "small vehicle"),
        ("small-vehicle", "small vehicle"),
        ("small vehicle", "small vehicle"),
        ("SMALL VEHICLES", "small vehicle"),
        ("Expressway-Service-area", "expressway service area"),
        ("storage_tank", "storage tank"),
        ("storage tanks", "storage tank"),
        ("golffield", "golf course"),
        ("harbour", "harbor"),
        ("planes", "airplane"),
        ("overpasses", "overpass"),
    ],
)
def test_lookup_spellings(taxonomy, label, name):
    category = taxonomy.lookup(label)

    assert category is not None
    assert category.name == name


@pytest.mark.parametrize(
    ("dota", "other_spelling"),
    [
        ("plane", "airplane"),
        ("baseball-diamond", "baseballfield"),
        ("baseball-diamond", "baseball_diamond"),
        ("ground-track-field", "Ground_Track_Field"),
        ("ground-track-field", "groundtrackfield"),
        ("small-vehicle", "Small_Vehicle"),
        ("large-vehicle", "Large_Vehicle"),
        ("tennis-court", "tenniscourt"),
        ("tennis-court", "tennis_court"),
        ("basketball-court", "basketballcourt"),
        ("storage-tank", "storagetank"),
        ("storage-tank", "storage_tank"),
        ("soccer-ball-field", "Soccer_ball_field"),
        ("swimming-pool", "Swimming_pool"),
        ("harbor", "Harbor"),
        ("bridge", "Bridge"),
        ("helicopter", "Helicopter"),
        ("roundabout", "Roundabout"),
    ],
)
def test_lookup_same_as_dota(taxonomy, dota, other_spelling):
    assert taxonomy.lookup(other_spelling) == taxonomy.lookup(dota)


@pytest.mark.parametrize("label", sorted(set(DOTA_CLASSES + DIOR_CLASSES + ISAID_CLASSES)))
def test_every_source_class_resolves(taxonomy, label):
    assert taxonomy.lookup(label) is not None


@pytest.mark.parametrize("label", sorted(set(DOTA_CLASSES + DIOR_CLASSES + ISAID_CLASSES)))
def test_every_source_class_has_coarse_category(taxonomy, label):
    category = taxonomy.resolve(label, COARSE)

    assert category is not None
    assert category.level == COARSE


@pytest.mark.parametrize(
    ("label", "fine", "coarse"),
    [
        ("small vehicle", "small vehicle", "vehicle"),
        ("Large_Vehicle", "large vehicle", "vehicle"),
        ("vehicle", "vehicle", "vehicle"),
        ("ship", "ship", "ship"),
    ],
)
def test_resolve_granularity(taxonomy, label, fine, coarse):
    assert taxonomy.resolve(label, FINE).name == fine
    assert taxonomy.resolve(label, COARSE).name == coarse


@pytest.mark.parametrize("label", ["tree", "", "   ", "vehicles of war", "s", "es"])
def test_unknown_label_is_none(taxonomy, label):
    assert taxonomy.lookup(label) is None
    assert taxonomy.resolve(label, FINE) is None
    assert taxonomy.resolve(label, COARSE) is None


def test_shipped_ids_unique(taxonomy):
    with open(DEFAULT_PATH, encoding="utf-8") as handle:
        entries = yaml.safe_load(handle)["categories"]
    ids = [entry["id"] for entry in entries]

    assert len(ids) == len(set(ids))
    assert len(taxonomy.by_id) == len(entries)


def test_shipped_other_category(taxonomy):
    assert taxonomy.other.name == "other"
    assert taxonomy.other.id == 0
    assert taxonomy.other.level == COARSE


def test_categories_ordered_and_filtered(taxonomy):
    every = taxonomy.categories()
    coarse = taxonomy.categories(COARSE)
    ids = [c.id for c in every]

    assert ids == sorted(ids)
    assert all(c.level == COARSE for c in coarse)
    assert "small vehicle" in {c.name for c in every}
    assert "small vehicle" not in {c.name for c in coarse}
    assert taxonomy.categories(FINE) == every


def base_entries() -> list[dict]:
    return [
        {"id": 0, "name": "other", "level": "coarse", "aliases": []},
        {"id": 1, "name": "vehicle", "level": "coarse", "aliases": ["car"]},
        {"id": 2, "name": "small vehicle", "level": "fine", "parent": "vehicle", "aliases": ["small-vehicle"]},
    ]


def test_from_dict_minimal():
    taxonomy = Taxonomy.from_dict({"categories": base_entries()})

    assert taxonomy.resolve("cars", COARSE).name == "vehicle"
    assert taxonomy.resolve("Small_Vehicle", COARSE).name == "vehicle"


def test_level_defaults_to_coarse():
    taxonomy = Taxonomy.from_dict({"categories": [{"id": 0, "name": "other"}, {"id": 5, "name": "dam"}]})

    assert taxonomy.lookup("dam").level == COARSE


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda entries: entries[2].update(id=1), "id 1"),
        (lambda entries: entries[2]["aliases"].append("car"), "car"),
        (lambda entries: entries[2]["aliases"].append("Vehicle"), "Vehicle"),
        (lambda entries: entries[2].update(parent="truck"), "truck"),
        (lambda entries: entries[2].pop("parent"), "None"),
        (lambda entries: entries[2].update(parent="small vehicle"), "small vehicle"),
        (lambda entries: entries[2].update(level="medium"), "medium"),
        (lambda entries: entries.append({"id": 9, "name": "vehicle", "level": "coarse"}), "vehicle"),
    ],
    ids=[
        "duplicate-id",
        "shared-alias",
        "alias-of-other-name",
        "unknown-parent",
        "missing-parent",
        "fine-parent",
        "bad-level",
        "duplicate-name",
    ],
)
def test_from_dict_rejects(change, message):
    entries = base_entries()
    change(entries)

    with pytest.raises(TaxonomyError) as caught:
        Taxonomy.from_dict({"categories": entries}, "test.yaml")

    assert message in str(caught.value)
    assert "test.yaml" in str(caught.value)


def test_load_default(fresh_cache, monkeypatch):
    monkeypatch.delenv("MGRS_TAXONOMY", raising=False)

    taxonomy = load_taxonomy()

    assert taxonomy.path == str(DEFAULT_PATH)
    assert taxonomy.lookup("ship") is not None


def test_load_env_override(fresh_cache, monkeypatch, tmp_path):
    path = write_yaml(tmp_path / "mine.yaml", {"categories": base_entries()})
    monkeypatch.setenv("MGRS_TAXONOMY", path)

    taxonomy = load_taxonomy()

    assert taxonomy.path == path
    assert taxonomy.lookup("ship") is None
    assert taxonomy.lookup("car").name == "vehicle"


def test_load_explicit_path_beats_env(fresh_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("MGRS_TAXONOMY", str(tmp_path / "absent.yaml"))

    taxonomy = load_taxonomy(str(DEFAULT_PATH))

    assert taxonomy.lookup("ship") is not None


def test_load_missing_file(fresh_cache, monkeypatch, tmp_path):
    missing = tmp_path / "absent.yaml"
    monkeypatch.setenv("MGRS_TAXONOMY", str(missing))

    with pytest.raises(FileNotFoundError) as caught:
        load_taxonomy()

    assert str(missing) in str(caught.value)
    assert "MGRS_TAXONOMY" in str(caught.value)
