"""Devserver end to end: ``POST /api/runs?wait=true`` throughput and latency, tracker on vs no-op.

Two apps run side by side, each under waitress in its own child process on
127.0.0.1 (so the clients here do not share their interpreter lock): one
records every run (tracker, finaliser, journal, SQLite store), the other has
the no-op ``NullTracker`` chosen at configuration time. Client
threads post ``?wait=true`` runs of the ``local`` backend over keep-alive
connections. Rounds alternate which app goes first so drift (CPU frequency,
page cache) hits both alike; the figures are medians over rounds.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from devserver import create_app
from devserver._serve import make_server, run_until_stopped, server_url
from execution_history import SQLiteRecordStore

CONFIG = os.environ.get("BENCH_DEVSERVER_CONFIG", "stillepost")
ROUNDS = int(os.environ.get("BENCH_DEVSERVER_ROUNDS", "8"))
REQUESTS = int(os.environ.get("BENCH_DEVSERVER_REQUESTS", "60"))
CLIENTS = int(os.environ.get("BENCH_DEVSERVER_CLIENTS", "8"))

NOTES = f"""\
`POST /api/runs?wait=true` of the `{CONFIG}` config on the `local` backend (8 glossary
translations, one 512×512 procedural image), {CLIENTS} client threads with keep-alive
connections, {REQUESTS} requests per round, {ROUNDS} rounds alternating tracker on / no-op
tracker; medians over rounds. "Tracked" includes everything the tracker costs the
request: the in-memory items, building the record, and waiting until the SQLite store has
it (the response is sent after the record is durable). Target: tracking costs at most 2 %
of throughput.
"""

Row = tuple[str, Any, str]


class _Served:
    """An app under waitress in a child process (its own interpreter and GIL)."""

    def __init__(self, data_dir: Path, tracking: bool) -> None:
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.devserver_bench", "--serve", str(data_dir),
             "on" if tracking else "off"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise RuntimeError(f"bench server did not start: {self.url!r}")

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=120)

    def stored(self) -> int:
        store = SQLiteRecordStore(self.data_dir / "history.sqlite3")
        try:
            return store.count()
        finally:
            store.close()


def _serve_child(data_dir: str, tracking: bool) -> None:
    """Child process: serve one app until SIGTERM; print its URL first."""
    app = create_app({"DATA_DIR": data_dir, "TRACKING": tracking, "QUEUE_SIZE": 64})
    server = make_server(app, "127.0.0.1", 0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(server_url(server), flush=True)
    run_until_stopped(app, server, stop, echo=lambda text: None)


def _client(url: str) -> Callable[[], float]:
    """A function that posts one run on a keep-alive connection and returns its latency."""
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    local = threading.local()
    body = json.dumps({"config": CONFIG, "input": "Ein Hund spielt im Garten"}).encode()
    headers = {"Content-Type": "application/json"}

    def post() -> float:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        began = time.perf_counter()
        conn.request("POST", "/api/runs?wait=true", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - began
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
        return elapsed

    return post


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _round(
    pool: ThreadPoolExecutor, post: Callable[[], float], pid: int
) -> tuple[float, list[float], float]:
    """One round: (runs per second, latencies, server CPU ms per run)."""
    cpu = _cpu_s(pid)
    began = time.perf_counter()
    latencies = list(pool.map(lambda _: post(), range(REQUESTS)))
    per_s = REQUESTS / (time.perf_counter() - began)
    return per_s, latencies, (_cpu_s(pid) - cpu) / REQUESTS * 1000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(report: Callable[[str, Any, str], None] | None = None) -> list[Row]:
    """Measure and return rows of (label, value, unit); also hands each to ``report``."""
    with tempfile.TemporaryDirectory(prefix="devserver-bench-") as tmp:
        tracked = _Served(Path(tmp) / "tracked", tracking=True)
        untracked = _Served(Path(tmp) / "null", tracking=False)
        try:
            posts = {"tracked": _client(tracked.url), "null": _client(untracked.url)}
            pids = {"tracked": tracked.process.pid, "null": untracked.process.pid}
            rps: dict[str, list[float]] = {"tracked": [], "null": []}
            latency: dict[str, list[float]] = {"tracked": [], "null": []}
            cpu: dict[str, list[float]] = {"tracked": [], "null": []}
            with ThreadPoolExecutor(CLIENTS) as pool:
                for name in posts:  # warm up both (imports, caches, connections)
                    _round(pool, posts[name], pids[name])
                for r in range(ROUNDS):
                    order = ["tracked", "null"] if r % 2 == 0 else ["null", "tracked"]
                    for name in order:
                        per_s, latencies, cpu_ms = _round(pool, posts[name], pids[name])
                        rps[name].append(per_s)
                        latency[name].extend(latencies)
                        cpu[name].append(cpu_ms)
        finally:
            tracked.close()
            untracked.close()
        stored = tracked.stored()
    on, off = statistics.median(rps["tracked"]), statistics.median(rps["null"])
    rows: list[Row] = [
        ("throughput, tracker on", round(on, 1), "runs/s"),
        ("throughput, no-op tracker", round(off, 1), "runs/s"),
        ("tracking cost in throughput", round((off - on) / off * 100, 2), "%"),
        ("latency p50, tracker on", round(_pct(latency["tracked"], 0.5) * 1000, 1), "ms"),
        ("latency p50, no-op tracker", round(_pct(latency["null"], 0.5) * 1000, 1), "ms"),
        ("latency p95, tracker on", round(_pct(latency["tracked"], 0.95) * 1000, 1), "ms"),
        ("latency p95, no-op tracker", round(_pct(latency["null"], 0.95) * 1000, 1), "ms"),
        ("server CPU per run, tracker on", round(statistics.median(cpu["tracked"]), 2), "ms"),
        ("server CPU per run, no-op tracker", round(statistics.median(cpu["null"]), 2), "ms"),
        ("records stored (tracker on)", stored, "runs"),
    ]
    if report is not None:
        for row in rows:
            report(*row)
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        _serve_child(sys.argv[2], sys.argv[3] == "on")
        sys.exit(0)
    for label, value, unit in run():
        print(f"{label:32} {value:>10} {unit}")
