"""Text split into words made of whole grapheme clusters (what a reader sees as letters).

A word is a run of grapheme clusters that each begin with a letter, a digit or
a connector (``_``), so combining marks stay on their letter ("Z̷̢͎a̸͚l̵g̴o̶" is one
word). An emoji cluster (a ZWJ sequence such as a family, a flag, a keycap, a
skin-toned hand) is a word of its own, even when it touches letters. Everything
else (spaces, punctuation, controls, lone surrogates) lies between words. The
clusters are Unicode's extended grapheme clusters (UAX #29) as the ``regex``
module's ``\\X`` finds them; Python's ``re`` has no such notion.
"""

from __future__ import annotations

import regex

# One group, so ``split`` keeps the words at the odd positions of its answer.
_WORD = regex.compile(
    r"((?:(?=[\p{L}\p{N}\p{Pc}])\X)+"  # letters and digits with whatever clings to them
    r"|(?=[\p{Extended_Pictographic}\p{Regional_Indicator}]|[#*0-9]\uFE0F?\u20E3)\X)"  # emoji
)


def tokens(text: str) -> list[str]:
    """The words of ``text`` in order (emoji included; punctuation and spaces dropped)."""
    words: list[str] = _WORD.findall(text)
    return words


def split(text: str) -> list[str]:
    """``text`` cut at word boundaries: separators at even positions, words at odd ones.

    ``"".join(split(text)) == text`` always holds, and no grapheme cluster is cut.
    """
    parts: list[str] = _WORD.split(text)
    return parts


def is_word(text: str) -> bool:
    """Whether ``text`` is exactly one word (a glossary form that can be looked up)."""
    return _WORD.fullmatch(text) is not None
