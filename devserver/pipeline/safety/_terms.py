"""Term lists matched on normalised text, robust to case, accents, spacing and leetspeak.

A text is normalised once (NFKC, case-folded, accents removed) into two
variants: as written, and with leetspeak digits and signs read as letters
(``5ieg H3il`` → ``sieg heil``; a chunk
without letters, such as ``18``, stays a number). Each variant is split into words, and runs of
single letters are joined (``H i t l e r`` → ``hitler``). A term matches in
one of three ways:

- ``word``: its words appear consecutively as whole words;
- ``prefix``: a word of the text starts with it (``kill`` finds ``killer``);
- ``squashed``: its letters appear in the text's letters with everything else
  removed and doubled letters collapsed, which also finds ``H.a.k.e.n-kreuz``
  and ``Hakennkreuzz``; meant for long, unambiguous terms;
- ``symbol``: its characters appear in the text with white space removed,
  letters or not (``卐``, ``࿕``, the SS runes ``ᛋᛋ``, also spaced out ``ᛋ ᛋ``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

MatchMode = Literal["word", "prefix", "squashed", "symbol"]
MATCH_MODES: tuple[MatchMode, ...] = ("word", "prefix", "squashed", "symbol")

_LEET = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "9": "g",
        "@": "a",
        "$": "s",
        "€": "e",
        "!": "i",
        "|": "i",
    }
)
_WORD = re.compile(r"[^\W_]+")
_CHUNK = re.compile(r"\S+")
_REPEATS = re.compile(r"(.)\1+")


def normalise(text: str) -> str:
    """NFKC, case-folded, accents (combining marks) removed: ``Ｈäkenkreuz`` → ``hakenkreuz``."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _words(normalised: str) -> list[str]:
    words = _WORD.findall(normalised)
    joined: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:  # the sentinel flushes the last run
        if len(word) == 1:
            run.append(word)
            continue
        if len(run) > 1:
            joined.append("".join(run))
        else:
            joined.extend(run)
        run = []
        if word:
            joined.append(word)
    return joined


def _squash(words: Iterable[str]) -> str:
    return _REPEATS.sub(r"\1", "".join(words))


@dataclass(frozen=True, slots=True)
class _View:
    """One variant of a text, prepared for all three match modes."""

    words: tuple[str, ...]
    squashed: str
    compact: str  # the normalised text without white space, for symbols

    @classmethod
    def of(cls, normalised: str) -> _View:
        words = _words(normalised)
        return cls(tuple(words), _squash(words), "".join(normalised.split()))


def _read_leet(chunk: re.Match[str]) -> str:
    # Chunks with a letter are leetspeak ("H3il"), and so is a lone sign among spaced-out
    # letters ("N 5 D A P"); a bare number ("18") stays a number.
    text = chunk.group()
    return text.translate(_LEET) if len(text) == 1 or any(c.isalpha() for c in text) else text


def views(text: str) -> tuple[_View, ...]:
    """The text as written and read as leetspeak (one view when they are the same)."""
    plain = normalise(text)
    leet = _CHUNK.sub(_read_leet, plain)
    return (_View.of(plain),) if leet == plain else (_View.of(plain), _View.of(leet))


@dataclass(frozen=True, slots=True)
class Term:
    """One entry of a term list: the term as listed, and how it matches."""

    term: str
    match: MatchMode
    words: tuple[str, ...]
    squashed: str
    compact: str

    @classmethod
    def parse(cls, raw: Any, default: MatchMode) -> Term:
        """A term from its data: a string, or ``{"term": …, "match": …}``.

        Raises:
            ValueError: not a string or such an object, an empty term, or an unknown mode.
        """
        if isinstance(raw, str):
            text, match = raw, default
        elif isinstance(raw, Mapping) and isinstance(raw.get("term"), str):
            text, match = raw["term"], raw.get("match", default)
        else:
            raise ValueError(f"a term is a string or an object with 'term': {raw!r}")
        if match not in MATCH_MODES:
            raise ValueError(f"term {text!r}: match must be one of {MATCH_MODES}, not {match!r}")
        compact = "".join(normalise(text).split())
        if match == "symbol":
            if not compact:
                raise ValueError(f"symbol term {text!r} is empty")
            return cls(text, match, (), "", compact)
        words = tuple(_WORD.findall(normalise(text)))
        if not words:
            raise ValueError(f"term {text!r} has no letters")
        return cls(text, match, words, _squash(words), compact)

    def found_in(self, view: _View) -> bool:
        """Whether this term occurs in one prepared view of a text."""
        if self.match == "symbol":
            return self.compact in view.compact
        if self.match == "squashed":
            return self.squashed in view.squashed
        if self.match == "prefix":
            first = self.words[0]
            return len(self.words) == 1 and any(w.startswith(first) for w in view.words)
        n = len(self.words)
        return any(view.words[i : i + n] == self.words for i in range(len(view.words) - n + 1))


class TermList:
    """A compiled list of terms; ``find`` reports which of them occur in a text.

    Args:
        terms: strings or ``{"term", "match"}`` objects (see ``Term.parse``).
        default_match: the mode for plain strings.
    """

    def __init__(self, terms: Iterable[Any], default_match: MatchMode = "word") -> None:
        self.terms = tuple(Term.parse(raw, default_match) for raw in terms)

    def __len__(self) -> int:
        return len(self.terms)

    def find(self, text: str) -> list[str]:
        """The terms (as listed) that occur in ``text``, in list order, each once."""
        prepared = views(text)
        return [t.term for t in self.terms if any(t.found_in(v) for v in prepared)]
