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

# The moments ``since`` and ``until`` take, written out so that /api/openapi.json can
# publish the very same pattern: a generated client (or a fuzzer) then knows exactly what
# is accepted, including that there is no 30 February. Years 1970 to 9998 (the store
# compares fixed-width text, and a moment late in 9998 with an offset stays in 4 digits).
# ASCII classes only: ``\d`` would take other scripts' digits.
_YEAR = r"(?:19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
_LEAP_YEAR = (
    r"(?:19(?:7[26]|8[048]|9[26])"  # 1972 … 1996
    r"|[2-9][0-9](?:0[48]|[2468][048]|[13579][26])"  # 2004 … 9996, not the centuries
    r"|(?:[2468][048]|[3579][26])00)"  # 2000, 2400 … 9600
)
_MONTH_DAY = (
    r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    r"|(?:0[13-9]|1[0-2])-(?:29|30)"
    r"|(?:0[13578]|1[02])-31)"
)
_DATE = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME = r"[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
_OFFSET = r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
#: A date (midnight UTC), or a date and time with an optional offset (UTC without one).
MOMENT = re.compile(rf"{_DATE}(?:{_TIME}{_OFFSET}?)?")


class QueryError(ValueError):
    """A filter or page parameter that cannot be used; the message says what to send."""


def parse_time(name: str, text: str) -> datetime:
    """An ISO 8601 moment as an aware UTC datetime; a time without offset is taken as UTC.

    Args:
        name: the parameter's name, for the message.
        text: e.g. ``2024-05-01``, ``2024-05-01T12:00:00Z``, ``2024-05-01T14:00+02:00``
            (``MOMENT``: dated 1970 to 9998, seconds and fractions optional).

    Raises:
        QueryError: when it is not such a date or time.
    """
    problem = (
        f"'{name}' must be an ISO 8601 date or time from the year 1970 to 9998, "
        "e.g. 2024-05-01 or 2024-05-01T12:00:00Z"
    )
    # No stripping: /api/openapi.json publishes MOMENT, and a value the spec calls
    # invalid (a space around it) must not be taken.
    if len(text) > _MAX_TIME_CHARS or not MOMENT.fullmatch(text):
        raise QueryError(problem)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:  # pragma: no cover - ruled out by MOMENT
        raise QueryError(problem) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


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
    moments: dict[str, datetime] = {}
    for name in FILTER_NAMES:
        value = args.get(name)
        if value is None:
            continue
        if "\x00" in value or len(value) > MAX_FILTER_CHARS:
            raise QueryError(f"'{name}' must be at most {MAX_FILTER_CHARS} characters, without NUL")
        if value == "":
            raise QueryError(f"'{name}' must not be empty; leave it out to select every run")
        if name in ("since", "until"):
            moments[name] = parse_time(name, value)
            filters[name] = utc_iso(moments[name])
        elif name == "status" and value not in STATUSES:
            raise QueryError(f"'status' must be one of: {', '.join(STATUSES)}")
        elif name == "safety_level" and value not in SAFETY_LEVELS:
            raise QueryError(f"'safety_level' must be one of: {', '.join(SAFETY_LEVELS)}")
        elif name == "config" and not CONFIG_NAME.fullmatch(value):
            raise QueryError("'config' must be a config name: lowercase letters, digits and _")
        else:
            filters[name] = value
    since, until = moments.get("since"), moments.get("until")
    if since and until and since >= until:
        # Equal too: 'until' is exclusive, so since == until selects nothing, and a researcher
        # who sends it almost always meant one whole day. Saying so beats an empty answer.
        raise QueryError(
            "'until' must be later than 'since' ('until' is exclusive: for the runs of "
            "2024-05-01 send since=2024-05-01&until=2024-05-02)"
        )
    return filters


def parse_limit(text: str | None) -> int:
    """The page size: 1..500, 50 when not given.

    Raises:
        QueryError: when it is not a whole number in range.
    """
    if text is None:
        return DEFAULT_LIMIT
    # Exactly what the spec's integer 1..500 allows: no blanks, no sign, ASCII digits.
    if not (text.isascii() and text.isdigit()) or len(text) > 4:
        raise QueryError(f"'limit' must be a whole number from 1 to {MAX_LIMIT}")
    limit = int(text)
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
