"""One recipe that mixes every supported source format builds, validates and loads with `datasets`."""

from __future__ import annotations

import datasets
import yaml

from mgrs.build import build
from mgrs.recipe import load_recipe
from mgrs.validate import validate_dataset
from tests.fakes.coco import make_coco
from tests.fakes.dior import make_dior
from tests.fakes.dota import make_dota
from tests.fakes.fair1m import make_fair1m
from tests.fakes.hrsc2016 import make_hrsc2016
from tests.fakes.isaid import make_isaid
from tests.fakes.nwpu_vhr10 import make_nwpu_vhr10
from tests.fakes.voc import make_voc
from tests.fakes.xview import make_xview
from tests.fakes.yolo import make_yolo


def test_recipe_with_every_format(tmp_path):
    root = tmp_path / "raw"
    # Each generator gets its own seed: with one seed, images of equal size would be duplicates.
    make_dota(root / "DOTA", seed=1)
    make_dior(root / "DIOR", seed=2)
    make_isaid(root / "iSAID", seed=3)
    make_fair1m(root / "FAIR1M", seed=4)
    make_xview(root / "xView", seed=5)
    make_hrsc2016(root / "HRSC2016", seed=6)
    make_nwpu_vhr10(root / "NWPU VHR-10", seed=7)
    make_voc(root / "VOC", seed=8)
    make_coco(root / "COCO", seed=9)
    make_yolo(root / "YOLO", seed=10)
    sources = [
        "dota@1.0:DOTA", "dior:DIOR", "dior-r:DIOR", "isaid:iSAID", "fair1m:FAIR1M", "xview:xView",
        "hrsc2016:HRSC2016", "nwpu-vhr10:NWPU VHR-10", "voc@hrrsd:VOC/hrrsd", "voc@rsod:VOC/rsod",
        "coco:COCO", "yolo:YOLO/detect", "yolo-obb:YOLO/obb",
    ]
    recipe = tmp_path / "all.yaml"
    recipe.write_text(yaml.safe_dump({"name": "all-formats", "sources": sources, "output": {"rows_per_shard": 8}}))

    result = build(load_recipe(recipe, root=root), tmp_path / "out", workers=2)

    built_sources = set(result.report["records_by_source"])
    # DIOR and DIOR-R share their images, so deduplication keeps the DIOR copy (listed first).
    assert built_sources == {
        "dota-v1.0", "dior", "isaid", "fair1m", "xview", "hrsc2016", "nwpu-vhr10",
        "voc-vhrrsd", "voc-vrsod", "coco", "yolo", "yolo-obb",
    }
    assert {entry["scene"]["source"] for entry in result.report["dedup"]["removed"]} == {"dior-r"}
    assert validate_dataset(tmp_path / "out") == []
    for split in result.report["records"]:
        rows = datasets.load_dataset(str(tmp_path / "out"), split=split)
        assert len(rows) == result.report["records"][split]
