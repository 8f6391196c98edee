"""The finaliser: hands each finished record to its sinks, off the pipeline's thread.

Fail-safe boundary for sinks: every sink runs isolated, with a deadline; a
sink that raises or hangs is recorded in the record's integrity block, its
``fallback`` (if any) keeps the record (the store sink quarantines it), and
the next sink still runs. Nothing here raises into the pipeline.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ._capture import capture_payload
from ._record import ExecutionRecord, MediaRef, SinkOutcome

if TYPE_CHECKING:
    from ._journal import Journal
    from ._live import LiveRunRegistry
    from ._store import SQLiteRecordStore
    from ._tracker import ExecutionTracker

logger = logging.getLogger("execution_history")


@runtime_checkable
class Sink(Protocol):
    """Receives each finished record once. ``name`` appears in the integrity block."""

    name: str

    def __call__(self, record: ExecutionRecord) -> None: ...


class FallbackSink(Sink, Protocol):
    """A sink that can keep the record some other way when it failed or timed out."""

    def fallback(self, record: ExecutionRecord, reason: str) -> str: ...


class Finaliser:
    """A background writer with a bounded queue that runs sinks in order.

    Handing over a run is a ``deque.append``: the writer thread polls the
    queue every ``poll_s`` instead of being woken, because waking a thread is
    a system call that costs tens of microseconds in sandboxed kernels, more
    than everything else the tracker does for a whole run.

    Args:
        sinks: called in order with each record (the store first).
        deadline_s: how long one sink may take before it counts as timed out.
        queue_size: records waiting at most; when full, the submitting thread
            runs the sinks itself rather than dropping anything.
        journal: the in-flight journal; runs are watched from ``started``
            and forgotten once their record is safe.
        registry: the live-run registry; runs leave it once stored.
        background: start the writer thread (False: run sinks on submit).
        poll_s: how often the writer looks for new records.
        capture_store: when given, the writer stores each run's capture there
            (all runs of one poll in one transaction) instead of building the
            record and running the sinks; the store builds the record when the
            run is first read, or here when the writer has been idle for
            ``idle_build_s``. A run without an exact capture, or a capture
            the store refused, takes the sinks as usual. See ``_capture``.
        idle_build_s: idle time after which the writer builds stored captures.
    """

    def __init__(
        self,
        sinks: Sequence[Sink] = (),
        *,
        deadline_s: float = 10.0,
        queue_size: int = 1024,
        journal: Journal | None = None,
        registry: LiveRunRegistry | None = None,
        background: bool = True,
        poll_s: float = 0.005,
        capture_store: SQLiteRecordStore | None = None,
        idle_build_s: float = 1.0,
    ) -> None:
        self.sinks = list(sinks)
        self.deadline_s = deadline_s
        self.journal = journal
        self.registry = registry
        self.inline_runs = 0
        self.poll_s = poll_s
        self.capture_store = capture_store
        self.idle_build_s = idle_build_s
        # Whether stored captures may wait to be built; checked once at start (a
        # previous process may have left some), then set by every capture write.
        self._unbuilt_captures = capture_store is not None
        self._queue_size = queue_size
        self._pending: collections.deque[ExecutionTracker] = collections.deque()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._sink_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="execution-history-sink"
        )
        self._closed = False
        self._submit_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._work, name="execution-history-finaliser", daemon=True
            )
            self._thread.start()

    # ------------------------------------------------------------------ intake

    def started(self, tracker: ExecutionTracker) -> None:
        """A run began: make it visible live and watch it in the journal."""
        if self.registry is not None:
            self.registry.add(tracker)
        if self.journal is not None:
            self.journal.watch(tracker)

    def submit(self, tracker: ExecutionTracker) -> None:
        """Queue a closed tracker for finalisation; a second submit of one tracker is ignored."""
        with self._submit_lock:
            if tracker._submitted:
                return
            tracker._submitted = True
        if self._thread is None or self._closed:
            self._finalise(tracker)
            return
        if len(self._pending) >= self._queue_size:
            # Never drop: when the writer is behind, the caller pays instead.
            self.inline_runs += 1
            self._finalise(tracker)
            return
        self._pending.append(tracker)

    # ------------------------------------------------------------------- work

    def _work(self) -> None:
        pending = self._pending
        idle_since = time.monotonic()
        while True:
            if pending:
                if self.capture_store is not None:
                    batch = [pending.popleft() for _ in range(len(pending))]
                    self._capture(batch)
                else:
                    while pending:
                        self._finalise(pending.popleft())
                idle_since = time.monotonic()
            elif (
                self._unbuilt_captures
                and time.monotonic() - idle_since >= self.idle_build_s
                and not self._stopping.is_set()
            ):
                self._build_some_captures()
            if self._stopping.is_set():
                if not pending:
                    return
                continue
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _capture(self, batch: list[ExecutionTracker]) -> None:
        """Store the captures of ``batch`` in one transaction; the rest take the sinks."""
        assert self.capture_store is not None
        captured: list[ExecutionTracker] = []
        careful: list[ExecutionTracker] = []
        rows: list[tuple[str, bytes]] = []
        for tracker in batch:
            payload = capture_payload(tracker)
            if payload is None:
                careful.append(tracker)
            else:
                captured.append(tracker)
                rows.append((tracker.run_id, payload))
        if rows:
            try:
                self.capture_store.save_captures(rows)
            except Exception as exc:
                logger.warning(
                    "captures of %d run(s) not stored (%s); building them", len(rows), exc
                )
                careful.extend(captured)
            else:
                self._unbuilt_captures = True
                for tracker in captured:
                    tracker._set_record(None)
                    self._release(tracker)
        for tracker in careful:
            self._finalise(tracker)

    def _build_some_captures(self) -> None:
        """Idle: build a few stored captures into records, so reads find them built."""
        assert self.capture_store is not None
        batch = 8
        try:
            if self.capture_store.build_captured(limit=batch) < batch:
                self._unbuilt_captures = False
        except Exception:
            logger.exception("building stored captures failed")
            self.idle_build_s = max(self.idle_build_s, 60.0)  # do not retry every poll

    def _finalise(self, tracker: ExecutionTracker) -> None:
        try:
            record = tracker.record()
            record = complete_media(record, tracker.media_dir)
            outcomes = [self._run_sink(sink, record) for sink in self.sinks]
            integrity = record.integrity.model_copy(update={"sinks": outcomes})
            tracker._set_record(record.model_copy(update={"integrity": integrity}))
        except Exception as exc:  # never lose the thread; the record is still cached
            logger.exception("finalising run %s failed", tracker.run_id)
            tracker._fault(exc)
            tracker._set_record(None)
        finally:
            self._release(tracker)

    def _release(self, tracker: ExecutionTracker) -> None:
        """The run's record is safe: it leaves the live registry and the journal."""
        if self.registry is not None:
            self.registry.discard(tracker.run_id)
        if self.journal is not None:
            self.journal.forget(tracker.run_id)

    def _run_sink(self, sink: Sink, record: ExecutionRecord) -> SinkOutcome:
        name = getattr(sink, "name", type(sink).__name__)
        began = time.perf_counter()
        future = self._sink_pool.submit(sink, record)
        try:
            future.result(timeout=self.deadline_s)
            return SinkOutcome(name=name, status="ok", duration_ms=_ms_since(began))
        except concurrent.futures.TimeoutError:
            reason, status = f"no answer within {self.deadline_s:g} s", "timeout"
        except Exception as exc:
            reason, status = f"{type(exc).__name__}: {exc}"[:500], "failed"
        logger.error("sink %s %s for run %s: %s", name, status, record.run_id, reason)
        fallback = getattr(sink, "fallback", None)
        if fallback is not None:
            try:
                status = fallback(record, reason)
            except Exception as exc:
                logger.exception("fallback of sink %s failed for run %s", name, record.run_id)
                reason = f"{reason}; fallback failed: {type(exc).__name__}: {exc}"[:500]
        return SinkOutcome(name=name, status=status, duration_ms=_ms_since(began), error=reason)

    def wait_for(self, tracker: ExecutionTracker, timeout: float) -> bool:
        """Block until ``tracker``'s record went through the sinks; False on timeout.

        Wakes the writer at once: whoever waits pays for the wake-up, not the
        pipeline that handed the run over (measured: waiting for the next poll
        instead, to commit more runs at once, costs more throughput in latency
        than it saves in commits).
        """
        self._wake.set()
        return tracker._wait_done(timeout)

    # --------------------------------------------------------------- shutdown

    def close(self, timeout: float = 30.0) -> bool:
        """Drain the queue and stop the writer; True when everything was finalised."""
        self._closed = True
        drained = True
        if self._thread is not None and self._thread.is_alive():
            self._stopping.set()
            self._wake.set()
            self._thread.join(timeout)
            drained = not self._thread.is_alive()
        self._sink_pool.shutdown(wait=drained, cancel_futures=not drained)
        return drained

    def pending(self) -> int:
        """Records waiting for the writer."""
        return len(self._pending)


def complete_media(record: ExecutionRecord, media_dir: Path | None) -> ExecutionRecord:
    """Fill in size and sha256 of media files logged without them (reads the files).

    Runs on the finaliser's thread. A missing or unreadable file leaves the
    fields empty: nothing is invented.
    """
    if media_dir is None:
        return record
    changed = False
    items = []
    for item in record.items:
        media = item.media
        if media is not None and (media.size_bytes is None or media.sha256 is None):
            filled = _measure(media, media_dir)
            if filled is not media:
                item = item.model_copy(update={"media": filled})
                changed = True
        items.append(item)
    return record.model_copy(update={"items": items}) if changed else record


def _measure(media: MediaRef, media_dir: Path) -> MediaRef:
    root = media_dir.resolve()
    path = (root / media.path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return media
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError:
        return media
    return media.model_copy(update={"size_bytes": size, "sha256": digest.hexdigest()})


def _ms_since(began: float) -> float:
    return round((time.perf_counter() - began) * 1000.0, 3)
