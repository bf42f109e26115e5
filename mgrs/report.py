"""Accounting of a build: what was read, written and skipped, by reason, with example file names."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mgrs.sources.base import ANNOTATION, IMAGE, Skip

# Example file names kept per skip reason.
MAX_EXAMPLES = 5


@dataclass
class Tally:
    """Counts that add up across scenes and shards; `to_dict` and `from_dict` round-trip through JSON."""

    images_read: int = 0
    annotations_read: int = 0
    # Annotations that became at least one region; the others are in `skipped`.
    annotations_placed: int = 0
    records: Counter = field(default_factory=Counter)
    regions: int = 0
    regions_by_source: Counter = field(default_factory=Counter)
    records_by_source: Counter = field(default_factory=Counter)
    # Per-reason counts of skipped images and annotations.
    skipped: dict[str, Counter] = field(default_factory=lambda: {IMAGE: Counter(), ANNOTATION: Counter()})
    # Example files per unit and skip reason: {"annotation": {"malformed_line": ["labelTxt/P1.txt: line 3"]}}.
    examples: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # Facts that are not skips: repaired polygons, labels mapped to `other`, regions cut at tile borders.
    notes: Counter = field(default_factory=Counter)

    def skip(self, skip: Skip, count: int = 1) -> None:
        self.skipped.setdefault(skip.unit, Counter())[skip.reason] += count
        examples = self.examples.setdefault(skip.unit, {}).setdefault(skip.reason, [])
        entry = skip.file if not skip.detail else f"{skip.file}: {skip.detail}"
        if len(examples) < MAX_EXAMPLES and entry not in examples:
            examples.append(entry)

    def note(self, name: str, count: int = 1) -> None:
        self.notes[name] += count

    def add(self, other: Tally) -> None:
        self.images_read += other.images_read
        self.annotations_read += other.annotations_read
        self.annotations_placed += other.annotations_placed
        self.records.update(other.records)
        self.regions += other.regions
        self.regions_by_source.update(other.regions_by_source)
        self.records_by_source.update(other.records_by_source)
        for unit, counts in other.skipped.items():
            self.skipped.setdefault(unit, Counter()).update(counts)
        for unit, by_reason in other.examples.items():
            for reason, examples in by_reason.items():
                mine = self.examples.setdefault(unit, {}).setdefault(reason, [])
                for example in examples:
                    if len(mine) < MAX_EXAMPLES and example not in mine:
                        mine.append(example)
        self.notes.update(other.notes)

    @property
    def images_skipped(self) -> int:
        return sum(self.skipped.get(IMAGE, Counter()).values())

    @property
    def annotations_skipped(self) -> int:
        return sum(self.skipped.get(ANNOTATION, Counter()).values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "images_read": self.images_read,
            "annotations_read": self.annotations_read,
            "annotations_placed": self.annotations_placed,
            "records": dict(sorted(self.records.items())),
            "regions": self.regions,
            "records_by_source": dict(sorted(self.records_by_source.items())),
            "regions_by_source": dict(sorted(self.regions_by_source.items())),
            "skipped": {unit: dict(sorted(counts.items())) for unit, counts in sorted(self.skipped.items())},
            "examples": {
                unit: {reason: list(examples) for reason, examples in sorted(by_reason.items())}
                for unit, by_reason in sorted(self.examples.items())
            },
            "notes": dict(sorted(self.notes.items())),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tally:
        tally = cls()
        tally.images_read = int(data.get("images_read", 0))
        tally.annotations_read = int(data.get("annotations_read", 0))
        tally.annotations_placed = int(data.get("annotations_placed", 0))
        tally.records = Counter(data.get("records", {}))
        tally.regions = int(data.get("regions", 0))
        tally.records_by_source = Counter(data.get("records_by_source", {}))
        tally.regions_by_source = Counter(data.get("regions_by_source", {}))
        tally.skipped = {unit: Counter(counts) for unit, counts in data.get("skipped", {}).items()}
        tally.skipped.setdefault(IMAGE, Counter())
        tally.skipped.setdefault(ANNOTATION, Counter())
        tally.examples = {
            unit: {reason: list(examples) for reason, examples in by_reason.items()}
            for unit, by_reason in data.get("examples", {}).items()
        }
        tally.notes = Counter(data.get("notes", {}))
        return tally


def skip_table(tally: Tally) -> list[dict[str, Any]]:
    """Return one row per skip reason (unit, reason, count, examples), largest counts first."""
    rows = []
    for unit, counts in tally.skipped.items():
        for reason, count in counts.items():
            examples = tally.examples.get(unit, {}).get(reason, [])
            rows.append({"unit": unit, "reason": reason, "count": count, "examples": examples})
    return sorted(rows, key=lambda row: (-row["count"], row["unit"], row["reason"]))
