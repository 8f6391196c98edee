"""Live feed benchmark: latency from log() to a subscriber's socket, and runs/s while watched."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

NOTES = """\
The server (`devserver serve`'s) runs in the benchmark's process; the subscribers run in a separate
process (asyncio, one connection each), so their parsing does not share the server's
interpreter lock. Latency is measured from the `tracker.log()` call (a monotonic clock
stamp in the item's metadata) to the moment the subscriber process has read the event's
line from its socket, over 200 items logged 20 ms apart into one run. Runs/s: Stille
Post runs on the local backend one after another, each watched from its start to its
`end` event by the given number of subscribers (0: nobody watches), after one untimed run
that loads the language model. Target: p95 ≤ 50 ms
with 50 subscribers.
"""

ROOT = Path(__file__).resolve().parents[1]
ITEMS = 200
ITEM_GAP_S = 0.02
RUNS = 10
_CLOCK = time.CLOCK_MONOTONIC


def _now_ns() -> int:
    # CLOCK_MONOTONIC is system-wide on Linux, so two processes can compare stamps.
    return time.clock_gettime_ns(_CLOCK)


# --------------------------------------------------------------------------- subscriber process


def _child() -> None:
    """The subscriber process: reads commands ``<run_id> <count>`` on stdin, answers JSON."""
    import asyncio

    host, port = sys.argv[1], int(sys.argv[2])

    async def one(run_id: str) -> tuple[list[float], int]:
        reader, writer = await asyncio.open_connection(host, port)
        # HTTP/1.0: the body is the raw stream until the server closes (no chunk framing).
        request = f"GET /api/runs/{run_id}/events HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n"
        writer.write(request.encode())
        latencies: list[float] = []
        events = 0
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        while line := await reader.readline():
            if line.startswith(b"data: "):
                arrived = time.clock_gettime_ns(_CLOCK)
                events += 1
                data = json.loads(line[6:])
                stamp = (data.get("metadata") or {}).get("t")
                if isinstance(stamp, int):
                    latencies.append((arrived - stamp) / 1e6)
            elif line.startswith(b"event: end"):
                break
        writer.close()
        return latencies, events

    async def watch(run_id: str, count: int) -> dict[str, Any]:
        results = await asyncio.gather(*(one(run_id) for _ in range(count)))
        return {
            "latencies_ms": [x for lat, _ in results for x in lat],
            "events": [n for _, n in results],
        }

    for line in sys.stdin:
        run_id, count = line.split()
        print(json.dumps(asyncio.run(watch(run_id, int(count)))), flush=True)


class Subscribers:
    """The subscriber process, driven line by line."""

    def __init__(self, host: str, port: int) -> None:
        code = "import sys; from bench.feed_bench import _child; _child()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, host, str(port)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._answer: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None

    def watch(self, run_id: str, count: int) -> None:
        """Start ``count`` subscribers on ``run_id``; ``result()`` collects what they saw."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{run_id} {count}\n")
        self.process.stdin.flush()
        stdout = self.process.stdout

        def read() -> None:
            self._answer = json.loads(stdout.readline())

        self._thread = threading.Thread(target=read, daemon=True)
        self._thread.start()

    def result(self, timeout_s: float = 120.0) -> dict[str, Any]:
        assert self._thread is not None
        self._thread.join(timeout_s)
        if self._answer is None:
            raise RuntimeError("the subscribers did not finish")
        answer, self._answer = self._answer, None
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(10)


# --------------------------------------------------------------------------- measurements


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _latency(app: Any, subscribers: Subscribers, count: int) -> dict[str, Any]:
    from execution_history import ExecutionTracker, ItemType

    state = app.extensions["devserver"]
    hub = state.feed
    tracker = ExecutionTracker("bench", safety_level="research").start()
    state.registry.on_start(tracker.run_log)
    subscribers.watch(tracker.run_id, count)
    deadline = time.monotonic() + 30
    while hub.subscribers < count and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    with tracker.stage(2):
        for i in range(1, ITEMS + 1):
            with tracker.stage_iteration(i):
                tracker.log(
                    ItemType.INTERCEPTION_ITERATION,
                    content="Ein Hund spielt im Garten",
                    metadata={"from_lang": "de", "to_lang": "fr", "t": _now_ns()},
                )
            time.sleep(ITEM_GAP_S)
    tracker.finalize()
    answer = subscribers.result()
    state.registry.on_stored(tracker.run_log)
    latencies = answer["latencies_ms"]
    complete = all(n == ITEMS + 4 for n in answer["events"])  # + start, transitions, complete
    return {
        "measure": f"log → event latency, {count} subscriber{'s' if count > 1 else ''}",
        "p50": f"{statistics.median(latencies):.1f} ms",
        "p95": f"{_percentile(latencies, 95):.1f} ms",
        "max": f"{max(latencies):.1f} ms",
        "events": len(latencies),
        "note": "every subscriber got every event" if complete else "EVENTS MISSING",
    }


def _throughput(app: Any, subscribers: Subscribers, count: int) -> dict[str, Any]:
    from devserver import RunRequest

    state = app.extensions["devserver"]
    config = state.configs["stillepost"]
    # One run first, untimed: it loads what loads once per process (the language model).
    state.runs.submit(RunRequest(config, "Ein Hund", "kids", 10**6)).future.result(60)
    began = time.perf_counter()
    for seed in range(RUNS):
        run = state.runs.submit(RunRequest(config, "Ein Hund spielt im Garten", "kids", seed))
        if count:
            subscribers.watch(run.run_id, count)
        run.future.result(60)
        record = run.tracker.record()  # the run's record, built from the closed tracker
        assert str(record.status) == "success"
        if count:
            answer = subscribers.result()
            assert all(n == len(record.items) for n in answer["events"])
    elapsed = time.perf_counter() - began
    return {
        "measure": f"Stille Post runs/s, {count} subscribers each",
        "p50": "",
        "p95": "",
        "max": "",
        "events": "",
        "note": f"{RUNS / elapsed:.2f} runs/s ({elapsed / RUNS * 1000:.0f} ms per run)",
    }


def run() -> list[dict[str, Any]]:
    """Latency with 1 and 50 subscribers, and runs/s with 0 and 50 subscribers watching."""
    from devserver import create_app
    from devserver.cli._serve import make_server

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("DEVSERVER_")}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            app = create_app({"DATA_DIR": folder, "FEED_MAX_SUBSCRIBERS": 128})
        finally:
            os.environ.update(saved)
        server = make_server(app, "127.0.0.1", 0)
        loop = threading.Thread(target=server.run, daemon=True)
        loop.start()
        subscribers = Subscribers("127.0.0.1", int(server.port))
        try:
            rows.append(_latency(app, subscribers, 1))
            rows.append(_latency(app, subscribers, 50))
            rows.append(_throughput(app, subscribers, 0))
            rows.append(_throughput(app, subscribers, 50))
        finally:
            subscribers.close()
            app.extensions["devserver"].close()
            server.stop(loop)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
