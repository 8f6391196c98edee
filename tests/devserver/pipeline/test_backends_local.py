"""The local backend: glossary translation, Dada cut-up, real PNG and WAV files, reproducibility."""

from __future__ import annotations

import random
import wave
from pathlib import Path

import pytest
from PIL import Image

from devserver.pipeline.backends import Glossary, LocalBackend, UnsupportedLanguage, make_backend


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    return LocalBackend()


def test_glossary_translates_word_by_word_and_keeps_unknown_words(backend: LocalBackend) -> None:
    result = backend.translate("Der Zorblax malt einen Baum.", "de", "fr", seed=1)
    words = result.text.rstrip(".").split()
    assert "Zorblax" in words  # unknown words pass through
    assert "arbre" in words and "peint" in words
    assert result.text.endswith(".")  # punctuation is kept
    assert result.model == "glossary-translator" and result.backend == "local"
    assert result.params == {"from_lang": "de", "to_lang": "fr", "seed": 1}


def test_translation_is_reproducible_from_its_seed(backend: LocalBackend) -> None:
    text = "Die Fledermaus fliegt über den See im Frühling"
    runs = {backend.translate(text, "de", "en", seed=7).text for _ in range(3)}
    assert len(runs) == 1


def test_homonyms_let_the_seed_choose_a_sense(backend: LocalBackend) -> None:
    # French "temps" is both weather and time: different seeds reach both senses.
    seen = {backend.translate("temps", "fr", "de", seed=s).text for s in range(40)}
    assert {"Wetter", "Zeit"} <= seen


def test_sentence_start_keeps_its_capital(backend: LocalBackend) -> None:
    assert backend.translate("Hund. Katze", "de", "en", seed=0).text[:1].isupper()
    assert backend.translate("HUND", "de", "fr", seed=0).text == "CHIEN"


def test_unknown_language_is_a_typed_error(backend: LocalBackend) -> None:
    with pytest.raises(UnsupportedLanguage, match="not 'xx'"):
        backend.translate("Hund", "de", "xx", seed=0)


def test_unknown_source_language_looks_words_up_in_every_language(backend: LocalBackend) -> None:
    assert backend.translate("chien", None, "de", seed=0).text == "Hund"


def test_dada_cut_up_rearranges_the_same_words(backend: LocalBackend) -> None:
    text = "Ein kleiner Hund spielt heute im grünen Garten"
    result = backend.intercept(text, mode="dada", language="de", seed=5)
    assert sorted(result.text.split()) == sorted(text.split())
    assert result.text != text
    assert result.model == "dada-cut-up" and result.params == {"mode": "dada", "seed": 5}
    assert backend.intercept(text, mode="dada", language="de", seed=5).text == result.text


def test_procedural_image_is_a_real_png_of_the_asked_size(
    backend: LocalBackend, tmp_path: Path
) -> None:
    path = tmp_path / "a.png"
    result = backend.generate_image("ein roter Hund", path, width=96, height=64, seed=3, steps=12)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (96, 64)
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=96 * 64)
        assert colours is not None and len(colours) > 10  # drawn, not a blank canvas
    assert (result.width, result.height, result.mime_type) == (96, 64, "image/png")
    assert result.params == {"width": 96, "height": 64, "seed": 3, "steps": 12}
    again = tmp_path / "b.png"
    backend.generate_image("ein roter Hund", again, width=96, height=64, seed=3, steps=12)
    assert again.read_bytes() == path.read_bytes()


def test_colour_words_of_any_language_colour_the_image(
    backend: LocalBackend, tmp_path: Path
) -> None:
    path = tmp_path / "rouge.png"
    backend.generate_image("rouge rouge rouge", path, width=64, height=64, seed=1, steps=1)
    with Image.open(path) as image:
        r, g, b = image.convert("RGB").getpixel((32, 0))  # the gradient's top
    assert r > 150 and g < 100 and b < 100


def test_tune_is_a_real_wav_with_the_asked_rate_and_length(
    backend: LocalBackend, tmp_path: Path
) -> None:
    path = tmp_path / "tune.wav"
    result = backend.generate_audio(
        "Hund Katze Maus", path, duration_s=1.5, sample_rate=16000, seed=2
    )
    with wave.open(str(path), "rb") as audio:
        assert audio.getnchannels() == 1 and audio.getsampwidth() == 2
        assert audio.getframerate() == 16000
        assert audio.getnframes() == 24000
        frames = audio.readframes(audio.getnframes())
    assert len(set(frames)) > 50  # not silence
    assert result.mime_type == "audio/wav" and result.duration_s == pytest.approx(1.5)
    assert result.params == {"duration_s": 1.5, "sample_rate": 16000, "seed": 2}


def test_glossary_rejects_an_entry_without_every_language() -> None:
    with pytest.raises(ValueError, match="entry 0"):
        Glossary(["de", "en"], [[["Hund"]]], digest="x")


def test_glossary_rng_is_the_only_source_of_choice() -> None:
    glossary = Glossary.load()
    a = glossary.translate("temps temps temps", "fr", "en", random.Random(1))
    b = glossary.translate("temps temps temps", "fr", "en", random.Random(1))
    assert a == b


def test_make_backend_names_the_choices() -> None:
    assert make_backend("local").name == "local"
    with pytest.raises(ValueError, match="local, ollama"):
        make_backend("gpt")
