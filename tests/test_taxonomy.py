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


@pytest.fixture(scope="module")
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


# Every class of every supported source, as the adapters pass labels on.

HRRSD_CLASSES = [
    "airplane", "baseball diamond", "basketball court", "bridge", "crossroad", "ground track field", "harbor",
    "parking lot", "ship", "storage tank", "T junction", "tennis court", "vehicle",
]
RSOD_CLASSES = ["aircraft", "playground", "overpass", "oiltank"]
LEVIR_CLASSES = ["airplane", "ship", "oiltank"]
STAR_CLASSES = [
    "ship", "boat", "crane", "goods_yard", "tank", "storehouse", "breakwater", "dock", "airplane", "boarding_bridge",
    "runway", "taxiway", "terminal", "apron", "gas_station", "truck", "car", "truck_parking", "car_parking", "bridge",
    "cooling_tower", "chimney", "vapor", "smoke", "genset", "coal_yard", "lattice_tower", "substation", "wind_mill",
    "cement_concrete_pavement", "toll_gate", "flood_dam", "gravity_dam", "ship_lock", "ground_track_field",
    "basketball_court", "engineering_vehicle", "foundation_pit", "intersection", "soccer_ball_field", "tennis_court",
    "tower_crane", "unfinished_building", "arch_dam", "roundabout", "baseball_diamond", "stadium", "containment_vessel",
]

# Ids and names shipped before the taxonomy grew; they must never change.
SHIPPED_IDS = {
    0: "other", 1: "airplane", 2: "airport", 3: "baseball field", 4: "basketball court", 5: "bridge", 6: "chimney",
    7: "dam", 8: "expressway service area", 9: "expressway toll station", 10: "golf course", 11: "ground track field",
    12: "harbor", 13: "overpass", 14: "ship", 15: "stadium", 16: "storage tank", 17: "tennis court",
    18: "train station", 19: "vehicle", 20: "windmill", 21: "roundabout", 22: "soccer field", 23: "swimming pool",
    24: "helicopter", 25: "container crane", 26: "helipad", 101: "small vehicle", 102: "large vehicle",
}


def adapter_classes() -> dict[str, list[str]]:
    from mgrs.sources.fair1m import CLASSES as FAIR1M
    from mgrs.sources.hrsc2016 import CLASS_NAMES as HRSC
    from mgrs.sources.nwpu_vhr10 import CLASSES as NWPU
    from mgrs.sources.xview import CLASSES as XVIEW

    return {
        "fair1m": [name for names in FAIR1M.values() for name in names],
        "xview": list(XVIEW.values()),
        "hrsc2016": sorted(set(HRSC.values())),
        "nwpu-vhr10": list(NWPU.values()),
        "hrrsd": HRRSD_CLASSES,
        "rsod": RSOD_CLASSES,
        "levir": LEVIR_CLASSES,
        "star": STAR_CLASSES,
    }


def test_source_class_counts():
    classes = adapter_classes()
    assert len(classes["fair1m"]) == 37
    assert len(classes["xview"]) == 60
    assert len(classes["nwpu-vhr10"]) == 10
    assert len(classes["hrrsd"]) == 13
    assert len(STAR_CLASSES) == len(set(STAR_CLASSES)) == 48


@pytest.mark.parametrize("source", ["fair1m", "xview", "hrsc2016", "nwpu-vhr10", "hrrsd", "rsod", "levir", "star"])
def test_every_class_of_source_resolves(taxonomy, source):
    for label in adapter_classes()[source]:
        category = taxonomy.lookup(label, source)
        assert category is not None, label
        assert category.name != "other", label
        assert taxonomy.resolve(label, COARSE, source).level == COARSE, label


def test_shipped_ids_never_change(taxonomy):
    for category_id, name in SHIPPED_IDS.items():
        assert taxonomy.by_id[category_id].name == name


def test_coarse_and_fine_id_ranges(taxonomy):
    for category in taxonomy.categories():
        if category.level == COARSE:
            assert category.id < 100, category.name
        else:
            assert category.id > 100, category.name


@pytest.mark.parametrize(
    ("label", "fine", "coarse"),
    [
        ("Boeing737", "Boeing 737", "airplane"),
        ("Boeing 737", "Boeing 737", "airplane"),
        ("boeing-737", "Boeing 737", "airplane"),
        ("LiquidCargoShip", "liquid cargo ship", "ship"),
        ("Liquid Cargo Ship", "liquid cargo ship", "ship"),
        ("Small Car", "small car", "vehicle"),
        ("small_cars", "small car", "vehicle"),
        ("buses", "bus", "vehicle"),
        ("Bus", "bus", "vehicle"),
        ("Passenger Ship", "passenger ship", "ship"),
        ("other-vehicle", "vehicle", "vehicle"),
        ("other-airplane", "airplane", "airplane"),
        ("Football Field", "soccer field", "soccer field"),
        ("Fishing Vessel", "fishing boat", "ship"),
        ("ferries", "ferry", "ship"),
        ("Truck Tractor w/ Box Trailer", "truck tractor with box trailer", "vehicle"),
        ("Vehicle Lot", "parking lot", "parking lot"),
        ("crossroad", "crossroad", "intersection"),
        ("T junction", "T junction", "intersection"),
        ("oiltank", "oil tank", "storage tank"),
        ("playground", "ground track field", "ground track field"),
        ("lattice_tower", "pylon", "pylon"),
        ("tower_crane", "tower crane", "crane"),
        ("car", "small car", "vehicle"),
        ("Nimitz class aircraft carrier", "Nimitz class aircraft carrier", "ship"),
    ],
)
def test_resolve_new_sources(taxonomy, label, fine, coarse):
    assert taxonomy.resolve(label, FINE).name == fine
    assert taxonomy.resolve(label, COARSE).name == coarse


def test_source_aliases_only_for_their_source(taxonomy):
    assert taxonomy.lookup("Passenger Car", "xview").name == "railway passenger car"
    assert taxonomy.lookup("Passenger Car") is None
    assert taxonomy.lookup("Passenger Car", "dota") is None
    assert taxonomy.lookup("Passenger Cars", "xview").name == "railway passenger car"
    assert taxonomy.lookup("Container", "hrsc2016").name == "container ship"
    assert taxonomy.lookup("Container") is None
    # Shared aliases still apply when the source names one.
    assert taxonomy.lookup("ship", "hrsc2016").name == "ship"


def test_from_dict_rejects_source_alias_in_two_categories():
    entries = base_entries()
    entries[1]["source_aliases"] = {"mine": ["auto"]}
    entries[2]["source_aliases"] = {"mine": ["Auto"], "theirs": ["auto"]}

    with pytest.raises(TaxonomyError) as caught:
        Taxonomy.from_dict({"categories": entries}, "test.yaml")

    assert "'mine'" in str(caught.value)
    assert "Auto" in str(caught.value)


def test_shipped_aliases_do_not_collide():
    # from_dict raises on a collision; also check that no alias is a plural of another category's alias.
    with open(DEFAULT_PATH, encoding="utf-8") as handle:
        entries = yaml.safe_load(handle)["categories"]
    owner: dict[str, str] = {}
    for entry in entries:
        for alias in [entry["name"], *entry.get("aliases", [])]:
            owner.setdefault(normalise_label(str(alias)), entry["name"])
    for key, name in owner.items():
        for suffix in ("s", "es"):
            other = owner.get(key + suffix)
            assert other in (None, name), f"{key + suffix!r} is {other!r} but reads as a plural of {name!r}"


def test_category_keeps_alias_spellings():
    load_taxonomy.cache_clear()
    category = load_taxonomy().by_name["small vehicle"]

    assert "Small_Vehicle" in category.aliases
    assert "small-vehicle" in category.aliases
