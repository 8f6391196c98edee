"""Many open live-feed streams through a real server hold no thread each (DESIGN.md §4).

The server runs views on a small pool of threads and the streams on its
event loop: 300 streams of a run that goes on for as long as the test wants
must not add 300 threads, must not stop other requests from being answered,
and must each get every event and the end once the run ends.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devserver import get_state
from execution_history import ExecutionTracker, ItemType

from .test_feed import Served, serve_app

STREAMS = 300


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve_app(
        tmp_path_factory.mktemp("many-streams"),
        {"FEED_MAX_SUBSCRIBERS": STREAMS + 10, "FEED_HEARTBEAT_S": 60.0},
    )


def _read_until(sock: socket.socket, marker: bytes, timeout_s: float) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_three_hundred_open_streams_add_no_threads_and_all_get_the_end(
    many: Served, tmp_path: Path
) -> None:
    state = get_state(many.app)
    tracker = ExecutionTracker("stillepost", safety_level="kids")
    tracker.start()
    state.registry.on_start(tracker.run_log)  # a live run the test ends when it wants
    host, port = urlsplit(many.base).hostname, urlsplit(many.base).port
    request = f"GET /api/runs/{tracker.run_id}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    threads_before = threading.active_count()
    sockets = []
    try:
        for _ in range(STREAMS):
            sock = socket.create_connection((host, port), timeout=30)
            sock.sendall(request)
            sockets.append(sock)
        for sock in sockets:  # every stream is open: headers and the retry line arrived
            assert b"retry: " in _read_until(sock, b"retry: ", 30)
        assert state.feed.subscribers == STREAMS
        threads_during = threading.active_count()
        # While they are open, other requests are answered at once.
        status, answer = many.json(
            "POST", "/api/runs?wait=true", {"config": "dada", "input": "Hund"}
        )
        assert status == 200 and answer["status"] == "success"
        with tracker.stage(1):
            tracker.log(ItemType.USER_INPUT_TEXT, "Ein Hund")
        tracker.finalize()
        for sock in sockets:
            data = _read_until(sock, b"event: end", 60)
            assert b"event: user_input_text" in data and b"event: end" in data
    finally:
        for sock in sockets:
            sock.close()
        state.registry.on_stored(tracker.run_log)
    # Streams are coroutines: the whole process (server, test, browserless clients) has
    # far fewer threads than open streams, and about as many as before they opened; a
    # server with a thread per stream would have at least STREAMS.
    assert threads_during < STREAMS // 3, threads_during
    assert threads_during - threads_before < 20, (threads_before, threads_during)
    deadline = time.monotonic() + 10
    while state.feed.subscribers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.feed.subscribers == 0
