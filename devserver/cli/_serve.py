"""Serving the app: uvicorn (asyncio, epoll) in front of the app's ASGI face (``_asgi``).

Why this server model (docs/architecture.md): live-feed streams are
coroutines on the event loop, so many open streams do not each pin a
thread; views run on a bounded pool of daemon threads; the event loop uses
epoll, so the number of descriptors never meets a ``select()`` ceiling; and
store connections come from the store's own bounded pool. uvicorn runs
several processes with ``--workers`` (the scale-out issue builds on it).

Shutdown on SIGINT or SIGTERM, in this order: new runs are refused (503),
runs in flight finish (or, after the timeout, are recorded as ``error``),
open streams end, the finaliser's queue is drained into the store, then the
server stops listening and closes its connections within a second.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shlex
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType

import uvicorn
from flask import Flask

from .._asgi import AsgiApp
from .._malloc import fix_mmap_threshold
from .._settings import Settings
from .._state import get_state
from ..pipeline import warm_up_language

logger = logging.getLogger("devserver")

#: How long the server waits for connections to finish once every run is recorded.
GRACEFUL_S = 0.5


class HttpServer:
    """uvicorn serving ``app`` on a socket bound when this is made (so its port is known).

    Raises:
        OSError: the address cannot be bound (e.g. the port is taken).
    """

    def __init__(
        self,
        app: Flask,
        host: str,
        port: int,
        threads: int,
        listening: socket.socket | None = None,
    ) -> None:
        self.app = app
        self.asgi = AsgiApp(app, threads)
        self.socket = listening if listening is not None else listen(host, port)
        self.host, self.port = self.socket.getsockname()[:2]
        config = uvicorn.Config(
            self.asgi,
            lifespan="off",
            http="h11",
            ws="none",
            loop="asyncio",
            log_config=None,  # the app's logging stays as it is
            log_level="warning",
            access_log=False,
            server_header=False,
            # Idle keep-alive connections live this long (uvicorn's default is 5 s): a
            # tablet that posts a run every few seconds keeps its connection.
            timeout_keep_alive=15,
        )
        self.server = uvicorn.Server(config)

    def run(self) -> None:
        """Serve until ``stop`` (blocks; call it in a thread of its own)."""
        self.server.run(sockets=[self.socket])

    def stop(self, thread: threading.Thread) -> None:
        """Stop listening, give open answers ``GRACEFUL_S`` to finish, then close every
        connection; returns when ``thread`` (the one in ``run``) has ended or a second later."""
        self.server.should_exit = True
        thread.join(GRACEFUL_S)
        self.server.force_exit = True  # cut what is still open: every run is recorded
        thread.join(1.0)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0 picks a free port).

    Raises:
        OSError: the address cannot be bound (e.g. the port is taken).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.create_server((host, port), family=family, backlog=2048)
    # Accepted connections inherit it: a response goes out as its headers and then its
    # body, and without it the body waits for the client's delayed ACK (about 40 ms a
    # request, measured with the research API bench).
    listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listening


def make_server(
    app: Flask,
    host: str,
    port: int,
    threads: int | None = None,
    listening: socket.socket | None = None,
) -> HttpServer:
    """A server for ``app`` bound to ``host``:``port`` (0 picks a free port).

    Args:
        threads: views running at once; by default enough for every run slot to
            have a waiting request plus as many again for readers (streams of
            the live feed need no thread).
        listening: a socket already listening (a worker's, inherited from
            ``serve --workers``); ``host`` and ``port`` are then not bound again.
    """
    state = get_state(app)
    return HttpServer(app, host, port, threads or max(16, 2 * state.runs.capacity), listening)


def server_url(server: HttpServer) -> str:
    """The URL the server answers on."""
    return socket_url(server.socket)


def socket_url(listening: socket.socket) -> str:
    """The URL a listening socket answers on."""
    host, port = listening.getsockname()[:2]
    host = f"[{host}]" if ":" in str(host) else str(host)
    return f"http://{host}:{port}/"


def run_until_stopped(
    app: Flask,
    server: HttpServer,
    stop: threading.Event,
    *,
    echo: Callable[[str], None] = print,
) -> bool:
    """Serve until ``stop`` is set, then shut down cleanly (see the module docstring).

    Returns:
        True when every run finished by itself and the finaliser drained.
    """
    state = get_state(app)
    loop = threading.Thread(target=server.run, name="devserver-http", daemon=True)
    loop.start()
    try:
        while not stop.wait(0.5) and loop.is_alive():
            pass
    finally:
        active = state.runs.active()
        echo(f"Shutting down: {active} run(s) in flight, finishing them first …")
        clean = state.close()
        server.stop(loop)
        server.asgi.close()
        with contextlib.suppress(OSError):
            server.socket.close()
        report = state.shutdown
        echo(f"Stopped: {report.message() if report is not None else 'every run is recorded'}.")
    return clean


def _raise_descriptor_limit() -> None:
    """Let the process open as many descriptors as the system allows it (each client is one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def research_hint(settings: Settings, url: str) -> str:
    """A command line that lists runs with the research token (header only, never in the URL)."""
    if settings.research_token_file is not None:
        token = f"$(cat {shlex.quote(str(settings.research_token_file))})"
    else:
        token = "$DEVSERVER_RESEARCH_TOKEN"
    return f'curl -H "Authorization: Bearer {token}" {url}api/runs'


def print_banner(settings: Settings, url: str, workers: int = 1) -> None:
    """What ``serve`` prints at start: where it listens, and how to reach the research API."""
    processes = f"   processes: {workers}" if workers > 1 else ""
    print(f"devserver listening on {url}", flush=True)
    print(f"  backend: {settings.backend}   data dir: {settings.data_dir}{processes}", flush=True)
    if settings.research_token_file is not None:
        print(f"  research token: in {settings.research_token_file}", flush=True)
    else:
        print("  research token: from DEVSERVER_RESEARCH_TOKEN", flush=True)
    print(f"  research API: {research_hint(settings, url)}", flush=True)
    print("  stop with Ctrl+C (runs in flight are finished and recorded)", flush=True)


def serve(
    app: Flask,
    host: str,
    port: int,
    threads: int | None = None,
    listening: socket.socket | None = None,
) -> bool:
    """Serve ``app`` until SIGINT or SIGTERM (call from the main thread).

    Args:
        listening: a worker's inherited socket (``serve --workers``): the
            worker says only that it serves; the supervisor printed the banner.
    """
    # Before the view threads exist: freed large buffers must leave the arenas (_malloc).
    fix_mmap_threshold()
    state = get_state(app)
    _raise_descriptor_limit()
    # The language model loads in the background while the server starts listening.
    threading.Thread(target=warm_up_language, name="devserver-warm-up", daemon=True).start()
    server = make_server(app, host, port, threads, listening)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            logger.warning("already shutting down; waiting for runs to be recorded")
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    if listening is None:
        print_banner(state.settings, server_url(server))
    else:
        print(f"devserver worker {os.getpid()} serving", flush=True)
    try:
        return run_until_stopped(app, server, stop, echo=lambda text: print(text, flush=True))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
