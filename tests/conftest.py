"""Shared fixtures: the real sample files, and builds shared by the tests of one session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLES = REPOSITORY.parent / "shared" / "samples"


def samples_root() -> Path:
    return Path(os.environ.get("MGRS_SAMPLES", DEFAULT_SAMPLES))


@pytest.fixture(scope="session")
def samples() -> Path:
    """The folder of real DOTA, DIOR-R and iSAID files; the test is skipped when it is absent."""
    root = samples_root()
    if not (root / "dota").is_dir():
        pytest.skip(f"real sample files not found in {root}; set MGRS_SAMPLES to a folder with dota/, dior/ and isaid/")
    return root


@pytest.fixture(scope="session")
def demo_build(samples: Path, tmp_path_factory: pytest.TempPathFactory):
    """The demo recipe built once from the real samples with one worker."""
    from mgrs.build import build
    from mgrs.recipe import load_recipe

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAMPLES", str(samples))
        config = load_recipe(REPOSITORY / "pipelines" / "demo.yaml", root=REPOSITORY)
    out = tmp_path_factory.mktemp("demo") / "out"
    return build(config, out, workers=1)
