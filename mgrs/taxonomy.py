"""The category taxonomy: source labels to categories with stable ids, at a fine or coarse level.

The taxonomy lives in `manifests/categories.yaml` at the repository root. `MGRS_TAXONOMY` points at
another file, for installs without the repository.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

FINE = "fine"
COARSE = "coarse"
GRANULARITIES = (FINE, COARSE)
OTHER = "other"

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "manifests" / "categories.yaml"


@dataclass(frozen=True)
class Category:
    """One entry of the taxonomy."""

    id: int
    name: str
    level: str
    parent: str | None = None
    # Spellings found in the sources, as written in the taxonomy file (for display; lookups normalise).
    aliases: tuple[str, ...] = field(default=(), compare=False)


class TaxonomyError(ValueError):
    """A taxonomy file that breaks the rules (duplicate ids or aliases, unknown parents)."""


def normalise_label(label: str) -> str:
    """Return the lookup key of a label: lower case, spaces, hyphens and underscores removed."""
    return re.sub(r"[\s_\-]+", "", label.strip().lower())


class Taxonomy:
    """Maps source labels to categories."""

    def __init__(
        self,
        categories: list[Category],
        aliases: dict[str, str],
        path: str = "",
        source_aliases: dict[tuple[str, str], str] | None = None,
    ):
        self.path = path
        self.by_name = {c.name: c for c in categories}
        self.by_id = {c.id: c for c in categories}
        self._aliases = aliases
        # (source name, normalised label) to category name, for labels whose meaning depends on the source.
        self._source_aliases = source_aliases or {}

    @classmethod
    def from_file(cls, path: str | Path) -> Taxonomy:
        path = Path(path)
        with open(path, encoding="utf-8") as handle:
            # The C loader, when PyYAML has it, parses the taxonomy several times faster than the Python one.
            data = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, path: str = "") -> Taxonomy:
        categories: list[Category] = []
        aliases: dict[str, str] = {}
        source_aliases: dict[tuple[str, str], str] = {}
        seen_ids: set[int] = set()
        for entry in data.get("categories", []):
            category = Category(
                id=int(entry["id"]),
                name=str(entry["name"]),
                level=str(entry.get("level", COARSE)),
                parent=entry.get("parent"),
                aliases=tuple(str(alias) for alias in entry.get("aliases", [])),
            )
            if category.id in seen_ids:
                raise TaxonomyError(f"{path}: category id {category.id} is used twice; give each category its own id")
            if any(c.name == category.name for c in categories):
                raise TaxonomyError(f"{path}: category name {category.name!r} is used twice; give each category its own name")
            if category.level not in GRANULARITIES:
                raise TaxonomyError(f"{path}: category {category.name!r} has level {category.level!r}; use fine or coarse")
            seen_ids.add(category.id)
            categories.append(category)

            for alias in [category.name, *entry.get("aliases", [])]:
                key = normalise_label(str(alias))
                if aliases.get(key, category.name) != category.name:
                    raise TaxonomyError(
                        f"{path}: alias {alias!r} maps to both {aliases[key]!r} and {category.name!r}; keep it in one category"
                    )
                aliases[key] = category.name

            for source, labels in (entry.get("source_aliases") or {}).items():
                for alias in labels:
                    key = (str(source), normalise_label(str(alias)))
                    if source_aliases.get(key, category.name) != category.name:
                        raise TaxonomyError(
                            f"{path}: source alias {alias!r} of {source!r} maps to both {source_aliases[key]!r} and "
                            f"{category.name!r}; keep it in one category"
                        )
                    source_aliases[key] = category.name

        # `at_level` writes a fine category as its parent, so the parent must be a coarse category.
        levels = {c.name: c.level for c in categories}
        for category in categories:
            if category.level == FINE and category.parent not in levels:
                raise TaxonomyError(f"{path}: fine category {category.name!r} has unknown parent {category.parent!r}")
            if category.level == FINE and levels[category.parent] != COARSE:
                raise TaxonomyError(
                    f"{path}: fine category {category.name!r} has parent {category.parent!r}, which is not coarse; "
                    "name a coarse category as parent"
                )
        return cls(categories, aliases, path, source_aliases)

    def lookup(self, label: str, source: str | None = None) -> Category | None:
        """Return the category a source label names at its own level, or None when it is unknown.

        With `source` (a format name such as `xview`), that source's own aliases are tried first.
        """
        key = normalise_label(label)
        name = None
        if source is not None:
            name = _match(key, lambda candidate: self._source_aliases.get((source, candidate)))
        if name is None:
            name = _match(key, self._aliases.get)
        return None if name is None else self.by_name[name]

    def at_level(self, category: Category, granularity: str) -> Category:
        """Return the category written for `granularity`: a fine category's parent at the coarse level."""
        if granularity == COARSE and category.level == FINE:
            return self.by_name[category.parent]
        return category

    def resolve(self, label: str, granularity: str, source: str | None = None) -> Category | None:
        """Return the category of a source label at the given granularity, or None when unknown."""
        category = self.lookup(label, source)
        return None if category is None else self.at_level(category, granularity)

    @property
    def other(self) -> Category:
        return self.by_name[OTHER]

    def categories(self, granularity: str | None = None) -> list[Category]:
        """Return the categories ordered by id, only those that can be written at `granularity`."""
        result = sorted(self.by_id.values(), key=lambda c: c.id)
        if granularity == COARSE:
            result = [c for c in result if c.level == COARSE]
        return result


def _match(key: str, find) -> str | None:
    """Return `find(key)`, or else `find` of the key without a trailing plural "es" or "s"."""
    name = find(key)
    if name is None and key.endswith("es"):
        name = find(key[:-2])
    if name is None and key.endswith("s"):
        name = find(key[:-1])
    return name


@lru_cache(maxsize=8)
def load_taxonomy(path: str | None = None) -> Taxonomy:
    """Load the taxonomy from `path`, `MGRS_TAXONOMY`, or the repository's `manifests/categories.yaml`."""
    chosen = path or os.environ.get("MGRS_TAXONOMY") or str(DEFAULT_PATH)
    if not Path(chosen).is_file():
        raise FileNotFoundError(
            f"category taxonomy {chosen} not found; set MGRS_TAXONOMY to a categories.yaml "
            "or run from a clone of the repository"
        )
    return Taxonomy.from_file(chosen)
