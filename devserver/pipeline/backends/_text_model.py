"""What every text-model backend shares: translation and interception by one prompt each,
media made locally. A backend says only how one prompt is asked (``_ask``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Generic, TypeVar

from ._base import BackendError, MediaResult, TextResult
from ._local import LocalBackend
from ._prompts import dada_prompt, translation_prompt

#: The backend's client for its server (``OllamaClient``, ``OpenAIClient``).
ClientT = TypeVar("ClientT")


class TextModelBackend(Generic[ClientT]):
    """Translation and interception by a model on a server; images and audio stay local.

    Args:
        client: the client for the server.
        model: the model's name, as the server knows it.
        temperature: sampling temperature passed with every request.
        local: the backend used for media.
    """

    #: The backend's name in records and configs (set by each subclass).
    name = "text-model"

    def __init__(
        self,
        client: ClientT,
        model: str,
        *,
        temperature: float = 0.7,
        local: LocalBackend | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.temperature = temperature
        self.local = local or LocalBackend()

    def model_versions(self) -> dict[str, str | None]:
        """Versions for the record: a server does not tell its model's version, so None."""
        versions = dict(self.local.model_versions())
        versions[self.model] = None
        return versions

    def _ask(self, prompt: str, seed: int) -> tuple[str, dict[str, Any]]:
        """The model's cleaned answer to ``prompt``, and what the record keeps of the request
        (parameters sent, and what the server reported).

        Raises:
            BackendError: the server could not be asked or gave no usable answer.
        """
        raise NotImplementedError

    def translate(self, text: str, from_lang: str | None, to_lang: str, seed: int) -> TextResult:
        """Translate with the model; raises ``BackendError``."""
        answer, params = self._ask(translation_prompt(text, from_lang, to_lang), seed)
        return TextResult(
            answer,
            self.model,
            self.name,
            {"from_lang": from_lang, "to_lang": to_lang, "seed": seed, **params},
        )

    def intercept(self, text: str, *, mode: str, language: str | None, seed: int) -> TextResult:
        """One interception pass by the model; ``dada`` asks for a Dadaist cut-up poem."""
        if mode != "dada":
            raise BackendError(f"the {self.name} backend has no interception mode {mode!r}")
        answer, params = self._ask(dada_prompt(text, language), seed)
        return TextResult(
            answer,
            self.model,
            self.name,
            {"mode": mode, "language": language, "seed": seed, **params},
        )

    def generate_image(
        self, prompt: str, path: Path, *, width: int, height: int, seed: int, steps: int
    ) -> MediaResult:
        """Made by the local generator (a text model makes no images)."""
        return self.local.generate_image(
            prompt, path, width=width, height=height, seed=seed, steps=steps
        )

    def generate_audio(
        self, prompt: str, path: Path, *, duration_s: float, sample_rate: int, seed: int
    ) -> MediaResult:
        """Made by the local generator (a text model makes no audio)."""
        return self.local.generate_audio(
            prompt, path, duration_s=duration_s, sample_rate=sample_rate, seed=seed
        )
