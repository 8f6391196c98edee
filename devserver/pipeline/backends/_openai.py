"""The ``openai`` backend: translation and interception by any OpenAI-compatible chat API.

Speaks ``POST {base_url}/chat/completions`` with ``stream: true`` (server-sent
events: ``data: {chunk}`` lines, then ``data: [DONE]``), which OpenRouter,
vLLM, llama.cpp's server and Ollama's ``/v1`` all answer. The text so far is
reported to the running step's progress board as it streams in; token counts
are recorded when, and only when, the server reports them (``usage`` in the
last chunk, asked for with ``stream_options.include_usage``).

Connection errors, 429 and 5xx are retried with exponential back-off (a
``Retry-After`` of a few seconds is honoured); any other answer that is not
the API's raises a typed ``BackendError``. The API key is sent in the
``Authorization`` header only: it is never part of a message, a repr, a log
line or the record. Images and audio stay with the local generators.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._base import (
    BackendBadResponse,
    BackendTimeout,
    BackendUnavailable,
)
from ._progress import MAX_PROGRESS_TEXT, report
from ._prompts import clean_answer
from ._text_model import TextModelBackend

_MAX_ANSWER_BYTES = 1_000_000
#: Statuses worth another try: rate limited, or the server (or its proxy) failing.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: The longest ``Retry-After`` honoured; a server asking for more is treated as down.
MAX_RETRY_AFTER_S = 10.0


def public_url(url: str) -> str:
    """``url`` without user info, query or fragment: safe to record and to log."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True, slots=True)
class OpenAIOptions:
    """Where and how to reach an OpenAI-compatible server (``DEVSERVER_OPENAI_*``).

    Attributes:
        base_url: up to and including the version, e.g. ``https://openrouter.ai/api/v1``.
        model: the model name the server knows.
        api_key: sent as a bearer token; never shown (``repr=False``).
        timeout_s: deadline of one attempt (connecting and the whole streamed answer).
        retries: further attempts after a connection error, 429 or 5xx.
        temperature: sampling temperature of every request.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    retries: int = 2
    temperature: float = 0.7


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    """A streamed answer, put together.

    Attributes:
        text: the whole text.
        usage: the server's token counts (``prompt_tokens``…), None when it sent none.
        model: the model the server says answered (None when it did not say).
        finish_reason: why the model stopped, as the server said (None when not said).
        attempts: how many requests it took.
    """

    text: str
    usage: dict[str, Any] | None
    model: str | None
    finish_reason: str | None
    attempts: int


class _Retry(Exception):
    """An attempt failed in a way worth another try (``reason`` says how)."""

    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait_s = wait_s


class OpenAIClient:
    """A small streaming client for one OpenAI-compatible server.

    Args:
        base_url: up to and including the version (``…/v1``).
        api_key: bearer token, or None for servers without one (llama.cpp, vLLM).
        timeout_s: deadline of one attempt.
        retries: further attempts after a connection error, 429 or 5xx.
        backoff_s: wait before the first retry; doubled for each further one.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retries: int = 2,
        backoff_s: float = 0.5,
    ) -> None:
        self.base_url = base_url.strip().rstrip("/")
        self.public_url = public_url(self.base_url)
        self._api_key = api_key or None
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s

    def __repr__(self) -> str:
        return f"OpenAIClient({self.public_url!r})"  # never the key

    def chat(
        self,
        model: str,
        messages: list[dict[str, str]],
        options: dict[str, Any],
        on_text: Callable[[str, int], None] | None = None,
    ) -> ChatAnswer:
        """The model's streamed answer to ``messages``.

        Args:
            model: the model name.
            messages: the chat messages.
            options: further request fields (``seed``, ``temperature``), sent verbatim.
            on_text: called with (the first ``MAX_PROGRESS_TEXT`` characters so far,
                the number of characters so far) after each chunk with text.

        Raises:
            BackendUnavailable: no complete answer after ``retries`` more attempts
                (refused, reset, cut off, 429 or 5xx each time).
            BackendTimeout: an attempt took longer than ``timeout_s``.
            BackendBadResponse: another HTTP error (401: the key was refused), an
                error in the stream, or a body that is not the API's.
        """
        body = json.dumps(
            {
                **options,
                "model": model,
                "messages": messages,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ).encode()
        attempt = 0
        while True:
            try:
                return self._attempt(body, on_text, attempt + 1)
            except _Retry as retry:
                if attempt >= self.retries:
                    raise BackendUnavailable(
                        f"the chat server at {self.public_url} gave no answer after "
                        f"{attempt + 1} attempts ({retry.reason})"
                    ) from None
                wait = self.backoff_s * 2**attempt
                if retry.wait_s is not None:
                    wait = max(wait, retry.wait_s)
                time.sleep(wait)
                attempt += 1

    def _attempt(
        self, body: bytes, on_text: Callable[[str, int], None] | None, attempts: int
    ) -> ChatAnswer:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(
            self.base_url + "/chat/completions", data=body, method="POST", headers=headers
        )
        deadline = time.monotonic() + self.timeout_s
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                kind = response.headers.get_content_type()
                if kind == "application/json":  # a server that does not stream
                    return _whole_answer(response.read(_MAX_ANSWER_BYTES + 1), attempts)
                return _read_stream(response, on_text, deadline, attempts, self.timeout_s)
        except urllib.error.HTTPError as exc:
            with exc:  # the error holds the connection open until closed
                if exc.code in RETRY_STATUSES:
                    raise _Retry(f"HTTP {exc.code}", _retry_after(exc)) from None
                raise BackendBadResponse(self._http_error(exc)) from None
        except TimeoutError:
            raise self._timeout() from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError | socket.timeout):
                raise self._timeout() from None
            raise _Retry(_name(exc.reason)) from None
        except (http.client.HTTPException, ConnectionError) as exc:
            # A reset, or a stream cut off before [DONE]: the whole answer is asked again.
            raise _Retry(_name(exc)) from None

    def _timeout(self) -> BackendTimeout:
        return BackendTimeout(
            f"the chat server at {self.public_url} did not answer within {self.timeout_s:g} s"
        )

    def _http_error(self, exc: urllib.error.HTTPError) -> str:
        if exc.code in (401, 403):
            # Servers echo part of a refused key in their message: say nothing of it.
            return f"the chat server at {self.public_url} refused the API key (HTTP {exc.code})"
        message = _error_message(exc.read(4096))
        if self._api_key and message:
            message = message.replace(self._api_key, "***")
        detail = f": {message}" if message else ""
        return f"the chat server answered HTTP {exc.code}{detail}"


def _name(reason: object) -> str:
    return type(reason).__name__ if isinstance(reason, BaseException) else str(reason)[:100]


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    """A ``Retry-After`` in seconds, when it is a number up to ``MAX_RETRY_AFTER_S``."""
    value = exc.headers.get("Retry-After") if exc.headers is not None else None
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or not 0 <= seconds <= MAX_RETRY_AFTER_S:
        return None
    return seconds


def _error_message(payload: bytes) -> str:
    """The API's own short error text (``{"error": {"message": …}}``), if it sent one."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return str(message)[:200] if message else ""


def _whole_answer(payload: bytes, attempts: int) -> ChatAnswer:
    if len(payload) > _MAX_ANSWER_BYTES:
        raise BackendBadResponse("the chat server's answer is larger than 1 MB")
    try:
        data = json.loads(payload)
        choice = data["choices"][0]
        text = choice["message"]["content"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError):
        raise BackendBadResponse("the chat server's answer is not a chat completion") from None
    if not isinstance(text, str):
        raise BackendBadResponse("the chat server's answer has no text content")
    usage = data.get("usage")
    return ChatAnswer(
        text,
        dict(usage) if isinstance(usage, dict) else None,
        data.get("model") if isinstance(data.get("model"), str) else None,
        choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None,
        attempts,
    )


def _read_stream(
    response: Any,
    on_text: Callable[[str, int], None] | None,
    deadline: float,
    attempts: int,
    timeout_s: float,
) -> ChatAnswer:
    """Put a ``text/event-stream`` answer together, chunk by chunk."""
    parts: list[str] = []
    head = ""  # the first MAX_PROGRESS_TEXT characters, for progress reports
    chars = 0
    size = 0
    usage: dict[str, Any] | None = None
    model: str | None = None
    finish: str | None = None
    while True:
        if time.monotonic() > deadline:
            raise BackendTimeout(f"the chat server's answer took longer than {timeout_s:g} s")
        line = response.readline(_MAX_ANSWER_BYTES)
        if not line:
            # Closed without [DONE]: the answer may be cut short, so it is not taken.
            raise _Retry("the stream ended before [DONE]")
        size += len(line)
        if size > _MAX_ANSWER_BYTES:
            raise BackendBadResponse("the chat server's answer is larger than 1 MB")
        line = line.rstrip(b"\r\n")
        if not line.startswith(b"data:"):
            continue  # blank separators, comments (": keep-alive"), event names
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        try:
            chunk = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BackendBadResponse("the chat server streamed a chunk that is not JSON") from None
        if not isinstance(chunk, dict):
            raise BackendBadResponse("the chat server streamed a chunk that is not an object")
        if "error" in chunk:  # OpenRouter reports a failure mid-stream this way
            message = _error_message(json.dumps(chunk).encode())
            raise BackendBadResponse(f"the chat server reported an error: {message}")
        if isinstance(chunk.get("model"), str):
            model = chunk["model"]
        if isinstance(chunk.get("usage"), dict):
            usage = dict(chunk["usage"])
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise BackendBadResponse("the chat server streamed a chunk without 'choices'")
        for choice in choices[:1]:
            if not isinstance(choice, dict):
                raise BackendBadResponse("the chat server streamed a malformed choice")
            if isinstance(choice.get("finish_reason"), str):
                finish = choice["finish_reason"]
            delta = choice.get("delta")
            piece = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(piece, str) and piece:
                parts.append(piece)
                chars += len(piece)
                if len(head) < MAX_PROGRESS_TEXT:
                    head = (head + piece)[:MAX_PROGRESS_TEXT]
                if on_text is not None:
                    on_text(head, chars)
    return ChatAnswer("".join(parts), usage, model, finish, attempts)


class OpenAIBackend(TextModelBackend[OpenAIClient]):
    """Translation and interception on an OpenAI-compatible server; media stay local.

    Args:
        client: the streaming client.
        model: the model name (e.g. ``meta-llama/llama-3.1-8b-instruct``).
        temperature: sampling temperature passed with every request.
        local: the backend used for media.
    """

    name = "openai"

    def _ask(self, prompt: str, seed: int) -> tuple[str, dict[str, Any]]:
        options = {"seed": seed, "temperature": self.temperature}
        answer = self.client.chat(
            self.model,
            [{"role": "user", "content": prompt}],
            options,
            on_text=lambda head, chars: report("text", text=head, chars=chars),
        )
        text = clean_answer(answer.text)
        if not text:
            raise BackendBadResponse("the chat server answered with an empty text")
        params: dict[str, Any] = {"options": options, "base_url": self.client.public_url}
        # Only what the server told: no counts are estimated, no model name guessed.
        if answer.usage is not None:
            params["usage"] = answer.usage
        if answer.model is not None:
            params["served_model"] = answer.model
        if answer.finish_reason is not None:
            params["finish_reason"] = answer.finish_reason
        if answer.attempts > 1:
            params["attempts"] = answer.attempts
        return text, params
