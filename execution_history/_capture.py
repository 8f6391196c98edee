"""Captures: a closed run's raw state as JSON, stored at once and built into a record later.

Building and validating a record costs about ten times what it costs to
keep the raw items durably. A busy server therefore stores a *capture* (the
run's header and its raw items as JSON arrays, the journal's item format) in
one cheap transaction, and the store builds the ``ExecutionRecord`` from it
when someone reads the run, or when the writer is idle. Nothing is lost on
the way: the capture holds every value the tracker held, and the record
built from it is the record ``build_record`` makes from the tracker.

Only runs whose values JSON holds exactly are captured. ``capture_payload``
returns None for any other run (a cycle, an object without a JSON form), and
the caller builds that run's record the careful way at once.

One documented difference: a ``str`` or ``int`` subclass (an enum member)
or a non-string key inside metadata is written as its JSON value, so the
record built from the capture does not count it in ``values_coerced``; the
values themselves are the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._build import build_record
from ._items import RawItem
from ._record import ExecutionRecord, MediaRef
from ._taxonomy import RunStatus

if TYPE_CHECKING:
    from ._tracker import ExecutionTracker

#: Version of the capture format; a capture of another version is refused.
CAPTURE_FORMAT = 1


class _NotPlainJson(TypeError):
    """A value that has no exact JSON form: the run takes the careful path."""


def _plain(value: object) -> object:
    if isinstance(value, MediaRef):
        return value.model_dump()
    raise _NotPlainJson(type(value).__qualname__)


def run_header(tracker: ExecutionTracker) -> dict[str, Any]:
    """What a run is, known from its start: the header of its journal and of its capture."""
    return {
        "run_id": tracker.run_id,
        "config_name": tracker.config_name,
        "safety_level": tracker.safety_level,
        "user_id": tracker.user_id,
        "session_id": tracker.session_id,
        "started_ns": tracker.started_ns,
        "software_version": tracker.software_version,
        "model_versions": tracker.model_versions,
    }


def capture_payload(tracker: ExecutionTracker) -> bytes | None:
    """The capture of a closed run as UTF-8 JSON, or None when a value has no exact JSON form.

    ASCII-escaped, so lone surrogates survive the round trip and the build
    replaces and counts them as it would have from the tracker. Never raises.
    """
    try:
        counters = tracker.counters
        header = {
            "capture": CAPTURE_FORMAT,
            **run_header(tracker),
            "ended_ns": tracker.ended_ns,
            "status": str(tracker.status),
            "counters": counters,
            "error_messages": tracker.error_messages,
            "max_text_chars": tracker.limits.max_text_chars,
            "media_dir": str(tracker.media_dir) if tracker.media_dir is not None else None,
            "items": tracker.items,
        }
        # No circular check: a cycle ends in RecursionError, which sends the run the careful way.
        return json.dumps(header, default=_plain, check_circular=False).encode("ascii")
    except (TypeError, ValueError, RecursionError, AttributeError):
        return None


@dataclass(slots=True)
class _Limits:
    max_text_chars: int


@dataclass(slots=True)
class CapturedRun:
    """A closed run read back from its capture; ``build_record`` accepts it like a tracker."""

    run_id: str
    config_name: str | None
    safety_level: str | None
    user_id: str | None
    session_id: str | None
    started_ns: int
    ended_ns: int | None
    status: RunStatus
    software_version: str | None
    model_versions: dict[str, str | None]
    items: list[RawItem]
    limits: _Limits
    media_dir: Path | None
    _counters: dict[str, int]
    _error_messages: list[str]
    closed: bool = True
    _build_errors: int = field(default=0)

    @classmethod
    def from_payload(cls, payload: bytes | str) -> CapturedRun:
        """Parse a capture; raises ``ValueError`` when it is not one this version reads."""
        data = json.loads(payload)
        if not isinstance(data, dict) or data.get("capture") != CAPTURE_FORMAT:
            raise ValueError(f"not a run capture of format {CAPTURE_FORMAT}")
        media_dir = data.get("media_dir")
        return cls(
            run_id=data["run_id"],
            config_name=data.get("config_name"),
            safety_level=data.get("safety_level"),
            user_id=data.get("user_id"),
            session_id=data.get("session_id"),
            started_ns=int(data["started_ns"]),
            ended_ns=int(data["ended_ns"]) if data.get("ended_ns") is not None else None,
            status=RunStatus(data["status"]),
            software_version=data.get("software_version"),
            model_versions=dict(data.get("model_versions") or {}),
            items=[RawItem(raw) for raw in data["items"]],
            limits=_Limits(int(data["max_text_chars"])),
            media_dir=Path(media_dir) if media_dir is not None else None,
            _counters=dict(data.get("counters") or {}),
            _error_messages=list(data.get("error_messages") or []),
        )

    @property
    def counters(self) -> dict[str, int]:
        """The tracker's counters, plus items the build could not validate."""
        counters = dict(self._counters)
        counters["tracker_errors"] = counters.get("tracker_errors", 0) + self._build_errors
        return counters

    @property
    def error_messages(self) -> list[str]:
        return list(self._error_messages)

    def _fault(self, exc: BaseException) -> None:
        """An item that did not validate: counted and described as the tracker would."""
        from ._tracker import KEPT_ERROR_MESSAGES, describe_error

        self._build_errors += 1
        if len(self._error_messages) < KEPT_ERROR_MESSAGES:
            self._error_messages.append(describe_error(exc))


def record_from_capture(payload: bytes | str) -> tuple[ExecutionRecord, Path | None]:
    """The record a capture holds, and the run's media folder (for sizes and checksums)."""
    run = CapturedRun.from_payload(payload)
    return build_record(run), run.media_dir  # type: ignore[arg-type]


__all__ = ["CAPTURE_FORMAT", "CapturedRun", "capture_payload", "record_from_capture"]
