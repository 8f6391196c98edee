"""Test doubles for the devserver: a fake Ollama server and backends that block or fail."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devserver.pipeline.backends import BackendError, LocalBackend, MediaResult, TextResult


class FakeOllama:
    """An HTTP server on 127.0.0.1 that answers ``/api/generate`` like Ollama, or badly.

    ``mode``: ``ok`` (echoes a translation), ``slow`` (waits ``delay_s`` first),
    ``malformed`` (not JSON), ``wrong_shape`` (JSON without ``response``),
    ``http_error`` (500 with Ollama's error JSON).
    """

    def __init__(self, mode: str = "ok", delay_s: float = 2.0) -> None:
        self.mode = mode
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                fake.requests.append({"path": self.path, **body})
                if fake.mode == "slow":
                    time.sleep(fake.delay_s)
                if fake.mode == "http_error":
                    self._send(500, b'{"error": "model runner crashed"}')
                elif fake.mode == "malformed":
                    self._send(200, b'{"response": "half an answ')
                elif fake.mode == "wrong_shape":
                    self._send(200, b'{"text": "no response field"}')
                else:
                    last_line = body["prompt"].rsplit("\n", 1)[-1]
                    answer = {"model": body["model"], "response": f" «{last_line}» ", "done": True}
                    self._send(200, json.dumps(answer).encode())

            def _send(self, status: int, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the slow mode's point)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOllama:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class GatedBackend(LocalBackend):
    """The local backend, but stage-2 step ``gate_at`` waits until ``release`` is set.

    Runs must be started with ``"seed": 0``: stage-2 step i translates with seed i.
    """

    def __init__(self, gate_at: int = 3) -> None:
        super().__init__()
        self.gate_at = gate_at
        self.reached = threading.Event()
        self.release = threading.Event()

    def translate(self, text: str, from_lang: str | None, to_lang: str, seed: int) -> TextResult:
        if seed == self.gate_at:
            self.reached.set()
            if not self.release.wait(30):
                raise RuntimeError("test gate never released")
        return super().translate(text, from_lang, to_lang, seed)


class BrokenBackend(LocalBackend):
    """The local backend, but stage-2 step ``fail_at`` raises an unexpected error.

    Runs must be started with ``"seed": 0``: stage-2 step i translates with seed i.
    """

    def __init__(self, fail_at: int = 4) -> None:
        super().__init__()
        self.fail_at = fail_at

    def translate(self, text: str, from_lang: str | None, to_lang: str, seed: int) -> TextResult:
        if seed == self.fail_at:
            raise RuntimeError("the translation model crashed")
        return super().translate(text, from_lang, to_lang, seed)


class NoImageBackend(LocalBackend):
    """The local backend, but images of ``fail_sizes`` fail as a backend would."""

    def __init__(self, fail_widths: set[int]) -> None:
        super().__init__()
        self.fail_widths = fail_widths

    def generate_image(
        self, prompt: str, path: Path, *, width: int, height: int, seed: int, steps: int
    ) -> MediaResult:
        if width in self.fail_widths:
            raise BackendError(f"no image model for width {width}")
        return super().generate_image(
            prompt, path, width=width, height=height, seed=seed, steps=steps
        )


@contextmanager
def fake_ollama(mode: str = "ok", delay_s: float = 2.0) -> Iterator[FakeOllama]:
    """A running ``FakeOllama``."""
    with FakeOllama(mode, delay_s) as server:
        yield server
