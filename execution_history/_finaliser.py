"""The finaliser: processors at a run's start and end, and the one builder-and-sinks writer.

Fail-safe boundary, stated once for everything here: a processor or a sink
that raises or hangs never reaches the pipeline. Processors (the journal,
the live registry) are called at a run's start and end and once its record
is safe, each isolated. At the end, the background writer builds the record
once (``build_record``) and hands it to the sinks in order (the store first),
each isolated and with a deadline; a failed durable sink's ``fallback`` (the
store sink's quarantine) keeps the record. When even that fails, the run is
held in memory, still readable through the live registry, and retried with
backoff for as long as the process lives; ``close`` writes what is still held
to a last-resort place and says exactly how many runs went where.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from ._build import build_record
from ._media import complete_media
from ._record import ExecutionRecord, SinkOutcome
from ._runlog import RunLog
from ._sinks import write_atomically

logger = logging.getLogger("execution_history")

_SAFE = ("ok", "quarantined")


@runtime_checkable
class Sink(Protocol):
    """Receives each finished record once. ``name`` appears in the integrity block.

    A sink with ``durable = True`` must keep the record (itself or through its
    ``fallback(record, reason)``, which returns a status or a ``SinkOutcome``)
    before the run counts as safe. A sink that stores the record with its own
    outcome returns that ``SinkOutcome``, so that the record readers get from
    memory and the stored one are the same.
    """

    name: str

    def __call__(self, record: ExecutionRecord) -> SinkOutcome | None: ...


class RunProcessor(Protocol):
    """Told about each run: at its start, at its end, and once its record is safe."""

    name: str

    def on_start(self, log: RunLog) -> None: ...

    def on_end(self, log: RunLog) -> None: ...

    def on_stored(self, log: RunLog) -> None: ...


@dataclass(slots=True)
class _Held:
    log: RunLog
    record: ExecutionRecord
    attempts: int = 1
    due: float = 0.0


@dataclass(slots=True)
class ShutdownReport:
    """What ``Finaliser.close`` left behind: runs that could not be written, and where they went."""

    drained: bool = True
    unwritten: int = 0
    places: list[str] = field(default_factory=list)
    #: Set by the caller: some runs did not finish in time and were recorded as errors.
    runs_aborted: bool = False

    @property
    def clean(self) -> bool:
        """Every run finished, and every record is in the store or the quarantine."""
        return self.drained and not self.unwritten and not self.runs_aborted

    def message(self) -> str:
        """One true sentence for the shutdown log."""
        parts = []
        if self.runs_aborted:
            parts.append("some runs did not finish in time and were recorded as errors")
        if not self.drained:
            parts.append("the writer did not finish in time: runs it had not written are "
                         "recovered from the journal at the next start")  # fmt: skip
        if self.unwritten:
            parts.append(
                f"{self.unwritten} run(s) could not be written to the store or the quarantine "
                f"and were saved to {', '.join(self.places)}"
            )
        if not parts:
            return "every run is recorded"
        text = "; ".join(parts)
        return text[0].upper() + text[1:]


class Finaliser:
    """Processors and a background writer with a bounded queue that runs sinks in order.

    Handing over a run is a ``deque.append``: the writer thread polls the
    queue every ``poll_s`` instead of being woken (waking a thread is a
    system call that costs more than the tracker's whole run).

    Args:
        sinks: called in order with each record (the store first).
        processors: told at each run's start and end, and when it is safe.
        deadline_s: how long one sink may take before it counts as timed out.
        queue_size: runs waiting at most; when full, the submitting thread
            builds and stores the run itself rather than dropping anything.
        background: start the writer thread (False: everything on submit).
        poll_s: how often the writer looks for new runs.
        retry_s: first wait before a held run is tried again (doubled each time, up to 60 s).
        last_resort_dirs: where ``close`` writes runs still held (the first
            writable one); standard error as JSON lines when none is.
    """

    def __init__(
        self,
        sinks: Sequence[Sink] = (),
        *,
        processors: Sequence[RunProcessor] = (),
        deadline_s: float = 10.0,
        queue_size: int = 1024,
        background: bool = True,
        poll_s: float = 0.005,
        retry_s: float = 1.0,
        last_resort_dirs: Sequence[str | Path] = (),
    ) -> None:
        self.sinks = list(sinks)
        self.processors = list(processors)
        self.deadline_s = deadline_s
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.last_resort_dirs = [Path(p) for p in last_resort_dirs]
        self.inline_runs = 0
        self.processor_errors = 0
        self._queue_size = queue_size
        self._pending: collections.deque[RunLog] = collections.deque()
        self._held: dict[str, _Held] = {}
        self._busy = 0  # runs taken off the queue and not yet settled
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._sink_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="execution-history-sink"
        )
        self._closed = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._work, name="execution-history-finaliser", daemon=True
            )
            self._thread.start()

    # ------------------------------------------------------------ processors

    def start(self, log: RunLog) -> bool:
        """A run is accepted or begins: tell every processor (idempotent for each).

        Returns True when every processor took the run (the journal wrote it
        durably); False when one failed, which is counted in the run and logged.
        """
        ok = True
        for processor in self.processors:
            try:
                processor.on_start(log)
            except Exception as exc:
                ok = False
                self._processor_failed(processor, "on_start", log, exc)
        return ok

    def abandon(self, log: RunLog) -> None:
        """A run that was never started after all (refused at intake): processors let it go."""
        self._stored(log)

    def _stored(self, log: RunLog) -> None:
        for processor in self.processors:
            try:
                processor.on_stored(log)
            except Exception as exc:
                self._processor_failed(processor, "on_stored", log, exc)

    def _processor_failed(
        self, processor: RunProcessor, hook: str, log: RunLog, exc: Exception
    ) -> None:
        self.processor_errors += 1
        name = getattr(processor, "name", type(processor).__name__)
        with contextlib.suppress(Exception):
            log.count_error(f"{name}.{hook}: {type(exc).__name__}: {exc}"[:500])
        logger.error("%s.%s failed for run %s: %s", name, hook, log.run_id, exc)

    # ------------------------------------------------------------------ intake

    def end(self, log: RunLog) -> None:
        """Queue an ended run for its record and sinks; a second call for one run is ignored."""
        with self._lock:
            if log.queued:
                return
            log.queued = True
        for processor in self.processors:
            try:
                processor.on_end(log)
            except Exception as exc:
                self._processor_failed(processor, "on_end", log, exc)
        if self._thread is None or self._closed or len(self._pending) >= self._queue_size:
            if self._thread is not None and not self._closed:
                self.inline_runs += 1  # the writer is behind: the caller pays, nothing is dropped
            self._finalise(log)
            return
        self._pending.append(log)

    def wait_for(self, log: RunLog, timeout: float) -> bool:
        """Block until ``log``'s record went through the sinks; False on timeout.

        Wakes the writer at once: whoever waits pays for the wake-up, not the
        pipeline that handed the run over.
        """
        self._wake.set()
        return log.wait_settled(timeout)

    # -------------------------------------------------------------------- work

    def _work(self) -> None:
        pending = self._pending
        while True:
            while pending:
                self._busy += 1
                self._finalise(pending.popleft())
                self._busy -= 1
            if self._held:
                self._retry_held(force=False)
            if self._stopping.is_set() and not pending:
                return
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _finalise(self, log: RunLog) -> None:
        record: ExecutionRecord | None = None
        try:
            record = complete_media(build_record(log), log.media_dir)
            outcomes = [self._run_sink(sink, record) for sink in self.sinks]
            record = record.model_copy(
                update={"integrity": record.integrity.model_copy(update={"sinks": outcomes})}
            )
            kept = all(
                outcome.status in _SAFE
                for sink, outcome in zip(self.sinks, outcomes, strict=True)
                if getattr(sink, "durable", False)
            )
        except Exception as exc:  # never lose the thread, nor the run
            logger.exception("finalising run %s failed", log.run_id)
            log.count_error(f"finaliser: {type(exc).__name__}: {exc}"[:500])
            kept = False
        if record is None:
            record = build_record(log)  # the builder does not raise for what a log holds
        log.settle(record)
        if kept:
            self._stored(log)
        else:
            self._hold(log, record)

    def _hold(self, log: RunLog, record: ExecutionRecord) -> None:
        with self._lock:
            held = self._held.get(log.run_id)
            if held is None:
                self._held[log.run_id] = _Held(log, record, 1, time.monotonic() + self.retry_s)
            else:
                held.attempts += 1
                held.due = time.monotonic() + min(self.retry_s * 2**held.attempts, 60.0)
        logger.error(
            "run %s could not be stored nor quarantined; held in memory and retried", log.run_id
        )

    def _retry_held(self, *, force: bool) -> None:
        now = time.monotonic()
        with self._lock:
            due = [h for h in self._held.values() if force or h.due <= now]
        for held in due:
            if self._keep(held.record):
                with self._lock:
                    self._held.pop(held.log.run_id, None)
                self._stored(held.log)
                logger.warning("held run %s is stored now", held.log.run_id)
            else:
                self._hold(held.log, held.record)

    def _keep(self, record: ExecutionRecord) -> bool:
        """Try the durable sinks again for a held record; True when each kept it."""
        for sink in self.sinks:
            if getattr(sink, "durable", False):
                outcome = self._run_sink(sink, record)
                if outcome.status not in _SAFE:
                    return False
        return True

    def _run_sink(self, sink: Sink, record: ExecutionRecord) -> SinkOutcome:
        name = getattr(sink, "name", type(sink).__name__)
        began = time.perf_counter()
        try:
            future = self._sink_pool.submit(sink, record)
            result = future.result(timeout=self.deadline_s)
            if isinstance(result, SinkOutcome):  # the outcome the sink stored with the record
                return result
            return SinkOutcome(name=name, status="ok", duration_ms=_ms_since(began))
        except concurrent.futures.TimeoutError:
            reason, status = f"no answer within {self.deadline_s:g} s", "timeout"
        except Exception as exc:
            reason, status = f"{type(exc).__name__}: {exc}"[:500], "failed"
        logger.error("sink %s %s for run %s: %s", name, status, record.run_id, reason)
        fallback = getattr(sink, "fallback", None)
        if fallback is not None:
            try:
                kept = fallback(record, reason)
                if isinstance(kept, SinkOutcome):  # the outcome written with the record
                    return kept
                status = str(kept)
            except Exception as exc:
                logger.error("fallback of sink %s failed for run %s: %s", name, record.run_id, exc)
                reason = f"{reason}; fallback failed: {type(exc).__name__}: {exc}"[:500]
        return SinkOutcome(name=name, status=status, duration_ms=_ms_since(began), error=reason)

    # ----------------------------------------------------------------- figures

    def waiting(self) -> int:
        """Runs ended and not yet through the sinks (queued or being written)."""
        return len(self._pending) + self._busy

    def held(self) -> list[str]:
        """Ids of runs that could be written neither to the store nor to the quarantine."""
        with self._lock:
            return list(self._held)

    # ---------------------------------------------------------------- shutdown

    def close(self, timeout: float = 30.0) -> ShutdownReport:
        """Drain the queue, try held runs once more, save what is still held, stop.

        Returns a report whose ``message()`` says truthfully what is left.
        """
        self._closed = True
        report = ShutdownReport()
        if self._thread is not None and self._thread.is_alive():
            self._stopping.set()
            self._wake.set()
            self._thread.join(timeout)
            report.drained = not self._thread.is_alive()
        else:
            while self._pending:
                self._finalise(self._pending.popleft())
        if self._held:
            self._retry_held(force=True)
        with self._lock:
            held = list(self._held.values())
        if held:
            report.unwritten = len(held)
            report.places = self._save_last_resort([h.record for h in held])
        self._sink_pool.shutdown(wait=report.drained, cancel_futures=not report.drained)
        return report

    def _save_last_resort(self, records: list[ExecutionRecord]) -> list[str]:
        """Write ``records`` to the first writable last-resort folder, else standard error."""
        for folder in self.last_resort_dirs:
            written: list[Path] = []
            try:
                folder.mkdir(parents=True, exist_ok=True)
                for record in records:
                    path = folder / f"{record.run_id}.json"
                    # Atomically: a full disk must not leave an empty or cut file that
                    # looks like a saved record.
                    write_atomically(path, record.model_dump_json().encode("utf-8"))
                    written.append(path)
                return [str(folder)]
            except OSError as exc:
                logger.error("last-resort folder %s not writable: %s", folder, exc)
                # Every record goes to the next place; copies here would make the
                # message ("saved to <the next place>") incomplete.
                for path in written:
                    with contextlib.suppress(OSError):
                        path.unlink()
        for record in records:
            sys.stderr.write(record.model_dump_json() + "\n")
        sys.stderr.flush()
        return ["standard error (one JSON record per line)"]


def _ms_since(began: float) -> float:
    return round((time.perf_counter() - began) * 1000.0, 3)


__all__ = ["Finaliser", "RunProcessor", "ShutdownReport", "Sink"]
