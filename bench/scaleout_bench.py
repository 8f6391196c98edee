"""Scale-out benchmark: one process on SQLite against several on PostgreSQL, side by side.

Two measures, each on real ``devserver serve`` processes on a real port:

- throughput and latency of whole runs (``POST /api/runs?wait=true``), then a
  check that nothing was lost or reordered: every accepted run is in the store,
  with sequence numbers 1..n;
- live-feed latency across processes: a run started through worker 0, followed
  by 50 subscribers attached to worker 1, from the moment an item was recorded
  (its timestamp) to the moment a subscriber read its event.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from devserver._data_dir import DataDir
from execution_history import RunFilter, open_store

_NOTES = """\
Every figure comes from real `devserver serve` processes (uvicorn, `--workers N`) on
127.0.0.1 and a throw-away PostgreSQL 15 cluster started like the tests' (unix socket,
default durability: `fsync` and `synchronous_commit` on). Clients run in the benchmark's
process.

*Throughput*: 8 client threads post Stille Post runs on the `local` backend with
`?wait=true` for {seconds} s; "p95" is a whole run's answer time. "lost" compares the runs
the server accepted with the runs the store holds afterwards, and "out of order" counts
stored runs whose sequence numbers are not exactly 1..n. "journal s" is the in-flight
journal's interval: `--workers` shortens it to 25 ms so that another worker's feed is
prompt; the last row keeps 250 ms to show what that costs. On 2 cores the extra processes
compete with the clients and the database for the same cores, so the figures show that
adding processes loses no run and no order, not how far it scales: with more cores each
worker adds its own run slots, finaliser and event loop, and the store is the only thing
shared.

*Feed across processes*: {runs} Stille Post runs on the slow fake Ollama (100 ms a step),
each started through worker 0 and followed by {subscribers} subscribers attached to
worker 1 (a keep-alive connection chosen by its `/api/health` answer); only items recorded after
all 50 streams were open count. Latency is the
subscriber's clock at reading an event minus the item's recorded `timestamp` (one
machine, one clock). It includes the writing worker's journal interval (25 ms under
`--workers`), the `NOTIFY` on PostgreSQL, and the reading worker's look at the journal
file. SQLite has no notifications: the other worker looks every 250 ms
(`DEVSERVER_FEED_OTHER_POLL_S`). Target: p95 ≤ 100 ms with 50 subscribers.
"""

SECONDS = float(os.environ.get("BENCH_SCALEOUT_S", "15"))
CLIENTS = 8
FEED_RUNS = int(os.environ.get("BENCH_SCALEOUT_FEED_RUNS", "5"))
SUBSCRIBERS = 50
TARGET_FEED_P95_MS = 100.0
#: Each translation of the fake Ollama takes this long: a Stille Post run lasts about 1.2 s.
STEP_S = 0.1


NOTES = _NOTES.format(seconds=f"{SECONDS:.0f}", runs=FEED_RUNS, subscribers=SUBSCRIBERS)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


@contextlib.contextmanager
def _database(kind: str, tmp: Path) -> Iterator[str | None]:
    """The store's URL: a fresh migrated PostgreSQL database, or None for the SQLite default."""
    if kind == "sqlite":
        yield None
        return
    from tests.pg_cluster import Cluster, Databases

    cluster = Cluster().start()
    try:
        yield Databases(cluster).create()
    finally:
        cluster.stop()


@contextlib.contextmanager
def _served(tmp: Path, database: str | None, workers: int, **extra: str) -> Iterator[Any]:
    from tests.devserver.faults import Served, server_env

    env = server_env(tmp / "data", tmp / "tmp")
    env.update(extra)
    if database is not None:
        env["DEVSERVER_DATABASE_URL"] = database
    args = ("--workers", str(workers)) if workers > 1 else ()
    served = Served(env, args=args)
    try:
        yield served
    finally:
        served.stop(120)


def _throughput(kind: str, workers: int, **extra: str) -> dict[str, Any]:
    from tests.devserver.faults import call_json

    with tempfile.TemporaryDirectory() as name, _database(kind, Path(name)) as url:
        tmp = Path(name)
        accepted: list[str] = []
        latencies: list[float] = []
        refused = 0
        lock = threading.Lock()
        with _served(tmp, url, workers, **extra) as served:
            stop = time.monotonic() + SECONDS

            def client(n: int) -> None:
                nonlocal refused
                while time.monotonic() < stop:
                    began = time.perf_counter()
                    status, answer = call_json(
                        served.base,
                        "POST",
                        "/api/runs?wait=true",
                        {"config": "stillepost", "input": f"Ein Hund {n}", "user_id": f"u{n}"},
                    )
                    took = time.perf_counter() - began
                    with lock:
                        if status == 200:
                            accepted.append(answer["run_id"])
                            latencies.append(took * 1000)
                        else:
                            refused += 1

            threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        store = open_store(url if url is not None else DataDir(tmp / "data").database)
        try:
            stored = store.run_ids(accepted)
            disordered = 0
            for row in store.iter_runs(RunFilter()):
                record = store.load(row.run_id)
                assert record is not None
                numbers = sorted(item.sequence for item in record.items)
                disordered += numbers != list(range(1, len(numbers) + 1))
        finally:
            store.close()
    return {
        "store": "PostgreSQL" if kind == "postgres" else "SQLite",
        "processes": workers,
        "runs/s": f"{len(accepted) / SECONDS:.1f}",
        "p50 ms": f"{statistics.median(latencies):.0f}",
        "p95 ms": f"{_percentile(latencies, 95):.0f}",
        "refused (503)": refused,
        "lost": len(set(accepted) - stored),
        "out of order": disordered,
    }


def _feed_latency(kind: str) -> dict[str, Any]:
    from tests.devserver.fakes import fake_ollama
    from tests.devserver.sse import EventStream
    from tests.devserver.workers import call_on, connection_to

    latencies: list[float] = []
    events_seen: list[int] = []
    with (
        tempfile.TemporaryDirectory() as name,
        _database(kind, Path(name)) as url,
        fake_ollama("slow", delay_s=STEP_S) as ollama,
        _served(
            Path(name), url, 2, DEVSERVER_BACKEND="ollama", OLLAMA_HOST=ollama.url,
            DEVSERVER_FEED_MAX_SUBSCRIBERS="200",
        ) as served,
    ):  # fmt: skip
        for n in range(FEED_RUNS):
            conns = [connection_to(served.base, 1)[0] for _ in range(SUBSCRIBERS)]
            starter, _ = connection_to(served.base, 0)
            status, answer = call_on(
                starter, "POST", "/api/runs", {"config": "stillepost", "input": f"Ein Hund {n}"}
            )
            starter.close()
            assert status == 202, answer
            run_id = answer["run_id"]
            # Attach every subscriber first; only items recorded after that count (the ones
            # before arrive at once and say nothing about the feed's speed).
            streams = [EventStream(served, run_id, conn=conn) for conn in conns]
            attached = time.time()
            lock = threading.Lock()

            def follow(
                stream: Any, attached: float = attached, lock: threading.Lock = lock
            ) -> None:
                mine: list[float] = []
                count = 0
                for event in stream:
                    arrived = time.time()
                    if event.event == "end":
                        break
                    count += 1
                    stamp = datetime.fromisoformat(event.json["timestamp"]).timestamp()
                    if stamp > attached:
                        mine.append((arrived - stamp) * 1000)
                stream.close()
                with lock:
                    latencies.extend(mine)
                    events_seen.append(count)

            threads = [threading.Thread(target=follow, args=(s,)) for s in streams]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
    live = latencies
    return {
        "store": "PostgreSQL (NOTIFY)" if kind == "postgres" else "SQLite (polling)",
        "subscribers": SUBSCRIBERS,
        "events": len(live),
        "events per subscriber": f"{statistics.mean(events_seen):.1f}",
        "p50 ms": f"{_percentile(live, 50):.0f}",
        "p95 ms": f"{_percentile(live, 95):.0f}",
        "max ms": f"{max(live):.0f}",
        "target p95": f"≤ {TARGET_FEED_P95_MS:.0f} ms",
    }


def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for kind, workers, journal in (
        ("sqlite", 1, None),
        ("sqlite", 2, None),
        ("postgres", 1, None),
        ("postgres", 2, None),
        ("postgres", 2, "0.25"),
    ):
        extra = {"DEVSERVER_JOURNAL_INTERVAL_S": journal} if journal else {}
        row = _throughput(kind, workers, **extra)
        print(row, flush=True)
        interval = journal or ("0.025" if workers > 1 else "0.25")
        rows.append({"measure": "throughput", "journal s": interval, **row})
    for kind in ("postgres", "sqlite"):
        row = _feed_latency(kind)
        print(row, flush=True)
        rows.append({"measure": "feed across processes", **row})
    return rows
