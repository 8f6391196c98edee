"""Language detection: the prompt's language is named only when the model is sure."""

from __future__ import annotations

import pytest

from devserver.pipeline._language import LanguageDetector


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector()


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Ein Hund spielt im Garten", "de"),
        ("Eine Katze schläft auf dem warmen Dach", "de"),
        ("A dog plays in the garden", "en"),
        ("Un chien joue dans le jardin", "fr"),
        ("كلب يلعب في الحديقة", "ar"),
        ("一只狗在花园里玩", "zh"),
    ],
)
def test_a_clear_sentence_is_named_with_its_confidence(
    detector: LanguageDetector, text: str, language: str
) -> None:
    found = detector.detect(text)
    assert found.language == language
    assert found.candidate == language
    assert detector.threshold <= found.confidence <= 1.0


@pytest.mark.parametrize(
    "text",
    [
        "Ein Hund spielt im Garten. A dog plays in the garden.",  # two languages at once
        "Hund dog chien",  # three languages, one word each
        "Ein Hund",  # too short to tell
        "🐶🐱",  # no words at all
        "12345",
    ],
)
def test_a_mixed_or_too_short_text_gets_no_language(detector: LanguageDetector, text: str) -> None:
    found = detector.detect(text)
    assert found.language is None
    assert found.confidence < detector.threshold


def test_arabic_and_chinese_varieties_count_as_their_macrolanguage(
    detector: LanguageDetector,
) -> None:
    """The model splits a short Chinese text between zh and wuu; the child wrote Chinese."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    raw = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    text = "一只狗在花园里玩"
    top = dict(raw.rank(text)[:3])
    assert "wuu" in top  # what the model says on its own
    assert detector.detect(text).confidence == pytest.approx(
        top["zh"] + top["wuu"] + dict(raw.rank(text)).get("yue", 0.0), abs=1e-3
    )


def test_the_metadata_says_what_was_detected_and_by_what(detector: LanguageDetector) -> None:
    meta = detector.detect("Ein Hund").metadata()
    assert meta["language"] is None and meta["language_source"] == "detected"
    assert meta["language_candidate"] is not None  # the model's guess, kept apart
    assert meta["language_detector"].startswith("py3langid ")
    assert meta["language_threshold"] == detector.threshold


def test_a_lone_surrogate_does_not_break_detection(detector: LanguageDetector) -> None:
    assert detector.detect("Ein Hund \ud800 spielt im Garten").language == "de"
