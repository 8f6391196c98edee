"""Turning a closed tracker's raw items into a validated, frozen ExecutionRecord."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._coerce import CoercionStats, clean_text, to_json_value
from ._items import RawItem
from ._record import ExecutionItem, ExecutionRecord, Integrity, MediaRef
from ._summary import derive_status, summarise_stages
from ._taxonomy import DEFAULT_MEDIA_TYPE, ItemType, MediaType, RunStatus

if TYPE_CHECKING:
    from ._tracker import ExecutionTracker

_MEDIA_FIELDS = ("path", "mime_type", "size_bytes", "sha256", "width", "height", "duration_s")


def utc_from_ns(ns: int) -> datetime:
    """A timezone-aware UTC datetime from nanoseconds since the epoch (microsecond precision)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)


def item_dict(raw: RawItem, max_chars: int, stats: CoercionStats) -> dict[str, Any]:
    """The JSON-safe dict of one raw item, ready for ``ExecutionItem.model_validate``.

    Wrong types are coerced and counted, never raised: a non-string content
    becomes its string form, a media reference that is neither a ``MediaRef``
    nor a dict with a ``path`` moves into the metadata.
    """
    (seq, ts, stage, si, li, item_type, content, media_type, media, model, backend,
     duration, metadata, config, extra) = raw  # fmt: skip
    meta = to_json_value(metadata, max_chars, stats) if metadata is not None else {}
    if not isinstance(meta, dict):
        stats.coerced += 1
        meta = {"value": meta}
    if extra is not None:
        stats.coerced += 1
        args, kwargs = extra
        if args:
            meta["extra_args"] = to_json_value(list(args), max_chars, stats)
        if kwargs:
            meta.update({str(k): v for k, v in to_json_value(kwargs, max_chars, stats).items()})  # type: ignore[union-attr]
    text, original_length = _text(content, max_chars, stats)
    item_type = str_field(item_type, stats) or ItemType.PIPELINE_ERROR.value
    if media_type is None:
        media_type = DEFAULT_MEDIA_TYPE.get(item_type)
    return {
        "sequence": seq,
        "timestamp": utc_from_ns(ts),
        "stage": int_field(stage, stats, 0),
        "stage_iteration": opt_int(si, stats),
        "loop_iteration": opt_int(li, stats),
        "item_type": item_type,
        "media_type": str_field(media_type, stats),
        "content": text,
        "content_length": original_length,
        "media": media_fields(media, meta, stats),
        "config": str_field(config, stats),
        "model": str_field(model, stats),
        "backend": str_field(backend, stats),
        "duration_ms": _opt_float(duration, stats),
        "metadata": meta,
    }


def build_record(tracker: ExecutionTracker) -> ExecutionRecord:
    """Build the frozen record of ``tracker`` (closed or not: an open run is ``running``)."""
    stats = CoercionStats()
    max_chars = tracker.limits.max_text_chars
    raw_items = sorted(tracker.items[: len(tracker.items)], key=sequence_key)
    validated = (_validated(raw, max_chars, stats, tracker) for raw in raw_items)
    items = [item for item in validated if item is not None]
    status = (
        tracker.status
        if tracker.closed
        else derive_status((item.item_type for item in items), finished=False)
    )
    started = utc_from_ns(tracker.started_ns)
    ended = utc_from_ns(tracker.ended_ns) if tracker.ended_ns is not None else None
    models = dict(tracker.model_versions)
    for item in items:
        if item.model and item.model not in models:
            models[item.model] = None  # used but of unknown version: not invented
    counters = tracker.counters
    record = ExecutionRecord(
        run_id=tracker.run_id,
        config_name=tracker.config_name,
        safety_level=tracker.safety_level,
        user_id=tracker.user_id,
        session_id=tracker.session_id,
        started_at=started,
        ended_at=ended,
        duration_ms=round((tracker.ended_ns - tracker.started_ns) / 1e6, 3)
        if tracker.ended_ns is not None
        else None,
        status=status,
        stages=summarise_stages(items, status, ended),
        software_version=tracker.software_version,
        model_versions=models,
        items=items,
        integrity=Integrity(
            items_recorded=len(items),
            items_dropped=counters["items_dropped"],
            items_after_finalize=counters["items_after_finalize"],
            fields_truncated=stats.truncated,
            values_coerced=stats.coerced,
            characters_replaced=stats.replaced_chars,
            tracker_errors=counters["tracker_errors"],
            tracker_error_messages=tracker.error_messages,
        ),
    )
    return record


def _validated(
    raw: RawItem, max_chars: int, stats: CoercionStats, tracker: ExecutionTracker
) -> ExecutionItem | None:
    try:
        return ExecutionItem.model_validate(item_dict(raw, max_chars, stats))
    except Exception as exc:  # a raw item that still does not validate is counted
        tracker._fault(exc)
        return None


def sequence_key(raw: RawItem) -> int:
    """Sort key of raw items: their sequence number (0 for a value that is not one)."""
    value = raw[0]
    return value if isinstance(value, int) else 0


def _text(value: Any, max_chars: int, stats: CoercionStats) -> tuple[str | None, int | None]:
    if value is None:
        return None, None
    if not isinstance(value, str):
        stats.coerced += 1
        converted = to_json_value(value, max_chars, stats)
        value = converted if isinstance(converted, str) else _json_text(converted)
    return clean_text(value, max_chars, stats)


def clean_content(value: Any, max_chars: int, stats: CoercionStats) -> str | None:
    """An item's content as the record holds it (converted, cleaned, cut at ``max_chars``)."""
    return _text(value, max_chars, stats)[0]


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def str_field(value: Any, stats: CoercionStats) -> str | None:
    if value is None or isinstance(value, str):
        if isinstance(value, str):
            return clean_text(value, 1000, stats)[0]
        return value
    stats.coerced += 1
    converted = to_json_value(value, 1000, stats)
    return converted if isinstance(converted, str) else _json_text(converted)


def int_field(value: Any, stats: CoercionStats, default: int) -> int:
    result = opt_int(value, stats)
    return default if result is None else result


def opt_int(value: Any, stats: CoercionStats) -> int | None:
    if value is None or type(value) is int:
        return value
    stats.coerced += 1
    try:
        return int(value)
    except Exception:
        return None


def _opt_float(value: Any, stats: CoercionStats) -> float | None:
    if value is None:
        return None
    try:
        result = float(value)
    except Exception:
        stats.coerced += 1
        return None
    if result != result or result in (float("inf"), float("-inf")):
        stats.coerced += 1
        return None
    if type(value) is not float and type(value) is not int:
        stats.coerced += 1
    return result


def media_fields(value: Any, meta: dict[str, Any], stats: CoercionStats) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, MediaRef):
        return value.model_dump()
    if isinstance(value, str):
        return {"path": clean_text(value, 4096, stats)[0]}
    if isinstance(value, dict) and isinstance(value.get("path"), str):
        media = {key: value.get(key) for key in _MEDIA_FIELDS}
        try:
            return MediaRef.model_validate(media).model_dump()
        except Exception:
            pass
    stats.coerced += 1
    meta["media"] = to_json_value(value, 4096, stats)
    return None


__all__ = ["MediaType", "RunStatus", "build_record", "item_dict", "utc_from_ns"]
