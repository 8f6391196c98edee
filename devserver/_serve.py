"""Serving the app under waitress, and shutting down without losing a run.

waitress is a production WSGI server: a pool of threads for requests (so many
``?wait=true`` requests and long-lived streams can be open at once) and an
I/O loop that writes each chunk of a streamed response as it is produced
(its ``send_bytes`` is 1 by default, so Server-Sent Events are not held back).

Shutdown on SIGINT or SIGTERM, in this order: new runs are refused (503),
runs in flight finish (or, after the timeout, are recorded as ``error``), the
finaliser's queue is drained into the store, the request threads answer, the
I/O loop writes the last bytes, and the listening socket closes.
"""

from __future__ import annotations

import logging
import shlex
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from flask import Flask
from waitress import create_server
from waitress.server import BaseWSGIServer, MultiSocketServer

from ._api_events import get_hub
from ._limits import WAITRESS_MARGIN_BYTES
from ._malloc import fix_mmap_threshold
from ._settings import Settings
from ._state import get_state

logger = logging.getLogger("devserver")


def make_server(
    app: Flask, host: str, port: int, threads: int | None = None
) -> BaseWSGIServer | MultiSocketServer:
    """A waitress server for ``app`` bound to ``host``:``port`` (0 picks a free port).

    Args:
        threads: request threads; by default enough for every run slot to have
            a waiting request plus as many again for readers, plus one for
            each live-feed stream allowed (``FEED_MAX_SUBSCRIBERS``): a stream
            holds its thread for as long as its run lasts.
    """
    state = get_state(app)
    streams = get_hub(app).settings.max_subscribers
    threads = threads or max(16, 2 * state.runs.capacity) + streams
    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        connection_limit=max(100, 4 * threads),
        ident="devserver",
        clear_untrusted_proxy_headers=True,
        # A declared body beyond the cap is refused before it is read (see _limits).
        max_request_body_size=state.settings.max_body_bytes + WAITRESS_MARGIN_BYTES,
        # poll(), not select(): select() cannot watch a descriptor numbered 1024 or
        # more, and a server with many threads and clients passes that.
        asyncore_use_poll=True,
    )


def server_url(server: BaseWSGIServer | MultiSocketServer) -> str:
    """The URL the server answers on."""
    host = str(getattr(server, "effective_host", "127.0.0.1"))
    port = getattr(server, "effective_port", None)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/"


def _flush(server: BaseWSGIServer | MultiSocketServer, timeout_s: float) -> None:
    """Give the I/O loop time to write responses that the request threads have finished."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        channels = list(getattr(server, "active_channels", {}).values())
        if not any(
            getattr(c, "requests", None) or getattr(c, "total_outbufs_len", 0) for c in channels
        ):
            return
        time.sleep(0.05)


def run_until_stopped(
    app: Flask,
    server: BaseWSGIServer | MultiSocketServer,
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
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
        _flush(server, 2.0)
        server.close()
        report = state.shutdown
        echo(f"Stopped: {report.message() if report is not None else 'every run is recorded'}.")
    return clean


def research_hint(settings: Settings, url: str) -> str:
    """A command line that lists runs with the research token (header only, never in the URL)."""
    if settings.research_token_file is not None:
        token = f"$(cat {shlex.quote(str(settings.research_token_file))})"
    else:
        token = "$DEVSERVER_RESEARCH_TOKEN"
    return f'curl -H "Authorization: Bearer {token}" {url}api/runs'


def serve(app: Flask, host: str, port: int, threads: int | None = None) -> bool:
    """Serve ``app`` until SIGINT or SIGTERM (call from the main thread)."""
    # Before the request threads exist: freed large buffers must leave the arenas (_malloc).
    fix_mmap_threshold()
    state = get_state(app)
    server = make_server(app, host, port, threads)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            logger.warning("already shutting down; waiting for runs to be recorded")
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    settings = state.settings
    print(f"devserver listening on {server_url(server)}", flush=True)
    print(f"  backend: {settings.backend}   data dir: {settings.data_dir}", flush=True)
    if settings.research_token_file is not None:
        print(f"  research token: in {settings.research_token_file}", flush=True)
    else:
        print("  research token: from DEVSERVER_RESEARCH_TOKEN", flush=True)
    print(f"  research API: {research_hint(settings, server_url(server))}", flush=True)
    print("  stop with Ctrl+C (runs in flight are finished and recorded)", flush=True)
    try:
        return run_until_stopped(app, server, stop, echo=lambda text: print(text, flush=True))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
