"""The ``local`` backend: honest algorithmic transformations that need nothing installed.

Every model is named for what it is: ``glossary-translator`` (word-by-word
lookup), ``dada-cut-up`` (Tzara's hat), ``procedural-shapes`` (Pillow drawing),
``pentatonic-synth`` (sine tones). All are deterministic given their inputs
and seed, so a recorded run can be reproduced exactly.
"""

from __future__ import annotations

import random
from pathlib import Path

from ._audio import synthesise_tune
from ._base import BackendError, MediaResult, TextResult, UnsupportedLanguage
from ._dada import cut_up
from ._glossary import Glossary
from ._image import COLOURS, RGB, draw_image

TRANSLATOR = "glossary-translator"
DADA = "dada-cut-up"
IMAGE_MODEL = "procedural-shapes"
AUDIO_MODEL = "pentatonic-synth"

#: Bumped when an algorithm changes its output for the same inputs.
ALGORITHM_VERSION = "2"  # 2: words are whole grapheme clusters; emoji are words


class LocalBackend:
    """The default backend (``DEVSERVER_BACKEND=local``); safe to share between threads.

    Args:
        glossary: the translation table; the shipped one when omitted.
    """

    name = "local"

    def __init__(self, glossary: Glossary | None = None) -> None:
        self.glossary = glossary or Glossary.load()
        self._colour_words = _colour_words(self.glossary)

    @property
    def languages(self) -> tuple[str, ...]:
        """The language codes this backend translates between."""
        return self.glossary.languages

    def model_versions(self) -> dict[str, str | None]:
        """The version of each model, for the record (the glossary by its checksum)."""
        return {
            TRANSLATOR: f"{ALGORITHM_VERSION}+glossary.sha256:{self.glossary.digest[:16]}",
            DADA: ALGORITHM_VERSION,
            IMAGE_MODEL: ALGORITHM_VERSION,
            AUDIO_MODEL: ALGORITHM_VERSION,
        }

    def translate(self, text: str, from_lang: str | None, to_lang: str, seed: int) -> TextResult:
        """Word-by-word glossary translation; see ``Glossary.translate``.

        Raises:
            UnsupportedLanguage: a language is not in the glossary.
        """
        for lang in (from_lang, to_lang):
            if lang is not None and lang not in self.glossary.languages:
                raise UnsupportedLanguage(
                    f"the glossary translator knows {', '.join(self.glossary.languages)}, "
                    f"not {lang!r}",
                    lang,
                )
        text_out = self.glossary.translate(text, from_lang, to_lang, random.Random(seed))
        params = {"from_lang": from_lang, "to_lang": to_lang, "seed": seed}
        return TextResult(text_out, TRANSLATOR, self.name, params)

    def intercept(self, text: str, *, mode: str, language: str | None, seed: int) -> TextResult:
        """One interception pass; the local backend knows ``dada`` (a cut-up).

        Raises:
            BackendError: an unknown ``mode``.
        """
        if mode != "dada":
            raise BackendError(f"the local backend has no interception mode {mode!r}")
        text_out = cut_up(text, random.Random(seed))
        return TextResult(text_out, DADA, self.name, {"mode": mode, "seed": seed})

    def generate_image(
        self, prompt: str, path: Path, *, width: int, height: int, seed: int, steps: int
    ) -> MediaResult:
        """Draw a PNG with ``procedural-shapes`` (see ``draw_image``)."""
        draw_image(
            prompt,
            path,
            width=width,
            height=height,
            seed=seed,
            steps=steps,
            colour_words=self._colour_words,
        )
        params = {"width": width, "height": height, "seed": seed, "steps": steps}
        return MediaResult(
            path, "image/png", IMAGE_MODEL, self.name, params, width=width, height=height
        )

    def generate_audio(
        self, prompt: str, path: Path, *, duration_s: float, sample_rate: int, seed: int
    ) -> MediaResult:
        """Write a WAV tune with ``pentatonic-synth`` (see ``synthesise_tune``)."""
        synthesise_tune(prompt, path, duration_s=duration_s, sample_rate=sample_rate, seed=seed)
        params = {"duration_s": duration_s, "sample_rate": sample_rate, "seed": seed}
        # The file holds a whole number of samples; report the length actually written.
        written = max(1, int(duration_s * sample_rate)) / sample_rate
        return MediaResult(path, "audio/wav", AUDIO_MODEL, self.name, params, duration_s=written)


def _colour_words(glossary: Glossary) -> dict[str, RGB]:
    """Every form, in every language, of the senses whose English forms name a colour."""
    words: dict[str, RGB] = {}
    for name, rgb in COLOURS.items():
        for entry in glossary.senses("en", name):
            # "orange" is also a fruit: only senses whose usual English form is the colour.
            if glossary.forms(entry, "en")[0] != name:
                continue
            for lang in glossary.languages:
                for form in glossary.forms(entry, lang):
                    words.setdefault(form.casefold(), rgb)
    return words
