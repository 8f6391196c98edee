"""The one builder: a run log (live, closed or recovered) into a validated, frozen ExecutionRecord.

Every path that makes a record goes through ``build_record``: finalising a
run, reading a run in flight, recovering a run a dead process left. Every
value is made storable here, in every field (ids and names included): text
that UTF-8 cannot hold (lone surrogates) is replaced one for one, anything
JSON cannot hold is converted, and each change is counted in the record's
integrity block. So a built record always serialises, and one bad run can
never block reading, listing or erasing the others.

Speed: the values the tracker itself logs (ints, plain ASCII or encodable
strings, flat metadata) take a fast path of type checks; anything else takes
the careful conversion of ``_coerce``. The record is validated in one pydantic
call; only when that fails is each item validated on its own, so a bad item
is dropped and counted instead of failing the run.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from ._coerce import CoercionStats, clean_text, to_json_value
from ._record import ExecutionItem, ExecutionRecord, MediaRef
from ._runlog import MAX_TIME_NS, RawItem, RunLog
from ._summary import derive_status, summarise_stage_rows, summarise_stages
from ._taxonomy import DEFAULT_MEDIA_TYPE, ItemType, MediaType, RunStatus

#: Names, ids and other short fields are cut at this many characters (and counted).
MAX_NAME_CHARS = _NAME = 1000
_MEDIA_FIELDS = ("path", "mime_type", "size_bytes", "sha256", "width", "height", "duration_s")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Below 2**32 s (the year 2106) Unix seconds as a float name every microsecond exactly
#: (pydantic-core rounds to the microsecond): the builder hands those over as floats, and
#: pydantic-core makes the datetime, cheaper than Python can.
_FLOAT_EXACT_US = (1 << 32) * 1_000_000
_MAX_US = MAX_TIME_NS // 1000
_ITEM_TYPES: dict[Any, ItemType] = {t: t for t in ItemType} | {t.value: t for t in ItemType}
_isfinite = math.isfinite


def utc_from_ns(ns: int) -> datetime:
    """A timezone-aware UTC datetime from nanoseconds since the epoch (microsecond precision)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _timestamp(us: int) -> datetime | None:
    """The datetime of a time the float cannot hold exactly; None for one that is no time
    (only a damaged log holds one: the item is then dropped and counted, never misdated)."""
    return _EPOCH + timedelta(microseconds=us) if 0 <= us < _MAX_US else None


def build_record(log: RunLog, *, recovered: bool = False) -> ExecutionRecord:
    """Build the frozen record of ``log``. Never raises for anything the log holds.

    Args:
        log: the run's raw recording; an open run is built as ``running``.
        recovered: the log was read back after its process died; a run that
            had not ended is then ``incomplete``.

    Returns:
        The ``ExecutionRecord``; its integrity block counts every change made.
    """
    stats = CoercionStats()
    max_chars = log.max_text_chars
    raw_items = log.items[: len(log.items)]
    if any(type(raw.sequence) is not int for raw in raw_items):
        raw_items = sorted(raw_items, key=sequence_key)
    else:
        raw_items.sort(key=_sequence)  # already in order nearly always: a linear check
    items = [item_dict(raw, max_chars, stats) for raw in raw_items]
    if log.closed:
        status = log.status
    elif recovered:
        status = RunStatus.INCOMPLETE
    else:
        status = derive_status((item["item_type"] for item in items), finished=False)
    ended_ns = log.ended_ns
    ended_us = ended_ns // 1000 if ended_ns is not None else None
    dated = all(item["timestamp"] is not None for item in items)
    stages = (
        summarise_stage_rows(
            [(i["stage"], i["item_type"], i["timestamp_us"], i["stage_iteration"],
              i["loop_iteration"]) for i in items],
            status,
            ended_us,
        )
        if dated
        else []
    )  # fmt: skip
    # Only the models this run called, in the order of first use: the catalogue the
    # pipeline passes names what it could call; a model used but not in it has its
    # version left unknown, never invented.
    catalogue = _catalogue(log.model_versions, stats)
    models: dict[str, str | None] = {}
    for item in items:
        model = item["model"]
        if model and model not in models:
            # The key is the item's model (its replacements counted there); only the
            # version is new text, cleaned and counted here, and only when it is written.
            models[model] = text_field(catalogue[model], stats) if model in catalogue else None
    build_errors: list[str] = []
    data: dict[str, Any] = {
        "run_id": text_field(log.run_id, stats) or "",
        "config_name": text_field(log.config_name, stats),
        "safety_level": text_field(log.safety_level, stats),
        "safety_level_set_by": text_field(log.safety_level_set_by, stats),
        "user_id": text_field(log.user_id, stats),
        "session_id": text_field(log.session_id, stats),
        "started_at": utc_from_ns(log.started_ns),
        "ended_at": utc_from_ns(ended_ns) if ended_ns is not None else None,
        "duration_ms": round((ended_ns - log.started_ns) / 1e6, 3)
        if ended_ns is not None
        else None,
        "status": status,
        "stages": [figures.as_dict() for figures in stages],
        "software_version": text_field(log.software_version, stats),
        "model_versions": models,
        "items": items,
    }
    record = None
    if dated:
        try:
            record = ExecutionRecord.model_validate(data)
        except Exception:
            record = None
    if record is None:
        # One item that does not validate must not cost the run: validate each on its
        # own, drop and count the bad ones, and summarise the stages of those kept.
        valid = _valid_items(items, build_errors)
        data["items"] = valid
        data["stages"] = summarise_stages(valid, status, data["ended_at"])
        record = ExecutionRecord.model_validate(data)
    messages = log.error_messages + build_errors
    integrity = record.integrity.model_copy(
        update={
            "items_recorded": len(record.items),
            "items_dropped": log.items_dropped + log.unreadable_lines,
            "items_after_finalize": log.items_after_end,
            "fields_truncated": stats.truncated,
            "values_coerced": stats.coerced,
            "characters_replaced": stats.replaced_chars,
            "tracker_errors": log.tracker_errors + len(build_errors),
            "tracker_error_messages": [text_field(m, stats) for m in messages[:5]],
            "recovered": recovered,
        }
    )
    return record.model_copy(update={"integrity": integrity})


def _valid_items(items: list[dict[str, Any]], errors: list[str]) -> list[ExecutionItem]:
    valid = []
    for item in items:
        try:
            valid.append(ExecutionItem.model_validate(item))
        except Exception as exc:
            errors.append(f"item {item.get('sequence')} not valid: {exc}"[:500])
    return valid


def _catalogue(versions: Any, stats: CoercionStats) -> dict[str, Any]:
    """The pipeline's model catalogue by cleaned name, versions still raw.

    Names are cleaned only to be compared with the items' models (nothing is
    counted: a name is written only as a copy of an item's model); the first
    of two names that clean to the same text wins.
    """
    if not isinstance(versions, dict):
        stats.coerced += 1
        return {}
    scratch = CoercionStats()
    catalogue: dict[str, Any] = {}
    for name, version in versions.items():
        key = text_field(name, scratch)
        if key is not None and key not in catalogue:
            catalogue[key] = version
    return catalogue


def item_dict(raw: RawItem, max_chars: int, stats: CoercionStats) -> dict[str, Any]:
    """The JSON-safe dict of one raw item, ready for ``ExecutionItem.model_validate``.

    Wrong types are coerced and counted, never raised: a non-string content
    becomes its string form, a media reference that is neither a ``MediaRef``
    nor a dict with a ``path`` moves into the metadata. The dict also holds
    ``timestamp_us`` (ignored by the model) for the stage summary.
    """
    (seq, ts, stage, si, li, item_type, content, media_type, media, model, backend,
     duration, metadata, config, extra, consumed) = raw  # fmt: skip
    if metadata is None:
        meta: dict[str, Any] = {}
    elif type(metadata) is dict and _plain_mapping(metadata, max_chars):
        meta = dict(metadata)
    else:
        converted = to_json_value(metadata, max_chars, stats)
        if isinstance(converted, dict):
            meta = converted
        else:
            stats.coerced += 1
            meta = {"value": converted}
    if extra is not None:
        _merge_extra(extra, meta, max_chars, stats)
    if type(item_type) is ItemType:
        kind = item_type
    elif type(item_type) is str and item_type in _ITEM_TYPES:
        kind = _ITEM_TYPES[item_type]
    else:
        kind = text_field(item_type, stats) or ItemType.PIPELINE_ERROR.value  # type: ignore[assignment]
    if media_type is None:
        media_type = DEFAULT_MEDIA_TYPE.get(kind)
    elif type(media_type) is not MediaType:
        media_type = text_field(media_type, stats)
    if type(ts) is not int:
        stats.coerced += 1
        ts = _int_or(ts, 0)
    if content is None or (
        type(content) is str and len(content) <= max_chars and content.isascii()
    ):
        text, original_length = content, None
    else:
        text, original_length = _text(content, max_chars, stats)
    if not (config is None or (type(config) is str and config.isascii() and len(config) <= _NAME)):
        config = text_field(config, stats)
    if not (model is None or (type(model) is str and model.isascii() and len(model) <= _NAME)):
        model = text_field(model, stats)
    if not (
        backend is None or (type(backend) is str and backend.isascii() and len(backend) <= _NAME)
    ):
        backend = text_field(backend, stats)
    if not (
        duration is None
        or (type(duration) is float and _isfinite(duration))
        or type(duration) is int
    ):
        duration = _opt_float(duration, stats)
    us = ts // 1000
    return {
        "sequence": seq if type(seq) is int else _coerced_int(seq, stats, 0),
        "timestamp": us / 1e6 if 0 <= us < _FLOAT_EXACT_US else _timestamp(us),
        "timestamp_us": us,
        "stage": stage if type(stage) is int else _coerced_int(stage, stats, 0),
        "stage_iteration": si if si is None or type(si) is int else opt_int(si, stats),
        "loop_iteration": li if li is None or type(li) is int else opt_int(li, stats),
        "item_type": kind,
        "media_type": media_type,
        "content": text,
        "content_length": original_length,
        "media": None if media is None else media_fields(media, meta, stats),
        "config": config,
        "model": model,
        "backend": backend,
        "duration_ms": duration,
        "metadata": meta,
        "input_sequence": consumed if consumed is None else _input_sequence(consumed, seq, stats),
    }  # fmt: skip


def _input_sequence(consumed: Any, sequence: Any, stats: CoercionStats) -> int | None:
    """``consumed`` when it names an earlier item; anything else is counted and left empty."""
    if type(consumed) is int and 1 <= consumed < (
        sequence if type(sequence) is int else consumed + 1
    ):
        return consumed
    stats.coerced += 1
    return None


def _plain_mapping(metadata: dict[Any, Any], max_chars: int) -> bool:
    """Whether ``metadata`` is flat JSON already (str keys; str, int, finite float, bool, None)."""
    for key, value in metadata.items():
        if type(key) is not str or not key.isascii():
            return False
        kind = type(value)
        if kind is str:
            if len(value) > max_chars or not value.isascii():
                return False
        elif kind is float:
            if not _isfinite(value):
                return False
        elif not (kind is int or kind is bool or value is None):
            return False
    return True


def _merge_extra(extra: Any, meta: dict[str, Any], max_chars: int, stats: CoercionStats) -> None:
    """Arguments a call passed beyond its parameters, kept in the metadata (and counted)."""
    stats.coerced += 1
    try:
        args, kwargs = extra
    except Exception:
        meta["extra"] = to_json_value(extra, max_chars, stats)
        return
    if args:
        meta["extra_args"] = to_json_value(list(args), max_chars, stats)
    if kwargs:
        converted = to_json_value(kwargs, max_chars, stats)
        if isinstance(converted, dict):
            meta.update(converted)
        else:
            meta["extra_kwargs"] = converted


def sequence_key(raw: RawItem) -> int:
    """Sort key of raw items: their sequence number (0 for a value that is not one)."""
    value = raw.sequence
    return value if type(value) is int else 0


def _sequence(raw: RawItem) -> int:
    return raw.sequence  # type: ignore[no-any-return]


def _text(value: Any, max_chars: int, stats: CoercionStats) -> tuple[str | None, int | None]:
    if value is None:
        return None, None
    if type(value) is not str:
        stats.coerced += 1
        converted = to_json_value(value, max_chars, stats)
        value = converted if isinstance(converted, str) else _json_text(converted)
    return clean_text(value, max_chars, stats)


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def text_field(value: Any, stats: CoercionStats) -> str | None:
    """A short text field (id, name, version) made storable; None stays None."""
    if value is None:
        return None
    if type(value) is str:
        if len(value) <= MAX_NAME_CHARS and value.isascii():
            return value
        return clean_text(value, MAX_NAME_CHARS, stats)[0]
    stats.coerced += 1
    converted = to_json_value(value, MAX_NAME_CHARS, stats)
    return converted if isinstance(converted, str) else _json_text(converted)


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except Exception:
        return default


def _coerced_int(value: Any, stats: CoercionStats, default: int) -> int:
    result = opt_int(value, stats)
    return default if result is None else result


def opt_int(value: Any, stats: CoercionStats) -> int | None:
    """``value`` as an int (counted when converted); None when it is none or not a number."""
    if value is None or type(value) is int:
        return value
    stats.coerced += 1
    try:
        return int(value)
    except Exception:
        return None


def _opt_float(value: Any, stats: CoercionStats) -> float | None:
    stats.coerced += 1
    try:
        result = float(value)
    except Exception:
        return None
    return result if _isfinite(result) else None


def media_fields(value: Any, meta: dict[str, Any], stats: CoercionStats) -> dict[str, Any] | None:
    """A media reference as the record's ``MediaRef`` fields, or None (kept in ``meta``)."""
    if isinstance(value, MediaRef):
        return value.model_dump()
    if isinstance(value, str):
        return {"path": clean_text(value, 4096, stats)[0]}
    if isinstance(value, dict) and isinstance(value.get("path"), str):
        media = {key: value.get(key) for key in _MEDIA_FIELDS}
        media["path"] = clean_text(value["path"], 4096, stats)[0]
        for key in ("mime_type", "sha256"):
            if isinstance(media[key], str):
                media[key] = text_field(media[key], stats)
        try:
            return MediaRef.model_validate(media).model_dump()
        except Exception:
            pass
    stats.coerced += 1
    meta["media"] = to_json_value(value, 4096, stats)
    return None


__all__ = ["build_record", "item_dict", "text_field", "utc_from_ns"]
