"""UTC time and duration formatting: the one place any export format turns a time into text."""

from __future__ import annotations

from datetime import UTC, datetime


def _as_utc(dt: datetime) -> datetime:
    # Records hold aware UTC datetimes; a naive one can only have come from UTC too.
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def utc_iso(dt: datetime | None) -> str:
    """ISO 8601 in UTC with microseconds and a ``Z``, e.g. ``2026-11-21T06:46:07.375789Z``.

    Args:
        dt: an aware datetime (a naive one is read as UTC), or None.

    Returns:
        The formatted time, or an empty string for None.
    """
    if dt is None:
        return ""
    return _as_utc(dt).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration_human(ms: float | None) -> str:
    """A readable duration: ``0.4 ms``, ``15.1 ms``, ``2.35 s``, ``3 min 05 s``.

    Args:
        ms: a duration in milliseconds, or None when it is not known.

    Returns:
        The formatted duration, or an empty string for None.
    """
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.1f} ms" if ms >= 1 else f"{ms:.3g} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"
