"""Batch exports run on the dedicated export threads, relay every chunk, and stop when told."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import devserver.research._batch
from devserver._export_pool import THREAD_NAME, ExportPool, ExportPoolClosed
from devserver._malloc import release_free_memory

from .research.test_research_batch import download
from .research_support import live_server, seed_runs

ROOT = Path(__file__).resolve().parents[2]


def _export_threads(
    app: Flask, monkeypatch: pytest.MonkeyPatch, query: str = "format=json"
) -> set[str]:
    """The names of the threads that exported each run of a batch through a real server."""
    seed_runs(app, 3, with_media=False)
    names: set[str] = set()
    real_export = devserver.research._batch.exports.export

    def watched(*args: Any, **kwargs: Any) -> None:
        names.add(threading.current_thread().name)
        real_export(*args, **kwargs)

    monkeypatch.setattr(devserver.research._batch.exports, "export", watched)
    with live_server(app) as base:
        status, _, _ = download(app, base, query)
    assert status == 200
    return names


def test_a_batch_export_runs_on_an_export_thread_not_a_request_thread(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cause of the growing memory: exports spread over every request thread's arena."""
    names = _export_threads(app, monkeypatch)
    assert names and all(name.startswith(THREAD_NAME) for name in names), names


def test_export_threads_0_exports_on_the_request_thread(
    app_config: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The earlier behaviour stays available (and measurable): ``DEVSERVER_EXPORT_THREADS=0``."""
    from devserver import create_app

    app = create_app({**app_config, "EXPORT_THREADS": 0})
    try:
        names = _export_threads(app, monkeypatch)
    finally:
        app.extensions["devserver"].close()
    assert names and not any(name.startswith(THREAD_NAME) for name in names), names


def _numbers(count: int, produced: list[str], done: threading.Event) -> Iterator[bytes]:
    try:
        for n in range(count):
            produced.append(threading.current_thread().name)
            yield str(n).encode()
    finally:
        done.set()  # a closed generator runs this: the export's cleanup is not skipped


def test_every_chunk_arrives_in_order_produced_on_the_pool() -> None:
    pool = ExportPool(2)
    produced: list[str] = []
    done = threading.Event()
    try:
        assert list(pool.stream(_numbers(50, produced, done))) == [
            str(n).encode() for n in range(50)
        ]
    finally:
        pool.close()
    assert done.is_set()
    assert {name.rsplit("-", 1)[0] for name in produced} == {THREAD_NAME}


def test_an_error_of_the_export_is_raised_to_the_reader() -> None:
    def broken() -> Iterator[bytes]:
        yield b"a"
        raise ValueError("broken export")

    pool = ExportPool(1)
    try:
        with pytest.raises(ValueError, match="broken export"):
            list(pool.stream(broken()))
    finally:
        pool.close()


def test_a_reader_that_stops_stops_the_export_and_closes_it() -> None:
    pool = ExportPool(1)
    produced: list[str] = []
    done = threading.Event()
    try:
        relay = pool.stream(_numbers(10_000, produced, done))
        assert next(relay) == b"0"
        relay.close()  # what the server does when the client goes away
        assert done.wait(5)
        stopped_at = len(produced)
        assert stopped_at < 10_000
        time.sleep(0.2)
        assert len(produced) == stopped_at
    finally:
        pool.close()


def test_closing_the_pool_stops_a_running_export_and_refuses_new_ones() -> None:
    pool = ExportPool(1)
    done = threading.Event()
    relay = pool.stream(_numbers(10_000, [], done))
    assert next(relay) == b"0"
    pool.close()
    assert done.wait(5)
    with pytest.raises(ExportPoolClosed):
        list(relay)
    with pytest.raises(ExportPoolClosed):
        next(pool.stream(iter([b"x"])))


def test_exports_beyond_the_threads_wait_and_then_run() -> None:
    """With one thread, a second export waits for the first instead of failing."""
    pool = ExportPool(1)
    try:
        first = pool.stream(iter([b"a", b"b"]))
        second = pool.stream(iter([b"c"]))
        assert next(first) == b"a"
        results: list[bytes] = []
        reader = threading.Thread(target=lambda: results.extend(second))
        reader.start()
        assert list(first) == [b"b"]
        reader.join(5)
        assert results == [b"c"]
    finally:
        pool.close()


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"),
    reason="malloc_trim is glibc's",
)
def test_the_allocator_controls_are_found_on_glibc() -> None:
    """malloc_trim and mallopt are found and called (elsewhere both are no-ops saying so).

    In a child process: pinning the threshold here would change the allocator of
    every test after this one.
    """
    assert release_free_memory() is True
    probe = (
        "import os; from devserver._malloc import fix_mmap_threshold as f; a = f(); "
        "os.environ['MALLOC_MMAP_THRESHOLD_'] = '65536'; print(a, f())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    # pinned; then the operator's own MALLOC_MMAP_THRESHOLD_ wins
    assert answer.stdout.split() == ["True", "False"], answer.stderr
