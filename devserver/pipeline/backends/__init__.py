"""Backends behind one small interface: ``local`` (default, needs nothing), ``ollama``,
``openai`` (any OpenAI-compatible chat API) and ``comfyui`` (stage-4 images from workflows).

Choose the server's default by name with ``make_backend`` (``DEVSERVER_BACKEND``);
a pipeline config may name another backend per stage or output
(docs/backends.md). The orchestrator only ever sees the ``Backend`` protocol,
plus ``ComfyUIBackend.run_workflow`` for outputs made from a workflow.
"""

from __future__ import annotations

from ._base import (
    Backend,
    BackendBadResponse,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    MediaResult,
    MissingOutput,
    TextResult,
    UnsupportedLanguage,
    WorkflowFailed,
)
from ._comfyui import ComfyUIBackend, ComfyUIOptions
from ._glossary import Glossary
from ._local import LocalBackend
from ._ollama import DEFAULT_HOST, OllamaBackend, OllamaClient
from ._openai import OpenAIBackend, OpenAIClient, OpenAIOptions, public_url
from ._progress import ProgressBoard, StepProgress, report
from ._workflow import PLACEHOLDERS, FilledWorkflow, WorkflowError, WorkflowTemplate

#: Backends the server may use by default for every step (DEVSERVER_BACKEND).
BACKEND_NAMES = ("local", "ollama", "openai")
#: Backends a config may name for stages 1 and 2, and for an output.
TEXT_BACKENDS = ("local", "ollama", "openai")
MEDIA_BACKENDS = ("local", "comfyui")

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_HOST",
    "MEDIA_BACKENDS",
    "PLACEHOLDERS",
    "TEXT_BACKENDS",
    "Backend",
    "BackendBadResponse",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "ComfyUIBackend",
    "ComfyUIOptions",
    "FilledWorkflow",
    "Glossary",
    "LocalBackend",
    "MediaResult",
    "MissingOutput",
    "OllamaBackend",
    "OllamaClient",
    "OpenAIBackend",
    "OpenAIClient",
    "OpenAIOptions",
    "ProgressBoard",
    "StepProgress",
    "TextResult",
    "UnsupportedLanguage",
    "WorkflowError",
    "WorkflowFailed",
    "WorkflowTemplate",
    "make_backend",
    "make_comfyui",
    "public_url",
    "report",
]


def make_backend(
    name: str,
    *,
    ollama_host: str = DEFAULT_HOST,
    ollama_model: str = "llama3.2",
    ollama_timeout_s: float = 60.0,
    ollama_retries: int = 2,
    openai: OpenAIOptions | None = None,
) -> LocalBackend | OllamaBackend | OpenAIBackend:
    """The text backend called ``name`` (``local``, ``ollama`` or ``openai``).

    Raises:
        ValueError: an unknown name, or ``openai`` without its options (the
            message names the variables to set).
    """
    if name == "local":
        return LocalBackend()
    if name == "ollama":
        client = OllamaClient(ollama_host, timeout_s=ollama_timeout_s, retries=ollama_retries)
        return OllamaBackend(client, ollama_model)
    if name == "openai":
        if openai is None:
            raise ValueError(
                "the openai backend needs DEVSERVER_OPENAI_BASE_URL and DEVSERVER_OPENAI_MODEL"
            )
        chat = OpenAIClient(
            openai.base_url,
            api_key=openai.api_key,
            timeout_s=openai.timeout_s,
            retries=openai.retries,
        )
        return OpenAIBackend(chat, openai.model, temperature=openai.temperature)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")


def make_comfyui(options: ComfyUIOptions | None) -> ComfyUIBackend:
    """The ComfyUI backend of ``options``.

    Raises:
        ValueError: no options (``DEVSERVER_COMFYUI_URL`` unset), or the
            ``comfyui`` extra is not installed.
    """
    if options is None:
        raise ValueError("the comfyui backend needs DEVSERVER_COMFYUI_URL")
    return ComfyUIBackend(options.url, timeout_s=options.timeout_s, retries=options.retries)
