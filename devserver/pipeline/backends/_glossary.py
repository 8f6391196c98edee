"""Glossary-based word-by-word translation between a handful of languages.

This is honestly a glossary lookup, not machine translation: each word is
looked up in a hand-made table of senses (``devserver/data/glossary.json``);
unknown words pass through unchanged. A word with several senses (a homonym)
is resolved by the seeded random generator, which is what makes a chain of
translations drift like the children's game Stille Post.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import unicodedata
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ._words import is_word, split

_SENTENCE_END = re.compile(r"[.!?]")


def _key(word: str) -> str:
    """The lookup key of a word: composed (NFC), so "schläft" typed with a separate
    umlaut mark finds the glossary's "schläft", and case-folded."""
    return unicodedata.normalize("NFC", word).casefold()


class Glossary:
    """An immutable table of senses: ``entries[i][lang]`` lists the forms of sense ``i``.

    Args:
        languages: language codes, in the order of each entry's cells.
        entries: one row per sense; each row has one list of forms per language.
        digest: a checksum of the data this glossary was built from (for versions).

    Raises:
        ValueError: a row does not have one cell per language, or a cell is empty.
    """

    def __init__(
        self, languages: Sequence[str], entries: Sequence[Sequence[Sequence[str]]], digest: str
    ) -> None:
        self.languages: tuple[str, ...] = tuple(languages)
        self.digest = digest
        self._entries: list[dict[str, tuple[str, ...]]] = []
        self._index: dict[str, dict[str, list[int]]] = {lang: {} for lang in self.languages}
        for number, row in enumerate(entries):
            if len(row) != len(self.languages) or any(not cell for cell in row):
                raise ValueError(f"glossary entry {number} needs one non-empty cell per language")
            entry = {lang: tuple(cell) for lang, cell in zip(self.languages, row, strict=True)}
            self._entries.append(entry)
            for lang, forms in entry.items():
                for form in forms:
                    # Only single words are looked up; phrases ("in the") are output-only.
                    if is_word(form):
                        senses = self._index[lang].setdefault(_key(form), [])
                        if number not in senses:
                            senses.append(number)

    @classmethod
    def load(cls, path: Path | None = None) -> Glossary:
        """Load the glossary shipped in ``devserver/data`` (or the JSON file at ``path``).

        Raises:
            OSError: the file cannot be read.
            ValueError: the file is not a glossary (bad JSON or bad shape).
        """
        if path is None:
            raw = resources.files("devserver").joinpath("data/glossary.json").read_bytes()
        else:
            raw = Path(path).read_bytes()
        data: Any = json.loads(raw)
        if not isinstance(data, dict) or "languages" not in data or "entries" not in data:
            raise ValueError("a glossary needs 'languages' and 'entries'")
        return cls(data["languages"], data["entries"], hashlib.sha256(raw).hexdigest())

    def __len__(self) -> int:
        return len(self._entries)

    def senses(self, lang: str | None, word: str) -> list[int]:
        """Entry numbers in which ``word`` is a form in ``lang`` (any language when None)."""
        key = _key(word)
        if lang is not None:
            return list(self._index.get(lang, {}).get(key, ()))
        found: list[int] = []
        for index in self._index.values():
            found.extend(n for n in index.get(key, ()) if n not in found)
        return sorted(found)

    def forms(self, entry: int, lang: str) -> tuple[str, ...]:
        """The forms of sense ``entry`` in ``lang``, the usual one first."""
        return self._entries[entry][lang]

    def translate(self, text: str, from_lang: str | None, to_lang: str, rng: random.Random) -> str:
        """Translate word by word; unknown words pass through; punctuation is kept.

        Words are whole grapheme clusters (see ``_words``): a letter with combining
        marks is never cut from them, and emoji pass through as words.

        A word with several senses takes one chosen by ``rng``; a sense with
        several forms takes its usual form half of the time, else another one.
        The first word of a sentence keeps its capital letter; an all-caps word
        stays all-caps.

        Raises:
            KeyError: ``from_lang`` or ``to_lang`` is not a glossary language.
        """
        if to_lang not in self._index:
            raise KeyError(to_lang)
        if from_lang is not None and from_lang not in self._index:
            raise KeyError(from_lang)
        parts = split(text)
        sentence_start = True
        for i in range(1, len(parts), 2):
            word = parts[i]
            senses = self.senses(from_lang, word)
            if senses:
                entry = senses[0] if len(senses) == 1 else rng.choice(senses)
                forms = self.forms(entry, to_lang)
                form = forms[0] if len(forms) == 1 or rng.random() < 0.5 else rng.choice(forms[1:])
                parts[i] = _match_case(word, form, sentence_start)
            sentence_start = (
                bool(_SENTENCE_END.search(parts[i + 1])) if i + 1 < len(parts) else False
            )
        return "".join(parts)


def _match_case(source: str, form: str, sentence_start: bool) -> str:
    if len(source) > 1 and source.isupper():
        return form.upper()
    if sentence_start and source[:1].isupper():
        return form[:1].upper() + form[1:]
    return form
