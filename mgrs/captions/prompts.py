"""Grounded prompts for model captioners, read from versioned template files.

A prompt version is a file `mgrs/captions/prompts/<version>.txt` with a system message and a user
message (see the comments at the top of each file). The user message is filled with the record's objects, one line
per category in plain words: its exact count, its size relative to the image, its spacing and its
place in a 3 x 3 grid. The ground sample distance follows when it is known. The
version goes into `caption_source`, so a new wording must be a new file, never an edit of a released one.
"""

from __future__ import annotations

import hashlib
import logging
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mgrs.captions.template import (
    GROUP_DENSITY,
    PAIR_DENSITY,
    CategoryLayout,
    density_level,
    describe_categories,
    position_phrase,
    scale_sentences,
    size_word,
    validate_record,
)
from mgrs.schema import Record

logger = logging.getLogger(__name__)

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
SECTION = re.compile(r"^=== (system|user) ===$", re.MULTILINE)
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")

NO_OBJECTS = "- none"
UNKNOWN_SCALE = "The ground sample distance is not known."
PARTIAL_LABELS = "The list may miss objects that the annotators did not label, especially small ones."
EMPTY_PARTIAL = "No objects are labelled; describe the scene as it appears, without object counts."
EMPTY_EXHAUSTIVE = "The annotators label every object of their classes, and none is labelled here."
FULL_LABELS = "The annotators label every object of their classes."


class PromptError(ValueError):
    """A prompt version that does not exist or a template file that breaks the format."""


@dataclass(frozen=True)
class PromptTemplate:
    """The two messages of one prompt version, with `$placeholders` still unfilled."""

    version: str
    system: str
    user: str

    def render(self, record: Record, exhaustive: bool) -> RenderedPrompt:
        """Fill the user message with the objects, scale and labelling facts of `record`."""
        validate_record(record)
        layouts = describe_categories(record)
        values = {
            "width": str(record.width),
            "height": str(record.height),
            "objects": "\n".join(object_line(layout) for layout in layouts) or NO_OBJECTS,
            "scale": " ".join(scale_sentences(record)) or UNKNOWN_SCALE,
            "completeness": completeness_note(bool(layouts), exhaustive),
        }
        try:
            user = string.Template(self.user).substitute(values)
        except (KeyError, ValueError) as error:
            raise PromptError(
                f"prompt {self.version}: the user message has an unknown or broken placeholder ({error}); "
                f"use only ${', $'.join(sorted(values))} and write $$ for a dollar sign"
            ) from error
        return RenderedPrompt(version=self.version, system=self.system, user=user)


@dataclass(frozen=True)
class RenderedPrompt:
    """The messages sent for one record."""

    version: str
    system: str
    user: str

    def sha256(self) -> str:
        """Return the checksum of both messages, which the caption cache keys on."""
        return hashlib.sha256(f"{self.system}\n\x00\n{self.user}".encode("utf-8")).hexdigest()


def object_line(layout: CategoryLayout) -> str:
    """Return "- 3 ships, small, close together, in the lower right" for one category."""
    noun = layout.noun.singular if layout.count == 1 else layout.noun.plural
    parts = [f"- {layout.count} {noun}", size_word(layout.size_share)]
    if layout.gap_ratio is not None:
        words = PAIR_DENSITY if layout.count == 2 else GROUP_DENSITY
        parts.append(words[density_level(layout.gap_ratio)])
    parts.append(position_phrase(layout.cells))
    return ", ".join(parts)


def completeness_note(has_objects: bool, exhaustive: bool) -> str:
    """Return what the model may assume about objects missing from the list."""
    if has_objects:
        return FULL_LABELS if exhaustive else PARTIAL_LABELS
    return EMPTY_EXHAUSTIVE if exhaustive else EMPTY_PARTIAL


def prompt_path(version: str) -> Path:
    return PROMPT_DIR / f"{version}.txt"


def available_versions() -> list[str]:
    return sorted(path.stem for path in PROMPT_DIR.glob("*.txt"))


@lru_cache(maxsize=8)
def load_prompt(version: str) -> PromptTemplate:
    """Read the template file of a prompt version; raises PromptError naming the versions there are."""
    if not VERSION_PATTERN.fullmatch(version):
        raise PromptError(f"prompt version {version!r} is not a plain name; use one of {', '.join(available_versions())}")
    path = prompt_path(version)
    if not path.is_file():
        raise PromptError(f"prompt version {version!r} not found in {PROMPT_DIR}; use one of {', '.join(available_versions())}")

    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    text = "\n".join(lines)
    parts = SECTION.split(text)
    # parts: [before, name, body, name, body]
    sections = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    if set(sections) != {"system", "user"} or not all(sections.values()):
        raise PromptError(f"{path}: needs one non-empty '=== system ===' and one non-empty '=== user ===' section")
    return PromptTemplate(version=version, system=sections["system"], user=sections["user"])
