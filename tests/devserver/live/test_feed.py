"""The live feed through a real server: order, resumption, end statuses, slow readers."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask

from devserver import create_app, get_state
from devserver.cli._serve import make_server, run_until_stopped, server_url
from devserver.pipeline._configs import shipped_configs_dir
from devserver.pipeline.backends import BackendError, LocalBackend, MediaResult, TextResult
from execution_history import ExecutionTracker, ItemType

from ..conftest import MIXED
from ..sse import Event, EventStream, assert_matches_record, items, sequences

#: A term of the §86a list shipped in devserver/data/terms_86a.json.
BLOCKED_TERM = "Hakenkreuz"
#: The module server's feed knobs: quick heartbeats, a small backlog and a short write deadline.
FEED_CONFIG = {
    "FEED_HEARTBEAT_S": 0.5,
    "FEED_WRITE_DEADLINE_S": 6.0,
}


class ScriptedBackend(LocalBackend):
    """The local backend with test hooks keyed by the translation's seed.

    A run started with ``"seed": s`` translates stage-2 step i with seed s + i,
    so a test picks its own seed range and never disturbs another test.
    ``gate(seed)`` makes that step wait until released; ``fail_seed`` raises
    there; ``delay_s`` slows every translation (for runs started by a browser).
    """

    def __init__(self) -> None:
        super().__init__()
        self.delay_s = 0.0
        self.fail_seeds: set[int] = set()
        #: Images of these widths fail as a backend would (outputs that cannot be made).
        self.fail_widths: set[int] = set()
        self._gates: dict[int, tuple[threading.Event, threading.Event]] = {}
        # Runs started by a browser have random seeds: those are held by a word in the text
        # (the glossary translator passes unknown words through every step unchanged).
        self.hold_word: str | None = None
        self.hold_at_call = 0
        self.hold = (threading.Event(), threading.Event())
        self._word_calls = 0

    def gate(self, seed: int) -> tuple[threading.Event, threading.Event]:
        """(reached, release) events of the step translated with ``seed``."""
        return self._gates.setdefault(seed, (threading.Event(), threading.Event()))

    def translate(self, text: str, from_lang: str | None, to_lang: str, seed: int) -> TextResult:
        if self.hold_word is not None and self.hold_word in text:
            self._word_calls += 1
            if self._word_calls == self.hold_at_call:
                reached, release = self.hold
                reached.set()
                if not release.wait(30):
                    raise RuntimeError("test hold never released")
        if seed in self._gates:
            reached, release = self._gates[seed]
            reached.set()
            if not release.wait(30):
                raise RuntimeError("test gate never released")
        if seed in self.fail_seeds:
            raise RuntimeError("the translation model crashed")
        if self.delay_s:
            time.sleep(self.delay_s)
        return super().translate(text, from_lang, to_lang, seed)

    def generate_image(
        self, prompt: str, path: Path, *, width: int, height: int, seed: int, steps: int
    ) -> MediaResult:
        if width in self.fail_widths:
            raise BackendError(f"no image model for width {width}")
        return super().generate_image(
            prompt, path, width=width, height=height, seed=seed, steps=steps
        )


@dataclass
class Served:
    """An app served on 127.0.0.1 in a thread."""

    app: Flask
    base: str
    backend: ScriptedBackend
    server: Any
    stop: threading.Event = field(default_factory=threading.Event)

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(self.base)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            all_headers = {"Content-Type": "application/json"} if payload is not None else {}
            all_headers.update(headers or {})
            conn.request(method, path, body=payload, headers=all_headers)
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def cut_streams(self) -> int:
        """Close every open ``/events`` connection from the server's side; returns how many."""
        cut = 0
        for protocol in list(self.server.server.server_state.connections):
            cycle = getattr(protocol, "cycle", None)
            if cycle is not None and cycle.scope["path"].endswith("/events"):
                protocol.loop.call_soon_threadsafe(protocol.transport.close)
                cut += 1
        return cut

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, _, data = self.call(method, path, body)
        return status, json.loads(data)

    def start(self, config: str, text: str, **fields: Any) -> str:
        status, answer = self.json("POST", "/api/runs", {"config": config, "input": text, **fields})
        assert status == 202, answer
        run_id: str = answer["run_id"]
        assert answer["links"]["events"] == f"/api/runs/{run_id}/events"
        assert answer["links"]["progress"] == f"/api/runs/{run_id}/progress"
        return run_id

    def record(self, run_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The run's record once it is stored (not running any more)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status, record = self.json("GET", f"/api/runs/{run_id}")
            if status == 200 and record["status"] != "running":
                store = self.app.extensions["devserver"].store
                if store.load(run_id) is not None:
                    return dict(record)
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} did not end")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module: shipped configs plus ``mixed``, the scripted backend."""
    yield from serve_app(tmp_path_factory.mktemp("feed"), FEED_CONFIG)


def serve_app(
    folder: Path, extra: dict[str, Any], configs_more: tuple[dict[str, Any], ...] = ()
) -> Iterator[Served]:
    """Serve a fresh app on ``folder`` until the generator is closed (for module fixtures).

    ``configs_more``: pipeline configs served beside the shipped ones and ``mixed``.
    """
    import os
    import shutil

    configs = folder / "configs"
    shutil.copytree(shipped_configs_dir(), configs)
    for config in (MIXED, *configs_more):
        (configs / f"{config['name']}.json").write_text(json.dumps(config), encoding="utf-8")
    backend = ScriptedBackend()
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("DEVSERVER_")}
    try:
        app = create_app(
            {
                "TESTING": True,
                "DATA_DIR": str(folder / "instance"),
                "CONFIG_DIR": str(configs),
                "BACKEND_INSTANCE": backend,
                **extra,
            }
        )
    finally:
        os.environ.update(saved)
    server = make_server(app, "127.0.0.1", 0)
    served = Served(app, server_url(server).rstrip("/"), backend, server)
    thread = threading.Thread(
        target=run_until_stopped,
        args=(app, server, served.stop),
        kwargs={"echo": lambda text: None},
        daemon=True,
    )
    thread.start()
    try:
        yield served
    finally:
        served.stop.set()
        thread.join(30)
        assert not thread.is_alive()


# --------------------------------------------------------------------------- tests


def test_reconnect_mid_run_with_last_event_id_loses_and_repeats_nothing(served: Served) -> None:
    """Drop the connection during stage 2, resume with Last-Event-ID: every item exactly once."""
    reached, release = served.backend.gate(1003)
    run_id = served.start("stillepost", "Ein Hund spielt im Garten", seed=1000)
    first = EventStream(served, run_id)
    assert first.response.status == 200
    assert first.response.getheader("Content-Type", "").startswith("text/event-stream")
    before: list[Event] = []
    for event in first:
        before.append(event)
        if event.event == "interception_iteration" and event.json["stage_iteration"] == 2:
            break
    assert reached.wait(10)
    first.close()  # the connection drops while the run is held at stage-2 step 3
    second = EventStream(served, run_id, last_id=before[-1].id, since=0)
    release.set()
    after = second.until_end()
    second.close()
    record = served.record(run_id)
    assert_matches_record(before + after, record)
    iterations = [e.json for e in before + after if e.event == "interception_iteration"]
    assert [i["stage_iteration"] for i in iterations] == list(range(1, 9))
    end = after[-1].json
    assert end["status"] == "success" == record["status"]
    assert end["last_sequence"] == record["items"][-1]["sequence"]


def test_late_subscriber_reads_the_stored_run_and_resumes_after_since(served: Served) -> None:
    status, answer = served.json(
        "POST", "/api/runs?wait=true", {"config": "dada", "input": "Ein Hund spielt im Garten"}
    )
    assert status == 200
    run_id = answer["run_id"]
    record = served.record(run_id)
    stream = EventStream(served, run_id)
    everything = stream.until_end()
    stream.close()
    assert_matches_record(everything, record)
    stream = EventStream(served, run_id, since=5)
    rest = stream.until_end()
    stream.close()
    assert sequences(rest) == [i["sequence"] for i in record["items"]][5:]
    # Last-Event-ID (what a browser sends on reconnection) wins over ?since=.
    stream = EventStream(served, run_id, since=1, last_id="7")
    rest = stream.until_end()
    stream.close()
    assert sequences(rest) == [i["sequence"] for i in record["items"]][7:]
    stream = EventStream(served, run_id, since=10_000)
    assert [e.event for e in stream.until_end()] == ["end"]
    stream.close()


@pytest.mark.parametrize(
    ("config", "text", "seed", "expected"),
    [
        ("dada", "Ein Hund spielt im Garten", 2000, "success"),
        ("mixed", "Ein Hund spielt im Garten", 2100, "partial"),
        ("stillepost", f"Ein {BLOCKED_TERM} im Garten", 2200, "blocked"),
        ("stillepost", "Ein Hund spielt im Garten", 2300, "error"),
    ],
)
def test_end_event_carries_status_and_the_records_progress(
    served: Served, config: str, text: str, seed: int, expected: str
) -> None:
    """``end`` says how the run ended; its progress agrees with the record and /progress."""
    served.backend.fail_seeds.add(2304)  # the error run's stage-2 step 4 crashes
    run_id = served.start(config, text, seed=seed, safety_level="kids")
    stream = EventStream(served, run_id)
    events = stream.until_end()
    stream.close()
    record = served.record(run_id)
    end = events[-1].json
    assert end["status"] == record["status"] == expected
    assert_matches_record(events, record)
    progress = end["progress"]
    assert progress["stages"] == record["stages"]
    status, stored_progress = served.json("GET", f"/api/runs/{run_id}/progress")
    assert status == 200 and stored_progress == progress
    assert progress["finished"] is True and progress["status"] == expected
    if expected == "blocked":
        assert progress["stages"][0]["status"] == "blocked"
        assert [s["status"] for s in progress["stages"][1:]] == ["skipped"] * 3
        assert progress["outputs"] == {
            "planned": 1, "done": 0, "blocked": 0, "failed": 0, "remaining": 1,
        }  # fmt: skip
    if expected == "partial":
        assert progress["outputs"]["done"] == 1 and progress["outputs"]["blocked"] == 1
    if expected == "error":
        assert events[-2].event == "pipeline_error"
        assert progress["iterations"] == {"done": 3, "planned": 8}


def test_progress_while_running_then_after(served: Served) -> None:
    reached, release = served.backend.gate(3003)
    run_id = served.start("stillepost", "Ein Hund spielt im Garten", seed=3000)
    assert reached.wait(10)
    try:
        status, progress = served.json("GET", f"/api/runs/{run_id}/progress")
    finally:
        release.set()
    assert status == 200
    assert progress["status"] == "running" and progress["finished"] is False
    assert progress["current_stage"] == 2
    assert [s["status"] for s in progress["stages"]] == ["done", "running", "pending", "pending"]
    assert progress["iterations"] == {"done": 2, "planned": 8}
    assert progress["outputs"] == {
        "planned": 1, "done": 0, "blocked": 0, "failed": 0, "remaining": 1,
    }  # fmt: skip
    record = served.record(run_id)
    status, progress = served.json("GET", f"/api/runs/{run_id}/progress")
    assert progress["stages"] == record["stages"]
    assert progress["iterations"] == {"done": 8, "planned": 8}
    assert progress["outputs"]["done"] == 1 and progress["outputs"]["remaining"] == 0


def test_heartbeats_while_idle_and_no_raw_ids_anywhere(served: Served) -> None:
    reached, release = served.backend.gate(4003)
    run_id = served.start(
        "stillepost", "Ein Hund spielt im Garten", seed=4000,
        user_id="raw-user-4711", session_id="raw-session-0815",
    )  # fmt: skip
    stream = EventStream(served, run_id)
    assert reached.wait(10)
    time.sleep(1.2)  # held: more than two heartbeat intervals without an item
    release.set()
    events = stream.until_end()
    stream.close()
    assert any(c.startswith(": keep-alive") for c in stream.comments)
    assert events[-1].json["status"] == "success"
    assert b"raw-user-4711" not in stream.raw and b"raw-session-0815" not in stream.raw


def test_many_subscribers_share_one_feed_and_get_the_same_events(served: Served) -> None:
    reached, release = served.backend.gate(5003)
    run_id = served.start("stillepost", "Ein Hund spielt im Garten", seed=5000)
    assert reached.wait(10)
    streams = [EventStream(served, run_id) for _ in range(8)]
    results: list[list[int]] = [[] for _ in streams]

    def read(k: int) -> None:
        results[k] = sequences(streams[k].until_end())

    threads = [threading.Thread(target=read, args=(k,)) for k in range(len(streams))]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    hub = get_state(served.app).feed
    assert hub.watched() >= 1 and hub.subscribers >= len(streams)
    release.set()
    for thread in threads:
        thread.join(30)
    for stream in streams:
        stream.close()
    expected = [i["sequence"] for i in served.record(run_id)["items"]]
    assert all(result == expected for result in results)


def test_subscribers_around_the_hand_over_to_the_store_see_every_item_once(served: Served) -> None:
    """Subscribe again and again while a run ends and moves to the store: always all items."""
    run_id = served.start("dada", "Ein Hund spielt im Garten", seed=6000)
    streams_done = 0
    stored = False
    while not stored or streams_done < 3:
        stored = served.app.extensions["devserver"].store.load(run_id) is not None
        stream = EventStream(served, run_id)
        assert stream.response.status == 200
        events = stream.until_end()
        stream.close()
        seqs = sequences(events)
        assert seqs == list(range(1, len(seqs) + 1))
        assert events[-1].json["last_sequence"] == seqs[-1]
        streams_done += 1
    assert seqs == [i["sequence"] for i in served.record(run_id)["items"]]


def test_unknown_run_is_404_and_malformed_ids_or_resume_points_are_refused(
    served: Served,
) -> None:
    for path in ("/api/runs/" + "0" * 32 + "/events", "/api/runs/" + "0" * 32 + "/progress"):
        status, headers, body = served.call("GET", path)
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    for bad in ("xyz", "0" * 31, "../" + "0" * 32, "0" * 32 + "A"):
        status, _, body = served.call("GET", f"/api/runs/{bad}/events")
        assert status in (400, 404) and "error" in json.loads(body)
    run_id = served.start("dada", "Ein Hund", seed=7000)
    for query, header in (("?since=abc", None), ("?since=-1", None), ("", "nope"), ("", "1e3")):
        headers = {"Last-Event-ID": header} if header else {}
        status, _, body = served.call("GET", f"/api/runs/{run_id}/events{query}", headers=headers)
        assert status == 400 and json.loads(body)["error"]["code"] == "invalid_since"
    served.record(run_id)


def test_a_subscriber_that_stops_reading_is_dropped_without_slowing_the_run(
    served: Served,
) -> None:
    """A client that reads nothing is cut off at the write deadline; the run and others go on.

    The deadline is 6 s here: the fast reader parses 18 MB in this same process, so under
    load it may fall a few seconds behind without ever stopping."""
    state = served.app.extensions["devserver"]
    hub = get_state(served.app).feed
    dropped_before = hub.dropped
    tracker = ExecutionTracker("flood", safety_level="research")
    tracker.start()
    state.registry.on_start(tracker.run_log)
    # A client that connects, asks, and never reads: a tiny receive buffer fills at once.
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    parts = urlsplit(served.base)
    slow.connect((parts.hostname, parts.port))
    slow.sendall(f"GET /api/runs/{tracker.run_id}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    fast = EventStream(served, tracker.run_id)
    fast_events: list[Event] = []
    reader = threading.Thread(target=lambda: fast_events.extend(fast.until_end()))
    reader.start()
    big = "x" * 60_000
    longest = 0.0
    with tracker.stage(2):
        for i in range(1, 301):  # about 18 MB of events: far more than any socket buffer
            t0 = time.perf_counter()
            with tracker.stage_iteration(i):
                tracker.log(ItemType.INTERCEPTION_ITERATION, content=big)
            longest = max(longest, time.perf_counter() - t0)
            time.sleep(0.005)
    deadline = time.monotonic() + 20
    while hub.dropped == dropped_before and time.monotonic() < deadline:
        time.sleep(0.05)
    tracker.finalize()
    reader.join(30)
    fast.close()
    state.registry.on_stored(tracker.run_log)
    assert hub.dropped == dropped_before + 1
    # The pipeline's side never waited for any reader: no log() call took even 50 ms (the
    # loop's own sleeps make up the rest of its time, however busy the machine is).
    assert longest < 0.05
    # The fast reader got everything, in order, and the end.
    assert sequences(fast_events) == list(range(1, len(items(fast_events)) + 1))
    assert fast_events[-1].event == "end"
    assert len([e for e in fast_events if e.event == "interception_iteration"]) == 300
    # The slow client's connection was closed by the server: reading now ends.
    slow.settimeout(20)
    received = 0
    try:
        while chunk := slow.recv(1 << 20):
            received += len(chunk)
    except ConnectionResetError:
        pass
    slow.close()
    assert received < 18_000_000
    # The server still answers, and the dropped stream gave back its slot.
    status, _ = served.json("POST", "/api/runs?wait=true", {"config": "dada", "input": "Ein Hund"})
    assert status == 200
    assert hub.subscribers == 0


def test_a_stream_closed_before_it_was_read_gives_its_slot_back(make_app: Any) -> None:
    """The WSGI server's close() ends the subscription even when the body never started."""
    app = make_app(FEED_MAX_SUBSCRIBERS=2)
    client = app.test_client()
    answer = client.post("/api/runs?wait=true", json={"config": "dada", "input": "Ein Hund"})
    run_id = answer.get_json()["run_id"]
    hub = get_state(app).feed
    for _ in range(5):  # more than the limit: each closed stream frees its slot
        response = client.get(f"/api/runs/{run_id}/events", buffered=False)
        assert response.status_code == 200 and hub.subscribers == 1
        response.close()
        assert hub.subscribers == 0
    first = client.get(f"/api/runs/{run_id}/events", buffered=False)
    second = client.get(f"/api/runs/{run_id}/events", buffered=False)
    third = client.get(f"/api/runs/{run_id}/events", buffered=False)
    assert third.status_code == 503 and third.headers["Retry-After"]
    assert third.get_json()["error"]["code"] == "too_many_streams"
    body = b"".join(first.response)
    assert body.endswith(b"\n\n") and b"event: end" in body
    first.close()
    second.close()
    assert hub.subscribers == 0


def test_items_appended_out_of_order_are_published_in_sequence_order() -> None:
    """Two threads of one run may append a moment out of order: ids still only go up."""
    from devserver.live._feed import RunFeed

    tracker = ExecutionTracker("dada").start()
    with tracker.stage(2):
        for i in (1, 2, 3):
            with tracker.stage_iteration(i):
                tracker.log(ItemType.INTERCEPTION_ITERATION, content=f"step {i}")
    late = tracker.items.pop(3)  # sequence 4 (after start and the transition) not yet appended
    feed = RunFeed.live(tracker.run_log, "/media/", lambda name: (None, None))
    frames, end = feed.read(0, 0)
    assert [f.split(b"\n", 1)[0] for f in frames] == [b"id: 1", b"id: 2", b"id: 3"]
    assert end is None
    tracker.items.append(late)
    feed.advance()
    frames, end = feed.read(3, 0)
    assert [f.split(b"\n", 1)[0] for f in frames] == [b"id: 4", b"id: 5"]
    tracker.finalize()
    feed.advance()
    frames, end = feed.read(5, 0)
    assert [f.split(b"\n", 1)[0] for f in frames] == [b"id: 6", b"id: 7"]
    assert end is not None and b'"status":"success"' in end


def test_feed_settings_come_from_the_config_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devserver import SettingsError
    from devserver._settings import FeedSettings, defaults_from_environment, resolve

    monkeypatch.setenv("DEVSERVER_FEED_HEARTBEAT_S", "9")
    monkeypatch.setenv("DEVSERVER_FEED_POLL_S", "0.02")
    config = {**defaults_from_environment(), "DATA_DIR": tmp_path, "FEED_HEARTBEAT_S": 3}
    settings = resolve(config).feed
    assert settings.heartbeat_s == 3.0 and settings.poll_s == 0.02
    assert settings.max_subscribers == FeedSettings().max_subscribers
    for bad in ("zero", "0", "-1"):
        monkeypatch.setenv("DEVSERVER_FEED_MAX_SUBSCRIBERS", bad)
        with pytest.raises(SettingsError, match="FEED_MAX_SUBSCRIBERS"):
            resolve({**defaults_from_environment(), "DATA_DIR": tmp_path})


def test_a_resume_point_beyond_what_the_feed_has_sends_nothing_twice() -> None:
    """A client that read further on another process resumes here: items up to its
    ``Last-Event-ID`` are not sent again, however far behind this feed still is."""
    from devserver._settings import FeedSettings
    from devserver.live._feed import FeedHub, RunFeed
    from devserver.live._stream import Subscription

    tracker = ExecutionTracker("dada").start()
    with tracker.stage(2):
        tracker.log(ItemType.INTERCEPTION_ITERATION, content="step 1")  # sequences 1..3
    feed = RunFeed.live(tracker.run_log, "/media/", lambda name: (None, None))
    hub = FeedHub(FeedSettings())
    subscription = Subscription(hub, feed, since=5)
    data, finished = subscription.step()
    assert data is None and not finished  # the feed is at 3: nothing to send yet
    with tracker.stage(2):
        for i in range(4):  # sequences 4..7
            tracker.log(ItemType.INTERCEPTION_ITERATION, content=f"more {i}")
    feed.advance()
    data, finished = subscription.step()
    assert data is not None and not finished
    ids = [int(line[4:]) for line in data.split(b"\n") if line.startswith(b"id: ")]
    logged = sorted(raw.sequence for raw in tracker.items)
    assert logged[-1] > 6  # the feed went past the resume point
    assert ids == [sequence for sequence in logged if sequence > 5]
    tracker.finalize()
