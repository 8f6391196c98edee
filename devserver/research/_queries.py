"""Research filters shared by the HTTP API and the command line: parsing, checking, rows out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from execution_history import Pseudonymiser, RunFilter, RunRow, RunStatus

from ..pipeline.safety import SAFETY_LEVELS

#: The filters of ``GET /api/runs``, ``/api/stats`` and ``/api/exports`` (and the CLI).
FILTER_NAMES = (
    "config",
    "status",
    "safety_level",
    "session_id",
    "device_id",
    "since",
    "until",
)
STATUSES = tuple(str(s) for s in RunStatus)
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: Longest text filter accepted; real config names and session ids are far shorter.
MAX_FILTER_CHARS = 256
_MAX_TIME_CHARS = 64
#: The names configs may have (devserver/_configs.py).
CONFIG_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class QueryError(ValueError):
    """A filter or page parameter that cannot be used; the message says what to send."""


def parse_time(name: str, text: str) -> datetime:
    """An ISO 8601 moment as an aware UTC datetime; a time without offset is taken as UTC.

    Args:
        name: the parameter's name, for the message.
        text: e.g. ``2024-05-01``, ``2024-05-01T12:00:00Z``, ``2024-05-01T14:00+02:00``.

    Raises:
        QueryError: when it is not an ISO 8601 date or time between 1970 and 9999.
    """
    problem = f"'{name}' must be an ISO 8601 date or time in UTC, e.g. 2024-05-01T12:00:00Z"
    if len(text) > _MAX_TIME_CHARS:
        raise QueryError(problem)
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise QueryError(problem) from None
    # The store compares fixed-width text; years outside 4 digits would sort wrongly.
    if not 1970 <= moment.year <= 9998:
        raise QueryError(f"'{name}' must lie between the years 1970 and 9998")
    return moment


def utc_iso(moment: datetime) -> str:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_filters(args: Mapping[str, str]) -> dict[str, str]:
    """The research filters in ``args``, checked and in canonical form (times in UTC).

    Args:
        args: parameter name → value (other names are ignored here).

    Returns:
        Only the filters that were given, e.g. ``{"status": "success", "since": "…Z"}``.

    Raises:
        QueryError: a value that cannot be used.
    """
    filters: dict[str, str] = {}
    for name in FILTER_NAMES:
        value = args.get(name)
        if value is None:
            continue
        if "\x00" in value or len(value) > MAX_FILTER_CHARS:
            raise QueryError(f"'{name}' must be at most {MAX_FILTER_CHARS} characters, without NUL")
        if value == "":
            raise QueryError(f"'{name}' must not be empty; leave it out to select every run")
        if name in ("since", "until"):
            filters[name] = utc_iso(parse_time(name, value))
        elif name == "status" and value not in STATUSES:
            raise QueryError(f"'status' must be one of: {', '.join(STATUSES)}")
        elif name == "safety_level" and value not in SAFETY_LEVELS:
            raise QueryError(f"'safety_level' must be one of: {', '.join(SAFETY_LEVELS)}")
        elif name == "config" and not CONFIG_NAME.fullmatch(value):
            raise QueryError("'config' must be a config name: lowercase letters, digits and _")
        else:
            filters[name] = value
    since, until = filters.get("since"), filters.get("until")
    if since and until and parse_time("since", since) >= parse_time("until", until):
        raise QueryError("'since' must be earlier than 'until'")
    return filters


def parse_limit(text: str | None) -> int:
    """The page size: 1..500, 50 when not given.

    Raises:
        QueryError: when it is not a whole number in range.
    """
    if text is None:
        return DEFAULT_LIMIT
    stripped = text.strip()
    if not (stripped.isascii() and stripped.isdigit()) or len(stripped) > 4:
        raise QueryError(f"'limit' must be a whole number from 1 to {MAX_LIMIT}")
    limit = int(stripped)
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"'limit' must be a whole number from 1 to {MAX_LIMIT}")
    return limit


def run_filter(filters: Mapping[str, str]) -> RunFilter:
    """The store's ``RunFilter`` for canonical ``filters`` (from ``parse_filters``)."""
    since = filters.get("since")
    until = filters.get("until")
    return RunFilter(
        config=filters.get("config"),
        status=filters.get("status"),
        safety_level=filters.get("safety_level"),
        session_id=filters.get("session_id"),
        device_id=filters.get("device_id"),
        since=datetime.fromisoformat(since) if since else None,
        until=datetime.fromisoformat(until) if until else None,
    )


def public_filters(filters: Mapping[str, str], pseudonymiser: Pseudonymiser) -> dict[str, str]:
    """``filters`` safe to show: raw session and device ids are replaced by their pseudonyms."""
    shown = dict(filters)
    if "session_id" in shown:
        shown["session_pseudonym"] = pseudonymiser.session(shown.pop("session_id"))
    if "device_id" in shown:
        shown["device_pseudonym"] = pseudonymiser.device(shown.pop("device_id"))
    return shown


@dataclass(frozen=True, slots=True)
class Page:
    """One page of runs and the keyset position after it (None on the last page)."""

    rows: list[RunRow]
    after: tuple[str, str] | None


def fetch_page(
    store: Any, filters: Mapping[str, str], limit: int, after: tuple[str, str] | None
) -> Page:
    """Up to ``limit`` runs newest first after ``after``, from the store's indexes.

    One extra row is asked for, so the last page is known without a second query.
    """
    rows = store.list_runs(run_filter(filters), limit + 1, after)
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, rows[-1].cursor)
    return Page(rows, None)


def list_entry(row: RunRow, pseudonymiser: Pseudonymiser) -> dict[str, Any]:
    """One run as the research list shows it: pseudonyms only, never a raw id."""
    return {
        "run_id": row.run_id,
        "config": row.config_name,
        "status": row.status,
        "safety_level": row.safety_level,
        "user_pseudonym": pseudonymiser.user(row.user_id) if row.user_id is not None else None,
        "session_pseudonym": (
            pseudonymiser.session(row.session_id) if row.session_id is not None else None
        ),
        "device_pseudonym": (
            pseudonymiser.device(row.device_id) if row.device_id is not None else None
        ),
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "duration_ms": row.duration_ms,
        "items": row.item_count,
        "integrity": {
            "items_dropped": row.items_dropped,
            "fields_truncated": row.fields_truncated,
            "values_coerced": row.values_coerced,
            "tracker_errors": row.tracker_errors,
        },
    }
