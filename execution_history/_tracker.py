"""The request-scoped ExecutionTracker: an in-memory append on the hot path, nothing more.

Fail-safe boundary (DESIGN.md §6), stated once for every public method of
``ExecutionTracker``: a method never raises into the pipeline. Any exception
inside the tracker is caught, counted in the record's integrity block, logged
at a rate limit, and the method returns (``finalize`` then still returns a
record). The pipeline's own exception leaving ``with tracker:`` is recorded as
``pipeline_error`` and re-raised unchanged.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import logging
import operator
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, runtime_checkable

from ._build import build_record
from ._finaliser import Finaliser
from ._ids import new_run_id
from ._media import complete_media
from ._record import ExecutionRecord
from ._runlog import RawItem, RunLog, new_raw_item
from ._summary import derive_status
from ._taxonomy import ItemType, MediaType, RunStatus

logger = logging.getLogger("execution_history")

_time_ns = time.time_ns
_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Closing a run happens once per run and never on the hot path: one lock for every
#: tracker is cheaper than a lock made for each.
_CLOSE_LOCK = threading.Lock()
_item_type = operator.attrgetter("item_type")
#: Tracker errors are logged at most once per this many seconds per tracker.
_ERROR_LOG_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps that keep one run bounded; everything cut at a cap is counted."""

    max_items: int = 10_000
    max_text_chars: int = 1_000_000
    #: How long ``finalize(wait=True)`` waits for the background finaliser.
    finalize_wait_s: float = 30.0


DEFAULT_LIMITS = Limits()


class _StageScope:
    """``with tracker.stage(n)``: items inside belong to stage ``n``."""

    __slots__ = ("_previous", "_stage", "_tracker")

    def __init__(self, tracker: ExecutionTracker, stage: int) -> None:
        self._tracker = tracker
        self._stage = stage
        self._previous = 0

    def __enter__(self) -> _StageScope:
        tracker = self._tracker
        self._previous = tracker._stage
        try:
            if self._stage != tracker._transition_stage:
                tracker._enter_stage(self._stage)
        except Exception as exc:
            tracker._fault(exc)
        tracker._stage = self._stage
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        tracker = self._tracker
        if exc is not None and tracker._error_at is None:
            tracker._error_at = (self._stage, tracker._si, tracker._loop)
        tracker._stage = self._previous
        return False


# _IterationScope and _LoopScope are the same shape on purpose: each names its
# field directly, which is measurably cheaper than one class using setattr().
class _IterationScope:
    """``with tracker.stage_iteration(i)``: items inside carry ``stage_iteration=i``."""

    __slots__ = ("_previous", "_tracker", "_value")

    def __init__(self, tracker: ExecutionTracker, value: int) -> None:
        self._tracker = tracker
        self._value = value
        self._previous: int | None = None

    def __enter__(self) -> _IterationScope:
        self._previous = self._tracker._si
        self._tracker._si = self._value
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        tracker = self._tracker
        if exc[1] is not None and tracker._error_at is None:  # where the error happened
            tracker._error_at = (tracker._stage, tracker._si, tracker._loop)
        tracker._si = self._previous
        return False


class _LoopScope:
    """``with tracker.loop_iteration(j)``: items inside carry ``loop_iteration=j``."""

    __slots__ = ("_previous", "_tracker", "_value")

    def __init__(self, tracker: ExecutionTracker, value: int) -> None:
        self._tracker = tracker
        self._value = value
        self._previous: int | None = None

    def __enter__(self) -> _LoopScope:
        self._previous = self._tracker._loop
        self._tracker._loop = self._value
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        tracker = self._tracker
        if exc[1] is not None and tracker._error_at is None:  # where the error happened
            tracker._error_at = (tracker._stage, tracker._si, tracker._loop)
        tracker._loop = self._previous
        return False


class ExecutionTracker:
    """Records every step of one pipeline run, in memory, in order.

    Use it as a context manager around the whole run::

        with ExecutionTracker("stillepost", safety_level="kids") as tracker:
            with tracker.stage(2), tracker.stage_iteration(1):
                tracker.log(ItemType.INTERCEPTION_ITERATION, content="…")
        record = tracker.finalize()

    Without ``with``, call ``start()`` first and ``finalize(error=exc)`` in a
    ``finally`` block. Each instance belongs to one run; scope fields (stage,
    iterations) are the tracker's own, so use one tracker per run.

    Args:
        config_name: the pipeline config this run executes.
        safety_level: the age level (``kids``, ``teens``, ``adults``, ``research``).
        safety_level_set_by: who chose it (``workshop``, ``request``, ``research token``).
        user_id, session_id, device_id: raw ids; they stay inside the store (see Pseudonymiser).
        run_id: the run's id; a new unguessable one when omitted.
        finaliser: hands the finished record to its sinks off this thread;
            without one, ``finalize()`` only builds the record.
        media_dir: the run's media folder, where the finaliser reads sizes and
            checksums of media files that were logged without them.
        software_version, model_versions: versions to store with the record.
        limits: caps for this run.
    """

    __slots__ = (
        "_append",
        "_error_at",
        "_last_error_log",
        "_loop",
        "_max_items",
        "_seq",
        "_si",
        "_stage",
        "_started",
        "_token",
        "_transition_stage",
        "finaliser",
        "limits",
        "run_log",
    )

    def __init__(
        self,
        config_name: str | None,
        *,
        safety_level: str | None = None,
        safety_level_set_by: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        device_id: str | None = None,
        run_id: str | None = None,
        finaliser: Finaliser | None = None,
        media_dir: str | Path | None = None,
        software_version: str | None = None,
        model_versions: dict[str, str | None] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.run_log = log = RunLog(
            run_id or new_run_id(),
            config_name,
            safety_level=safety_level,
            safety_level_set_by=safety_level_set_by,
            user_id=user_id,
            session_id=session_id,
            device_id=device_id,
            software_version=software_version,
            model_versions=dict(model_versions) if model_versions else {},
            max_text_chars=limits.max_text_chars,
            media_dir=Path(media_dir) if media_dir is not None else None,
        )
        self.finaliser = finaliser
        self.limits = limits
        self._append = log.items.append
        self._seq = itertools.count(1)
        self._max_items = limits.max_items
        self._stage = 0
        self._si: int | None = None
        self._loop: int | None = None
        self._transition_stage = 0
        # (stage, stage_iteration, loop_iteration) where an exception left the innermost scope
        self._error_at: tuple[int, int | None, int | None] | None = None
        self._last_error_log = 0.0
        self._started = False
        self._token: contextvars.Token[Any] | None = None

    # ------------------------------------------------------------- the run log
    # Read-only views of the run log, for code that holds the tracker.

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.run_log.run_id

    @property
    def config_name(self) -> str | None:
        """The pipeline config this run executes."""
        value: str | None = self.run_log.config_name
        return value

    @property
    def items(self) -> list[RawItem]:
        """The raw items recorded so far (the run log's list: do not change it)."""
        return self.run_log.items

    @property
    def status(self) -> RunStatus:
        """``running`` until the run is closed, then how it ended."""
        return self.run_log.status

    @property
    def media_dir(self) -> Path | None:
        """The run's media folder, where the finaliser measures media files."""
        return self.run_log.media_dir

    @media_dir.setter
    def media_dir(self, value: str | Path | None) -> None:
        self.run_log.media_dir = Path(value) if value is not None else None

    # ------------------------------------------------------------------ hot path

    def log(
        self,
        item_type: ItemType | str | None = None,
        content: Any = None,
        *args: Any,
        media_type: MediaType | str | None = None,
        media: Any = None,
        model: str | None = None,
        backend: str | None = None,
        duration_ms: float | None = None,
        metadata: dict[str, Any] | None = None,
        config: str | None = None,
        input_sequence: int | None = None,
        **extra: Any,
    ) -> int | None:
        """Record one item in the current stage and iterations.

        Costs one tuple and one list append: nothing is validated or copied
        here (the finaliser converts and counts). Unexpected positional or
        keyword arguments are kept in the item's metadata, never raised.

        Args:
            input_sequence: the sequence number of the item whose content this
                step consumed (what ``log`` returned for it), so provenance is
                told, not guessed; None when the step consumed no recorded item.

        Returns:
            This item's sequence number, or None when it was not recorded (over
            the cap, or a tracker fault).
        """
        # The body of _add, inlined: this is the hottest call, and a Python call with ten
        # arguments costs about a fifth of the whole.
        try:
            sequence = next(self._seq)
            if sequence <= self._max_items:
                self._append(
                    new_raw_item(
                        RawItem,
                        (
                            sequence,
                            _time_ns(),
                            self._stage,
                            self._si,
                            self._loop,
                            item_type,
                            content,
                            media_type,
                            media,
                            model,
                            backend,
                            duration_ms,
                            metadata,
                            config,
                            (args, extra) if args or extra else None,
                            input_sequence,
                        ),
                    )
                )
                return sequence
            self._refuse()
        except Exception as exc:
            self._fault(exc)
        return None

    def _add(
        self,
        item_type: Any,
        content: Any,
        media_type: Any,
        media: Any,
        model: Any,
        backend: Any,
        duration_ms: Any,
        metadata: Any,
        config: Any,
        extra: Any,
        input_sequence: Any = None,
    ) -> int | None:
        """Build and append one raw item: the only place that does (positional, for speed).

        The sequence counter doubles as the cap check, so a refused item costs
        a number: sequence numbers after a drop show the gap.
        """
        try:
            sequence = next(self._seq)
            if sequence <= self._max_items:
                self._append(
                    new_raw_item(
                        RawItem,
                        (
                            sequence,
                            _time_ns(),
                            self._stage,
                            self._si,
                            self._loop,
                            item_type,
                            content,
                            media_type,
                            media,
                            model,
                            backend,
                            duration_ms,
                            metadata,
                            config,
                            extra,
                            input_sequence,
                        ),
                    )
                )
                return sequence
            self._refuse()
        except Exception as exc:
            self._fault(exc)
        return None

    # ------------------------------------------------------------ typed helpers
    # Each helper appends through _add directly (one call, no re-packing of
    # keyword arguments), and merges its own fields into the metadata.

    def log_user_input(self, text: Any, **fields: Any) -> int | None:
        """Record the child's prompt (stage 1)."""
        return self.log(ItemType.USER_INPUT_TEXT, text, **fields)

    def log_translation(
        self,
        text: Any,
        *args: Any,
        from_lang: str | None = None,
        to_lang: str | None = None,
        model: str | None = None,
        backend: str | None = None,
        duration_ms: float | None = None,
        metadata: dict[str, Any] | None = None,
        input_sequence: int | None = None,
        **extra: Any,
    ) -> int | None:
        """Record a translation result with its language pair."""
        meta = {"from_lang": from_lang, "to_lang": to_lang}
        if metadata:
            self._merge(meta, metadata)
        return self._add(ItemType.TRANSLATION_RESULT, text, None, None, model, backend, duration_ms,
                  meta, None, (args, extra) if args or extra else None, input_sequence)  # fmt: skip

    def log_interception_iteration(
        self,
        text: Any,
        *args: Any,
        from_lang: str | None = None,
        to_lang: str | None = None,
        model: str | None = None,
        backend: str | None = None,
        duration_ms: float | None = None,
        metadata: dict[str, Any] | None = None,
        input_sequence: int | None = None,
        **extra: Any,
    ) -> int | None:
        """Record one step of a recursive interception (a Stille Post translation)."""
        meta = {"from_lang": from_lang, "to_lang": to_lang}
        if metadata:
            self._merge(meta, metadata)
        return self._add(ItemType.INTERCEPTION_ITERATION, text, None, None, model, backend,
                  duration_ms, meta, None, (args, extra) if args or extra else None,
                  input_sequence)  # fmt: skip

    def log_interception_final(self, text: Any, **fields: Any) -> int | None:
        """Record the interception's final text."""
        return self.log(ItemType.INTERCEPTION_FINAL, text, **fields)

    def log_safety_check(
        self,
        *args: Any,
        passed: bool,
        content: Any = None,
        model: str | None = None,
        backend: str | None = None,
        duration_ms: float | None = None,
        metadata: dict[str, Any] | None = None,
        input_sequence: int | None = None,
        **extra: Any,
    ) -> int | None:
        """Record a safety check of the current stage (1 or 3) and its verdict."""
        item_type = (
            ItemType.STAGE1_SAFETY_CHECK if self._stage == 1 else ItemType.STAGE3_SAFETY_CHECK
        )
        meta: dict[str, Any] = {"passed": passed}
        if metadata:
            self._merge(meta, metadata)
        return self._add(item_type, content, None, None, model, backend, duration_ms, meta, None,
                  (args, extra) if args or extra else None, input_sequence)  # fmt: skip

    def log_blocked(self, reason: Any, **fields: Any) -> int | None:
        """Record a block in the current stage (1 stops the run, 3 skips one output)."""
        item_type = ItemType.STAGE1_BLOCKED if self._stage == 1 else ItemType.STAGE3_BLOCKED
        return self.log(item_type, reason, **fields)

    def log_output(
        self,
        item_type: ItemType | str,
        media: Any,
        content: Any = None,
        *args: Any,
        media_type: MediaType | str | None = None,
        model: str | None = None,
        backend: str | None = None,
        duration_ms: float | None = None,
        metadata: dict[str, Any] | None = None,
        input_sequence: int | None = None,
        **extra: Any,
    ) -> int | None:
        """Record a generated output's media (stage 4)."""
        return self._add(item_type, content, media_type, media, model, backend, duration_ms,
                         metadata, None, (args, extra) if args or extra else None,
                         input_sequence)  # fmt: skip

    def log_output_failed(self, reason: Any, **fields: Any) -> int | None:
        """Record that one output could not be generated; the run goes on."""
        return self.log(ItemType.OUTPUT_FAILED, reason, **fields)

    def _merge(self, own: dict[str, Any], metadata: Any) -> None:
        """Add the caller's metadata to ``own``; a non-mapping is kept, not raised."""
        try:
            own.update(metadata)
        except Exception as exc:
            self._fault(exc)
            own["metadata"] = metadata

    # ------------------------------------------------------------------- scopes

    def stage(self, stage: int) -> _StageScope:
        """Scope items to ``stage``; a change of stage records a ``stage_transition``."""
        return _StageScope(self, stage)

    def stage_iteration(self, iteration: int) -> _IterationScope:
        """Scope items to one iteration of a recursive stage (0 is a real value)."""
        return _IterationScope(self, iteration)

    def loop_iteration(self, iteration: int) -> _LoopScope:
        """Scope items to one output config in stages 3 and 4 (0 is a real value)."""
        return _LoopScope(self, iteration)

    @property
    def current_stage(self) -> int:
        """The stage new items are recorded in."""
        return int(self._stage)

    def _enter_stage(self, stage: int) -> None:
        """Move to ``stage`` and record the transition (the caller checked it is a change)."""
        previous = self._transition_stage
        self._transition_stage = self._stage = stage
        self._add(ItemType.STAGE_TRANSITION, None, None, None, None, None, None,
                  {"from_stage": previous, "to_stage": stage}, None, None)  # fmt: skip

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> ExecutionTracker:
        """Begin the run: record ``pipeline_start`` and make this the current tracker."""
        try:
            if not self._started:
                self._started = True
                self._token = _current.set(self)
                self._add(ItemType.PIPELINE_START, None, None, None, None, None, None, None,
                          self.config_name, None)  # fmt: skip
                if self.finaliser is not None:
                    self.finaliser.start(self.run_log)
        except Exception as exc:
            self._fault(exc)
        return self

    def __enter__(self) -> ExecutionTracker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        self._close(exc)
        try:
            if self.finaliser is not None:
                self.finaliser.end(self.run_log)
            else:
                self.finalize()
        except Exception as error:
            self._fault(error)
        return False  # the pipeline's exception, if any, goes on unchanged

    def _close(self, error: BaseException | None = None) -> None:
        """Record how the run ended and freeze the item list; runs once."""
        try:
            with _CLOSE_LOCK:
                log = self.run_log
                if log.closed:
                    return
                self._max_items = 1 << 62  # the closing items are kept even past the cap
                try:
                    self._log_ending(error)
                except Exception as exc:
                    self._fault(exc)
                status = derive_status(set(map(_item_type, log.items)), finished=True)
                self._max_items = 0  # later log() calls are counted, not kept
                log.end(status)
            if self._token is not None:
                try:
                    _current.reset(self._token)
                except ValueError:  # closed from another context: nothing to reset there
                    pass
                self._token = None
        except Exception as exc:
            self._fault(exc)

    def _log_ending(self, error: BaseException | None) -> None:
        self._si = self._loop = None
        if error is not None:
            if self._error_at is not None:  # the error item goes where the error happened
                self._stage, self._si, self._loop = self._error_at
            self.log(
                ItemType.PIPELINE_ERROR,
                describe_error(error),
                # The type and message say what failed; the traceback (file
                # paths, code) is for the server's log, not for the record that
                # a child's link can read.
                metadata={"exception_type": type(error).__qualname__},
            )
        else:
            if self._transition_stage != 5:
                self._enter_stage(5)
            self._stage = 5
            self._add(ItemType.PIPELINE_COMPLETE, None, None, None, None, None, None, None, None,
                      None)  # fmt: skip

    def end(self, *, error: BaseException | None = None) -> None:
        """Close the run and hand it to the finaliser, without building the record here.

        What a worker calls when it is done with a run: idempotent, never
        raises, never waits. Without a finaliser it is ``finalize(wait=False)``.
        """
        self._close(error)
        try:
            if self.finaliser is not None:
                self.finaliser.end(self.run_log)
            elif not self.run_log.settled:
                self.finalize(wait=False)
        except Exception as exc:
            self._fault(exc)

    def accept(self) -> bool:
        """Make the run durable before anyone is promised it (the journal writes its header).

        Returns:
            True when every processor took the run (always without a finaliser);
            False when one could not (a full or read-only disk): the processors
            have let the run go again, and the caller must refuse it.
        """
        finaliser = self.finaliser
        if finaliser is None:
            return True
        try:
            if finaliser.start(self.run_log):
                return True
            finaliser.abandon(self.run_log)
        except Exception as exc:
            self._fault(exc)
        return False

    def wait_until_stored(self, timeout_s: float | None = None) -> bool:
        """End the run if needed and wait until the finaliser is done with it.

        Returns True when the run went through the finaliser (its record is
        stored, quarantined, or held in memory for a retry) within
        ``timeout_s`` (default ``limits.finalize_wait_s``).
        """
        self.end()
        if self.finaliser is None:
            return self.run_log.settled
        timeout = self.limits.finalize_wait_s if timeout_s is None else timeout_s
        try:
            return self.finaliser.wait_for(self.run_log, timeout)
        except Exception as exc:
            self._fault(exc)
            return False

    def finalize(self, wait: bool = True, *, error: BaseException | None = None) -> ExecutionRecord:
        """Close the run, build the frozen record and hand it to the sinks.

        Idempotent and never raises. With a finaliser, the record is built and
        the sinks run on its background thread; ``wait=True`` waits (up to
        ``limits.finalize_wait_s``) until they are done so the record returned
        carries their outcomes.

        Args:
            wait: wait for the sinks before returning.
            error: the exception that ended the run, for use without ``with``.

        Returns:
            The ``ExecutionRecord`` (built even when everything else failed).
        """
        self._close(error)
        log = self.run_log
        try:
            if self.finaliser is not None:
                self.finaliser.end(log)
                if wait:
                    self.finaliser.wait_for(log, self.limits.finalize_wait_s)
            elif not log.settled:
                # No finaliser: this is a script or a test, so the caller's thread
                # may read the media files for their sizes and checksums.
                log.settle(complete_media(build_record(log), log.media_dir))
        except Exception as exc:
            self._fault(exc)
        return self.record()

    def record(self) -> ExecutionRecord:
        """The record: the finaliser's once it is done, else built now from the run log
        (status ``running`` while the run is open). Never raises."""
        settled: ExecutionRecord | None = self.run_log.record
        return settled if settled is not None else build_record(self.run_log)

    @property
    def done(self) -> bool:
        """Whether the record is final (its sinks, if any, have run)."""
        return self.run_log.settled

    # --------------------------------------------------------------- bookkeeping

    def _refuse(self) -> None:
        if self.run_log.closed:
            self.run_log.items_after_end += 1
        else:
            self.run_log.items_dropped += 1

    def _fault(self, exc: BaseException) -> None:
        """Count a tracker error and log it at a rate limit; never raises."""
        try:
            self.run_log.count_error(describe_error(exc))
            now = time.monotonic()
            if now - self._last_error_log >= _ERROR_LOG_INTERVAL_S:
                self._last_error_log = now
                logger.warning(
                    "tracker error in run %s (%d so far): %r",
                    self.run_id,
                    self.run_log.tracker_errors,
                    exc,
                )
        except Exception:
            pass

    @property
    def counters(self) -> dict[str, int]:
        """Drops, late items and tracker errors so far."""
        log = self.run_log
        return {
            "items_dropped": log.items_dropped,
            "items_after_finalize": log.items_after_end,
            "tracker_errors": log.tracker_errors,
        }

    @property
    def error_messages(self) -> list[str]:
        return list(self.run_log.error_messages)

    @property
    def closed(self) -> bool:
        return self.run_log.closed


def describe_error(exc: BaseException) -> str:
    try:
        return f"{type(exc).__qualname__}: {exc}"[:2000]
    except Exception:
        return type(exc).__qualname__


class _NullScope:
    __slots__ = ()

    def __enter__(self) -> _NullScope:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        return False


_NULL_SCOPE = _NullScope()


class NullTracker:
    """A tracker that records nothing, chosen once when tracking is disabled.

    Same methods as ``ExecutionTracker``; each returns at once.
    ``finalize()`` returns None because there is no record.
    """

    __slots__ = ("config_name", "media_dir", "run_id")

    status = RunStatus.RUNNING
    closed = False
    done = True
    #: There is no run log: nothing is recorded.
    run_log: RunLog | None = None

    def __init__(
        self, config_name: str | None = None, *, run_id: str | None = None, **_: Any
    ) -> None:
        self.config_name = config_name
        self.run_id = run_id or new_run_id()
        self.media_dir: Path | None = None

    def log(self, *args: Any, **fields: Any) -> None:
        """Record nothing (and so return no sequence number)."""

    log_user_input = log_translation = log_interception_iteration = log
    log_interception_final = log_safety_check = log_blocked = log_output = log
    log_output_failed = log

    def stage(self, stage: int) -> _NullScope:
        return _NULL_SCOPE

    stage_iteration = loop_iteration = stage

    def start(self) -> NullTracker:
        return self

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        return False

    def end(self, *, error: BaseException | None = None) -> None:
        return None

    def finalize(self, wait: bool = True, *, error: BaseException | None = None) -> None:
        return None

    def accept(self) -> bool:
        """Nothing to make durable: always True."""
        return True

    def wait_until_stored(self, timeout_s: float | None = None) -> bool:
        """Nothing to store: True at once."""
        return True

    def record(self) -> None:
        """There is no record."""
        return None


@runtime_checkable
class Tracker(Protocol):
    """What the pipeline and the server use of a tracker; both trackers implement all of it.

    ``ExecutionTracker`` records; ``NullTracker`` (chosen once when tracking is
    off) does nothing and answers None where a record or a sequence number would be.
    """

    media_dir: Path | None

    @property
    def run_id(self) -> str: ...
    @property
    def config_name(self) -> str | None: ...
    @property
    def run_log(self) -> RunLog | None: ...
    def log(self, *args: Any, **fields: Any) -> int | None: ...
    def log_user_input(self, *args: Any, **fields: Any) -> int | None: ...
    def log_translation(self, *args: Any, **fields: Any) -> int | None: ...
    def log_interception_iteration(self, *args: Any, **fields: Any) -> int | None: ...
    def log_interception_final(self, *args: Any, **fields: Any) -> int | None: ...
    def log_safety_check(self, *args: Any, **fields: Any) -> int | None: ...
    def log_blocked(self, *args: Any, **fields: Any) -> int | None: ...
    def log_output(self, *args: Any, **fields: Any) -> int | None: ...
    def log_output_failed(self, *args: Any, **fields: Any) -> int | None: ...
    def stage(self, stage: int) -> Any: ...
    def stage_iteration(self, iteration: int) -> Any: ...
    def loop_iteration(self, iteration: int) -> Any: ...
    def start(self) -> Any: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: Any) -> Literal[False]: ...
    def accept(self) -> bool: ...
    def end(self, *, error: BaseException | None = None) -> None: ...
    def wait_until_stored(self, timeout_s: float | None = None) -> bool: ...
    def finalize(
        self, wait: bool = True, *, error: BaseException | None = None
    ) -> ExecutionRecord | None: ...
    def record(self) -> ExecutionRecord | None: ...


_NULL_TRACKER = NullTracker("none", run_id="0" * 32)
_current: contextvars.ContextVar[ExecutionTracker | NullTracker] = contextvars.ContextVar(
    "execution_history_tracker"
)


def current_tracker() -> ExecutionTracker | NullTracker:
    """The tracker of the run in this context, or a shared no-op tracker outside a run.

    A run finalised from another thread may still be set in this context (a
    context variable can only be reset where it was set); a closed tracker is
    never returned.
    """
    tracker = _current.get(_NULL_TRACKER)
    return _NULL_TRACKER if tracker.closed else tracker


def bind_context(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Wrap ``fn`` so it runs with this context's tracker, e.g. in a thread pool.

    Each call runs in a fresh copy of the context captured now, so the wrapped
    function may run in several threads at once::

        executor.submit(bind_context(render), prompt)
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return captured.copy().run(fn, *args, **kwargs)

    return run
