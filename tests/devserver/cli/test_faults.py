"""Fault matrix: real faults against a real ``devserver serve`` process and a real file system.

Each case injects a fault the kernel really produces (a full tmpfs, a
read-only bind mount, ``kill -9``, SIGTERM during slow runs, damaged journal
files, values UTF-8 cannot hold) and asserts the fail-safe contract of
DESIGN.md §6: no accepted run is lost (every run answered 202/200 is readable
by its link, then and after a restart), every fallback is counted and visible,
and every message the server prints or answers is true.

Cases that mount need root (CI runs as root); elsewhere they are skipped with
the reason. Mounts are undone in ``finally`` blocks (``faults.tmpfs``,
``faults.read_only``) even when an assertion fails.
"""

from __future__ import annotations

import fcntl
import http.client
import io
import json
import random
import re
import threading
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from devserver._data_dir import last_resort_dirs
from devserver.api._run_body import FIELDS
from execution_history import (
    ExecutionRecord,
    ExecutionTracker,
    ItemType,
    RunLog,
    SQLiteRecordStore,
    build_record,
    new_run_id,
)

from ..fakes import fake_ollama
from ..faults import (
    AUTH,
    ENDED,
    Served,
    call,
    cli,
    encodable,
    fill,
    health,
    need_root,
    read_only,
    server_env,
    strings,
    tmpfs,
    wait_for_end,
    wait_until,
)

#: What the run service answers when the journal cannot write a run (devserver/_runs.py).
REFUSED = "Runs cannot be recorded right now (the server cannot write its data folder)"
EVERY_RUN_RECORDED = "Stopped: every run is recorded."


def held_line(count: int, place: Path | str) -> str:
    """The shutdown line for runs neither the store nor the quarantine took."""
    return (
        f"Stopped: {count} run(s) could not be written to the store or the quarantine "
        f"and were saved to {place}."
    )


def store_outcome(record: dict[str, Any]) -> dict[str, Any]:
    """The store sink's outcome in a record's integrity block."""
    (outcome,) = [s for s in record["integrity"]["sinks"] if s["name"] == "store"]
    return dict(outcome)


def assert_refused(answer: tuple[int, Any]) -> None:
    """A 503 with the JSON error of a run that cannot be recorded (never a 202)."""
    status, body = answer
    assert status == 503, body
    assert body["error"]["code"] == "unavailable"
    assert body["error"]["message"].startswith(REFUSED), body


def listed(served: Served) -> list[str]:
    """Run ids of ``GET /api/runs`` (research token), every page."""
    ids: list[str] = []
    path: str | None = "/api/runs?limit=200"
    while path:
        status, page = served.call("GET", path, headers=AUTH)
        assert status == 200, page
        ids += [run["run_id"] for run in page["runs"]]
        path = page["next"]
    return ids


def run_and_wait(served: Served, config: str, text: str, **ids: str) -> dict[str, Any]:
    """A run answered 200 by ``?wait=true``; returns the answer."""
    status, answer = served.post_run({"config": config, "input": text, **ids}, wait=True)
    assert status == 200, answer
    return dict(answer)


# ------------------------------------------------------------ 1. a full data dir


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_full_data_dir_refuses_new_runs_and_loses_none_it_accepted(tmp_path: Path) -> None:
    """20 MB tmpfs filled while runs are in flight.

    New runs: 503 with a JSON error. Runs accepted before: readable by their
    link while held in memory; at SIGTERM saved to ``$TMPDIR`` (the data dir
    is full), and the shutdown line says how many and where; after a restart
    on the full disk the server starts (recovery keeps what it cannot store);
    after freeing space every accepted run is readable by its link and listed,
    and the next start has nothing left to recover.
    """
    need_root()
    data, tmp_dir = tmp_path / "data", tmp_path / "tmp"
    with tmpfs(data, "20m"), fake_ollama("slow", delay_s=0.3) as ollama:
        env = server_env(
            data,
            tmp_dir,
            DEVSERVER_WORKERS="4",
            DEVSERVER_BACKEND="ollama",
            OLLAMA_HOST=ollama.url,
        )
        with Served(env) as server:
            stored = [run_and_wait(server, "dada", f"Ein Hund {n}")["run_id"] for n in range(2)]
            in_flight = []
            for n in range(4):  # ~10 slow backend calls each: they end after the disk is full
                status, answer = server.post_run({"config": "stillepost", "input": f"Katze {n}"})
                assert status == 202, answer
                in_flight.append(answer["run_id"])
            filler = fill(data)
            for n in range(3):
                assert_refused(server.post_run({"config": "dada", "input": f"Maus {n}"}))
            assert_refused(server.post_run({"config": "dada", "input": "Maus"}, wait=True))
            served_records = {}
            for run_id in in_flight:
                record = wait_for_end(server, run_id)  # read by its link while held
                outcome = store_outcome(record)
                assert outcome["status"] == "failed", outcome
                assert "full" in outcome["error"] and "fallback failed" in outcome["error"]
                served_records[run_id] = record
            for run_id in stored:
                assert server.record(run_id)[0] == 200
            report = health(server)
            if report is not None:
                assert report["runs_held_in_memory"] == len(in_flight), report
            assert server.stop() == 1  # not clean: runs went to a last-resort place
            last_resort = last_resort_dirs(data, tmp_dir)[1]
            assert server.stopped_line() == held_line(len(in_flight), last_resort)
            assert "every run is recorded" not in server.output
        # The message is true: each held run is there, whole, and nowhere half-written.
        saved = {p.stem: p for p in last_resort.glob("*.json")}
        assert sorted(saved) == sorted(in_flight)
        for run_id, path in saved.items():
            copy = ExecutionRecord.model_validate_json(path.read_bytes())
            assert copy.run_id == run_id and str(copy.status) in ENDED
            assert len(copy.items) == len(served_records[run_id]["items"])
        half_written = list((data / "unwritten").glob("*")) if (data / "unwritten").exists() else []
        assert not half_written, half_written

        # A restart on the still-full disk: the server starts, reads, refuses, keeps journals;
        # the runs recovery cannot store yet are read by their link from the dead journal.
        with Served(env) as server:
            for run_id in stored:
                assert server.record(run_id)[0] == 200
            for run_id in in_flight:
                status, record = server.record(run_id)
                assert status == 200 and record["integrity"]["recovered"] is True, record
            assert_refused(server.post_run({"config": "dada", "input": "Maus"}))
            assert server.stop() == 0
            for run_id in in_flight:
                assert f"journal {run_id}.jsonl not recovered now, kept for later" in server.output
        assert not (data / "journal-damaged").exists()

        filler.unlink()
        with Served(env) as server:
            for run_id in stored + in_flight:
                status, record = server.record(run_id)
                assert status == 200, (run_id, record)
                assert record["status"] in ENDED, record["status"]
            for run_id in in_flight:  # the whole copy saved at shutdown replaced the journal's
                again = server.record(run_id)[1]
                assert again["integrity"]["recovered"] is False
                assert again["status"] == served_records[run_id]["status"]
                assert len(again["items"]) == len(served_records[run_id]["items"])
            assert not list(last_resort.glob("*.json"))  # imported
            assert set(stored + in_flight) <= set(listed(server))
            assert f"recovered {len(in_flight)} run(s) left by a process that died" in server.output
            assert server.stop() == 0
            assert server.stopped_line() == EVERY_RUN_RECORDED
        assert not list((data / "journal").rglob("*.jsonl"))
        with Served(env) as server:  # nothing fails again at every start
            assert server.stop() == 0
            assert "recovered" not in server.output and "journal" not in server.output


# ------------------------------------------------------- 2. a read-only database


@pytest.mark.timeout(120)
@pytest.mark.parametrize("first_stop", ["sigterm", "kill -9"])
def test_a_read_only_database_quarantines_runs_that_stay_readable_and_come_back(
    tmp_path: Path, first_stop: str
) -> None:
    """The database file read-only (with its -wal and -shm when a kill left them).

    SQLite opens a file it cannot write read-only and refuses every write, so
    each run is quarantined; it is readable by its link while quarantined,
    stored runs stay readable, health says the store cannot be written, and
    after a restart with a writable database the quarantined runs are in the
    store (listed) and the quarantine is empty.
    """
    need_root()
    data = tmp_path / "data"
    env = server_env(data, tmp_path / "tmp")
    with Served(env) as server:
        stored = [run_and_wait(server, "dada", f"Ein Hund {n}")["run_id"] for n in range(2)]
        if first_stop == "kill -9":
            server.kill()
        else:
            assert server.stop() == 0
    database_files = sorted(data.glob("history.sqlite3*"))
    expected = {"history.sqlite3"} | (
        {"history.sqlite3-wal", "history.sqlite3-shm"} if first_stop == "kill -9" else set()
    )
    assert {p.name for p in database_files} == expected  # what SQLite needs, all read-only
    quarantined: dict[str, str] = {}
    with read_only(*database_files):
        with Served(env) as server:
            for run_id in stored:
                assert server.record(run_id)[0] == 200
            for n, config in enumerate(["dada", "stillepost", "image_and_sound"]):
                answer = run_and_wait(server, config, f"Katze {n}")
                status, record = server.record(answer["run_id"])
                assert status == 200 and record["status"] == answer["status"] == "success"
                outcome = store_outcome(record)
                assert outcome["status"] == "quarantined", outcome
                assert "readonly database" in outcome["error"]
                quarantined[answer["run_id"]] = record["status"]
            assert sorted(p.stem for p in (data / "quarantine").glob("*.json")) == sorted(
                quarantined
            )
            assert set(stored) <= set(listed(server))  # reading the store still works
            report = health(server)
            if report is not None:
                assert report["store"]["reachable"] is False, report
                assert "readonly" in report["store"]["problem"]
                assert report["runs_quarantined"] == len(quarantined)
                assert report["runs_held_in_memory"] == 0
            assert server.stop() == 0
            # True: a quarantined run is recorded, and re-imported at the next start.
            assert server.stopped_line() == EVERY_RUN_RECORDED
    with Served(env) as server:
        assert set(stored) | set(quarantined) <= set(listed(server))
        for run_id, ended in quarantined.items():
            assert server.record(run_id)[1]["status"] == ended
        assert not list((data / "quarantine").glob("*.json"))
        report = health(server)
        if report is not None:
            assert report["store"]["reachable"] is True, report
            assert report["runs_quarantined"] == 0
        assert server.stop() == 0


# ------------------------------------------------------- 3. a read-only data dir


@pytest.mark.timeout(120)
@pytest.mark.parametrize("first_stop", ["sigterm", "kill -9"])
def test_a_read_only_data_dir_serves_stored_runs_and_refuses_new_ones(
    tmp_path: Path, first_stop: str
) -> None:
    """The whole data dir read-only after a first start (secrets generated into it).

    The server starts (after a clean stop there is no -shm, which SQLite cannot
    make in a read-only folder), says why new runs are refused, answers every
    POST with 503 (never 202), and reads stored runs exactly as before.
    """
    need_root()
    data = tmp_path / "data"
    env = server_env(data, tmp_path / "tmp", pseudonym_key=False)
    with Served(env) as server:
        before = {}
        for n in range(2):
            run_id = run_and_wait(server, "dada", f"Ein Hund {n}", user_id=f"kind-{n}")["run_id"]
            before[run_id] = server.record(run_id)[1]
        if first_stop == "kill -9":
            server.kill()
        else:
            assert server.stop() == 0
    with read_only(data):
        with Served(env) as server:
            for run_id, record in before.items():
                assert server.record(run_id) == (200, record)  # pseudonyms from the same key
                status, _ = server.call("GET", f"/api/runs/{run_id}/export/json")
                assert status == 200
                assert server.call("GET", f"/api/runs/{run_id}/progress")[0] == 200
            assert set(before) <= set(listed(server))
            status, stats = server.call("GET", "/api/stats", headers=AUTH)
            assert status == 200 and stats["runs"] == len(before)
            for wait in (False, True):
                for config in ("dada", "stillepost"):
                    assert_refused(server.post_run({"config": config, "input": "Ein"}, wait=wait))
            report = health(server)
            if report is not None:
                assert report["store"]["reachable"] is False, report
                assert report["runs_in_flight"] == 0
                assert report.get("accepting_runs", False) is False
            assert server.stop() == 0
            assert server.stopped_line() == EVERY_RUN_RECORDED  # it accepted none
            assert "cannot be written" in server.output  # the reason, said at start


# ------------------------------------ 4. neither the store nor the quarantine


@pytest.mark.timeout(120)
@pytest.mark.parametrize("last_resort", ["data dir", "TMPDIR", "standard error"])
def test_runs_neither_store_nor_quarantine_takes_are_held_and_saved_at_shutdown(
    tmp_path: Path, last_resort: str
) -> None:
    """Database and quarantine read-only: runs are held in memory, readable by link.

    At SIGTERM they go to the first writable last-resort place
    (``<data_dir>/unwritten``, ``$TMPDIR/devserver-unwritten/<data dir's key>``,
    standard error), and the shutdown line names exactly how many and where. After a
    restart with everything writable they are readable by their links again
    (rebuilt from the journal, which could be written).
    """
    need_root()
    data, tmp_dir = tmp_path / "data", tmp_path / "tmp"
    env = server_env(data, tmp_dir)
    with Served(env) as server:
        stored = run_and_wait(server, "dada", "Ein Hund")["run_id"]
        assert server.stop() == 0
    unwritable = [data / "history.sqlite3", data / "quarantine"]
    places: dict[str, Path | str] = {
        "data dir": data / "unwritten",
        "TMPDIR": last_resort_dirs(data, tmp_dir)[1],
        "standard error": "standard error (one JSON record per line)",
    }
    if last_resort != "data dir":
        unwritable.append(data / "unwritten")
    if last_resort == "standard error":
        unwritable.append(tmp_dir / "devserver-unwritten")  # the folder of every data dir
    for folder in unwritable[1:]:
        folder.mkdir(parents=True)
    held: dict[str, dict[str, Any]] = {}
    with read_only(*unwritable):
        with Served(env) as server:
            assert server.record(stored)[0] == 200
            for n, config in enumerate(["dada", "stillepost", "image_and_sound"]):
                answer = run_and_wait(server, config, f"Katze {n}", user_id=f"kind-{n}")
                status, record = server.record(answer["run_id"])  # held: read from memory
                assert status == 200 and record["status"] == answer["status"]
                outcome = store_outcome(record)
                assert outcome["status"] == "failed" and "fallback failed" in outcome["error"]
                held[answer["run_id"]] = record
            report = health(server)
            if report is not None:
                assert report["runs_held_in_memory"] == len(held), report
                assert report["store"]["reachable"] is False
            assert server.stop() == 1
            assert server.stopped_line() == held_line(len(held), places[last_resort])
            if last_resort == "standard error":
                saved = [
                    ExecutionRecord.model_validate_json(line)
                    for line in server.lines
                    if line.startswith('{"record_format_version"')
                ]
            else:
                folder = Path(places[last_resort])
                saved = [
                    ExecutionRecord.model_validate_json(p.read_bytes())
                    for p in folder.glob("*.json")
                ]
    assert sorted(r.run_id for r in saved) == sorted(held)
    for record in saved:
        assert str(record.status) == held[record.run_id]["status"]
        assert len(record.items) == len(held[record.run_id]["items"])
        assert record.user_id is not None  # the raw record: nothing of the run is missing
    for folder in last_resort_dirs(data, tmp_dir):
        if str(folder) != str(places[last_resort]) and folder.exists():
            assert not list(folder.iterdir()), f"copies left in {folder}"
    with Served(env) as server:
        for run_id, record in held.items():
            status, again = server.record(run_id)
            assert status == 200 and again["status"] == record["status"]
            assert len(again["items"]) == len(record["items"])
        assert set(held) | {stored} <= set(listed(server))
        assert server.stop() == 0
    if last_resort != "standard error":  # the saved copies were imported at the start
        assert not list(Path(places[last_resort]).glob("*.json"))


# ------------------------------------------------------------------ 5. kill -9


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_a_random_moment_loses_no_accepted_run(tmp_path: Path, seed: int) -> None:
    """Concurrent clients, ``kill -9`` at a random moment, twice; then a restart.

    Every run id that was answered 202 or 200 is found by its link after the
    restart, ended (``incomplete`` when it was cut off); a run answered 200 by
    ``?wait=true`` has exactly the status it was answered with. At least one
    accepted run was cut off, so the kill really hit runs in flight.
    """
    rng = random.Random(seed)
    data = tmp_path / "data"
    accepted: dict[str, str | None] = {}  # run id -> status answered by ?wait=true
    unexpected: list[Any] = []
    lock = threading.Lock()
    with fake_ollama("slow", delay_s=0.03) as ollama:
        env = server_env(
            data,
            tmp_path / "tmp",
            DEVSERVER_WORKERS="3",
            DEVSERVER_QUEUE_SIZE="6",
            DEVSERVER_BACKEND="ollama",
            OLLAMA_HOST=ollama.url,
        )
        for round_ in range(2):
            with Served(env) as server:
                stop = threading.Event()

                def client(
                    n: int,
                    server: Served = server,
                    stop: threading.Event = stop,
                    round_: int = round_,
                ) -> None:
                    own = random.Random(seed * 1000 + round_ * 100 + n)
                    while not stop.is_set():
                        wait = own.random() < 0.4
                        body = {
                            "config": own.choice(["stillepost", "dada", "image_and_sound"]),
                            "input": f"Ein Hund {n}",
                            "user_id": f"kind-{n}",
                        }
                        try:
                            status, answer = server.post_run(body, wait=wait)
                        except (OSError, http.client.HTTPException, ValueError):
                            return  # the server died under the request
                        if status in (200, 202):
                            with lock:
                                accepted[answer["run_id"]] = answer["status"] if wait else None
                        elif status != 503:  # all slots taken: try again
                            unexpected.append((status, answer))

                clients = [threading.Thread(target=client, args=(n,)) for n in range(6)]
                for thread in clients:
                    thread.start()
                time.sleep(rng.uniform(0.3, 1.2))  # the random moment of the fault
                server.kill()
                stop.set()
                for thread in clients:
                    thread.join(30)
                assert not any(t.is_alive() for t in clients)
        with Served(env) as server:
            incomplete = 0
            for run_id, answered in accepted.items():
                status, record = server.record(run_id)
                assert status == 200, (run_id, record)
                assert record["status"] in ENDED, record["status"]
                if answered is not None:
                    assert record["status"] == answered, run_id
                incomplete += record["status"] == "incomplete"
            assert set(accepted) <= set(listed(server))
            assert server.stop() == 0
    assert not unexpected
    assert len(accepted) >= 5, accepted
    assert incomplete >= 1, "the kill never hit an accepted run in flight"
    damaged = {p.stem for p in (data / "journal-damaged").glob("*.jsonl")}
    assert not damaged & set(accepted)  # a file moved aside never held an accepted run


# ------------------------------------------------- 6. SIGTERM during slow runs


@pytest.mark.timeout(120)
def test_sigterm_during_slow_runs_exits_within_the_timeout_and_records_every_run(
    tmp_path: Path,
) -> None:
    """``DEVSERVER_SHUTDOWN_TIMEOUT_S=1`` while runs wait on a backend that answers in 3 s.

    The process exits within the timeout plus a margin (not when the backend
    calls end, ~30 s later); the waiting client gets its answer (the run, as
    error); every accepted run is stored, as error with a message saying why;
    the shutdown line says so.
    """
    timeout_s, margin_s = 1.0, 8.0
    data = tmp_path / "data"
    with fake_ollama("slow", delay_s=3.0) as ollama:
        env = server_env(
            data,
            tmp_path / "tmp",
            DEVSERVER_WORKERS="2",
            DEVSERVER_BACKEND="ollama",
            OLLAMA_HOST=ollama.url,
            DEVSERVER_SHUTDOWN_TIMEOUT_S=str(timeout_s),
        )
        with Served(env) as server:
            waited: list[tuple[int, Any]] = []
            body = {"config": "stillepost", "input": "Ein Hund wartet"}
            waiter = threading.Thread(
                target=lambda: waited.append(server.post_run(body, wait=True))
            )
            waiter.start()
            wait_until(lambda: ollama.requests, 10, "the waiting run never reached its backend")
            accepted = []
            for n in range(3):  # one more running, two queued
                status, answer = server.post_run({"config": "stillepost", "input": f"Katze {n}"})
                assert status == 202, answer
                accepted.append(answer["run_id"])
            wait_until(lambda: len(ollama.requests) >= 2, 10, "the second worker never started")
            began = time.monotonic()
            code = server.stop(timeout=timeout_s + 60)
            elapsed = time.monotonic() - began
            print(f"shutdown: exit {elapsed:.2f} s after SIGTERM, timeout {timeout_s} s")
            waiter.join(10)
    assert elapsed < timeout_s + margin_s, f"exit took {elapsed:.1f} s"
    assert code == 1
    assert "Shutting down: 4 run(s) in flight" in server.output
    assert server.stopped_line() == (
        "Stopped: Some runs did not finish in time and were recorded as errors."
    )
    assert len(waited) == 1 and waited[0][0] == 200, waited
    assert waited[0][1]["status"] == "error"
    accepted.append(waited[0][1]["run_id"])
    store = SQLiteRecordStore(data / "history.sqlite3")
    try:
        assert store.count() == len(accepted)
        for run_id in accepted:
            record = store.load(run_id)
            assert record is not None and record.status == "error", run_id
            (error,) = [i for i in record.items if i.item_type == ItemType.PIPELINE_ERROR]
            assert "shut down before this run could finish" in (error.content or "")
    finally:
        store.close()
    assert not list((data / "journal").rglob("*.jsonl"))


# ----------------------------------------------------- 7. values UTF-8 cannot hold

#: JSON text of values sent in every field (escapes, so lone surrogates reach the server).
NASTY = {
    "lone high surrogate": r"\ud800",
    "lone low surrogate": r"x\udfffy",
    "reversed pair": r"\ude00\ud83d",
    "escaped non-BMP pair": r"\ud83d\ude00 \ud834\udd1e",
    "controls, bidi, BOM": r"\u0001\u001f\u2028\u202e\ufeff",
    "NUL": r"a\u0000b",
    "an id of 128 characters, 126 lone surrogates": r"\udc80" * 126,
}
ID_FIELDS: tuple[str, ...] = tuple(f for f in ("user_id", "session_id", "device_id") if f in FIELDS)


def lone_surrogates(json_text: str) -> int:
    """Lone surrogates in the value of a JSON string's text."""
    return sum(0xD800 <= ord(c) <= 0xDFFF for c in json.loads(f'"{json_text}"'))


def raw_body(config: str, text: str, ids: dict[str, str]) -> bytes:
    """A run's body as JSON text with the escapes kept as they are."""
    fields = [f'"config": "{config}"', f'"input": "{text}"']
    fields += [f'"{name}": "{value}"' for name, value in ids.items()]
    return ("{" + ", ".join(fields) + "}").encode("ascii")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_unencodable_values_in_every_field_never_block_the_other_runs(tmp_path: Path) -> None:
    """Lone surrogates, NUL, controls, non-BMP and long values in every field of POST /api/runs.

    Each run is accepted or refused with a 400 naming the field; an accepted
    one is readable, every string in it encodable, its replacements counted;
    the list, statistics, progress, single and batch exports (JSON, XML) and
    the commands status, runs, show, export, forget and prune all work, for
    these runs and the others.
    """
    data = tmp_path / "data"
    env = server_env(data, tmp_path / "tmp")
    good: dict[str, str] = {}  # run id -> user id
    nasty: dict[str, tuple[str, str]] = {}  # run id -> (case, user id as stored)
    with Served(env) as server:
        for n in range(2):
            answer = run_and_wait(server, "dada", f"Ein Hund {n}", user_id="kind-gut")
            good[answer["run_id"]] = "kind-gut"
        for n, (case, value) in enumerate(NASTY.items()):
            ids = {name: f"{name[0]}{n}{value}" for name in ID_FIELDS}
            text = f"Ein Hund {value}" if case != "NUL" else "Ein Hund"
            status, answer = server.post_run(raw=raw_body("dada", text, ids), wait=True)
            assert status == 200, (case, answer)
            stored_user = json.loads(f'"u{n}{value}"')
            stored_user = re.sub("[\ud800-\udfff]", "\ufffd", stored_user)
            nasty[answer["run_id"]] = (case, stored_user)
            status, record = server.record(answer["run_id"])
            assert status == 200 and encodable(record), case
            replaced = record["integrity"]["characters_replaced"]
            expected = sum(lone_surrogates(v) for v in ids.values() if v)
            if case != "NUL":
                expected += lone_surrogates(text.removeprefix("Ein Hund "))  # at least once
            assert (replaced >= expected > 0) if expected else replaced == 0, (case, replaced)
            assert server.call("GET", f"/api/runs/{answer['run_id']}/progress")[0] == 200
            status, data_ = server.call("GET", f"/api/runs/{answer['run_id']}/export/json")
            assert status == 200 and encodable(data_)
        # Refused cleanly, with the field named: NUL in the prompt, ids and prompts too long.
        refusals = [
            (raw_body("dada", r"Ein Hund \u0000", {}), "invalid_input"),
            (raw_body("dada", "x" * 2001, {}), "invalid_input"),
            *[
                (raw_body("dada", "Ein Hund", {f: r"\ud800" * 129}), f"invalid_{f}")
                for f in ID_FIELDS
            ],
            (raw_body(r"\ud800", "Ein Hund", {}), "unknown_config"),
        ]
        if "device_id" not in FIELDS:  # DESIGN.md §4 names it; this version does not take it
            refusals.append((raw_body("dada", "Ein Hund", {"device_id": "d"}), "unknown_field"))
        for body, code in refusals:
            status, answer = server.post_run(raw=body)
            assert status == 400 and answer["error"]["code"] == code, (body[:80], answer)
        everyone = set(good) | set(nasty)
        assert set(listed(server)) == everyone
        status, stats = server.call("GET", "/api/stats", headers=AUTH)
        assert status == 200 and stats["runs"] == len(everyone) and encodable(stats)
        for fmt in ("json", "xml"):
            status, zipped = _download(server, f"/api/exports?format={fmt}")
            assert status == 200, zipped[:200]
            with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
                manifest = json.loads(archive.read("manifest.json"))
                names = archive.namelist()
            exported = {name.split("/")[-1][:32] for name in names if name.endswith(f".{fmt}")}
            assert everyone <= exported, (fmt, manifest.get("failed"))
        assert server.stop() == 0

    # The commands, on the same data dir, with an old run that has surrogates everywhere.
    old = _old_record_with_surrogates()
    store = SQLiteRecordStore(data / "history.sqlite3")
    try:
        store.save(old)
    finally:
        store.close()
    result = cli(env, "status")
    assert result.returncode == 0, result.stderr
    assert f"{len(everyone) + 1} run(s)" in result.stdout
    result = cli(env, "runs", "--limit", "1000")
    assert result.returncode == 0, result.stderr
    assert {line.split()[0] for line in result.stdout.splitlines()[1:]} == everyone | {old.run_id}
    result = cli(env, "runs", "--json")
    assert result.returncode == 0 and all(json.loads(line) for line in result.stdout.splitlines())
    for run_id in [*nasty, old.run_id]:
        result = cli(env, "show", run_id)
        assert result.returncode == 0 and result.stdout.startswith(f"Run {run_id}"), result.stderr
    result = cli(env, "export", next(iter(nasty)), "--format", "json", "-o", "-")
    assert result.returncode == 0 and encodable(json.loads(result.stdout))
    target = tmp_path / "all.zip"
    result = cli(env, "export", "--format", "json", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert f"Exported {len(everyone) + 1} run(s)" in result.stdout
    result = cli(env, "forget", "--user-id", "kind-gut", "--yes")
    assert result.returncode == 0, result.stderr
    assert f"Erased {len(good)} run(s)" in result.stdout
    lone_case = next(rid for rid, (case, _) in nasty.items() if case == "lone high surrogate")
    result = cli(env, "forget", "--user-id", nasty[lone_case][1], "--yes")  # as stored
    assert result.returncode == 0, result.stderr
    assert "Erased 1 run(s)" in result.stdout and lone_case in result.stdout
    result = cli(env, "prune", "--older-than", "30")
    assert result.returncode == 0, result.stderr
    assert "Erased 1 run(s)" in result.stdout and old.run_id in result.stdout
    result = cli(env, "runs", "--limit", "1000")
    remaining = {line.split()[0] for line in result.stdout.splitlines()[1:]}
    assert remaining == set(nasty) - {lone_case}


def _download(server: Served, path: str) -> tuple[int, bytes]:
    return call(server.base, "GET", path, headers=AUTH)


def _old_record_with_surrogates() -> ExecutionRecord:
    tracker = ExecutionTracker(
        "dada\ud800",
        safety_level="kids\udfff",
        user_id="alt\ud800",
        session_id="sitzung\udc00",
        model_versions={"m\ud800": "v\ud801"},
    )
    with tracker, tracker.stage(2), tracker.stage_iteration(1):
        tracker.log(ItemType.INTERCEPTION_ITERATION, content="alt\ud800", model="m\ud800")
    record = tracker.finalize()
    assert record.integrity.characters_replaced > 0
    return record.model_copy(update={"started_at": datetime.now(UTC) - timedelta(days=40)})


# Hypothesis: lone surrogates in every field the Python API takes.

LONE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
#: Any other character but U+FFFD, so every U+FFFD in a record is a counted replacement.
OTHER = st.characters(blacklist_categories=["Cs"], blacklist_characters="\ufffd")
TEXT = st.text(alphabet=st.one_of(LONE, OTHER), max_size=12)
REPLACED = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    return REPLACED.sub("\ufffd", text)


@pytest.fixture(scope="module")
def round_trip_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = SQLiteRecordStore(tmp_path_factory.mktemp("surrogates") / "history.sqlite3")
    yield store
    store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=TEXT,
    safety=TEXT,
    user=TEXT,
    session=TEXT,
    model=TEXT,
    content=TEXT,
    metadata=st.dictionaries(TEXT, TEXT, max_size=4),
    versions=st.dictionaries(TEXT, st.none() | TEXT, max_size=3),
)
def test_lone_surrogates_in_any_field_are_replaced_one_for_one_and_counted(
    round_trip_store: SQLiteRecordStore,
    config: str,
    safety: str,
    user: str,
    session: str,
    model: str,
    content: str,
    metadata: dict[str, str],
    versions: dict[str, str | None],
) -> None:
    """``finalize().model_dump_json()`` works; ``characters_replaced`` counts each U+FFFD written.

    Keys that would become equal after replacement are left out here (they
    collide: see the test below). The record round-trips through the
    store and through the journal's serialisation unchanged.
    """
    assume(len({_clean(k) for k in metadata}) == len(metadata))
    assume(len({_clean(k) for k in versions}) == len(versions))
    tracker = ExecutionTracker(
        config, safety_level=safety, user_id=user, session_id=session, model_versions=versions
    )
    with tracker, tracker.stage(2), tracker.stage_iteration(1):
        tracker.log(
            ItemType.INTERCEPTION_ITERATION, content=content, model=model, metadata=metadata
        )
    record = tracker.finalize()
    text = record.model_dump_json()
    document = json.loads(text)
    assert encodable(document)
    written = sum(s.count("\ufffd") for s in strings(document))
    # model_versions lists the models the run called: its key is a copy of the item's model
    # (a replacement there is counted once, in the item); only the version is new text,
    # and versions of models the run did not call are not written (nor counted).
    copied = _clean(model) if _clean(model) else ""
    assert record.integrity.characters_replaced == written - copied.count("\ufffd")
    used = [v for k, v in versions.items() if copied and _clean(k) == copied][:1]
    assert (written > 0) == any(
        REPLACED.search(s)
        for s in strings([config, safety, user, session, model, content, metadata, used])
    )
    assert record.user_id == _clean(user) and record.session_id == _clean(session)
    (item,) = [i for i in record.items if i.item_type == ItemType.INTERCEPTION_ITERATION]
    assert item.metadata == {_clean(k): _clean(v) for k, v in metadata.items()}
    assert ExecutionRecord.model_validate_json(text) == record
    round_trip_store.save(record)
    assert round_trip_store.load(record.run_id) == record
    # The journal's one serialisation holds what memory holds.
    again = build_record(RunLog.from_lines(tracker.run_log.lines()))
    assert again.model_dump(exclude={"integrity"}) == record.model_dump(exclude={"integrity"})
    assert again.integrity.characters_replaced == record.integrity.characters_replaced


def test_metadata_keys_that_differ_only_in_lone_surrogates_keep_every_value() -> None:
    """Both become U+FFFD: the later value is kept under a numbered key, and counted."""
    tracker = ExecutionTracker("dada")
    with tracker, tracker.stage(2):
        tracker.log(
            ItemType.INTERCEPTION_ITERATION,
            content="x",
            metadata={chr(0xD800): "first", chr(0xD801): "second"},
        )
    record = tracker.finalize()
    (item,) = [i for i in record.items if i.item_type == ItemType.INTERCEPTION_ITERATION]
    assert item.metadata == {"\ufffd": "first", "\ufffd (2)": "second"}
    assert record.integrity.characters_replaced == 2
    assert record.integrity.values_coerced >= 1


# ------------------------------------------------- 8. damaged journal files


@pytest.mark.timeout(120)
def test_damaged_journal_files_of_a_dead_process_never_stop_a_start(tmp_path: Path) -> None:
    """A dead process's journal folder with an empty file, a cut header, a foreign file, a cut
    last line; and a living process's folder.

    The server starts every time; the unreadable files are moved to
    ``journal-damaged/`` and logged once (never again at later starts); the
    run whose last line was cut is recovered as far as it goes (``incomplete``,
    the cut line counted as dropped); the living process's run is left alone
    until its lock is released.
    """
    data = tmp_path / "data"
    env = server_env(data, tmp_path / "tmp")
    dead = data / "journal" / "0123456789abcdef"
    living = data / "journal" / "fedcba9876543210"
    for folder in (dead, living):
        folder.mkdir(parents=True)
        (folder / ".lock").write_bytes(b"")
    lines = _journal_lines()
    ids = {name: new_run_id() for name in ("empty", "cut header", "foreign", "cut last", "alive")}
    (dead / f"{ids['empty']}.jsonl").write_bytes(b"")
    (dead / f"{ids['cut header']}.jsonl").write_text(lines[0][: len(lines[0]) // 2])
    (dead / f"{ids['foreign']}.jsonl").write_text('{"hello": "world"}\n')
    cut = "\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2]
    (dead / f"{ids['cut last']}.jsonl").write_text(cut.replace(lines[0], _header(lines, ids)))
    alive_path = living / f"{ids['alive']}.jsonl"
    alive_path.write_text("\n".join(lines).replace(lines[0], _header(lines, ids, "alive")))
    damaged_dir = data / "journal-damaged"
    with (living / ".lock").open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # this "process" lives
        with Served(env) as server:
            for name in ("empty", "cut header", "foreign"):
                line = f"journal {ids[name]}.jsonl cannot be recovered"
                assert line in server.output and "moved to" in server.output, name
                assert server.record(ids[name])[0] == 404
            assert "3 damaged journal file(s) moved to" in server.output
            status, record = server.record(ids["cut last"])
            assert status == 200 and record["status"] == "incomplete"
            assert len(record["items"]) == len(lines) - 2  # header and the cut line
            assert record["integrity"]["recovered"] is True
            assert record["integrity"]["items_dropped"] == 1  # the cut line, counted
            # its process is alive: read from its journal by its link, not recovered
            status, record = server.record(ids["alive"])
            assert status == 200 and record["status"] == "running", record
            assert record["integrity"]["recovered"] is False
            assert server.stop() == 0
        assert sorted(p.name for p in damaged_dir.iterdir()) == sorted(
            f"{ids[n]}.jsonl" for n in ("empty", "cut header", "foreign")
        )
        assert not dead.exists() and alive_path.exists()
        with Served(env) as server:  # the damaged files do not fail again
            assert "cannot be recovered" not in server.output
            assert "recovered" not in server.output
            assert server.record(ids["cut last"])[0] == 200
            assert server.stop() == 0
    with Served(env) as server:  # the lock is released: that process is gone now
        status, record = server.record(ids["alive"])
        assert status == 200 and record["status"] == "incomplete"
        assert len(record["items"]) == len(lines) - 1
        assert server.stop() == 0
    assert len(list(damaged_dir.iterdir())) == 3


def _journal_lines() -> list[str]:
    """A real run log's lines: a header and items, no end line (the process died)."""
    tracker = ExecutionTracker("stillepost", safety_level="kids", user_id="kind", session_id="s")
    tracker.start()
    with tracker.stage(1):
        tracker.log(ItemType.USER_INPUT_TEXT, "Ein Hund", metadata={"language": "de"})
        tracker.log(ItemType.TRANSLATION_RESULT, "A dog", metadata={"to_lang": "en"})
    with tracker.stage(2), tracker.stage_iteration(1):
        tracker.log(ItemType.INTERCEPTION_ITERATION, "Un chien", metadata={"to_lang": "fr"})
    lines = tracker.run_log.lines()
    assert not tracker.closed and len(lines) == 7  # header, start, 2 transitions, 3 items
    return lines


def _header(lines: list[str], ids: dict[str, str], name: str = "cut last") -> str:
    header = json.loads(lines[0])
    header["run_id"] = ids[name]
    return json.dumps(header)
