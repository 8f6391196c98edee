"""The instructions sent to a text model, shared by every model backend (Ollama, OpenAI-compatible).

One wording for all model backends: a record of a translation by Ollama and
one by a hosted model differ in the model, not in what it was asked.
"""

from __future__ import annotations

LANGUAGE_NAMES = {
    "de": "German",
    "en": "English",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "nl": "Dutch",
    "pt": "Portuguese",
}


def language_name(code: str | None) -> str:
    """The English name of ``code`` when known, else the code (or "the original language")."""
    return LANGUAGE_NAMES.get(code or "", code or "the original language")


def translation_prompt(text: str, from_lang: str | None, to_lang: str) -> str:
    """Ask for a translation of ``text`` into ``to_lang`` and nothing else."""
    source = f"from {language_name(from_lang)} " if from_lang else ""
    return (
        f"Translate the following text {source}into {language_name(to_lang)}. "
        "Answer with the translation only, without quotes or comments.\n\n"
        f"{text}"
    )


def dada_prompt(text: str, language: str | None) -> str:
    """Ask for a Dadaist cut-up poem of ``text``, suitable for children."""
    in_language = f" in {language_name(language)}" if language else ""
    return (
        "Rewrite the following text as a short Dadaist poem: cut it up, rearrange its "
        f"words playfully, keep it suitable for children, and write it{in_language}. "
        "Answer with the poem only.\n\n"
        f"{text}"
    )


def clean_answer(answer: str) -> str:
    """A model's answer without the blank space and quotes models like to add."""
    return answer.strip().strip('"').strip()
