"""A run's raw recording (header, raw items, counters, ending) and its one serialisation.

The ``RunLog`` is what every reader of a run in flight sees: the builder, the
journal, progress, the live feed and recovery. The tracker is the recording
API on top of it and the only writer of its items.

The serialisation is JSON lines, written by the journal as a run goes on and
read back by recovery::

    {"run_log": 1, "run_id": …, …}          the header, known from the start
    [sequence, timestamp_ns, stage, …]       one line per raw item, in RawItem order
    {"end": {"ended_ns": …, "status": …}}    the ending and counters, once closed

Lines are ASCII (lone surrogates survive as ``\\ud800`` and are replaced and
counted by the builder). A value JSON cannot hold is written as the value the
builder would make of it, so a record built from the lines holds what the
record built in memory holds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ._coerce import CoercionStats, to_json_value
from ._taxonomy import RunStatus

#: Version of the serialisation; lines of another version are refused.
RUN_LOG_FORMAT = 1
#: Times a run log may hold, in nanoseconds since the epoch (up to the year 2603).
MAX_TIME_NS = 20_000_000_000 * 1_000_000_000
#: How many error messages a run keeps (every error is counted).
KEPT_ERROR_MESSAGES = 5
#: Guards settle/wait of every run: both happen once per run, off the hot path, so
#: one shared lock costs less than a lock made for each run.
_SETTLE_LOCK = threading.Lock()


class RawItem(NamedTuple):
    """One recorded event, exactly as the pipeline handed it over.

    A named tuple: the tracker builds it positionally with one C call, readers
    use the names. Nothing is validated or converted here; the builder does.
    """

    sequence: Any
    timestamp_ns: Any
    stage: Any
    stage_iteration: Any
    loop_iteration: Any
    item_type: Any
    content: Any
    media_type: Any
    media: Any
    model: Any
    backend: Any
    duration_ms: Any
    metadata: Any
    config: Any
    extra: Any
    #: The sequence number of the item whose content this step consumed (None: unknown).
    #: Last, with a default, so lines written before it existed still read.
    input_sequence: Any = None


#: ``new_raw_item(RawItem, fields)`` builds an item without a Python-level ``__new__``.
new_raw_item = tuple.__new__

#: Serialised items have every field, or every field but ``input_sequence`` (written before 1.2).
_ITEM_LENGTHS = (len(RawItem._fields), len(RawItem._fields) - 1)


def raw_item_of(values: list[Any] | tuple[Any, ...]) -> RawItem:
    """A raw item from its serialised fields (one written before ``input_sequence`` gets None)."""
    if len(values) == len(RawItem._fields):
        return new_raw_item(RawItem, values)
    return RawItem(*values)


class DamagedRunLog(ValueError):
    """Lines that do not start with a run-log header: nothing can be recovered from them."""


class RunLog:
    """The raw recording of one run.

    The header attributes are set once at the start. ``items`` only grows
    (readers take ``items[:n]``, safe under CPython). ``end`` is called once,
    by the tracker, when the run is closed. ``settle`` is called once, by the
    finaliser, when the run's record has been handed to every sink.

    Args:
        run_id, config_name, safety_level, user_id, session_id, device_id: the run's header.
        safety_level_set_by: who chose the level (see ``ExecutionRecord``).
        started_ns: start time in nanoseconds since the epoch.
        software_version, model_versions: versions to store with the record.
        max_text_chars: the cap on one text field, applied by the builder.
        media_dir: the run's media folder (for sizes and checksums of media files).
    """

    __slots__ = (
        "_event",
        "config_name",
        "device_id",
        "ended_ns",
        "error_messages",
        "items",
        "items_after_end",
        "items_dropped",
        "max_text_chars",
        "media_dir",
        "model_versions",
        "queued",
        "record",
        "run_id",
        "safety_level",
        "safety_level_set_by",
        "session_id",
        "settled",
        "software_version",
        "started_ns",
        "status",
        "tracker_errors",
        "unreadable_lines",
        "user_id",
    )

    def __init__(
        self,
        run_id: str,
        config_name: Any = None,
        *,
        safety_level: Any = None,
        safety_level_set_by: Any = None,
        user_id: Any = None,
        session_id: Any = None,
        device_id: Any = None,
        started_ns: int | None = None,
        software_version: Any = None,
        model_versions: dict[Any, Any] | None = None,
        max_text_chars: int = 1_000_000,
        media_dir: Path | None = None,
    ) -> None:
        self.run_id = run_id
        self.config_name = config_name
        self.safety_level = safety_level
        self.safety_level_set_by = safety_level_set_by
        self.user_id = user_id
        self.session_id = session_id
        self.device_id = device_id
        self.started_ns = time.time_ns() if started_ns is None else started_ns
        self.software_version = software_version
        self.model_versions = model_versions if model_versions is not None else {}
        self.max_text_chars = max_text_chars
        self.media_dir = media_dir
        self.items: list[RawItem] = []
        self.ended_ns: int | None = None
        self.status = RunStatus.RUNNING
        self.items_dropped = 0
        self.items_after_end = 0
        self.tracker_errors = 0
        self.unreadable_lines = 0
        self.error_messages: list[str] = []
        self.record: Any = None  # the ExecutionRecord once settled (Any: no import of _record)
        self.settled = False
        self.queued = False  # handed to a finaliser (set once, under its lock)
        self._event: threading.Event | None = None

    # ------------------------------------------------------------ bookkeeping

    @property
    def closed(self) -> bool:
        """Whether the run has ended (its items are final)."""
        return self.ended_ns is not None

    def end(self, status: RunStatus, ended_ns: int | None = None) -> None:
        """Mark the run ended with ``status``."""
        self.status = status
        self.ended_ns = time.time_ns() if ended_ns is None else ended_ns

    def count_error(self, message: str) -> None:
        """Count one error caught while recording; the first few messages are kept."""
        self.tracker_errors += 1
        if len(self.error_messages) < KEPT_ERROR_MESSAGES:
            self.error_messages.append(message)

    def settle(self, record: Any) -> None:
        """The finaliser is done with this run: keep its record and wake whoever waits."""
        with _SETTLE_LOCK:
            if record is not None:
                self.record = record
            self.settled = True
            event = self._event
        if event is not None:
            event.set()

    def wait_settled(self, timeout_s: float) -> bool:
        """Block until ``settle`` was called; False on timeout.

        The event is made only when someone waits (most runs are never waited
        for), under the lock ``settle`` takes, so nothing slips between.
        """
        with _SETTLE_LOCK:
            if self.settled:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout_s)

    # --------------------------------------------------------- serialisation

    def header_line(self) -> str:
        """The first line of the run's serialisation."""
        header = {
            "run_log": RUN_LOG_FORMAT,
            "run_id": self.run_id,
            "config_name": self.config_name,
            "safety_level": self.safety_level,
            "safety_level_set_by": self.safety_level_set_by,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "device_id": self.device_id,
            "started_ns": self.started_ns,
            "software_version": self.software_version,
            "model_versions": self.model_versions,
            "max_text_chars": self.max_text_chars,
            "media_dir": str(self.media_dir) if self.media_dir is not None else None,
        }
        return _dumps(header, self.max_text_chars)

    def item_line(self, raw: RawItem) -> str:
        """One raw item's line."""
        return _dumps(list(raw), self.max_text_chars)

    def end_line(self) -> str:
        """The last line: how the run ended and what was counted."""
        return _dumps(
            {
                "end": {
                    "ended_ns": self.ended_ns,
                    "status": str(self.status),
                    "items_dropped": self.items_dropped,
                    "items_after_end": self.items_after_end,
                    "tracker_errors": self.tracker_errors,
                    "error_messages": self.error_messages,
                }
            },
            self.max_text_chars,
        )

    def lines(self) -> list[str]:
        """The whole serialisation (header, items, and the ending once closed)."""
        out = [self.header_line()]
        out.extend(self.item_line(raw) for raw in self.items[: len(self.items)])
        if self.closed:
            out.append(self.end_line())
        return out

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> RunLog:
        """Read a run back from its lines, as far as they go.

        A line that does not parse (cut short by a crash) is counted in
        ``unreadable_lines`` and skipped. A run without an end line is still
        ``running``: the caller decides what that means (recovery: incomplete).

        Raises:
            DamagedRunLog: the first line is not a header of this format.
        """
        iterator = iter(lines)
        try:
            header = json.loads(next(iterator))
        except (StopIteration, ValueError) as exc:
            raise DamagedRunLog("no readable header line") from exc
        if not isinstance(header, dict) or header.get("run_log") != RUN_LOG_FORMAT:
            raise DamagedRunLog(
                f"the first line is not a run-log header of format {RUN_LOG_FORMAT}"
            )
        log = cls.from_header(header)
        for line in iterator:
            log.read_line(line)
        return log

    def read_line(self, line: str) -> None:
        """Take one line after the header: an item is appended, the end line ends the run.

        A blank line is ignored; a line that does not parse is counted in
        ``unreadable_lines`` (never raised).
        """
        if not line.strip():
            return
        try:
            value = json.loads(line)
            if isinstance(value, list) and len(value) in _ITEM_LENGTHS:
                self.items.append(raw_item_of(value))
            elif isinstance(value, dict) and isinstance(value.get("end"), dict):
                self._read_end(value["end"])
            else:
                raise ValueError("neither an item nor an end line")
        except (ValueError, TypeError):
            self.unreadable_lines += 1

    @classmethod
    def from_header(cls, header: Mapping[str, Any]) -> RunLog:
        """A run log with no items yet, from the header fields of a serialised run.

        Raises:
            DamagedRunLog: a field is missing, or the start time is not one.
        """
        started_ns = header.get("started_ns")
        if type(started_ns) is not int or not 0 <= started_ns < MAX_TIME_NS:
            raise DamagedRunLog(f"the header's start time is not one: {started_ns!r}"[:200])
        media_dir = header.get("media_dir")
        try:
            return cls(
                str(header["run_id"]),
                header.get("config_name"),
                safety_level=header.get("safety_level"),
                safety_level_set_by=header.get("safety_level_set_by"),
                user_id=header.get("user_id"),
                session_id=header.get("session_id"),
                device_id=header.get("device_id"),
                started_ns=started_ns,
                software_version=header.get("software_version"),
                model_versions=_mapping(header.get("model_versions")),
                max_text_chars=int(header.get("max_text_chars") or 1_000_000),
                media_dir=Path(media_dir) if isinstance(media_dir, str) else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DamagedRunLog(f"the header lacks a field: {exc}") from exc

    def _read_end(self, end: dict[str, Any]) -> None:
        ended_ns = end["ended_ns"]
        if type(ended_ns) is not int or not 0 <= ended_ns < MAX_TIME_NS:
            raise ValueError(f"not an end time: {ended_ns!r}")
        self.end(RunStatus(end["status"]), ended_ns)
        self.items_dropped = int(end.get("items_dropped") or 0)
        self.items_after_end = int(end.get("items_after_end") or 0)
        self.tracker_errors = int(end.get("tracker_errors") or 0)
        self.error_messages = [str(m) for m in end.get("error_messages") or []]


def _mapping(value: Any) -> dict[Any, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _dumps(value: Any, max_chars: int) -> str:
    """ASCII JSON of ``value``; what JSON cannot hold is written as the builder converts it."""
    try:
        return json.dumps(value, default=_plain)
    except (TypeError, ValueError, RecursionError):
        # A cycle or an object without a JSON form: the builder's conversion cuts and
        # stringifies exactly as it would have in memory.
        return json.dumps(to_json_value(value, max_chars, CoercionStats()))


def _plain(value: object) -> object:
    dump = getattr(value, "model_dump", None)  # a MediaRef
    if callable(dump):
        return dump(mode="json")
    raise TypeError(type(value).__qualname__)


__all__ = [
    "KEPT_ERROR_MESSAGES",
    "RUN_LOG_FORMAT",
    "DamagedRunLog",
    "RawItem",
    "RunLog",
    "new_raw_item",
    "raw_item_of",
]
