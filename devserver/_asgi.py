"""The Flask app as an ASGI application: views on a bounded pool of threads, live-feed
streams on the event loop.

Every request runs the Flask (WSGI) app on one of ``threads`` daemon
threads, so a view may block (``?wait=true``, a batch export) without
holding up the event loop. What the view answers goes back to the loop
through a small bounded queue, so a slow client slows its own view and
nothing else. When the answer is a live-feed ``Subscription``, the thread is
given back at once and the loop drives the stream itself
(``Subscription.stream``): an open stream costs no thread however long its
run lasts.

A client that goes away is noticed on the loop; the view's next write then
raises ``ClientDisconnected`` in its thread (as WSGI servers do), so a large
download stops being produced for nobody.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from flask import Flask

from ._daemon_pool import DaemonPool
from .live import Subscription

logger = logging.getLogger("devserver")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Messages a view may have produced that the loop has not sent yet.
_QUEUED_MESSAGES = 8


class ClientDisconnected(OSError):
    """The client went away while its answer was being written."""


class AsgiApp:
    """``app`` served through ASGI (see the module docstring).

    Args:
        app: the Flask app.
        threads: views running at once; more requests wait for a thread.
    """

    def __init__(self, app: Flask, threads: int) -> None:
        self.app = app
        self.pool = DaemonPool(threads, "devserver-http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await _Exchange(self, scope, receive, send).run()
        # websockets are not offered: the server is started without them

    def close(self) -> None:
        """Take no more requests (views still running finish on their own)."""
        self.pool.shutdown(wait=False, cancel_futures=True)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class _Exchange:
    """One request and its answer, between the event loop and a view's thread."""

    def __init__(self, server: AsgiApp, scope: Scope, receive: Receive, send: Send) -> None:
        self.server = server
        self.scope = scope
        self.receive = receive
        self.send = send
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Message | Subscription] = asyncio.Queue(_QUEUED_MESSAGES)
        self.gone = asyncio.Event()
        self.client_gone = False  # read by the view's thread
        self.body_done = False
        self.watching = False

    async def run(self) -> None:
        environ = _environ(self.scope, _Body(self))
        try:
            view = asyncio.wrap_future(self.server.pool.submit(self._call_view, environ))
        except RuntimeError:  # the pool is shut: the server is stopping
            await _answer_503(self.send)
            return
        watcher: asyncio.Task[None] | None = None
        started = False
        try:
            while (message := await self._next(view)) is not None:
                if isinstance(message, Subscription):
                    watcher = watcher or self._watch()
                    await self._stream(message)
                    break
                if message["type"] == "http.response.start":
                    started = True
                    headers = message["headers"]
                    closing = any(name == b"connection" for name, _ in headers)
                    if not self.body_done and not closing and _has_body(self.scope):
                        # Answered before the body was read (a 413, say): the connection
                        # closes after the answer instead of reading a body nobody wants.
                        message["headers"] = [*headers, (b"connection", b"close")]
                    watcher = self._watch()
                await self.send(message)
            await view
        except TimeoutError:
            return  # a stream's client stopped reading; the connection is closed
        except ClientDisconnected:
            return
        except Exception:
            logger.exception("a request failed outside the app's own error handling")
            if not started:
                await _answer_500(self.send)
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _next(self, view: asyncio.Future[None]) -> Message | Subscription | None:
        """The view's next message; None once the view has ended and left nothing queued."""
        if not self.queue.empty():
            return self.queue.get_nowait()
        getter: asyncio.Future[Any] = asyncio.ensure_future(self.queue.get())
        waiting: set[asyncio.Future[Any]] = {getter, view}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            message: Message | Subscription = getter.result()
            return message
        getter.cancel()
        return self.queue.get_nowait() if not self.queue.empty() else None

    def _watch(self) -> asyncio.Task[None]:
        """Watch for the client going away (from when the answer starts)."""
        self.watching = True
        return self.loop.create_task(self._wait_for_disconnect())

    async def _wait_for_disconnect(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.client_gone = True
                self.gone.set()
                return

    async def _stream(self, subscription: Subscription) -> None:
        async def send_body(chunk: bytes) -> None:
            await self.send({"type": "http.response.body", "body": chunk, "more_body": True})

        await subscription.stream(send_body, self.gone)
        await self.send({"type": "http.response.body", "body": b""})

    # ------------------------------------------------------------- view's thread

    def _put(self, message: Message | Subscription) -> None:
        """Hand ``message`` to the loop; waits while the loop is behind (the client is slow).

        Raises:
            ClientDisconnected: the client went away.
        """
        if self.client_gone:
            raise ClientDisconnected("the client went away")
        future = asyncio.run_coroutine_threadsafe(self.queue.put(message), self.loop)
        future.result()

    def _call_view(self, environ: dict[str, Any]) -> None:
        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            code = int(status.split(" ", 1)[0])
            encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
            self._put({"type": "http.response.start", "status": code, "headers": encoded})
            return lambda chunk: self._put(_body(chunk, more=True))

        answer: Iterable[bytes] = self.server.app(environ, start_response)
        if isinstance(answer, Subscription):
            self._put(answer)  # the loop streams it; this thread is free
            return
        try:
            for chunk in answer:
                if chunk:
                    self._put(_body(chunk, more=True))
            self._put(_body(b"", more=False))
        except ClientDisconnected:
            pass
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()


def _body(chunk: bytes, *, more: bool) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": more}


async def _answer_503(send: Send) -> None:
    body = b'{"error":{"code":"unavailable","message":"The server is shutting down."}}'
    await _answer(send, 503, body, [(b"retry-after", b"10")])


async def _answer_500(send: Send) -> None:
    body = b'{"error":{"code":"internal_server_error","message":"Something went wrong."}}'
    await _answer(send, 500, body, [])


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    start = [(b"content-type", b"application/json"), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send(_body(body, more=False))


class _Body:
    """``wsgi.input``: the request body, read from the loop as the view asks for it."""

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange
        self._buffer = bytearray()
        self._received = 0
        self._declared = _declared_length(exchange.scope)

    def _more(self) -> bool:
        exchange = self._exchange
        if exchange.body_done or exchange.watching:
            # Once the answer has begun, the loop reads the connection for a disconnect.
            return False
        future = asyncio.run_coroutine_threadsafe(_received(exchange.receive), exchange.loop)
        try:
            message = future.result()
        except concurrent.futures.CancelledError:
            message = {"type": "http.disconnect"}
        if message["type"] == "http.disconnect":
            exchange.body_done = True
            exchange.client_gone = True
            return False
        chunk = message.get("body", b"")
        self._buffer.extend(chunk)
        self._received += len(chunk)
        exchange.body_done = not message.get("more_body", False) or (
            self._declared is not None and self._received >= self._declared
        )
        return True

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self._buffer) < size) and self._more():
            pass
        if size < 0:
            size = len(self._buffer)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readline(self, size: int = -1) -> bytes:
        while b"\n" not in self._buffer and (size < 0 or len(self._buffer) < size):
            if not self._more():
                break
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        if size >= 0:
            end = min(end, size)
        data = bytes(self._buffer[:end])
        del self._buffer[:end]
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        while line := self.readline():
            lines.append(line)
        return lines

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


def _declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, when it declares one that is a number."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _has_body(scope: Scope) -> bool:
    """Whether the request declares a body (a length above 0, or chunks)."""
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.strip() not in (b"0", b""):
            return True
        if name == b"transfer-encoding":
            return True
    return False


async def _received(receive: Receive) -> Message:
    return await receive()


def _environ(scope: Scope, body: _Body) -> dict[str, Any]:
    """The WSGI environ of an ASGI HTTP scope (PEP 3333; strings are latin-1 "bytes")."""
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] or 0),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        # The body ends where the client's does (chunked ones included): werkzeug may read
        # a body without Content-Length, and stops it at MAX_CONTENT_LENGTH.
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ
