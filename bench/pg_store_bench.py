"""Benchmark of the research queries on PostgreSQL over 100,000 stored runs, with their plans."""

from __future__ import annotations

import itertools
import os
import random
import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from execution_history import ExecutionRecord, RunFilter, new_run_id, open_store, upgrade_store

from .__main__ import machine
from ._runs import stille_post_record
from .api_bench import CONFIGS, LEVELS, STATUSES

RUNS = int(os.environ.get("PG_BENCH_RUNS", "100000"))
REPEATS = 200
TARGET_P95_MS = 50.0
TARGET_STATS_MS = 500.0

NOTES = f"""\
{RUNS:,} runs are stored first through `PostgresRecordStore.save` (one transaction each):
copies of one Stille Post run recorded through the real tracker (8 iterations, 3
outputs) under new ids, spread over a year, with the research API section's mix
(4 configs, 6 statuses, 3 safety levels, 2,000 people, 500 sessions) and 300 devices.
The cluster is a throw-away one started like the tests' (`tests/pg_cluster.py`,
PostgreSQL 15, unix socket, `shared_buffers=128MB`, `fsync=off` for the bulk load only;
reads do not touch it), then `VACUUM ANALYZE`. Each query runs {REPEATS} times on the
store's pool from this process (no HTTP: the research API section shows what HTTP
adds); list queries alternate the first page (50 runs) and the page after it.
"plan" is the index PostgreSQL chose on this data (EXPLAIN of the first page).
Machine: {machine()}.
"""

#: The filters of the research API (and erasure's user id), as the store takes them.
FILTERS: dict[str, RunFilter] = {
    "none": RunFilter(),
    "config": RunFilter(config="dada"),
    "status": RunFilter(status="blocked"),
    "status (rare)": RunFilter(status="running"),
    "safety_level": RunFilter(safety_level="teens"),
    "session_id": RunFilter(session_id="session-123"),
    "device_id": RunFilter(device_id="device-42"),
    "user_id": RunFilter(user_id="user-7"),
    "config + status": RunFilter(config="triptych", status="partial"),
}


def _fill(url: str, template: ExecutionRecord) -> tuple[float, datetime]:
    rng = random.Random(7)
    statuses = [s for s, _ in STATUSES]
    weights = [w for _, w in STATUSES]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    step = timedelta(days=365) / RUNS
    store = open_store(url)
    began = time.perf_counter()
    try:
        for n in range(RUNS):
            started = start + step * n
            store.save(
                template.model_copy(
                    update={
                        "run_id": new_run_id(),
                        "config_name": rng.choice(CONFIGS),
                        "status": rng.choices(statuses, weights)[0],
                        "safety_level": rng.choice(LEVELS),
                        "user_id": f"user-{rng.randrange(2000)}",
                        "session_id": f"session-{rng.randrange(500)}",
                        "device_id": f"device-{rng.randrange(300)}",
                        "started_at": started,
                        "ended_at": started + timedelta(seconds=3),
                    }
                )
            )
    finally:
        store.close()
    return time.perf_counter() - began, start


def _ms(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), statistics.quantiles(samples, n=20)[-1]


def _timed(call: Any, repeats: int = REPEATS) -> list[float]:
    call()  # warm: the plan is prepared, the pages are in the cache
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def _plan(store: Any, filters: RunFilter) -> str:
    from execution_history._pg_store import _where

    where, params = _where(filters)
    with store._connection() as conn:
        lines = [
            row[0]
            for row in conn.execute(
                f"EXPLAIN SELECT run_id FROM runs WHERE {where} "
                "ORDER BY started_at DESC, run_id DESC LIMIT 50",
                params,
            )
        ]
    text = "\n".join(lines)
    found = re.search(r"(Bitmap Index Scan|Index Only Scan|Index Scan) (?:using|on) (\w+)", text)
    sort = " + sort" if "Sort" in text else ""
    return (f"{found.group(1)} {found.group(2)}" if found else "Seq Scan") + sort


def _row(measure: str, samples: list[float], target: float, plan: str = "") -> dict[str, Any]:
    median, p95 = _ms(samples)
    return {
        "measure": measure,
        "median_ms": round(median, 2),
        "p95_ms": round(p95, 2),
        "target": f"p95 ≤ {target:g} ms",
        "met": p95 <= target,
        "plan": plan,
    }


def _queries(url: str, first: datetime) -> list[dict[str, Any]]:
    store = open_store(url)
    rows: list[dict[str, Any]] = []
    try:
        for name, filters in FILTERS.items():
            page = store.list_runs(filters, 50)
            after = page[-1].cursor if len(page) == 50 else None

            pages = itertools.cycle([None, after])  # the first page, then the one after it

            def listing(filters: RunFilter = filters, pages: Iterator[Any] = pages) -> None:
                store.list_runs(filters, 50, next(pages))

            rows.append(
                _row(f"list, filter {name}", _timed(listing), TARGET_P95_MS, _plan(store, filters))
            )
        week = first + timedelta(days=200)
        window = RunFilter(since=week, until=week + timedelta(days=7))
        rows.append(
            _row(
                "list, since/until (1 week)",
                _timed(lambda: store.list_runs(window, 50)),
                TARGET_P95_MS,
                _plan(store, window),
            )
        )
        deep = list(store.iter_runs(RunFilter(), page=1000))[RUNS // 2].cursor
        rows.append(
            _row(
                f"list, keyset page after run {RUNS // 2:,}",
                _timed(lambda: store.list_runs(RunFilter(), 50, deep)),
                TARGET_P95_MS,
            )
        )
        for name in ("none", "config", "status", "session_id", "config + status"):
            selected = FILTERS[name]
            rows.append(
                _row(
                    f"count, filter {name}",
                    _timed(lambda s=selected: store.count(s)),
                    TARGET_P95_MS,
                )
            )
        for name in ("none", "config", "status", "session_id"):
            samples = _timed(lambda s=FILTERS[name]: store.stats(s), 10)
            row = _row(f"stats, filter {name}", samples, TARGET_STATS_MS)
            worst = max(samples)
            row.update(
                p95_ms=round(worst, 1), target=f"≤ {TARGET_STATS_MS:g} ms (worst of 10)",
                met=worst <= TARGET_STATS_MS,
            )  # fmt: skip
            rows.append(row)
    finally:
        store.close()
    return rows


def run() -> list[dict[str, Any]]:
    """Start a cluster, store ``RUNS`` runs, time every research query on it.

    Returns:
        One row per measure: ``measure``, ``median_ms``, ``p95_ms``, ``target``,
        ``met``, ``plan``.
    """
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ beside bench/
    from tests.pg_cluster import Cluster

    cluster = Cluster({"fsync": "off", "full_page_writes": "off"}).start()
    try:
        cluster.execute("CREATE DATABASE bench")
        url = cluster.url("bench")
        upgrade_store(url)
        with tempfile.TemporaryDirectory() as folder:
            template = stille_post_record(Path(folder), write_media=False)
        fill_s, first = _fill(url, template)
        cluster.execute("VACUUM ANALYZE", "bench")
        store = open_store(url)
        try:
            size = store.size_bytes() or 0
        finally:
            store.close()
        rows: list[dict[str, Any]] = [
            {
                "measure": f"store {RUNS:,} runs (bench set-up, fsync off)",
                "median_ms": round(fill_s * 1000),
                "p95_ms": "",
                "target": f"{RUNS / fill_s:,.0f} runs/s; {size / 2**20:,.0f} MiB in tables",
                "met": "",
                "plan": "",
            }
        ]
        rows += _queries(url, first)
    finally:
        cluster.stop()
    return rows


if __name__ == "__main__":  # python -m bench.pg_store_bench  (PG_BENCH_RUNS=10000 for a quick look)
    for row in run():
        print(row)
