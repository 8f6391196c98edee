"""OTLP sink: CPU per run beside the store sink's, and end-to-end throughput with the sink on.

Part 1, in this process: for one Stille Post-shaped record (8 translations, 3
images), the CPU time of the store sink's write (SQLite, ``synchronous=FULL``)
and of the OTLP sink's own work per run (pseudonymise, build the spans, encode
the protobuf: what its thread does before the POST), then a whole export to a
receiver in another process (the HTTP client's cost included).

Part 2: three servers of `devserver serve`, each in its own child process, in the
same run and alternating rounds as `bench.devserver_bench`: the no-op tracker,
the tracker with the store only, and the tracker with the store and the OTLP
sink sending every run to a receiver on 127.0.0.1 (another child process that
reads and discards each request, as a collector would after decoding).
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import devserver_bench as e2e
from bench._child import ChildProcess
from bench._runs import stille_post_record
from execution_history import (
    Pseudonymiser,
    StoreSink,
    TraceOptions,
    open_store,
    record_spans,
)

RUNS = int(os.environ.get("BENCH_OTEL_RUNS", "300"))
ROUNDS = int(os.environ.get("BENCH_OTEL_ROUNDS", "6"))
TRIALS = int(os.environ.get("BENCH_OTEL_TRIALS", "2"))
REQUESTS = e2e.REQUESTS

NOTES = f"""\
CPU per run: {RUNS} runs of a Stille Post-shaped record (8 translations, 3 images, 30
items), `time.process_time` around each sink's work on this process's thread. End to
end: `POST /api/runs?wait=true` of the `{e2e.CONFIG}` config, {e2e.CLIENTS} client
threads, {REQUESTS} requests per round, {ROUNDS} rounds per trial alternating between
three servers, {TRIALS} trials with fresh servers; the OTLP server sends every run to a
receiver on 127.0.0.1 in another process. The sink works on its own thread after the
response (the store comes first), so its cost shows as server CPU per run and as
throughput under load, not in a run's latency.
"""

Row = tuple[str, Any, str]
VARIANTS = ("null", "store", "otlp")
LABEL = {"null": "no-op tracker", "store": "store only", "otlp": "store + OTLP sink"}


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")  # an empty ExportTraceServiceResponse
        self.end_headers()


def _receive_child() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"http://127.0.0.1:{server.server_address[1]}/v1/traces", flush=True)
    server.serve_forever()


def _serve_child(data_dir: str, variant: str, endpoint: str) -> None:
    from devserver import create_app
    from devserver.cli._serve import make_server, run_until_stopped, server_url

    config: dict[str, Any] = {"DATA_DIR": data_dir, "QUEUE_SIZE": 64}
    if variant == "null":
        config["TRACKING"] = False
    if variant == "otlp":
        config["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint
    app = create_app(config)
    server = make_server(app, "127.0.0.1", 0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(server_url(server), flush=True)
    run_until_stopped(app, server, stop, echo=lambda text: None)


def _cpu_us(work: Callable[[int], object], runs: int) -> float:
    """Median CPU µs of ``work(i)`` over ``runs`` calls."""
    times = []
    for i in range(runs):
        began = time.process_time_ns()
        work(i)
        times.append((time.process_time_ns() - began) / 1000)
    return statistics.median(times)


def _per_run(tmp: Path, endpoint: str) -> list[Row]:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    record = stille_post_record(tmp / "media", write_media=False)
    store = open_store(tmp / "history.sqlite3")
    sink = StoreSink(store, tmp / "quarantine")
    ids = [f"{i:032x}" for i in range(RUNS)]
    records = [record.model_copy(update={"run_id": run_id}) for run_id in ids]
    pseudonyms = Pseudonymiser("bench pseudonym key, 16+ bytes")
    options = TraceOptions()
    resource = options.resource()
    exporter = OTLPSpanExporter(endpoint=endpoint, timeout=5.0)

    def build(i: int) -> None:
        safe = records[i].pseudonymised(pseudonyms)
        encode_spans(record_spans(safe, options, resource)).SerializeToString()

    def send(i: int) -> None:
        safe = records[i].pseudonymised(pseudonyms)
        exporter.export(record_spans(safe, options, resource))

    try:
        store_us = _cpu_us(lambda i: sink(records[i]), RUNS)
        build_us = _cpu_us(build, RUNS)
        send_us = _cpu_us(send, RUNS)
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]
        store.close()
    spans = len(record_spans(record, options, resource))
    return [
        (f"store sink, CPU per run ({len(record.items)} items)", round(store_us, 1), "µs"),
        (f"OTLP sink: pseudonymise, build {spans} spans, encode", round(build_us, 1), "µs"),
        ("OTLP sink: the same and POST to a receiver (HTTP client)", round(send_us, 1), "µs"),
        ("OTLP export against the store's write", round(send_us / store_us, 2), "×"),
    ]


def _trial(tmp: Path, trial: int, endpoint: str) -> dict[str, dict[str, list[float]]]:
    figures: dict[str, dict[str, list[float]]] = {
        name: {"rps": [], "cpu": [], "latency": []} for name in VARIANTS
    }
    served = {
        n: ChildProcess("bench.otel_bench", "--serve", str(tmp / f"{n}-{trial}"), n, endpoint)
        for n in VARIANTS
    }
    try:
        posts = {n: e2e._client(served[n].url) for n in VARIANTS}
        pids = {n: served[n].process.pid for n in VARIANTS}
        with ThreadPoolExecutor(e2e.CLIENTS) as pool:
            for name in VARIANTS:
                e2e._round(pool, posts[name], pids[name])
            for r in range(ROUNDS):
                order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]  # each goes first in turn
                for name in order:
                    per_s, latencies, cpu_ms = e2e._round(pool, posts[name], pids[name])
                    figures[name]["rps"].append(per_s)
                    figures[name]["cpu"].append(cpu_ms)
                    figures[name]["latency"].extend(latencies)
    finally:
        for child in served.values():
            child.close()
    return figures


def run() -> list[Row]:
    """Rows of (measure, value, unit)."""
    receiver = ChildProcess("bench.otel_bench", "--receive")
    try:
        with tempfile.TemporaryDirectory(prefix="otel-bench-") as tmp:
            rows = _per_run(Path(tmp), receiver.url)
            trials = [_trial(Path(tmp), t, receiver.url) for t in range(TRIALS)]
    finally:
        receiver.close()
    med = statistics.median
    rps = {n: [med(t[n]["rps"]) for t in trials] for n in VARIANTS}
    cpu = {n: [med(t[n]["cpu"]) for t in trials] for n in VARIANTS}
    for name in VARIANTS:
        rows.append((f"throughput, {LABEL[name]}", round(med(rps[name]), 1), "runs/s"))
    for name in VARIANTS:
        rows.append((f"server CPU per run, {LABEL[name]}", round(med(cpu[name]), 3), "ms"))
    for name in VARIANTS:
        every = [x for t in trials for x in t[name]["latency"]]
        rows.append((f"latency p50, {LABEL[name]}", round(e2e._pct(every, 0.5) * 1000, 1), "ms"))
    cost = [(s - o) / s * 100 for s, o in zip(rps["store"], rps["otlp"], strict=True)]
    rows.append(
        (
            f"OTLP sink, throughput against store only (trials: {e2e._spread(cost)})",
            round(med(cost), 2),
            "%",
        )
    )
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--receive"]:
        _receive_child()
        sys.exit(0)
    if sys.argv[1:2] == ["--serve"]:
        _serve_child(sys.argv[2], sys.argv[3], sys.argv[4])
        sys.exit(0)
    for label, value, unit in run():
        print(f"{label:60} {value:>10} {unit}")
