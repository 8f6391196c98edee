"""JSON export: the canonical record, strict, sorted, valid against its JSON Schema."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest

from execution_history import ExecutionRecord, ExecutionTracker, ItemType
from exports._json import EXPORT_FORMAT_VERSION, json_schema
from tests.exports._support import export_bytes


def _validate(document: object) -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(document)


def test_json_is_the_record_plus_the_export_version(finished_record: ExecutionRecord) -> None:
    """The file parses, validates, and reads back into an equal (pseudonymised) record."""
    data = export_bytes(finished_record, "json")
    document = json.loads(data.decode("utf-8"))
    _validate(document)
    assert document["export_format_version"] == EXPORT_FORMAT_VERSION
    assert document["taxonomy_version"] == finished_record.taxonomy_version
    back = ExecutionRecord.model_validate(document)
    assert back == finished_record.pseudonymised(None)
    assert back.user_id is None and back.session_id is None


def test_json_keys_are_sorted_at_every_level(finished_record: ExecutionRecord) -> None:
    """Keys are in sorted order everywhere, so two exports of one run diff cleanly."""

    def check(value: object) -> None:
        if isinstance(value, dict):
            assert list(value) == sorted(value)
            for child in value.values():
                check(child)
        elif isinstance(value, list):
            for child in value:
                check(child)

    check(json.loads(export_bytes(finished_record, "json")))
    assert export_bytes(finished_record, "json") == export_bytes(finished_record, "json")


def test_json_is_strict_and_utf8_for_odd_values() -> None:
    """NaN and Infinity never appear; non-ASCII text is written as UTF-8, not escaped."""
    tracker = ExecutionTracker("dada", safety_level="teens")
    with tracker, tracker.stage(1):
        tracker.log(
            ItemType.USER_INPUT_TEXT,
            content="Grüße 汉字 😀 \x00 \ud800",
            metadata={"nan": math.nan, "inf": -math.inf, "bytes": b"\x00\x01", "set": {1}},
        )
    data = export_bytes(tracker.finalize(), "json")
    text = data.decode("utf-8")
    assert "Grüße 汉字 😀" in text
    document = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict {name}"))
    _validate(document)
    item = next(i for i in document["items"] if i["item_type"] == "user_input_text")
    # control characters stay (JSON escapes them); the lone surrogate was replaced one for one
    assert item["content"] == "Grüße 汉字 😀 \x00 \ufffd"
