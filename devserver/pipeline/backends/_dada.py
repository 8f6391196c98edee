"""The Dada cut-up: the words of a text drawn from a hat in a seeded random order.

Tristan Tzara's recipe ("To make a Dadaist poem", 1920): cut out each word of
an article, put the words in a bag, shake gently, take them out one after the
other and copy them in that order. Here the bag is shaken by a seeded random
generator, so the same text and seed always give the same poem. The scissors
cut between whole letters (grapheme clusters), and an emoji is a word of its own.
"""

from __future__ import annotations

import random

from ._words import tokens


def cut_up(text: str, rng: random.Random) -> str:
    """The words of ``text`` in an order drawn by ``rng``, joined by spaces.

    Words are those of ``_words.tokens``: letters keep their combining marks and
    emoji (ZWJ sequences, flags) stay whole and are drawn like words. Punctuation
    is dropped (the scissors cut words); a text without words is returned unchanged.
    """
    words = tokens(text)
    if not words:
        return text
    rng.shuffle(words)
    return " ".join(words)
