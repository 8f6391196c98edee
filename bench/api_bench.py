"""Benchmark of the research API on 100,000 stored runs: list filters, stats, a 1,000-run batch."""

from __future__ import annotations

import gc
import http.client
import os
import random
import statistics
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from execution_history import ExecutionRecord, RunStatus, SQLiteRecordStore, new_run_id

RUNS = int(os.environ.get("API_BENCH_RUNS", "100000"))
BATCH_RUNS = 1000
REQUESTS_PER_FILTER = 200
TARGET_LIST_P95_MS = 50.0
TARGET_STATS_MS = 500.0
TARGET_BATCH_PEAK_MIB = 100.0
BATCH_SESSION = "bench-batch-session"

NOTES = f"""\
{RUNS:,} runs are stored first: copies of one real `stillepost` run of the `local`
backend (21 items, one image) under new ids, spread over a year, with 4 configs,
6 statuses, 3 safety levels, 2,000 people and 500 sessions. Requests go over HTTP
to the server on 127.0.0.1, one keep-alive connection, with the research
token. A list request asks for the first page (50 runs) or, every other time, the
page after a cursor. The batch export selects {BATCH_RUNS:,} runs of one session
(each with its image) as JSON; memory growth is the tracemalloc peak of the process
while the ZIP streams to the client (the server runs in this process), on a second
pass after the timed one.
"""

CONFIGS = ("stillepost", "dada", "triptych", "image_and_sound")
STATUSES = (
    (RunStatus.SUCCESS, 70),
    (RunStatus.PARTIAL, 15),
    (RunStatus.BLOCKED, 8),
    (RunStatus.ERROR, 4),
    (RunStatus.INCOMPLETE, 2),
    (RunStatus.RUNNING, 1),
)
LEVELS = ("kids", "teens", "adults")


def _template(app: Any) -> tuple[ExecutionRecord, Path]:
    """One real run through the app: the typical record and its media folder."""
    client = app.test_client()
    answer = client.post(
        "/api/runs?wait=true",
        json={"config": "stillepost", "input": "Ein Hund spielt im Garten", "user_id": "u"},
    ).json
    state = app.extensions["devserver"]
    record = state.store.load(answer["run_id"])
    assert record is not None, answer
    return record, state.runs.media_dir(record.run_id)


def _fill(
    database: Path, template: ExecutionRecord, media_root: Path, template_media: Path
) -> tuple[float, datetime]:
    """Store ``RUNS`` copies of ``template``; the last ``BATCH_RUNS`` share one session.

    Returns:
        Seconds taken, and the start of the batch session's runs.
    """
    rng = random.Random(7)
    statuses = [s for s, _ in STATUSES]
    weights = [w for _, w in STATUSES]
    # Bulk load only: no fsync per record (the server's own store keeps synchronous=FULL).
    store = SQLiteRecordStore(database, pragmas={"synchronous": "OFF"})
    start = datetime(2025, 1, 1, tzinfo=UTC)
    step = timedelta(days=365) / RUNS
    began = time.perf_counter()
    batch_from = RUNS - BATCH_RUNS
    media_files = [p for p in template_media.iterdir() if p.is_file()]
    for n in range(RUNS):
        started = start + step * n
        in_batch = n >= batch_from
        record = template.model_copy(
            update={
                "run_id": new_run_id(),
                "config_name": rng.choice(CONFIGS),
                "status": rng.choices(statuses, weights)[0],
                "safety_level": rng.choice(LEVELS),
                "user_id": f"user-{rng.randrange(2000)}",
                "session_id": BATCH_SESSION if in_batch else f"session-{rng.randrange(500)}",
                "started_at": started,
                "ended_at": started + timedelta(seconds=3),
            }
        )
        store.save(record)
        if in_batch:  # hard links: real files for the batch at no copying cost
            folder = media_root / record.run_id
            folder.mkdir(parents=True)
            for path in media_files:
                os.link(path, folder / path.name)
    store.close()
    return time.perf_counter() - began, start + step * batch_from


@contextmanager
def _served(app: Any) -> Iterator[tuple[str, int]]:
    from devserver.cli._serve import make_server, run_until_stopped

    server = make_server(app, "127.0.0.1", 0)
    stop = threading.Event()
    thread = threading.Thread(
        target=run_until_stopped,
        args=(app, server, stop),
        kwargs={"echo": lambda text: None},
        daemon=True,
    )
    thread.start()
    try:
        yield "127.0.0.1", int(server.port)
    finally:
        stop.set()
        thread.join(60)


def _get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def _list_rows(
    conn: http.client.HTTPConnection, headers: dict[str, str], batch_from: datetime
) -> list[dict[str, Any]]:
    import json

    window = batch_from - timedelta(days=30)
    filters: dict[str, dict[str, str]] = {
        "none": {},
        "config": {"config": "dada"},
        "status": {"status": "blocked"},
        "status (rare)": {"status": "running"},
        "safety_level": {"safety_level": "teens"},
        "session_id": {"session_id": "session-123"},
        "since/until (1 week)": {
            "since": window.isoformat(),
            "until": (window + timedelta(days=7)).isoformat(),
        },
        "config + status": {"config": "triptych", "status": "partial"},
    }
    rows = []
    for name, query in filters.items():
        base = "/api/runs?" + urlencode({**query, "limit": 50})
        status, body = _get(conn, base, headers)  # warm-up, and the cursor for page 2
        assert status == 200, body[:200]
        second = json.loads(body)["next"]
        samples = []
        for n in range(REQUESTS_PER_FILTER):
            path = second if (n % 2 and second) else base
            began = time.perf_counter()
            status, body = _get(conn, path, headers)
            samples.append((time.perf_counter() - began) * 1000)
            assert status == 200, body[:200]
        p95 = _p95(samples)
        rows.append(
            {
                "measure": f"GET /api/runs, filter {name}",
                "median_ms": round(statistics.median(samples), 2),
                "p95_ms": round(p95, 2),
                "target": f"p95 ≤ {TARGET_LIST_P95_MS:g} ms",
                "met": p95 <= TARGET_LIST_P95_MS,
            }
        )
    return rows


def _stats_row(conn: http.client.HTTPConnection, headers: dict[str, str]) -> dict[str, Any]:
    samples = []
    for query in ("", "", "", "?config=dada", "?status=partial"):
        began = time.perf_counter()
        status, body = _get(conn, "/api/stats" + query, headers)
        samples.append((time.perf_counter() - began) * 1000)
        assert status == 200, body[:200]
    worst = max(samples)
    return {
        "measure": "GET /api/stats (all runs, and with a filter)",
        "median_ms": round(statistics.median(samples), 1),
        "p95_ms": round(worst, 1),
        "target": f"≤ {TARGET_STATS_MS:g} ms",
        "met": worst <= TARGET_STATS_MS,
    }


def _download(host: str, port: int, headers: dict[str, str]) -> tuple[int, float]:
    conn = http.client.HTTPConnection(host, port, timeout=600)
    try:
        began = time.perf_counter()
        conn.request("GET", "/api/exports?" + urlencode({"format": "json",
                     "session_id": BATCH_SESSION}), headers=headers)  # fmt: skip
        response = conn.getresponse()
        assert response.status == 200
        size = 0
        while chunk := response.read(256 * 1024):
            size += len(chunk)
        return size, time.perf_counter() - began
    finally:
        conn.close()


def _batch_rows(host: str, port: int, headers: dict[str, str]) -> list[dict[str, Any]]:
    size, seconds = _download(host, port, headers)
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        _download(host, port, headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    growth = (peak - base) / (1024 * 1024)
    return [
        {
            "measure": f"GET /api/exports: {BATCH_RUNS:,} runs as JSON with media",
            "median_ms": round(seconds * 1000),
            "p95_ms": "",
            "target": f"{size / 1024 / 1024:.1f} MiB ZIP, {BATCH_RUNS / seconds:.0f} runs/s",
            "met": "",
        },
        {
            "measure": "  peak memory growth while streaming it",
            "median_ms": "",
            "p95_ms": "",
            "target": f"{growth:.1f} MiB (≤ {TARGET_BATCH_PEAK_MIB:g} MiB)",
            "met": growth <= TARGET_BATCH_PEAK_MIB,
        },
    ]


def run() -> list[dict[str, Any]]:
    """Fill a store with ``RUNS`` runs, then time the research endpoints over HTTP.

    Returns:
        One row per measure: ``measure``, ``median_ms``, ``p95_ms``, ``target``, ``met``.
    """
    from devserver import create_app

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("DEVSERVER_")}
    try:
        with tempfile.TemporaryDirectory(prefix="api-bench-") as tmp:
            data_dir = Path(tmp) / "instance"
            app = create_app({"DATA_DIR": str(data_dir)})
            state = app.extensions["devserver"]
            try:
                template, template_media = _template(app)
                state.store.delete(template.run_id)
                database = state.settings.database_path
                assert database is not None, "the research API bench fills a SQLite file"
                fill_s, batch_from = _fill(
                    database,
                    template,
                    state.settings.data.media_root,
                    template_media,
                )
                rows: list[dict[str, Any]] = [
                    {
                        "measure": f"store {RUNS:,} runs (bench set-up, no fsync)",
                        "median_ms": round(fill_s * 1000),
                        "p95_ms": "",
                        "target": f"{RUNS / fill_s:,.0f} runs/s; "
                        f"{state.store.size_bytes() / 1024 / 1024:,.0f} MiB on disk",
                        "met": "",
                    }
                ]
                headers = {"Authorization": f"Bearer {state.settings.research_token}"}
                with _served(app) as (host, port):
                    conn = http.client.HTTPConnection(host, port, timeout=120)
                    try:
                        rows += _list_rows(conn, headers, batch_from)
                        rows.append(_stats_row(conn, headers))
                    finally:
                        conn.close()
                    rows += _batch_rows(host, port, headers)
            finally:
                state.close()
    finally:
        os.environ.update(saved)
    return rows


if __name__ == "__main__":  # python -m bench.api_bench  (API_BENCH_RUNS=10000 for a quick look)
    for row in run():
        print(row)
