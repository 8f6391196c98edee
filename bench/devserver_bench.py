"""Devserver end to end: ``POST /api/runs?wait=true`` throughput and latency, tracker on vs no-op.

Two apps run side by side, each under the server of `devserver serve` in its own child process on
127.0.0.1 (so the clients here do not share their interpreter lock): one with
the no-op ``NullTracker`` chosen at configuration time, and one that records
every run as shipped (tracker, journal, finaliser building the record, SQLite
store). Client threads post ``?wait=true`` runs of the ``local`` backend over
keep-alive connections. Rounds alternate which app goes first so drift (CPU
frequency, page cache) hits both alike. The comparison is repeated in
``TRIALS`` independent trials (fresh servers each); each figure is the median
of the trials' medians, with the trials' spread.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench._child import ChildProcess
from devserver import create_app
from devserver.cli._serve import make_server, run_until_stopped, server_url
from execution_history import open_store

CONFIG = os.environ.get("BENCH_DEVSERVER_CONFIG", "stillepost")
ROUNDS = int(os.environ.get("BENCH_DEVSERVER_ROUNDS", "10"))
TRIALS = int(os.environ.get("BENCH_DEVSERVER_TRIALS", "3"))
REQUESTS = int(os.environ.get("BENCH_DEVSERVER_REQUESTS", "60"))
CLIENTS = int(os.environ.get("BENCH_DEVSERVER_CLIENTS", "8"))

NOTES = f"""\
`POST /api/runs?wait=true` of the `{CONFIG}` config on the `local` backend (8 glossary
translations, one 512×512 procedural image), {CLIENTS} client threads with keep-alive
connections, {REQUESTS} requests per round, {ROUNDS} rounds per trial alternating between
two servers (the no-op tracker and the tracker as shipped), {TRIALS} trials with fresh
servers. "Tracker on" includes everything tracking costs the request: the in-memory
items, the journal (header written when the run is accepted, items every 0.25 s), the
record built once by the writer and committed to SQLite with `synchronous=FULL` before
the response is sent, and the summary in the response. Targets: server CPU per run and
throughput each within 2 % of the no-op tracker's (median of the trials, spread shown).
"""

Row = tuple[str, Any, str]


#: The servers compared: the no-op tracker, and the tracker as shipped.
VARIANTS = {
    "null": {"TRACKING": False},
    "tracker": {"TRACKING": True},
}


class _Served(ChildProcess):
    """An app served in a child process (its own interpreter and GIL)."""

    def __init__(self, data_dir: Path, variant: str) -> None:
        self.data_dir = data_dir
        super().__init__("bench.devserver_bench", "--serve", str(data_dir), variant)

    def stored(self) -> int:
        """Records in the store after the rounds (every run must be there)."""
        store = open_store(self.data_dir / "history.sqlite3")
        try:
            return store.count()
        finally:
            store.close()


def _serve_child(data_dir: str, variant: str) -> None:
    """Child process: serve one app until SIGTERM; print its URL first."""
    config = {"DATA_DIR": data_dir, "QUEUE_SIZE": 64, **VARIANTS[variant]}
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
        for attempt in (1, 2):
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(host, int(port), timeout=120)
            began = time.perf_counter()
            try:
                conn.request("POST", "/api/runs?wait=true", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (ConnectionError, http.client.RemoteDisconnected):
                # The server closed an idle keep-alive connection between rounds: a new
                # connection, as any client makes (the failed attempt is not timed).
                conn.close()
                local.conn = None
                if attempt == 2:
                    raise
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


def _trial(tmp: Path, trial: int) -> dict[str, dict[str, list[float]]]:
    """One trial on fresh servers: per variant, throughput, latencies and CPU per round."""
    names = list(VARIANTS)
    figures: dict[str, dict[str, list[float]]] = {
        name: {"rps": [], "latency": [], "cpu": []} for name in names
    }
    served = {name: _Served(tmp / f"{name}-{trial}", name) for name in names}
    try:
        posts = {name: _client(served[name].url) for name in names}
        pids = {name: served[name].process.pid for name in names}
        with ThreadPoolExecutor(CLIENTS) as pool:
            for name in names:  # warm up both (imports, caches, connections)
                _round(pool, posts[name], pids[name])
            for r in range(ROUNDS):
                for name in names if r % 2 == 0 else names[::-1]:
                    per_s, latencies, cpu_ms = _round(pool, posts[name], pids[name])
                    figures[name]["rps"].append(per_s)
                    figures[name]["latency"].extend(latencies)
                    figures[name]["cpu"].append(cpu_ms)
    finally:
        for server in served.values():
            server.close()
    expected = (ROUNDS + 1) * REQUESTS
    stored = served["tracker"].stored()
    if stored != expected:
        raise RuntimeError(f"{stored} records stored of {expected} runs: a run was lost")
    return figures


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f} to {max(values):.2f}"


def run(report: Callable[[str, Any, str], None] | None = None) -> list[Row]:
    """Measure and return rows of (label, value, unit); also hands each to ``report``."""
    trials = []
    with tempfile.TemporaryDirectory(prefix="devserver-bench-") as tmp:
        for trial in range(TRIALS):
            trials.append(_trial(Path(tmp), trial))
    med = statistics.median
    rows: list[Row] = []
    rps = {n: [med(t[n]["rps"]) for t in trials] for n in VARIANTS}
    cpu = {n: [med(t[n]["cpu"]) for t in trials] for n in VARIANTS}
    throughput_cost = [(o - t) / o * 100 for o, t in zip(rps["null"], rps["tracker"], strict=True)]
    cpu_cost = [(t - o) / o * 100 for o, t in zip(cpu["null"], cpu["tracker"], strict=True)]
    label = {"null": "no-op tracker", "tracker": "tracker on"}
    for name in VARIANTS:
        rows.append((f"throughput, {label[name]}", round(med(rps[name]), 1), "runs/s"))
    for name in VARIANTS:
        rows.append((f"server CPU per run, {label[name]}", round(med(cpu[name]), 3), "ms"))
    rows.append(
        (
            f"tracking cost, server CPU per run (trials: {_spread(cpu_cost)})",
            round(med(cpu_cost), 2),
            "%",
        )
    )
    rows.append(
        (
            f"tracking cost, throughput (trials: {_spread(throughput_cost)})",
            round(med(throughput_cost), 2),
            "%",
        )
    )
    for q in (0.5, 0.95):
        for name in VARIANTS:
            every = [x for t in trials for x in t[name]["latency"]]
            rows.append(
                (f"latency p{int(q * 100)}, {label[name]}", round(_pct(every, q) * 1000, 1), "ms")
            )
    rows.append(("records stored, every trial (tracker on)", (ROUNDS + 1) * REQUESTS, "runs each"))
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
