"""Tracker core benchmark: per-call cost against its floor and its peer, finalisation, store."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import json
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from execution_history import (
    ExecutionTracker,
    Finaliser,
    ItemType,
    Limits,
    NullTracker,
    SQLiteRecordStore,
    build_record,
)
from tests.records import STILLE_POST_LANGUAGES, STILLE_POST_TEXTS, log_stille_post

BATCH = 100
ROUNDS = 1500
UNLIMITED = Limits(max_items=10**9)


def _per_call_ns(body: Callable[[int], None], rounds: int = ROUNDS) -> tuple[float, float]:
    """Median and p99 of the per-call cost, timed in batches of ``BATCH`` calls.

    ``body(n)`` makes ``n`` calls. Batching keeps the timer's own cost (about
    the size of what is measured) out of the figures; p99 is over batches.
    """
    samples = []
    body(BATCH * 20)  # warm up
    gc.disable()
    try:
        for _ in range(rounds):
            began = time.perf_counter_ns()
            body(BATCH)
            samples.append((time.perf_counter_ns() - began) / BATCH)
    finally:
        gc.enable()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def _tracker_log() -> Callable[[int], None]:
    tracker = ExecutionTracker("bench", limits=UNLIMITED).start()
    log = tracker.log
    kind = ItemType.INTERCEPTION_ITERATION

    def body(n: int) -> None:
        if len(tracker.items) > 200_000:
            tracker.items.clear()
        for i in range(n):
            log(
                kind,
                "text",
                metadata={"seed": i, "steps": 20, "cfg": 7.5, "from_lang": "de", "to_lang": "en"},
            )

    return body


def _typed_helper() -> Callable[[int], None]:
    tracker = ExecutionTracker("bench", limits=UNLIMITED).start()
    helper = tracker.log_interception_iteration

    def body(n: int) -> None:
        if len(tracker.items) > 200_000:
            tracker.items.clear()
        for i in range(n):
            helper(
                "text",
                from_lang="de",
                to_lang="en",
                model="m",
                backend="local",
                duration_ms=1.0,
                metadata={"seed": i, "steps": 20, "cfg": 7.5},
            )

    return body


def _bare_append() -> Callable[[int], None]:
    items: list[tuple[Any, ...]] = []
    append = items.append
    kind = ItemType.INTERCEPTION_ITERATION

    def body(n: int) -> None:
        if len(items) > 200_000:
            items.clear()
        for i in range(n):
            append(
                (
                    i,
                    0,
                    2,
                    1,
                    None,
                    kind,
                    "text",
                    None,
                    None,
                    None,
                    None,
                    None,
                    {"seed": i, "steps": 20, "cfg": 7.5, "from_lang": "de", "to_lang": "en"},
                    None,
                    None,
                )
            )

    return body


def _null_tracker() -> Callable[[int], None]:
    log = NullTracker("bench").log
    kind = ItemType.INTERCEPTION_ITERATION

    def body(n: int) -> None:
        for i in range(n):
            log(
                kind,
                "text",
                metadata={"seed": i, "steps": 20, "cfg": 7.5, "from_lang": "de", "to_lang": "en"},
            )

    return body


def _otel_span() -> Callable[[int], None]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")

    def body(n: int) -> None:
        exporter.clear()
        for i in range(n):
            with tracer.start_as_current_span(
                "interception_iteration",
                attributes={"seed": i, "steps": 20, "cfg": 7.5, "from_lang": "de", "to_lang": "en"},
            ):
                pass

    return body


@dataclasses.dataclass
class _LegacyItem:
    """The earlier item: a plain dataclass with the same fields as a recorded item."""

    sequence: int
    timestamp: dt.datetime
    stage: int
    stage_iteration: int | None
    loop_iteration: int | None
    item_type: str
    content: str | None
    media_type: str | None
    media: Any
    model: str | None
    backend: str | None
    duration_ms: float | None
    metadata: dict[str, Any]
    config: str | None


def _legacy_design() -> Callable[[int], None]:
    """The earlier design the issue names: a dataclass, datetime.now(), an ``or`` fallback.

    Same fields as the tracker records, so the two are compared like for like.
    """
    items: list[_LegacyItem] = []
    state: dict[str, Any] = {"stage": 2, "stage_iteration": 1, "loop_iteration": None}

    def log(
        item_type: str,
        content: str | None = None,
        stage: int | None = None,
        stage_iteration: int | None = None,
        loop_iteration: int | None = None,
        media_type: str | None = None,
        media: Any = None,
        model: str | None = None,
        backend: str | None = None,
        duration_ms: float | None = None,
        metadata: dict[str, Any] | None = None,
        config: str | None = None,
    ) -> None:
        items.append(
            _LegacyItem(
                len(items) + 1,
                dt.datetime.now(dt.UTC),
                stage or state["stage"],
                stage_iteration or state["stage_iteration"],
                loop_iteration or state["loop_iteration"],
                item_type,
                content,
                media_type,
                media,
                model,
                backend,
                duration_ms,
                metadata or {},
                config,
            )
        )

    def body(n: int) -> None:
        if len(items) > 200_000:
            items.clear()
        for i in range(n):
            log(
                "interception_iteration",
                "text",
                metadata={"seed": i, "steps": 20, "cfg": 7.5, "from_lang": "de", "to_lang": "en"},
            )

    return body


def _stille_post_run(finaliser: Finaliser) -> ExecutionTracker:
    tracker = ExecutionTracker(
        "stillepost", safety_level="kids", user_id="u", session_id="s", finaliser=finaliser
    )
    log_stille_post(tracker, blocked_output=None)
    return tracker


def _stille_post_untracked() -> list[Any]:
    """The same run's own work (loops, texts, the dicts it hands over) with no tracker."""
    sink: list[Any] = []
    keep = sink.append
    keep("Ein Hund spielt im Garten")
    keep(("A dog plays in the garden", "de", "en", "glossary", "local", 0.3))
    keep({"matched_terms": []})
    for i, text in enumerate(STILLE_POST_TEXTS, start=1):
        keep((text, STILLE_POST_LANGUAGES[i - 1], STILLE_POST_LANGUAGES[i], "glossary", "local"))
        keep({"seed": 7})
    keep(STILLE_POST_TEXTS[-1])
    for j in (1, 2, 3):
        keep({"level": "kids"})
        keep({"path": f"output_{j}.png", "mime_type": "image/png"})
        keep({"seed": 7 + j, "steps": 20, "width": 512, "height": 512})
    return sink


def _typical_run_us() -> tuple[float, float, float, int]:
    """Tracked runs back to back with the real background writer, as on a busy server.

    The same run's own work without a tracker is timed in between, so the
    difference is what the tracker adds on the pipeline's thread (hand-over
    to the writer included; the writer's own work is measured separately).
    """
    finaliser = Finaliser([])
    tracked, untracked = [], []
    tracker = None
    for index in range(2400):
        gc.disable()
        began = time.perf_counter_ns()
        _stille_post_untracked()
        middle = time.perf_counter_ns()
        tracker = _stille_post_run(finaliser)
        ended = time.perf_counter_ns()
        gc.enable()
        untracked.append((middle - began) / 1000)
        tracked.append((ended - middle) / 1000)
        if index % 200 == 199:
            tracker.finalize(wait=True)  # keep the writer's backlog bounded
    assert tracker is not None
    items = len(tracker.finalize(wait=True).items)
    finaliser.close()
    tracked, untracked = tracked[200:], untracked[200:]  # warm-up
    cost = sorted(t - u for t, u in zip(tracked, untracked, strict=True))
    return statistics.median(tracked), statistics.median(untracked), statistics.median(cost), items


def _closed_tracker(items: int) -> ExecutionTracker:
    """A run of ``items`` items, closed but not yet built (``finalize`` would build it)."""
    tracker = ExecutionTracker("bench", user_id="u", session_id="s", limits=UNLIMITED).start()
    with tracker.stage(2):
        for i in range(items - 4):
            with tracker.stage_iteration(i):
                tracker.log_interception_iteration(
                    f"iteration {i} " * 8,
                    from_lang="de",
                    to_lang="en",
                    model="m",
                    backend="local",
                    duration_ms=0.5,
                    metadata={"seed": i},
                )
    tracker.end()  # closed; without a finaliser, end() builds nothing that record() reuses
    tracker.run_log.record = None
    return tracker


def _finalise_and_store_ms(items: int, repeats: int) -> tuple[float, float, float, int]:
    """Medians of: building the record, the json.dumps floor of the same item dicts, storing it.

    The floor serialises the record's items as plain dicts (what any builder
    must at least touch once), measured interleaved with the build.
    """
    build, floor, save = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteRecordStore(Path(folder) / "h.sqlite3")
        for _ in range(repeats):
            tracker = _closed_tracker(items)
            log = tracker.run_log
            began = time.perf_counter()
            record = build_record(log)
            build.append((time.perf_counter() - began) * 1000)
            plain = [item.model_dump(mode="json") for item in record.items]
            began = time.perf_counter()
            json.dumps(plain)
            floor.append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            store.save(record)
            save.append((time.perf_counter() - began) * 1000)
        size = len(record.items)
        store.close()
    return statistics.median(build), statistics.median(floor), statistics.median(save), size


def _bytes_per_item() -> tuple[float, float]:
    tracker = ExecutionTracker("bench", limits=UNLIMITED).start()
    count = 10_000
    metadata = {"seed": 1, "steps": 20, "cfg": 7.5, "from_lang": "de", "to_lang": "en"}
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(count):
        tracker.log(ItemType.INTERCEPTION_ITERATION, "text", metadata=metadata)
    shared = tracemalloc.get_traced_memory()[0] - before
    for i in range(count):
        tracker.log(
            ItemType.INTERCEPTION_ITERATION,
            "text",
            metadata={"seed": i, "steps": 20, "cfg": 7.5, "from_lang": "de", "to_lang": "en"},
        )
    total = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return shared / count, (total - shared) / count


def run() -> list[dict[str, Any]]:
    """Measure everything in one process, side by side; returns table rows."""
    rows: list[dict[str, Any]] = []

    def row(what: str, value: float, unit: str, target: str = "", met: bool | None = None) -> None:
        verdict = "" if met is None else ("met" if met else "NOT MET")
        rows.append(
            {
                "measure": what,
                "value": round(value, 3),
                "unit": unit,
                "target": target,
                "verdict": verdict,
            }
        )

    floor_med, _ = _per_call_ns(_bare_append())
    log_med, log_p99 = _per_call_ns(_tracker_log())
    helper_med, helper_p99 = _per_call_ns(_typed_helper())
    null_med, _ = _per_call_ns(_null_tracker())
    otel_med, otel_p99 = _per_call_ns(_otel_span(), rounds=300)
    legacy_med, _ = _per_call_ns(_legacy_design())
    row("bare list.append of the same tuple (floor), median", floor_med / 1000, "µs")
    row("tracker.log, 5-key metadata, median", log_med / 1000, "µs", "≤ 1 µs", log_med <= 1000)
    row("tracker.log, p99 (batches of 100)", log_p99 / 1000, "µs")
    ratio = log_med / floor_med
    row("tracker.log ÷ floor", ratio, "×", "≤ 3×", ratio <= 3)
    row("typed helper log_interception_iteration, median", helper_med / 1000, "µs")
    row("typed helper, p99", helper_p99 / 1000, "µs")
    row("OpenTelemetry span, 5 attributes, median", otel_med / 1000, "µs")
    row("OpenTelemetry span, p99", otel_p99 / 1000, "µs")
    speedup = otel_med / log_med
    row("OpenTelemetry span ÷ tracker.log", speedup, "×", "≥ 10×", speedup >= 10)
    row("earlier design (dataclass + datetime.now), median", legacy_med / 1000, "µs")
    row("earlier design ÷ tracker.log", legacy_med / log_med, "×")
    row(
        "disabled tracker (NullTracker.log), median",
        null_med / 1000,
        "µs",
        "≤ 0.2 µs",
        null_med <= 200,
    )
    tracked, untracked, cost, items = _typical_run_us()
    row(f"typical Stille Post run ({items} items) with the tracker, median", tracked, "µs")
    row("the same run's own work without a tracker, median", untracked, "µs")
    row("tracker time of a typical Stille Post run, median", cost, "µs", "≤ 20 µs", cost <= 20)
    for items, repeats, build_target, save_target in (
        (30, 400, 0.15, 2.0),
        (1000, 40, 3.0, 20.0),
    ):
        build, floor, save, size = _finalise_and_store_ms(items, repeats)
        row(
            f"build the record (the one builder), {size} items, median",
            build,
            "ms",
            f"≤ {build_target:g} ms",
            build <= build_target,
        )
        row(f"json.dumps of the same item dicts (floor), {size} items, median", floor, "ms")
        row(f"build ÷ json.dumps floor, {size} items", build / floor, "×")
        row(
            f"durable store write (WAL, synchronous=FULL), {size} items, median",
            save,
            "ms",
            f"≤ {save_target:g} ms",
            save <= save_target,
        )
    shared, own = _bytes_per_item()
    row("memory per item (metadata dict shared)", shared, "bytes")
    row("memory per item (own 5-key metadata dict)", own, "bytes")
    return rows
