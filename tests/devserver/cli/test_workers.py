"""``devserver serve --workers 2`` end to end: runs started through one worker are read,
followed live and erased through the other, and a killed worker's run is ``incomplete``.

Real processes on a real port, on SQLite and on a real PostgreSQL server the
tests start (the feed across processes then wakes by ``NOTIFY``), the slow fake
Ollama for runs that take seconds, and ``kill -9`` for the killed worker.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..fakes import FakeOllama, fake_ollama
from ..faults import AUTH, Served, call_json, cli, server_env, wait_until
from ..sse import EventStream, assert_matches_record, sequences
from ..workers import call_on, connection_to, worker_of

#: A Stille Post run: eight translations of 0.15 s each, so it runs for about 1.5 s.
STEP_DELAY_S = 0.15


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with fake_ollama("slow", delay_s=STEP_DELAY_S) as fake:
        yield fake


@pytest.fixture(params=["sqlite", "postgres"])
def workers(request: pytest.FixtureRequest, tmp_path: Path, ollama: FakeOllama) -> Iterator[Served]:
    """``serve --workers 2`` on the SQLite default, or on a fresh PostgreSQL database."""
    env = server_env(
        tmp_path / "data",
        tmp_path / "tmp",
        DEVSERVER_BACKEND="ollama",
        OLLAMA_HOST=ollama.url,
        DEVSERVER_SHUTDOWN_TIMEOUT_S="5",
    )
    if request.param == "postgres":
        env["DEVSERVER_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    with Served(env, args=("--workers", "2")) as served:
        served.env = env  # type: ignore[attr-defined]
        yield served
        served.stop()


def start_run(conn: Any, text: str, user_id: str = "kind-1") -> str:
    status, answer = call_on(
        conn,
        "POST",
        "/api/runs",
        {"config": "stillepost", "input": text, "user_id": user_id},
    )
    assert status == 202, answer
    run_id: str = answer["run_id"]
    return run_id


def record_via(base: str, worker: int, run_id: str) -> dict[str, Any]:
    conn, _ = connection_to(base, worker)
    try:
        status, record = call_on(conn, "GET", f"/api/runs/{run_id}")
        assert status == 200, record
        return dict(record)
    finally:
        conn.close()


@pytest.mark.parametrize(("runs_on", "followed_on"), [(0, 1), (1, 0)])
def test_a_run_started_on_one_worker_is_followed_live_and_read_on_the_other(
    workers: Served, runs_on: int, followed_on: int
) -> None:
    first, _ = connection_to(workers.base, runs_on)
    run_id = start_run(first, "Ein Hund spielt im Garten")
    first.close()
    other, _ = connection_to(workers.base, followed_on)
    # While it runs: the other worker answers its progress as running.
    status, progress = call_on(other, "GET", f"/api/runs/{run_id}/progress")
    assert status == 200, progress
    assert progress["status"] == "running"
    stream = EventStream(workers, run_id, conn=other)
    events = stream.until_end()
    stream.close()
    assert events[-1].event == "end"
    assert events[-1].json["status"] == "success"
    numbers = sequences(events)
    assert numbers == list(range(1, len(numbers) + 1))  # every item once, in order
    record = record_via(workers.base, followed_on, run_id)
    assert record["status"] == "success"
    assert_matches_record(events, record)
    # the same record from the worker that ran it
    assert record_via(workers.base, runs_on, run_id) == record


@pytest.mark.parametrize(("first_on", "then_on"), [(1, 0), (0, 1)])
def test_a_stream_resumes_with_last_event_id_on_another_worker(
    workers: Served, first_on: int, then_on: int
) -> None:
    """A run of worker 0, half read through one worker, the rest after a reconnection to
    the other (``Last-Event-ID``): every item exactly once, in order."""
    starter, _ = connection_to(workers.base, 0)
    run_id = start_run(starter, "Ein Pferd galoppiert")
    starter.close()
    other, _ = connection_to(workers.base, first_on)
    stream = EventStream(workers, run_id, conn=other)
    before = []
    for event in stream:
        before.append(event)
        if event.event == "end" or len(before) == 4:
            break
    stream.close()  # the client goes away mid-run
    assert before[-1].event != "end", "the run ended before the reconnection"
    then, _ = connection_to(workers.base, then_on)
    resumed = EventStream(workers, run_id, conn=then, last_id=before[-1].id)
    after = resumed.until_end()
    resumed.close()
    record = record_via(workers.base, 1, run_id)
    assert_matches_record(before + after, record)


def test_a_killed_workers_run_is_incomplete_from_the_other_and_a_new_worker_starts(
    workers: Served,
) -> None:
    first, pid = connection_to(workers.base, 0)
    run_id = start_run(first, "Die Katze schläft auf dem Sofa")
    other, _ = connection_to(workers.base, 1)

    def some_items() -> bool:
        status, record = call_on(other, "GET", f"/api/runs/{run_id}")
        return status == 200 and record["status"] == "running" and len(record["items"]) >= 3

    wait_until(some_items, 30, "the other worker never saw the run's first items")
    first.close()
    os.kill(pid, signal.SIGKILL)

    def incomplete() -> dict[str, Any] | None:
        status, record = call_on(other, "GET", f"/api/runs/{run_id}")
        assert status == 200, record
        return record if record["status"] == "incomplete" else None

    record = wait_until(incomplete, 30, "the killed worker's run never became incomplete")
    other.close()
    assert len(record["items"]) >= 3  # what the journal held is kept

    # A new worker 0 starts and recovers the run into the store: every worker reads it there.
    def replaced() -> int | None:
        try:
            conn, new_pid = connection_to(workers.base, 0, tries=20)
        except AssertionError:  # still starting: worker 1 takes every connection
            return None
        conn.close()
        return new_pid if new_pid != pid else None

    wait_until(replaced, 30, "no new worker 0 started")

    def stored() -> bool:
        # the research listing reads the store only
        status, listing = call_json(
            workers.base, "GET", "/api/runs?status=incomplete", headers=AUTH
        )
        assert status == 200, listing
        return run_id in {row["run_id"] for row in listing["runs"]}

    wait_until(stored, 30, "the recovered run never reached the store")
    assert record_via(workers.base, 0, run_id) == record_via(workers.base, 1, run_id)
    assert record_via(workers.base, 0, run_id)["status"] == "incomplete"


def test_a_person_is_erased_across_both_workers(workers: Served) -> None:
    runs = []
    for worker in (0, 1):
        conn, _ = connection_to(workers.base, worker)
        runs.append(start_run(conn, f"Ein Vogel singt {worker}", user_id="kind-to-forget"))
        conn.close()
    kept_conn, _ = connection_to(workers.base, 1)
    kept = start_run(kept_conn, "Ein Fisch schwimmt", user_id="kind-to-keep")
    kept_conn.close()

    def all_stored() -> bool:
        for run_id in [*runs, kept]:
            status, page = call_json(workers.base, "GET", f"/api/runs/{run_id}")
            if status != 200 or page["status"] == "running":
                return False
        return True

    wait_until(all_stored, 60, "the runs never ended")
    result = cli(workers.env, "forget", "--user-id", "kind-to-forget", "--yes")  # type: ignore[attr-defined]
    assert result.returncode == 0, result.stderr
    for worker in (0, 1):
        conn, _ = connection_to(workers.base, worker)
        for run_id in runs:
            status, answer = call_on(conn, "GET", f"/api/runs/{run_id}")
            assert status == 404, (worker, run_id, answer)
        status, answer = call_on(conn, "GET", f"/api/runs/{kept}")
        assert status == 200, answer
        status, listing = call_on(conn, "GET", "/api/runs", headers=AUTH)
        assert status == 200, listing
        listed = {row["run_id"] for row in listing["runs"]}
        assert kept in listed and not listed & set(runs)
        conn.close()


def test_every_worker_answers_health_with_its_own_index(workers: Served) -> None:
    seen = {}
    for worker in (0, 1):
        conn, pid = connection_to(workers.base, worker)
        assert worker_of(conn) == (worker, pid)
        seen[worker] = pid
        conn.close()
    assert seen[0] != seen[1]


def test_on_postgresql_the_feed_across_processes_is_woken_by_notify_not_by_polling(
    tmp_path: Path, ollama: FakeOllama, postgres_url: str
) -> None:
    """With the other-process poll at 60 s, only NOTIFY can bring the events while the
    run goes on: they arrive before the run ends, and the end arrives within seconds."""
    env = server_env(
        tmp_path / "data",
        tmp_path / "tmp",
        DEVSERVER_BACKEND="ollama",
        OLLAMA_HOST=ollama.url,
        DEVSERVER_DATABASE_URL=postgres_url,
        DEVSERVER_FEED_OTHER_POLL_S="60",
    )
    with Served(env, args=("--workers", "2")) as served:
        first, _ = connection_to(served.base, 0)
        run_id = start_run(first, "Der Mond scheint hell")
        first.close()
        other, _ = connection_to(served.base, 1)
        stream = EventStream(served, run_id, conn=other)
        arrivals = []
        for event in stream:
            arrivals.append((event.event, time.monotonic()))
            if event.event == "end":
                break
        stream.close()
        record = record_via(served.base, 0, run_id)
        assert record["status"] == "success"
        # the items came one by one while the run went on (about 1.5 s), not all at the end
        items = [at for name, at in arrivals if name != "end"]
        assert len(items) == len(record["items"])
        assert items[-1] - items[0] > 0.5
        # and the end did not wait for a poll (60 s) or the end's own deadline (30 s)
        assert arrivals[-1][1] - items[-1] < 20
        assert served.stop() == 0
