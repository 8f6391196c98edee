"""Devserver end to end: ``POST /api/runs?wait=true`` throughput and latency, tracker on vs no-op.

Three apps run side by side, each under waitress in its own child process on
127.0.0.1 (so the clients here do not share their interpreter lock): one with
the no-op ``NullTracker`` chosen at configuration time, and two that record
every run (tracker, finaliser, journal, SQLite store): the default, which
stores each run's capture and builds the record later, and one that builds
and stores the whole record at once (``DEVSERVER_BUILD_ON_READ=false``).
Client threads post ``?wait=true`` runs of the ``local`` backend over
keep-alive connections. Rounds rotate which app goes first so drift (CPU
frequency, page cache) hits all alike; the figures are medians over rounds.
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
ROUNDS = int(os.environ.get("BENCH_DEVSERVER_ROUNDS", "16"))
REQUESTS = int(os.environ.get("BENCH_DEVSERVER_REQUESTS", "60"))
CLIENTS = int(os.environ.get("BENCH_DEVSERVER_CLIENTS", "8"))

NOTES = f"""\
`POST /api/runs?wait=true` of the `{CONFIG}` config on the `local` backend (8 glossary
translations, one 512×512 procedural image), {CLIENTS} client threads with keep-alive
connections, {REQUESTS} requests per round, {ROUNDS} rounds rotating over three servers:
the no-op tracker, the tracker as shipped (capture now, build the record later) and the
tracker building each record at once (`DEVSERVER_BUILD_ON_READ=false`); medians over
rounds. "Tracker on" includes everything the tracker costs the request: the in-memory
items, the run's capture (its raw items as JSON) committed to SQLite with
`synchronous=FULL` before the response is sent, and the summary in the response. The
record itself is built from the capture when the run is first read, or when the server
is idle; that deferred cost is measured at the end (the bench process builds every
capture) and reported on its own line. Target: tracking costs at most 2 % of throughput.
"""

Row = tuple[str, Any, str]


#: The servers compared: the no-op tracker, and the tracker with each way of storing.
VARIANTS = {
    "null": {"TRACKING": False},
    "capture": {"TRACKING": True, "BUILD_ON_READ": True},
    "build": {"TRACKING": True, "BUILD_ON_READ": False},
}


class _Served:
    """An app under waitress in a child process (its own interpreter and GIL)."""

    def __init__(self, data_dir: Path, variant: str) -> None:
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.devserver_bench", "--serve", str(data_dir), variant],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise RuntimeError(f"bench server did not start: {self.url!r}")

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=120)

    def build_and_count(self) -> tuple[int, int, float]:
        """(captures built here, records stored, CPU ms per capture built) after the rounds."""
        store = SQLiteRecordStore(self.data_dir / "history.sqlite3")
        try:
            began = time.thread_time()
            built = store.build_captured()
            cpu_ms = (time.thread_time() - began) * 1000 / max(built, 1)
            return built, store.count(), cpu_ms
        finally:
            store.close()


def _serve_child(data_dir: str, variant: str) -> None:
    """Child process: serve one app until SIGTERM; print its URL first."""
    # The writer builds captured runs into records when idle; here it must not, or
    # it would do so while another server is measured. The bench builds them at
    # the end instead and reports that cost on its own line.
    config = {"DATA_DIR": data_dir, "QUEUE_SIZE": 64, "IDLE_BUILD_S": 1e9, **VARIANTS[variant]}
    app = create_app(config)
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
    names = list(VARIANTS)
    rps: dict[str, list[float]] = {name: [] for name in names}
    latency: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="devserver-bench-") as tmp:
        served = {name: _Served(Path(tmp) / name, name) for name in names}
        try:
            posts = {name: _client(served[name].url) for name in names}
            pids = {name: served[name].process.pid for name in names}
            with ThreadPoolExecutor(CLIENTS) as pool:
                for name in names:  # warm up all (imports, caches, connections)
                    _round(pool, posts[name], pids[name])
                for r in range(ROUNDS):
                    # rotate the order, so drift (CPU frequency, page cache) hits all alike
                    for name in names[r % len(names) :] + names[: r % len(names)]:
                        per_s, latencies, cpu_ms = _round(pool, posts[name], pids[name])
                        rps[name].append(per_s)
                        latency[name].extend(latencies)
                        cpu[name].append(cpu_ms)
        finally:
            for server in served.values():
                server.close()
        built, stored, build_ms = served["capture"].build_and_count()
    off = statistics.median(rps["null"])
    label = {"null": "no-op tracker", "capture": "tracker on", "build": "tracker, build at once"}
    rows: list[Row] = []
    for name in names:
        rows.append(
            (f"throughput, {label[name]}", round(statistics.median(rps[name]), 1), "runs/s")
        )
    for name in ("capture", "build"):
        cost = (off - statistics.median(rps[name])) / off * 100
        rows.append((f"tracking cost, {label[name]}", round(cost, 2), "%"))
    for q in (0.5, 0.95):
        for name in names:
            value = round(_pct(latency[name], q) * 1000, 1)
            rows.append((f"latency p{int(q * 100)}, {label[name]}", value, "ms"))
    for name in names:
        value = round(statistics.median(cpu[name]), 2)
        rows.append((f"server CPU per run, {label[name]}", value, "ms"))
    rows += [
        ("records stored (tracker on)", stored, "runs"),
        ("built from captures at the end", built, "runs"),
        ("deferred build, CPU per run", round(build_ms, 2), "ms"),
    ]
    if report is not None:
        for row in rows:
            report(*row)
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        _serve_child(sys.argv[2], sys.argv[3])
        sys.exit(0)
    for label, value, unit in run():
        print(f"{label:40} {value:>10} {unit}")
