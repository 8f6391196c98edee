"""Turning whatever the pipeline logged into strict, bounded JSON, counting every change."""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any
from uuid import UUID

_SURROGATES = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"
#: Nesting deeper than this is cut (and counted); real pipeline metadata is shallow.
MAX_DEPTH = 32
#: Byte strings up to this size are kept (base64); longer ones are summarised.
MAX_INLINE_BYTES = 4096

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


@dataclasses.dataclass(slots=True)
class CoercionStats:
    """Counters for everything the conversion had to change; they feed the integrity block."""

    coerced: int = 0
    truncated: int = 0
    replaced_chars: int = 0


def clean_text(text: str, max_chars: int, stats: CoercionStats) -> tuple[str, int | None]:
    """Return ``text`` made storable and its original length when it had to be cut.

    Lone surrogates (not encodable in UTF-8) become U+FFFD one for one, so
    offsets stay stable; every other character, control characters included,
    is kept as it is (JSON escapes them). Text longer than ``max_chars`` is
    truncated and counted.
    """
    original_length: int | None = None
    if len(text) > max_chars:
        original_length = len(text)
        text = text[:max_chars]
        stats.truncated += 1
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text, replaced = _SURROGATES.subn(REPLACEMENT, text)
        stats.replaced_chars += replaced
    return text, original_length


def to_json_value(value: Any, max_chars: int, stats: CoercionStats) -> JsonValue:
    """Convert ``value`` into a strict-JSON value (no NaN, no Infinity, str keys).

    Never raises: anything JSON cannot hold is replaced by a faithful string
    form and counted in ``stats.coerced``; cycles and nesting beyond
    ``MAX_DEPTH`` are cut and counted in ``stats.truncated``.
    """
    result: JsonValue = _convert(value, max_chars, stats, 0, set())
    return result


def _convert(value: Any, max_chars: int, stats: CoercionStats, depth: int, seen: set[int]) -> Any:
    if value is None or value is True or value is False:
        return value
    kind = type(value)
    if kind is str:
        return clean_text(value, max_chars, stats)[0]
    if kind is int:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        stats.coerced += 1
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if depth >= MAX_DEPTH:
        stats.truncated += 1
        return "<nesting too deep>"
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        marker = id(value)
        if marker in seen:
            stats.truncated += 1
            return "<cycle>"
        seen.add(marker)
        try:
            return _convert_container(value, max_chars, stats, depth, seen)
        finally:
            seen.discard(marker)
    return _convert_scalar(value, max_chars, stats, depth, seen)


def _convert_container(
    value: Any, max_chars: int, stats: CoercionStats, depth: int, seen: set[int]
) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in list(value.items()):
            if type(key) is not str:
                stats.coerced += 1
                key = _safe_str(key)
            key = clean_text(key, max_chars, stats)[0]
            if key in out:
                # Two keys that differ only in what had to be replaced (lone surrogates,
                # a non-string key's form): both values are kept, the later one under a
                # numbered key, and counted.
                stats.coerced += 1
                key = unique_key(key, out)
            out[key] = _convert(item, max_chars, stats, depth + 1, seen)
        return out
    if isinstance(value, set | frozenset):
        stats.coerced += 1
        items = [_convert(item, max_chars, stats, depth + 1, seen) for item in value]
        return sorted(items, key=repr)
    if not isinstance(value, list):
        stats.coerced += 0 if type(value) is tuple else 1
    return [_convert(item, max_chars, stats, depth + 1, seen) for item in value]


def _convert_scalar(
    value: Any, max_chars: int, stats: CoercionStats, depth: int, seen: set[int]
) -> Any:
    stats.coerced += 1
    if isinstance(value, bool | int):  # bool and int subclasses, e.g. IntEnum
        return int(value)
    if isinstance(value, enum.Enum):
        return _convert(value.value, max_chars, stats, depth + 1, seen)
    if isinstance(value, float):  # float subclasses
        return _convert(float(value), max_chars, stats, depth, seen)
    if isinstance(value, str):
        return clean_text(str(value), max_chars, stats)[0]
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if len(raw) <= MAX_INLINE_BYTES:
            return {"$base64": base64.b64encode(raw).decode("ascii")}
        return {"$bytes": len(raw)}
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, UUID | PurePath):
        return str(value)
    return clean_text(_safe_str(value), max_chars, stats)[0]


def unique_key(key: str, taken: Mapping[str, Any]) -> str:
    """``key`` with the first number appended that ``taken`` lacks: ``"k (2)"``, ``"k (3)"`` …"""
    number = 2
    while f"{key} ({number})" in taken:
        number += 1
    return f"{key} ({number})"


def _safe_str(value: Any) -> str:
    """``repr`` that cannot raise: objects whose ``__repr__`` fails get a stand-in."""
    try:
        return repr(value)
    except Exception:
        try:
            name = type(value).__qualname__
        except Exception:
            name = "object"
        return f"<unrepresentable {name}>"
