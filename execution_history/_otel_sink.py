"""The OTLP sink: each finished record as one trace, sent by its own thread with a deadline.

Fail-safe boundary of this sink, stated once: handing a record over is a bounded
``deque.append`` (the finaliser's writer never waits for a collector); the
sink's thread builds the spans, exports them with a deadline per export, and
counts every outcome (sent, failed, timed out, dropped because the queue was
full). Nothing here raises into the finaliser, and the store's record is never
touched except to add this sink's outcome to it once it is known.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ._otel import TraceOptions, record_spans
from ._record import ExecutionRecord, SinkOutcome

logger = logging.getLogger("execution_history")

#: Called with each settled outcome: (run id, outcome) pairs; wired to the store.
Report = Callable[[Sequence[tuple[str, SinkOutcome]]], object]


class SpanExporter(Protocol):
    """What the sink needs of an OpenTelemetry span exporter (``OTLPSpanExporter``)."""

    def export(self, spans: Sequence[Any]) -> Any:
        """Send spans; returns ``SpanExportResult``."""
        ...

    def shutdown(self) -> None:
        """Stop; interrupts a retry in progress."""
        ...


class Pseudonymising(Protocol):
    """Anything that turns raw ids into pseudonyms (``Pseudonymiser``)."""

    def user(self, user_id: str) -> str: ...

    def session(self, session_id: str) -> str: ...

    def device(self, device_id: str) -> str: ...


@dataclass(slots=True)
class OtlpFigures:
    """The sink's counters since the start (``/api/health``); each counts runs (traces)."""

    sent: int = 0
    failed: int = 0
    timed_out: int = 0
    dropped: int = 0
    report_failures: int = 0
    last_error: str | None = None


class OtlpSink:
    """Sends each record as one OTLP trace, off the finaliser's thread.

    Args:
        exporter: an OpenTelemetry span exporter (``OTLPSpanExporter``), given its
            endpoint, headers and ``timeout`` (the deadline of one export, retries
            included) by the caller.
        options: how records become traces (service name, content capture).
        pseudonymiser: turns the record's raw ids into pseudonyms before anything is
            built (None: the ids are dropped).
        deadline_s: the export's deadline; an export that took this long counts as
            timed out rather than failed.
        queue_size: runs waiting at most; a run handed over when it is full is
            dropped (counted, and its outcome says so).
        batch_runs: runs sent together in one export when several wait.
        report: told each outcome once it is known (the devserver adds it to the
            stored record); its failures are counted and logged, never raised.
    """

    name = "otlp"
    #: The store keeps the record; a trace is a copy for other tools.
    durable = False

    def __init__(
        self,
        exporter: SpanExporter,
        options: TraceOptions,
        *,
        pseudonymiser: Pseudonymising | None = None,
        deadline_s: float = 5.0,
        queue_size: int = 512,
        batch_runs: int = 32,
        report: Report | None = None,
    ) -> None:
        self.exporter = exporter
        self.options = options
        self.pseudonymiser = pseudonymiser
        self.deadline_s = deadline_s
        self.queue_size = queue_size
        self.batch_runs = max(1, batch_runs)
        self.report = report
        self.figures = OtlpFigures()
        self._resource = options.resource()  # once: it reads the environment
        self._queue: collections.deque[ExecutionRecord] = collections.deque()
        self._busy = 0
        self._wake = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="otlp-sink", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- intake

    def __call__(self, record: ExecutionRecord) -> SinkOutcome:
        """Queue ``record``'s trace; returns 'queued', or 'dropped' when the queue is full."""
        if self._stopping or len(self._queue) >= self.queue_size:
            reason = "shut down" if self._stopping else f"queue full ({self.queue_size} runs)"
            outcome = SinkOutcome(name=self.name, status="dropped", error=reason)
            with self._lock:
                self.figures.dropped += 1
                self.figures.last_error = reason
            self._report([(record.run_id, outcome)])
            return outcome
        self._queue.append(record)
        self._wake.set()
        return SinkOutcome(name=self.name, status="queued")

    # ------------------------------------------------------------------ work

    def _work(self) -> None:
        queue = self._queue
        while True:
            self._wake.wait()
            self._wake.clear()
            while queue:
                batch: list[ExecutionRecord] = []
                with self._lock:
                    while queue and len(batch) < self.batch_runs:
                        batch.append(queue.popleft())
                    self._busy = len(batch)
                try:
                    self._export(batch)
                finally:
                    with self._lock:
                        self._busy = 0
            if self._stopping:
                return

    def _export(self, records: list[ExecutionRecord]) -> None:
        settled: list[tuple[str, SinkOutcome]] = []
        spans: list[Any] = []
        sent: list[str] = []
        for record in records:
            try:
                safe = record.pseudonymised(self.pseudonymiser)
                spans.extend(record_spans(safe, self.options, self._resource))
                sent.append(record.run_id)
            except Exception as exc:  # one record that cannot be built costs itself only
                why = f"trace not built: {type(exc).__name__}: {exc}"[:500]
                logger.error("OTLP trace of run %s not built: %s", record.run_id, exc)
                settled.append((record.run_id, self._settle("failed", why, None)))
        if spans:
            began = time.perf_counter()
            reason: str | None
            try:
                result = self.exporter.export(spans)
                ok = getattr(result, "name", str(result)) == "SUCCESS"
                reason = None if ok else "the collector did not accept the trace (see the log)"
            except Exception as exc:  # an exporter must not take the thread down
                ok, reason = False, f"{type(exc).__name__}: {exc}"[:500]
            elapsed = time.perf_counter() - began
            ms = round(elapsed * 1000.0, 3)
            if ok:
                status = "ok"
            elif elapsed >= self.deadline_s * 0.99:
                status, reason = "timeout", f"no answer within {self.deadline_s:g} s"
            else:
                status = "failed"
            settled.extend((run_id, self._settle(status, reason, ms, len(sent))) for run_id in sent)
        self._report(settled)

    def _settle(
        self, status: str, reason: str | None, ms: float | None, runs: int = 1
    ) -> SinkOutcome:
        with self._lock:
            figures = self.figures
            if status == "ok":
                figures.sent += 1
            elif status == "timeout":
                figures.timed_out += 1
            else:
                figures.failed += 1
            if reason:
                figures.last_error = reason
        return SinkOutcome(name=self.name, status=status, duration_ms=ms, error=reason)

    def _report(self, settled: Sequence[tuple[str, SinkOutcome]]) -> None:
        if not settled or self.report is None:
            return
        try:
            self.report(settled)
        except Exception as exc:
            with self._lock:
                self.figures.report_failures += 1
            logger.error("OTLP outcomes of %d run(s) not recorded: %s", len(settled), exc)

    # --------------------------------------------------------------- figures

    def waiting(self) -> int:
        """Runs queued or being sent."""
        return len(self._queue) + self._busy

    def health(self) -> dict[str, Any]:
        """The counters and the queue, for ``/api/health``."""
        with self._lock:
            f = self.figures
            return {
                "waiting": len(self._queue) + self._busy,
                "sent": f.sent,
                "failed": f.failed + f.timed_out,
                "timed_out": f.timed_out,
                "dropped": f.dropped,
                "outcomes_not_recorded": f.report_failures,
                "last_error": f.last_error,
            }

    # -------------------------------------------------------------- shutdown

    def close(self, timeout: float | None = None) -> int:
        """Send what waits for at most ``timeout`` (default: the export deadline), then stop.

        Never blocks past ``timeout``: the exporter is shut down (which cuts a
        retry short) and runs still queued are dropped and counted.

        Returns:
            How many runs were dropped at shutdown.
        """
        limit = self.deadline_s if timeout is None else timeout
        self._stopping = True
        self._wake.set()
        self._thread.join(max(limit, 0.0))
        try:
            self.exporter.shutdown()
        except Exception as exc:
            logger.error("OTLP exporter shutdown failed: %s", exc)
        left: list[ExecutionRecord] = []
        with self._lock:
            while self._queue:
                left.append(self._queue.popleft())
            self.figures.dropped += len(left)
            if left:
                self.figures.last_error = "shut down before sending"
        if left:
            logger.warning("%d OTLP trace(s) not sent at shutdown", len(left))
            outcome = SinkOutcome(
                name=self.name, status="dropped", error="shut down before sending"
            )
            self._report([(record.run_id, outcome) for record in left])
        return len(left)


__all__ = ["OtlpFigures", "OtlpSink", "SpanExporter"]
