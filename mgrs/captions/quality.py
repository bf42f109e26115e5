"""Caption quality report: length statistics, category coverage and a hallucination indicator.

It works for the captions of any captioner, from the stored columns alone:

- Length. Words (runs of non-space characters) of the short and the long caption: min, mean, median,
  95th percentile and max.
- Mentions. A caption mentions a category when a run of one to MAX_PHRASE_WORDS words, inside one
  clause (no punctuation between), is a name or alias of the category in the taxonomy, in the singular
  or the plural ("storage tanks", "harbours", "planes"). Longer phrases are matched first, so "small
  vehicles" is one mention of `small vehicle` and not also one of `vehicle`. The category `other` is
  never matched, because "other" is an ordinary English word.
- Related categories. A fine category and its coarse parent stand for each other: "vehicles" covers a
  present `small vehicle`, and "small vehicles" is no hallucination where `vehicle` is present.
- Coverage. Per record with regions, the share of its distinct categories that the long caption
  mentions; the report gives the mean over those records and the pooled share.
- Hallucination indicator. A long caption that mentions a taxonomy category which is not present (nor
  related to a present one). A mention in a negation ("no ships") counts too, so this is an upper bound
  to read next to the examples, not an exact error rate.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mgrs.taxonomy import OTHER, Category, Taxonomy

logger = logging.getLogger(__name__)

MAX_PHRASE_WORDS = 4
# Categories listed under the hallucination indicator's `by_category`, most frequent first.
TOP_CATEGORIES = 10
CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]{}\"“”]+")
WORD = re.compile(r"[a-z0-9]+(?:['’_\-][a-z0-9]+)*")
COLUMNS = ["short_caption", "long_caption", "caption_source", "regions"]


class CategoryMatcher:
    """Finds the taxonomy categories that a text mentions."""

    def __init__(self, taxonomy: Taxonomy):
        self.taxonomy = taxonomy
        self._lookups: dict[str, Category | None] = {}

    def category_of(self, label: str) -> Category | None:
        """Return the taxonomy category of a stored `category` value or a phrase, or None."""
        if label not in self._lookups:
            category = self.taxonomy.lookup(label)
            if category is None and label.endswith("ies"):
                category = self.taxonomy.lookup(label[:-3] + "y")
            self._lookups[label] = category
        return self._lookups[label]

    def mentions(self, text: str) -> set[str]:
        """Return the names of the categories that `text` mentions, `other` excluded."""
        found: set[str] = set()
        for clause in CLAUSE_BREAK.split(text.lower()):
            words = WORD.findall(clause)
            start = 0
            while start < len(words):
                matched = 0
                for size in range(min(MAX_PHRASE_WORDS, len(words) - start), 0, -1):
                    category = self.category_of(" ".join(words[start : start + size]))
                    if category is not None:
                        if category.name != OTHER:
                            found.add(category.name)
                        matched = size
                        break
                start += matched or 1
        return found

    def related(self, first: str, second: str) -> bool:
        """Return whether two category names are the same or a fine category and its coarse parent."""
        if first == second:
            return True
        a = self.taxonomy.by_name.get(first)
        b = self.taxonomy.by_name.get(second)
        return a is not None and b is not None and (a.parent == b.name or b.parent == a.name)


@dataclass
class QualityAccumulator:
    """Collects the quality figures record by record; `result` returns the report section."""

    matcher: CategoryMatcher
    short_words: list[int] = field(default_factory=list)
    long_words: list[int] = field(default_factory=list)
    coverage_shares: list[float] = field(default_factory=list)
    categories_present: int = 0
    categories_mentioned: int = 0
    flagged_records: int = 0
    hallucinated: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)

    def add(self, short: str, long: str, categories: Iterable[str], source: str = "") -> None:
        """Add one record: its captions, the `category` of each of its regions and its caption_source."""
        self.short_words.append(len((short or "").split()))
        self.long_words.append(len((long or "").split()))
        self.sources[source] += 1

        present = set()
        for label in categories:
            category = self.matcher.category_of(label)
            if category is not None and category.name != OTHER:
                present.add(category.name)
        mentioned = self.matcher.mentions(long or "")

        if present:
            covered = sum(1 for p in present if any(self.matcher.related(p, m) for m in mentioned))
            self.coverage_shares.append(covered / len(present))
            self.categories_present += len(present)
            self.categories_mentioned += covered

        absent = sorted(m for m in mentioned if not any(self.matcher.related(m, p) for p in present))
        if absent:
            self.flagged_records += 1
            self.hallucinated.update(absent)

    def result(self) -> dict[str, Any]:
        records = len(self.short_words)
        return {
            "records": records,
            "caption_sources": dict(sorted(self.sources.items())),
            "short_caption_words": length_stats(self.short_words),
            "long_caption_words": length_stats(self.long_words),
            "coverage": {
                "records_with_categories": len(self.coverage_shares),
                "mean": _round(float(np.mean(self.coverage_shares))) if self.coverage_shares else None,
                "categories_present": self.categories_present,
                "categories_mentioned": self.categories_mentioned,
            },
            "hallucination": {
                "records_flagged": self.flagged_records,
                "rate": _round(self.flagged_records / records) if records else None,
                "by_category": dict(self.hallucinated.most_common(TOP_CATEGORIES)),
            },
        }


def length_stats(values: list[int]) -> dict[str, float | int | None]:
    """Return min, mean, median, 95th percentile and max of word counts (None for no values)."""
    if not values:
        return {"min": None, "mean": None, "median": None, "p95": None, "max": None}
    array = np.asarray(values, dtype=np.float64)
    return {
        "min": int(array.min()),
        "mean": _round(float(array.mean())),
        "median": _round(float(np.median(array))),
        "p95": _round(float(np.percentile(array, 95))),
        "max": int(array.max()),
    }


def rows_quality(rows: Iterable[dict[str, Any]], taxonomy: Taxonomy) -> dict[str, Any]:
    """Return the quality report of shard rows (dicts with the caption columns and `regions`)."""
    accumulator = QualityAccumulator(CategoryMatcher(taxonomy))
    for row in rows:
        categories = [region["category"] for region in row.get("regions") or []]
        accumulator.add(row.get("short_caption") or "", row.get("long_caption") or "", categories, row.get("caption_source") or "")
    return accumulator.result()


def dataset_quality(root: str | Path, shard_files: list[str], taxonomy: Taxonomy) -> dict[str, Any]:
    """Return the quality report of the shards `shard_files` (paths relative to `root`), reading no image bytes."""
    root = Path(root)
    accumulator = QualityAccumulator(CategoryMatcher(taxonomy))
    for file in shard_files:
        parquet = pq.ParquetFile(root / file)
        for batch in parquet.iter_batches(columns=COLUMNS, batch_size=4096):
            for row in batch.to_pylist():
                categories = [region["category"] for region in row["regions"] or []]
                accumulator.add(row["short_caption"] or "", row["long_caption"] or "", categories, row["caption_source"] or "")
    return accumulator.result()


def quality_lines(quality: dict[str, Any]) -> list[str]:
    """Return Markdown lines that summarise a quality report, for the dataset card."""
    short = quality["short_caption_words"]
    long = quality["long_caption_words"]
    coverage = quality["coverage"]
    hallucination = quality["hallucination"]
    lines = [
        "| caption | min words | mean | median | 95th percentile | max |",
        "|---|---|---|---|---|---|",
        f"| short | {short['min']} | {short['mean']} | {short['median']} | {short['p95']} | {short['max']} |",
        f"| long | {long['min']} | {long['mean']} | {long['median']} | {long['p95']} | {long['max']} |",
        "",
    ]
    if coverage["mean"] is not None:
        lines.append(
            f"- Coverage: the long caption mentions {coverage['mean']:.1%} of a record's categories on average "
            f"({coverage['categories_mentioned']} of {coverage['categories_present']} in all, "
            f"over {coverage['records_with_categories']} records with regions)."
        )
    if hallucination["rate"] is not None:
        named = ", ".join(f"{name} ({count})" for name, count in hallucination["by_category"].items())
        lines.append(
            f"- Hallucination indicator: {hallucination['records_flagged']} records ({hallucination['rate']:.1%}) have a long "
            "caption that names a taxonomy category absent from their regions" + (f": {named}." if named else ".")
        )
    sources = ", ".join(f"`{name}` {count}" for name, count in quality["caption_sources"].items())
    lines.append(f"- Captions written by: {sources}.")
    return lines


def _round(value: float) -> float:
    return round(value, 4)
