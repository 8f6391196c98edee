"""Text is cut between whole letters: no backend output holds a grapheme cluster it broke.

The clusters are read with the ``regex`` module's ``\\X`` (Unicode's extended
grapheme clusters); Python's ``re`` cannot tell them.
"""

from __future__ import annotations

import random

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devserver.pipeline._language import LanguageDetector
from devserver.pipeline.backends import Glossary, LocalBackend
from devserver.pipeline.backends._dada import cut_up
from devserver.pipeline.backends._words import split, tokens

BACKEND = LocalBackend()
GLOSSARY = Glossary.load()
LANGUAGES = [None, *GLOSSARY.languages]

# Pieces that break naive splitting, mixed with glossary words so translation happens.
PIECES = [
    "Z̷̢͎a̸͚l̵g̴o̶",  # letters under a pile of combining marks
    "a\u0300\u0301",
    "\u0301",  # a mark with no letter (at the start, or after a line break)
    "👨\u200d👩\u200d👧",  # a ZWJ family
    "👍🏽",  # emoji with skin tone
    "🇩🇪",  # a flag: two regional indicators
    "🇫",  # one regional indicator alone
    "1️⃣",  # a keycap
    "\u200d",
    "\u0600",  # Arabic number sign: a Prepend character, fuses with what follows
    "\u0d4e",  # Malayalam dot reph: a Prepend letter
    "\u1100\u1161",  # Hangul jamo L + V: one syllable
    "क्ष",  # an Indic conjunct
    "\ud800",  # a lone surrogate: Python strings may hold them, and the API passes them on
    "\udfff",
    "\r\n",
    " ",
    ", ",
    ". ",
    "Hund",
    "und",
    "der",
    "HUND",
    "chien",
    "Garten",
    "a",
    "Ω",
]
texts = st.lists(
    st.one_of(
        st.sampled_from(PIECES),
        st.characters(codec=None, exclude_categories=()),  # any code point, surrogates too
        st.text(max_size=4),
    ),
    max_size=24,
).map("".join)


def clusters(text: str) -> list[str]:
    return regex.findall(r"\X", text)


def glossary_clusters() -> set[str]:
    """Every cluster a glossary form can bring in, in the cases the translator writes."""
    found: set[str] = set()
    for entry in range(len(GLOSSARY)):
        for lang in GLOSSARY.languages:
            for form in GLOSSARY.forms(entry, lang):
                for shown in (form, form.upper(), form[:1].upper() + form[1:]):
                    found.update(clusters(shown))
    return found


FROM_GLOSSARY = glossary_clusters()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(texts)
def test_splitting_cuts_only_between_clusters(text: str) -> None:
    parts = split(text)
    assert "".join(parts) == text
    assert [c for part in parts for c in clusters(part)] == clusters(text)
    assert parts[1::2] == tokens(text)


@SETTINGS
@given(texts, st.sampled_from(LANGUAGES), st.sampled_from(GLOSSARY.languages), st.integers(0, 99))
def test_translation_is_made_of_clusters_of_the_input_or_the_glossary(
    text: str, from_lang: str | None, to_lang: str, seed: int
) -> None:
    result = BACKEND.translate(text, from_lang, to_lang, seed)
    allowed = set(clusters(text)) | FROM_GLOSSARY
    assert set(clusters(result.text)) <= allowed


@SETTINGS
@given(texts, st.integers(0, 99))
def test_dada_cut_up_is_made_of_clusters_of_the_input_and_keeps_every_emoji(
    text: str, seed: int
) -> None:
    poem = cut_up(text, random.Random(seed))
    assert set(clusters(poem)) <= set(clusters(text)) | {" "}
    emoji = [c for c in clusters(text) if regex.match(r"[\p{Extended_Pictographic}\p{RI}]", c)]
    kept = clusters(poem)
    for one in emoji:
        assert kept.count(one) >= emoji.count(one)


@SETTINGS
@given(texts)
def test_detection_never_raises(text: str) -> None:
    found = LanguageDetector().detect(text)
    assert found.language is None or found.confidence >= found.threshold


@pytest.mark.parametrize(("from_lang", "to_lang"), [("de", "en"), (None, "fr")])
def test_zalgo_text_is_one_word_and_never_cut_apart(from_lang: str | None, to_lang: str) -> None:
    """The reported case: "Z̷̢͎a̸͚l̵g̴o̶" became "Z̷̢͎have̸͚l̵g̴oder̶" when marks split words."""
    assert tokens("Z̷̢͎a̸͚l̵g̴o̶") == ["Z̷̢͎a̸͚l̵g̴o̶"]
    result = BACKEND.translate("Z̷̢͎a̸͚l̵g̴o̶ und Hund", from_lang, to_lang, seed=1)
    assert result.text.startswith("Z̷̢͎a̸͚l̵g̴o̶ ")


def test_dada_keeps_emoji_sequences_as_words() -> None:
    text = "Ein Hund 👨‍👩‍👧 spielt 🇩🇪 im Garten👍🏽!"
    poem = cut_up(text, random.Random(3))
    assert sorted(poem.split(" ")) == sorted(
        ["Ein", "Hund", "👨‍👩‍👧", "spielt", "🇩🇪", "im", "Garten", "👍🏽"]
    )


def test_a_decomposed_umlaut_is_found_in_the_glossary() -> None:
    """ "schläft" typed as a + combining diaeresis is the glossary's "schläft"."""
    composed = BACKEND.translate("schläft", "de", "en", seed=0).text
    decomposed = BACKEND.translate("schla\u0308ft", "de", "en", seed=0).text
    assert composed == decomposed != "schläft"
