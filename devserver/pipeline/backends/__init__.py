"""Backends behind one small interface: ``local`` (default, needs nothing) and ``ollama``.

Choose one by name with ``make_backend`` (``DEVSERVER_BACKEND``); the
orchestrator only ever sees the ``Backend`` protocol.
"""

from __future__ import annotations

from ._base import (
    Backend,
    BackendBadResponse,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    MediaResult,
    TextResult,
    UnsupportedLanguage,
)
from ._glossary import Glossary
from ._local import LocalBackend
from ._ollama import DEFAULT_HOST, OllamaBackend, OllamaClient

BACKEND_NAMES = ("local", "ollama")

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_HOST",
    "Backend",
    "BackendBadResponse",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "Glossary",
    "LocalBackend",
    "MediaResult",
    "OllamaBackend",
    "OllamaClient",
    "TextResult",
    "UnsupportedLanguage",
    "make_backend",
]


def make_backend(
    name: str,
    *,
    ollama_host: str = DEFAULT_HOST,
    ollama_model: str = "llama3.2",
    ollama_timeout_s: float = 60.0,
    ollama_retries: int = 2,
) -> LocalBackend | OllamaBackend:
    """The backend called ``name`` (``local`` or ``ollama``).

    Raises:
        ValueError: an unknown name.
    """
    if name == "local":
        return LocalBackend()
    if name == "ollama":
        client = OllamaClient(ollama_host, timeout_s=ollama_timeout_s, retries=ollama_retries)
        return OllamaBackend(client, ollama_model)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
