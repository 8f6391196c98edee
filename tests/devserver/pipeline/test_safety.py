"""Safety filters: §86a terms found through case, accents, spacing, leetspeak; age levels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devserver.pipeline.backends import Glossary
from devserver.pipeline.safety import SAFETY_LEVELS, AgeFilter, Stage1Filter, TermList

STAGE1 = Stage1Filter()
AGE = AgeFilter()
LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7", "g": "9"}


@pytest.mark.parametrize(
    "text",
    [
        "Ein Hakenkreuz im Garten",
        "ein HAKENKREUZ",
        "H a k e n k r e u z",
        "H.a.k.e.n.k.r.e.u.z",
        "Hakennkreuzz",
        "H4k3nkr3uz",
        "Ｈａｋｅｎｋｒｅｕｚ",  # fullwidth: NFKC
        "Hákenkreuz",
    ],
)
def test_obfuscated_term_is_found(text: str) -> None:
    verdict = STAGE1.check(text)
    assert not verdict.passed
    assert verdict.matched_terms == ["Hakenkreuz"]
    assert verdict.matches == {"original": ["Hakenkreuz"]}


def test_original_and_translation_are_both_checked_and_reported() -> None:
    verdict = STAGE1.check("Ein Hund", translated="a dog doing the sieg heil")
    assert not verdict.passed
    assert verdict.matches == {"translated": ["Sieg Heil"]}
    assert verdict.checked == ["original", "translated"]
    assert verdict.metadata()["matched_terms"] == ["Sieg Heil"]


def test_numbers_stay_numbers() -> None:
    assert STAGE1.check("C0mbat 18").matched_terms == ["Combat 18"]
    assert STAGE1.check("99 Luftballons und 18 Hunde").passed


@settings(max_examples=200, deadline=None)
@given(
    term=st.sampled_from(["Hakenkreuz", "Sieg Heil", "NSDAP", "Wolfsangel", "Schwarze Sonne"]),
    data=st.data(),
)
def test_any_mix_of_case_spacing_and_leetspeak_is_found(term: str, data: st.DataObject) -> None:
    letters = []
    for ch in term.replace(" ", ""):
        ch = ch.upper() if data.draw(st.booleans()) else ch.lower()
        if ch.lower() in LEET and data.draw(st.booleans()):
            ch = LEET[ch.lower()]
        letters.append(ch)
    separator = data.draw(st.sampled_from(["", " ", ".", "-", "_", " . "]))
    text = "Ich male " + separator.join(letters) + " heute"
    assert term in STAGE1.check(text).matched_terms, text


def test_no_glossary_word_trips_a_filter() -> None:
    """The whole glossary (every form in every language) passes both filters at 'kids'."""
    data = json.loads((Path(__file__).parents[3] / "devserver/data/glossary.json").read_text())
    words = [form for entry in data["entries"] for cell in entry for form in cell]
    text = " ".join(words)
    assert STAGE1.check(text).passed
    assert AGE.check(text, "kids").matched_terms == []
    assert len(Glossary.load()) == len(data["entries"])


def test_age_levels_are_cumulative_from_oldest_to_youngest() -> None:
    text = "a zombie with a knife, then gore"
    assert AGE.check(text, "kids").matched_terms == ["knife", "zombie", "gore"]
    assert AGE.check(text, "teens").matched_terms == ["gore"]
    assert AGE.check(text, "adults").passed
    assert AGE.check(text, "research").passed
    assert AGE.applicable("research") == []
    assert SAFETY_LEVELS == ("kids", "teens", "adults", "research")


def test_prefix_terms_match_longer_words_but_not_inside_words() -> None:
    assert AGE.check("the killer", "kids").matched_terms == ["kill"]
    assert AGE.check("a skilled painter", "kids").passed
    assert AGE.check("Es war einmal ein Hund", "kids").passed  # German 'war' is 'was'


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown safety level"):
        AGE.check("x", "toddlers")


def test_term_lists_come_from_data_files(tmp_path: Path) -> None:
    path = tmp_path / "terms.json"
    path.write_text(json.dumps({"terms": ["Blaubeere", {"term": "kuchen", "match": "prefix"}]}))
    custom = Stage1Filter(path)
    assert custom.check("Blau beere und Kuchenteig").matched_terms == ["Blaubeere", "kuchen"]
    assert custom.name.startswith("stgb-86a-terms@")


def test_malformed_term_is_refused() -> None:
    with pytest.raises(ValueError, match="match must be one of"):
        TermList([{"term": "x", "match": "regex"}])
    with pytest.raises(ValueError, match="has no letters"):
        TermList(["..."])


SYMBOLS = ["卐", "卍", "࿕", "࿖", "࿗", "࿘", "ᛋᛋ", "ϟϟ"]


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize(
    "template", ["{s}", "Ein {s} im Garten", "ein{s}hund", "{spaced} überall", "Tempel mit {s}"]
)
def test_section_86a_symbols_are_found_alone_inside_words_and_spaced(
    symbol: str, template: str
) -> None:
    text = template.format(s=symbol, spaced=" ".join(symbol))
    verdict = Stage1Filter().check(text)
    assert not verdict.passed, text
    assert verdict.matched_terms, text


def test_look_alikes_written_another_way_are_found_too() -> None:
    """Capital koppa folds to the small one; any white space between the runes is ignored."""
    for text in ("ϞϞ", "Ϟ Ϟ", "ᛋ\u00a0ᛋ", "ᛋ\tᛋ"):
        assert not Stage1Filter().check(text).passed, text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(exclude_characters="".join(SYMBOLS) + "ϞᛋϟǪ"), max_size=40))
def test_text_without_those_symbols_is_not_blocked_by_them(text: str) -> None:
    verdict = Stage1Filter().check(text)
    assert not set(verdict.matched_terms) & set(SYMBOLS), (text, verdict.matched_terms)


def test_a_prompt_with_a_swastika_stops_the_run_at_stage_1(client: object) -> None:
    answer = client.post(  # type: ignore[attr-defined]
        "/api/runs?wait=true", json={"config": "stillepost", "input": "Ein Hund mit 卍"}
    )
    assert answer.status_code == 200 and answer.json["status"] == "blocked"
    record = client.get(f"/api/runs/{answer.json['run_id']}").json  # type: ignore[attr-defined]
    (check,) = [i for i in record["items"] if i["item_type"] == "stage1_safety_check"]
    assert "卍" in check["metadata"]["matched_terms"]
