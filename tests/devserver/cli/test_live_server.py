"""Through a real server on a free port: runs, concurrency, and SIGTERM losing nothing."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask

from devserver.cli._serve import make_server, run_until_stopped, server_url
from execution_history import SQLiteRecordStore

from ..checks import (
    assert_complete_has_no_iteration,
    assert_outputs_share_loop_iteration,
    assert_stille_post_journey,
    assert_transitions_exactly_at_stage_changes,
    items_of,
    start_serve,
)


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request on its own connection."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def call_json(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, _, data = call(base, method, path, body)
    return status, json.loads(data)


@pytest.fixture
def live_server(make_app: Any) -> Iterator[tuple[Flask, str]]:
    """The app served in a thread, on 127.0.0.1 and a free port."""
    app = make_app()
    server = make_server(app, "127.0.0.1", 0)
    stop = threading.Event()
    thread = threading.Thread(
        target=run_until_stopped,
        args=(app, server, stop),
        kwargs={"echo": lambda text: None},
        daemon=True,
    )
    thread.start()
    yield app, server_url(server)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()


def test_stille_post_through_a_real_server(live_server: tuple[Flask, str]) -> None:
    _, base = live_server
    status, answer = call_json(
        base,
        "POST",
        "/api/runs?wait=true",
        {"config": "stillepost", "input": "Ein Hund spielt im Garten"},
    )
    assert status == 200 and answer["status"] == "success"
    status, record = call_json(base, "GET", f"/api/runs/{answer['run_id']}")
    assert status == 200
    assert_stille_post_journey(record)
    assert_transitions_exactly_at_stage_changes(record)
    assert_outputs_share_loop_iteration(record, outputs=1)
    assert_complete_has_no_iteration(record)
    status, headers, data = call(base, "GET", answer["summary"]["outputs"][0]["url"])
    assert status == 200 and headers["Content-Type"] == "image/png" and data[:4] == b"\x89PNG"


def test_partial_and_blocked_through_a_real_server(live_server: tuple[Flask, str]) -> None:
    _, base = live_server
    _, partial = call_json(
        base, "POST", "/api/runs?wait=true", {"config": "mixed", "input": "Ein Hund"}
    )
    assert partial["status"] == "partial"
    _, blocked = call_json(
        base, "POST", "/api/runs?wait=true", {"config": "stillepost", "input": "S1eg H3il"}
    )
    assert blocked["status"] == "blocked"
    _, record = call_json(base, "GET", f"/api/runs/{blocked['run_id']}")
    assert not [i for i in record["items"] if i["stage"] == 2]
    status, error = call_json(base, "PUT", "/api/configs")
    assert status == 405 and error["error"]["code"] == "method_not_allowed"


def test_twenty_concurrent_runs_complete_with_their_own_items(
    live_server: tuple[Flask, str],
) -> None:
    app, base = live_server
    texts = [f"Ein Hund spielt im Garten {n}" for n in range(20)]

    def one(text: str) -> tuple[str, dict[str, Any]]:
        status, answer = call_json(
            base,
            "POST",
            "/api/runs?wait=true",
            {"config": "stillepost", "input": text, "user_id": text},
        )
        assert status == 200, answer
        return text, answer

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, texts))
    assert len({a["run_id"] for _, a in answers}) == 20
    for text, answer in answers:
        assert answer["status"] == "success"
        _, record = call_json(base, "GET", f"/api/runs/{answer['run_id']}")
        number = text.rsplit(" ", 1)[1]
        (user_input,) = items_of(record, "user_input_text")
        assert user_input["content"] == text
        # The number passes every translation unchanged: each run carries only its own words.
        for item in items_of(record, "interception_iteration"):
            assert item["content"].endswith(" " + number), item["content"]
        (image,) = items_of(record, "output_image")
        assert image["content"].endswith(" " + number)
        assert_stille_post_journey(record)
        assert record["user_pseudonym"] == app.extensions["devserver"].pseudonymiser.user(text)
        media = app.extensions["devserver"].runs.media_dir(answer["run_id"])
        assert sorted(p.name for p in media.iterdir()) == ["output_1_picture.png"]


def test_sigterm_during_runs_loses_no_record(tmp_path: Path) -> None:
    """A real ``devserver serve`` process: every run it accepted is stored after SIGTERM."""
    data_dir = tmp_path / "instance"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DEVSERVER_")},
        "DEVSERVER_DATA_DIR": str(data_dir),
        "DEVSERVER_WORKERS": "1",
    }
    process = start_serve(env)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("devserver listening on http://127.0.0.1:"), first
        base = first.split()[-1].rstrip("/")
        # Runs queued on one worker (answers come at once, without ?wait),
        # then one client that waits: SIGTERM arrives while runs are in flight.
        results = [
            call_json(
                base, "POST", "/api/runs", {"config": "image_and_sound", "input": f"Hund {n}"}
            )
            for n in range(23)
        ]
        waited: list[tuple[int, Any]] = []

        def wait_for_one() -> None:
            body = {"config": "image_and_sound", "input": "Ein roter Hund"}
            waited.append(call_json(base, "POST", "/api/runs?wait=true", body))

        waiter = threading.Thread(target=wait_for_one)
        waiter.start()
        # SIGTERM only once the waiting request's run is accepted (queued behind the others):
        # a signal that came first would rightly refuse it with 503.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            _, health = call_json(base, "GET", "/api/health")
            stored = SQLiteRecordStore(data_dir / "history.sqlite3")
            try:
                accepted_so_far = health["runs_in_flight"] + stored.count()
            finally:
                stored.close()
            if accepted_so_far >= 24:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        waiter.join(60)
        results += waited
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    in_flight = int(output.split("Shutting down: ")[1].split()[0])
    assert in_flight >= 1, output  # SIGTERM really arrived during runs
    accepted = [answer["run_id"] for status, answer in results if status in (200, 202)]
    assert len(accepted) == 24, results
    assert waited and waited[0][0] == 200  # the waiting client got its answer
    store = SQLiteRecordStore(data_dir / "history.sqlite3")
    try:
        for run_id in accepted:
            record = store.load(run_id)
            assert record is not None and record.status == "success"
        assert store.count() == 24
    finally:
        store.close()
    assert not list((data_dir / "journal").rglob("*.jsonl"))
