"""The stage-1 §86a filter and the stage-3 age-level filter, with term lists loaded from data."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ._terms import TermList

#: Safety levels from youngest to oldest audience.
SAFETY_LEVELS: tuple[str, ...] = ("kids", "teens", "adults", "research")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one safety check.

    Attributes:
        passed: True when nothing matched.
        matched_terms: the terms that matched, as listed in the data file.
        matches: for each checked text (``original``, ``translated``…), its matched terms.
        checked: the names of the texts that were checked, in order.
        filter: the filter's name and term-list version, for the record.
    """

    passed: bool
    matched_terms: list[str]
    matches: dict[str, list[str]]
    checked: list[str]
    filter: str
    extra: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """The verdict as an item's metadata."""
        return {
            "passed": self.passed,
            "matched_terms": list(self.matched_terms),
            "matches": {k: list(v) for k, v in self.matches.items()},
            "checked": list(self.checked),
            "filter": self.filter,
            **self.extra,
        }


def _read(name: str, path: Path | None) -> tuple[Any, str]:
    if path is None:
        raw = resources.files("devserver").joinpath(f"data/{name}").read_bytes()
    else:
        raw = Path(path).read_bytes()
    return json.loads(raw), hashlib.sha256(raw).hexdigest()[:16]


def _check(name: str, terms: TermList, texts: dict[str, str | None]) -> Verdict:
    matches: dict[str, list[str]] = {}
    checked: list[str] = []
    found: list[str] = []
    for label, text in texts.items():
        if text is None:
            continue
        checked.append(label)
        hits = terms.find(text)
        if hits:
            matches[label] = hits
            found.extend(t for t in hits if t not in found)
    return Verdict(not found, found, matches, checked, name)


class Stage1Filter:
    """The §86a term filter of stage 1, run over the original and the translated text.

    Args:
        path: a JSON term list (``{"default_match", "terms"}``); the shipped one when None.

    Raises:
        ValueError: a malformed term list.
    """

    def __init__(self, path: Path | None = None) -> None:
        data, digest = _read("terms_86a.json", path)
        self.terms = TermList(data["terms"], data.get("default_match", "squashed"))
        self.name = f"stgb-86a-terms@{digest}"

    def check(self, original: str, translated: str | None = None) -> Verdict:
        """Check both texts; the verdict names the terms found and in which text."""
        return _check(self.name, self.terms, {"original": original, "translated": translated})


class AgeFilter:
    """The age-level filter of stage 3: the stricter the level, the more lists apply.

    A term listed under a level is blocked at that level and every younger one;
    ``research`` applies no list of this filter.

    Args:
        path: a JSON file (``{"levels", "default_match", "lists"}``); the shipped one when None.

    Raises:
        ValueError: a malformed file, or levels other than ``SAFETY_LEVELS``.
    """

    def __init__(self, path: Path | None = None) -> None:
        data, digest = _read("terms_age.json", path)
        if tuple(data.get("levels", ())) != SAFETY_LEVELS:
            raise ValueError(f"age term list levels must be {SAFETY_LEVELS}")
        default = data.get("default_match", "word")
        lists: dict[str, Any] = data.get("lists", {})
        unknown = set(lists) - set(SAFETY_LEVELS)
        if unknown:
            raise ValueError(f"age term list has unknown levels {sorted(unknown)}")
        self._lists = {level: TermList(lists.get(level, ()), default) for level in SAFETY_LEVELS}
        self.name = f"age-level-terms@{digest}"

    def applicable(self, level: str) -> list[str]:
        """The lists checked at ``level``: its own and those of every older level."""
        if level not in SAFETY_LEVELS:
            raise ValueError(f"unknown safety level {level!r}")
        return [lv for lv in SAFETY_LEVELS[SAFETY_LEVELS.index(level) :] if self._lists[lv]]

    def check(self, text: str, level: str) -> Verdict:
        """Check ``text`` for ``level``.

        Raises:
            ValueError: an unknown level.
        """
        lists = self.applicable(level)
        matches: list[str] = []
        for name in lists:
            matches.extend(t for t in self._lists[name].find(text) if t not in matches)
        verdict = Verdict(
            not matches,
            matches,
            {"text": matches} if matches else {},
            ["text"],
            self.name,
            {"safety_level": level, "lists": lists},
        )
        return verdict
