"""The ``ollama`` backend: translation and interception by a model on an Ollama server.

Talks to Ollama's ``POST /api/generate`` (non-streaming) with the stdlib HTTP
client. Connection errors are retried with a short back-off; a server that
stays down, answers too slowly or answers something that is not Ollama's JSON
raises a typed ``BackendError`` that the orchestrator records as a clean stage
failure. Images and audio are still made by the local generators (Ollama does
not make them), and their items say so (``backend="local"``).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from ._base import (
    BackendBadResponse,
    BackendTimeout,
    BackendUnavailable,
)
from ._prompts import LANGUAGE_NAMES, clean_answer
from ._text_model import TextModelBackend

#: Ollama's own default address.
DEFAULT_HOST = "http://127.0.0.1:11434"

_MAX_ANSWER_BYTES = 1_000_000


def normalise_host(host: str) -> str:
    """``OLLAMA_HOST`` as a base URL: Ollama accepts ``host:port`` without a scheme."""
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = "http://" + host
    return host


class OllamaClient:
    """A small client for one Ollama server.

    Args:
        host: base URL (``OLLAMA_HOST``), e.g. ``http://127.0.0.1:11434``.
        timeout_s: deadline for connecting and for each read of the answer.
        retries: how many times a refused or reset connection is tried again.
        backoff_s: wait before the first retry; doubled for each further one.
    """

    def __init__(
        self, host: str, *, timeout_s: float = 60.0, retries: int = 2, backoff_s: float = 0.2
    ) -> None:
        self.base_url = normalise_host(host)
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s

    def generate(self, model: str, prompt: str, options: dict[str, Any]) -> str:
        """The model's answer to ``prompt`` (``/api/generate``, not streamed).

        Raises:
            BackendUnavailable: no connection after ``retries`` more attempts.
            BackendTimeout: no (complete) answer within ``timeout_s``.
            BackendBadResponse: an HTTP error status, or a body that is not
                Ollama's JSON with a string ``response``.
        """
        body = json.dumps(
            {"model": model, "prompt": prompt, "stream": False, "options": options}
        ).encode()
        payload = self._post("/api/generate", body)
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BackendBadResponse("Ollama answered something that is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("response"), str):
            raise BackendBadResponse("Ollama's answer has no text 'response' field")
        return str(data["response"])

    def _post(self, path: str, body: bytes) -> bytes:
        url = self.base_url + path
        attempt = 0
        while True:
            request = urllib.request.Request(
                url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    payload: bytes = response.read(_MAX_ANSWER_BYTES + 1)
                if len(payload) > _MAX_ANSWER_BYTES:
                    raise BackendBadResponse("Ollama's answer is larger than 1 MB")
                return payload
            except urllib.error.HTTPError as exc:
                raise BackendBadResponse(
                    f"Ollama answered HTTP {exc.code}{_ollama_error(exc)}"
                ) from None
            except TimeoutError:
                raise BackendTimeout(
                    f"Ollama at {self.base_url} did not answer within {self.timeout_s:g} s"
                ) from None
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, TimeoutError | socket.timeout):
                    raise BackendTimeout(
                        f"Ollama at {self.base_url} did not answer within {self.timeout_s:g} s"
                    ) from None
                reason = exc.reason
            except (http.client.HTTPException, ConnectionError) as exc:
                # A reset or a connection closed without an answer: worth another try.
                reason = exc
            if attempt >= self.retries:
                raise BackendUnavailable(
                    f"Ollama at {self.base_url} is not reachable after {attempt + 1} attempts "
                    f"({type(reason).__name__ if isinstance(reason, BaseException) else reason})"
                )
            time.sleep(self.backoff_s * 2**attempt)
            attempt += 1


def _ollama_error(exc: urllib.error.HTTPError) -> str:
    """Ollama's own short error text (``{"error": "..."}``), if it sent one."""
    try:
        data = json.loads(exc.read(4096))
        message = data.get("error") if isinstance(data, dict) else None
    except Exception:
        return ""
    return f": {str(message)[:200]}" if message else ""


class OllamaBackend(TextModelBackend[OllamaClient]):
    """Translation and interception on Ollama; media stay local.

    Args:
        client: the HTTP client for the server.
        model: the Ollama model name (e.g. ``llama3.2``).
        temperature: sampling temperature passed with every request.
        local: the backend used for media.
    """

    name = "ollama"

    @property
    def languages(self) -> tuple[str, ...]:
        """Languages the prompts name (any code works; these get their English name)."""
        return tuple(LANGUAGE_NAMES)

    def _ask(self, prompt: str, seed: int) -> tuple[str, dict[str, Any]]:
        options = {"seed": seed, "temperature": self.temperature}
        answer = clean_answer(self.client.generate(self.model, prompt, options))
        if not answer:
            raise BackendBadResponse("Ollama answered with an empty text")
        return answer, {"options": options}
