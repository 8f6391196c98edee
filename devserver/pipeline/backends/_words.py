"""Text split into words made of whole grapheme clusters (what a reader sees as letters).

The text is first cut into Unicode's extended grapheme clusters (UAX #29, the
``regex`` module's ``\\X``; Python's ``re`` has no such notion), and only then
grouped, so no cut ever falls inside a cluster. A word is a run of clusters that
hold a letter, a digit or a connector (``_``): combining marks stay on their
letter ("Z̷̢͎a̸͚l̵g̴o̶" is one word). An emoji cluster (a ZWJ sequence such as a
family, a flag, a keycap, a skin-toned hand) is a word of its own, even when it
touches letters. Everything else (spaces, punctuation, controls, lone
surrogates) lies between words.
"""

from __future__ import annotations

import regex

_CLUSTER = regex.compile(r"\X")
_EMOJI = regex.compile(r"[\p{Extended_Pictographic}\p{Regional_Indicator}]|[#*0-9]\uFE0F?\u20E3")
_LETTER = regex.compile(r"[\p{L}\p{N}\p{Pc}]")
# A cluster ending in a Prepend character (one left alone before a line break) fuses
# with whatever follows it, so it never ends up next to a space in a cut-up poem.
_PREPEND_END = regex.compile(r"\p{GCB=Prepend}$")

_SEPARATOR, _LETTERS, _SYMBOL = 0, 1, 2


def _kind(cluster: str) -> int:
    if _EMOJI.search(cluster):
        return _SYMBOL
    if _LETTER.search(cluster) and not _PREPEND_END.search(cluster):
        return _LETTERS
    return _SEPARATOR


def split(text: str) -> list[str]:
    """``text`` cut at word boundaries: separators at even positions, words at odd ones.

    The list starts and ends with a separator (possibly empty), like ``re.split``
    with one group. ``"".join(split(text)) == text`` always holds, and every cut
    falls between two grapheme clusters.
    """
    parts = [""]
    previous = _SEPARATOR
    for cluster in _CLUSTER.findall(text):
        kind = _kind(cluster)
        if kind == _SEPARATOR:
            if len(parts) % 2 == 0:  # after a word: a new separator begins
                parts.append("")
            parts[-1] += cluster
        elif kind == _LETTERS and previous == _LETTERS:
            parts[-1] += cluster
        else:  # a word begins: after a separator, or after a word next to it
            if len(parts) % 2 == 0:
                parts.append("")  # no separator between two touching words
            parts.append(cluster)
        previous = kind
    if len(parts) % 2 == 0:
        parts.append("")
    return parts


def tokens(text: str) -> list[str]:
    """The words of ``text`` in order (emoji included; punctuation and spaces dropped)."""
    return split(text)[1::2]


def is_word(text: str) -> bool:
    """Whether ``text`` is exactly one word (a glossary form that can be looked up)."""
    parts = split(text)
    return len(parts) == 3 and parts[0] == parts[2] == ""
