"""Running runs: a bounded worker pool, one tracker per run, and where a run's record is found.

``RunService.submit`` never queues without bound: it holds ``workers +
queue_size`` slots and refuses with ``ServiceUnavailable`` when all are taken
(the HTTP layer answers 503 with ``Retry-After``). Each run's tracker is made
at submission, so its id is known at once and a queued run is already
readable. A run is durable from the moment ``submit`` returns: its run log's
header is in the journal, so a ``kill -9`` after that leaves at least an
``incomplete`` record; when the journal cannot be written, ``submit`` refuses
the run rather than accept one it could lose. The live registry holds each
run until its record is safe, so a reader finds it in the registry, the
store, or the quarantine.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from execution_history import (
    ExecutionRecord,
    ExecutionTracker,
    Finaliser,
    LiveRunRegistry,
    NullTracker,
    RecordStore,
    RunLog,
    RunStatus,
    StoreSink,
    Tracker,
    build_record,
)

from .._daemon_pool import DaemonPool
from .._data_dir import DataDir
from ._journals import ProcessJournal
from ._orchestrator import Pipeline, RunRequest, run_pipeline
from .backends import BackendError, ProgressBoard

logger = logging.getLogger("devserver")


class ServiceUnavailable(Exception):
    """No run can start now (all slots taken, or shutting down); try again later.

    Attributes:
        retry_after_s: a sensible wait before trying again, in whole seconds.
    """

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RunAborted(Exception):
    """The server shut down before the run could finish."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended, as the pipeline saw it (the record is the tracker's or the store's)."""

    run_id: str
    status: RunStatus


@dataclass(slots=True)
class Run:
    """A submitted run: its tracker, its request, the future of its result, and the
    progress of its running step (read by the live feed, never recorded)."""

    tracker: Tracker
    request: RunRequest
    future: concurrent.futures.Future[RunResult] = field(default_factory=concurrent.futures.Future)
    progress: ProgressBoard = field(default_factory=ProgressBoard)

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.tracker.run_id


class FoundRun:
    """A run found by its id: in flight (its run log, to follow live) or finished (its record).

    Every reader (the record, progress, the feed, downloads) gets this one
    face, whichever place the run was found in.
    """

    __slots__ = ("_json", "_record", "follow", "log", "run_id")

    def __init__(
        self,
        run_id: str,
        *,
        log: RunLog | None = None,
        record: ExecutionRecord | None = None,
        json_text: str | None = None,
        follow: Callable[[], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.log = log
        self._record = record
        self._json = json_text
        #: For a run another process runs: reads what it appended into ``log`` (the feed
        #: calls it before each look); None for a run of this process.
        self.follow = follow

    @property
    def in_flight(self) -> bool:
        """Whether the run's record is not final yet (queued, running, or being finalised)."""
        return self.log is not None and self.log.record is None

    def record(self) -> ExecutionRecord:
        """The record: final when there is one, else built now from the run log."""
        if self._record is None:
            if self._json is not None:
                self._record = ExecutionRecord.model_validate_json(self._json)
            else:
                assert self.log is not None  # one of the three is always given
                settled: ExecutionRecord | None = self.log.record
                return settled if settled is not None else build_record(self.log)
        return self._record

    def json(self) -> str:
        """The record as JSON: the store's own text when it came from the store."""
        return self._json if self._json is not None else self.record().model_dump_json()


class RunService:
    """Starts runs on a bounded pool and finds their records.

    Args:
        pipeline: backend and filters shared by all runs.
        data: the data dir; each run writes its media into ``data.media_dir(run_id)``.
        finaliser: hands finished records to the store (and the live registry).
        registry: the live-run registry the finaliser fills.
        store: where finished records are read from.
        store_sink: its quarantine holds runs the store refused.
        journals: this process's journal; other processes' journals are read for
            runs a dead process left that recovery could not store yet.
        workers: runs executing at once.
        queue_size: runs waiting for a worker at most.
        tracking: False replaces the tracker by the no-op ``NullTracker`` (benchmarks).
        software_version, model_versions: stored with every record.
    """

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        data: DataDir,
        finaliser: Finaliser,
        registry: LiveRunRegistry,
        store: RecordStore,
        store_sink: StoreSink | None = None,
        journals: ProcessJournal | None = None,
        workers: int,
        queue_size: int,
        tracking: bool = True,
        software_version: str | None = None,
        model_versions: dict[str, str | None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.data = data
        self.finaliser = finaliser
        self.registry = registry
        self.store = store
        self.store_sink = store_sink
        self.journals = journals
        self.workers = workers
        self.capacity = workers + queue_size
        self.tracking = tracking
        self.software_version = software_version
        self.model_versions = dict(model_versions or {})
        self._executor = DaemonPool(workers, "devserver-run")
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self._accepting = True

    # ------------------------------------------------------------------ runs

    def new_tracker(
        self,
        request: RunRequest,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        device_id: str | None = None,
        level_set_by: str | None = None,
    ) -> Tracker:
        """A tracker for one run of ``request`` (the no-op tracker when tracking is off)."""
        if not self.tracking:
            return NullTracker(request.config.name)
        tracker = ExecutionTracker(
            request.config.name,
            safety_level=request.safety_level,
            safety_level_set_by=level_set_by,
            user_id=user_id,
            session_id=session_id,
            device_id=device_id,
            finaliser=self.finaliser,
            software_version=self.software_version,
            model_versions=self.model_versions,
        )
        tracker.media_dir = self.media_dir(tracker.run_id)
        return tracker

    def media_dir(self, run_id: str) -> Path:
        """The media folder of ``run_id`` (a validated run id)."""
        return self.data.media_dir(run_id)

    def submit(
        self,
        request: RunRequest,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        device_id: str | None = None,
        level_set_by: str | None = None,
    ) -> Run:
        """Start ``request`` on the pool.

        Raises:
            ServiceUnavailable: every slot is taken, or the service is shutting down.
        """
        if not self._accepting:
            raise ServiceUnavailable("The server is shutting down.", retry_after_s=10)
        if not self._slots.acquire(blocking=False):
            raise ServiceUnavailable(
                f"All {self.capacity} run slots are taken; try again shortly.", retry_after_s=2
            )
        tracker = self.new_tracker(
            request,
            user_id=user_id,
            session_id=session_id,
            device_id=device_id,
            level_set_by=level_set_by,
        )
        run = Run(tracker, request)
        if not run.tracker.accept():
            # The journal could not write the run (disk full, read-only): accepting it
            # would promise a run that a crash could lose.
            self._slots.release()
            raise ServiceUnavailable(
                "Runs cannot be recorded right now (the server cannot write its data "
                "folder); try again later.",
                retry_after_s=30,
            )
        with self._lock:
            self._runs[run.run_id] = run
        try:
            future = self._executor.submit(self._execute, run)
        except RuntimeError:  # the pool was shut down between the check and here
            self._forget(run)
            raise ServiceUnavailable("The server is shutting down.", retry_after_s=10) from None
        future.add_done_callback(functools.partial(_chain, target=run.future))
        return run

    def run_inline(self, run: Run) -> RunResult:
        """Execute ``run`` on the calling thread (the CLI's ``devserver run``)."""
        self._slots.acquire()
        with self._lock:
            self._runs[run.run_id] = run
        result = self._execute(run)
        run.future.set_result(result)
        return result

    def _execute(self, run: Run) -> RunResult:
        status = RunStatus.ERROR
        try:
            status = run_pipeline(
                run.tracker, run.request, self.pipeline, self.media_dir(run.run_id), run.progress
            )
        except BackendError as exc:
            logger.warning("run %s failed in its backend: %s", run.run_id, exc)
        except Exception:
            logger.exception("run %s ended with an unexpected error", run.run_id)
        finally:
            try:
                # Hands the run to the finaliser without building or storing it here, so
                # the worker is free at once; until it is stored, readers find the run in
                # the live registry (the finaliser removes it after the store).
                run.tracker.end()
            finally:
                self._forget(run)
        return RunResult(run.run_id, status)

    def _forget(self, run: Run) -> None:
        with self._lock:
            if self._runs.pop(run.run_id, None) is not None:
                self._slots.release()

    # --------------------------------------------------------------- reading

    def active(self) -> int:
        """Runs submitted and not yet stored."""
        return len(self._runs)

    def log(self, run_id: str) -> RunLog | None:
        """The run log of a run that is queued, running, or not yet safe in a store."""
        run = self._runs.get(run_id)
        log = run.tracker.run_log if run is not None else None
        return log if log is not None else self.registry.get(run_id)

    def progress(self, run_id: str) -> ProgressBoard | None:
        """The progress board of a run that is queued or running here (None otherwise)."""
        run = self._runs.get(run_id)
        return run.progress if run is not None else None

    def lookup(self, run_id: str) -> FoundRun | None:
        """The run ``run_id`` wherever it is, behind one face; None when there is none.

        Asked in this order: in flight (queued, running, or ended and not yet
        safe in a store: a run leaves the live side only after its record is
        safe, so this order never misses one at the hand-over), the store, the
        quarantine, and the journals of other processes: a run another living
        process runs (followed live: ``FoundRun.follow``), or one a dead process
        left and recovery could not store yet (``incomplete``).
        """
        log = self.log(run_id)
        if log is not None:
            return FoundRun(run_id, log=log)
        text = self.store.load_json(run_id)
        if text is not None:
            return FoundRun(run_id, json_text=text)
        if self.store_sink is not None:
            record = self.store_sink.load_quarantined(run_id)
            if record is not None:
                return FoundRun(run_id, record=record)
            # stored between the two looks: a quarantined run is imported at start-up
            text = self.store.load_json(run_id)
            if text is not None:
                return FoundRun(run_id, json_text=text)
        if self.journals is not None:
            other_run = self.journals.follow_other(run_id, self.store.load)
            if other_run is not None:  # a living process runs it: follow it live
                return FoundRun(run_id, log=other_run.log, follow=other_run.refresh)
            found = self.journals.read_other(run_id)
            if found is not None:
                other, dead = found
                return FoundRun(run_id, record=build_record(other, recovered=dead))
        return None

    def waiting_records(self) -> list[ExecutionRecord]:
        """Ended runs not in the store yet: held in memory after failed writes, or quarantined."""
        records = [
            log.record for log in self.registry.logs() if log.record is not None and log.closed
        ]
        if self.store_sink is not None:
            records.extend(self.store_sink.quarantined_records())
        return records

    # --------------------------------------------------------------- shutdown

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stop taking runs, let the submitted ones finish, finalise the rest as ``error``.

        Runs still queued or running after ``timeout_s`` get a ``pipeline_error``
        (``RunAborted``) and their record is stored now; nothing is dropped.
        Returns True when every run finished by itself.
        """
        self._accepting = False
        deadline = time.monotonic() + timeout_s
        with self._lock:
            pending = list(self._runs.values())
        concurrent.futures.wait([r.future for r in pending], timeout=timeout_s)
        # Queued runs will not start any more; running ones cannot be stopped, only recorded.
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            leftovers = list(self._runs.values())
        for run in leftovers:
            message = "the server shut down before this run could finish"
            logger.warning("run %s: %s; recorded as error", run.run_id, message)
            run.tracker.start()  # a queued run has not started; a no-op for a running one
            run.tracker.finalize(wait=True, error=RunAborted(message))  # stored before we go on
            self._forget(run)
            # A client waiting for this run (?wait=true) gets its answer now: the run's
            # worker may stay blocked in a backend for longer than the process lives.
            _resolve(run.future, RunResult(run.run_id, RunStatus.ERROR))
        remaining = max(0.0, deadline - time.monotonic())
        concurrent.futures.wait([r.future for r in leftovers], timeout=min(remaining, 1.0))
        return not leftovers


def _chain(
    done: concurrent.futures.Future[RunResult], target: concurrent.futures.Future[RunResult]
) -> None:
    """Copy a pool future's result into the run's own future (which exists before the pool's).

    The run's future may be resolved already: ``close`` answers for a run it
    recorded as aborted while its worker was still busy.
    """
    try:
        if done.cancelled():
            target.cancel()
        elif (error := done.exception()) is not None:
            target.set_exception(error)
        else:
            target.set_result(done.result())
    except concurrent.futures.InvalidStateError:
        pass


def _resolve(future: concurrent.futures.Future[RunResult], result: RunResult) -> None:
    """Set ``result`` unless the future is resolved already (by the worker or a cancel)."""
    try:
        future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass
