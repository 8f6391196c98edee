"""The one small interface every backend implements, its result types and its typed errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class BackendError(Exception):
    """A backend could not do what it was asked; the orchestrator turns it into a stage failure.

    ``code`` is a stable machine-readable reason; the message is safe to show
    and to record (it never carries a traceback or a secret).
    """

    code = "backend_error"


class BackendUnavailable(BackendError):
    """The backend's server could not be reached (refused, reset, DNS), even after retries."""

    code = "backend_unavailable"


class BackendTimeout(BackendError):
    """The backend did not answer within its deadline."""

    code = "backend_timeout"


class BackendBadResponse(BackendError):
    """The backend answered something that is not what its API promises (bad JSON, bad shape)."""

    code = "backend_bad_response"


class WorkflowFailed(BackendError):
    """The generator refused the workflow or failed while running it (a node's error)."""

    code = "workflow_error"


class MissingOutput(BackendError):
    """The generator finished but the file it should have made is not there."""

    code = "missing_output"


class UnsupportedLanguage(BackendError):
    """A language code that this backend cannot translate from or to.

    Attributes:
        language: the code it cannot translate (None when not told).
    """

    code = "unsupported_language"

    def __init__(self, message: str, language: str | None = None) -> None:
        super().__init__(message)
        self.language = language


@dataclass(frozen=True, slots=True)
class TextResult:
    """A text produced by a backend and everything that was passed to produce it.

    Attributes:
        text: the produced text.
        model: the model or algorithm that produced it, named for what it is.
        backend: the backend's name (``local``, ``ollama``).
        params: every value passed to the model (languages, seed, options…),
            recorded verbatim in the item's metadata so the step can be reproduced.
    """

    text: str
    model: str
    backend: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MediaResult:
    """A media file written by a backend, described for the record (never its bytes).

    Attributes:
        path: the file written.
        mime_type: its content type.
        model, backend: as in ``TextResult``.
        params: every value passed to the generator (seed, steps, sample rate…).
        width, height: pixel size for images; None otherwise.
        duration_s: playing time for audio; None otherwise.
    """

    path: Path
    mime_type: str
    model: str
    backend: str
    params: dict[str, Any] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None


@runtime_checkable
class Backend(Protocol):
    """What the orchestrator needs from a backend; each call may raise ``BackendError``.

    Implementations are shared by concurrent runs, so they keep no per-run state.
    """

    name: str

    def model_versions(self) -> dict[str, str | None]:
        """Each model's version for the record (None where the version is not known)."""
        ...

    def translate(self, text: str, from_lang: str | None, to_lang: str, seed: int) -> TextResult:
        """Translate ``text`` (from an unknown language when ``from_lang`` is None).

        Raises ``UnsupportedLanguage`` (naming the code) for a language it cannot
        translate; the orchestrator records such a step as not translated.
        """
        ...

    def intercept(self, text: str, *, mode: str, language: str | None, seed: int) -> TextResult:
        """Transform ``text`` by an interception ``mode`` (``dada``) in one pass."""
        ...

    def generate_image(
        self, prompt: str, path: Path, *, width: int, height: int, seed: int, steps: int
    ) -> MediaResult:
        """Write a PNG image for ``prompt`` to ``path``."""
        ...

    def generate_audio(
        self, prompt: str, path: Path, *, duration_s: float, sample_rate: int, seed: int
    ) -> MediaResult:
        """Write a WAV audio piece for ``prompt`` to ``path``."""
        ...
