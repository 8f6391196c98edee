"""A real OTLP/HTTP trace receiver on 127.0.0.1 for the tests: decodes what it is sent.

It speaks the protocol the way a collector does: ``POST /v1/traces`` with an
``application/x-protobuf`` body (gzip when ``Content-Encoding`` says so), decoded
with ``opentelemetry-proto`` into an ``ExportTraceServiceRequest``, answered with
an ``ExportTraceServiceResponse``. Modes: ``ok``; ``error`` (500, which the
OpenTelemetry exporter does not retry); ``slow`` (holds each answer until
``release()`` or ``hold_s``, so an export runs into its deadline).
"""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass
class Received:
    """One request as it arrived: its headers, raw body and the decoded message."""

    path: str
    headers: dict[str, str]
    body: bytes
    request: ExportTraceServiceRequest = field(default_factory=ExportTraceServiceRequest)


class OtlpReceiver:
    """An OTLP/HTTP receiver in a thread; ``endpoint`` is its ``/v1/traces`` URL."""

    def __init__(self, mode: str = "ok", hold_s: float = 30.0) -> None:
        self.mode = mode
        self.hold_s = hold_s
        self.received: list[Received] = []
        self.arrived = threading.Condition()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                message = ExportTraceServiceRequest()
                message.ParseFromString(body)
                receiver._note(self, body, message)  # noted on arrival, answered below
                if receiver.mode == "slow":
                    receiver._release.wait(receiver.hold_s)
                if receiver.mode == "error":
                    self._answer(500, b"collector broken", "text/plain")
                    return
                self._answer(
                    200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf"
                )

            def _answer(self, status: int, data: bytes, kind: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the exporter gave up waiting and closed
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}/v1/traces"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _note(
        self, handler: BaseHTTPRequestHandler, body: bytes, message: ExportTraceServiceRequest
    ) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        received = Received(handler.path, headers, body, message)
        with self.arrived:
            self.received.append(received)
            self.arrived.notify_all()

    def wait_for(self, requests: int, timeout: float = 30.0) -> list[Received]:
        """Block until ``requests`` requests arrived (or the timeout); returns them all."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= requests, timeout)
            return list(self.received)

    def spans(self) -> list[Any]:
        """Every span received, in arrival order."""
        return [
            span
            for received in self.received
            for resource in received.request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def release(self) -> None:
        """Let held (slow) answers go."""
        self._release.set()

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def otlp_receiver(mode: str = "ok", hold_s: float = 30.0) -> Iterator[OtlpReceiver]:
    """A running receiver for the ``with`` block."""
    receiver = OtlpReceiver(mode, hold_s).start()
    try:
        yield receiver
    finally:
        receiver.stop()


def closed_port_endpoint() -> str:
    """A ``/v1/traces`` URL on 127.0.0.1 where nothing listens (a collector that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/traces"
