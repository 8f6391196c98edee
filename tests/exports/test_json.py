"""JSON export: the canonical record, strict, sorted, valid against its published JSON Schema.

Exports are validated with jsonschema (an independent validator) against the
schema file as published (``exports/schema/json-export.schema.json`` and its
copy in docs/), read from disk.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given

from execution_history import ExecutionRecord, ExecutionTracker, ItemType, Pseudonymiser
from exports._json import EXPORT_FORMAT_VERSION, SCHEMA_FILE, schema_text
from tests.exports._support import export_bytes
from tests.exports.test_tables import HOSTILE_SETTINGS, LARGE_REPR, hostile_records

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = [SCHEMA_FILE, ROOT / "docs" / "json-export.schema.json"]


def published_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text("utf-8"))
    return schema


def _validator(schema: dict[str, Any] | None = None) -> jsonschema.Draft202012Validator:
    schema = published_schema() if schema is None else schema
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _validate(document: object) -> None:
    _validator().validate(document)


def orchestrated(config: str, text: str, tmp_path: Path) -> ExecutionRecord:
    """A run of a shipped config through the real orchestrator."""
    from devserver import Pipeline, RunRequest, load_configs, run_pipeline
    from devserver.pipeline.backends import LocalBackend
    from devserver.pipeline.safety import AgeFilter, Stage1Filter

    tracker = ExecutionTracker(config, safety_level="kids", user_id="u", session_id="s")
    request = RunRequest(load_configs()[config], text, "kids", seed=5)
    run_pipeline(tracker, request, Pipeline(LocalBackend(), Stage1Filter(), AgeFilter()), tmp_path)
    return tracker.finalize()


def test_the_published_schema_is_current_and_identified() -> None:
    """Both published copies are what ``json_schema()`` gives, with $schema, $id and the version."""
    for path in PUBLISHED:
        assert path.read_text("utf-8") == schema_text(), f"{path} is stale: run make schema"
    schema = published_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:execution-history:json-export:{EXPORT_FORMAT_VERSION}"
    assert schema["properties"]["export_format_version"]["const"] == EXPORT_FORMAT_VERSION
    assert "export_format_version" in schema["required"]


@pytest.mark.parametrize(
    ("config", "text"),
    [
        ("stillepost", "Ein Hund spielt im Garten"),
        ("dada", "Ein Hakenkreuz"),  # blocked at stage 1
        ("image_and_sound", "Ein Hund"),
        ("triptych", "Ein Hund"),
    ],
)
def test_real_exports_of_every_config_validate(config: str, text: str, tmp_path: Path) -> None:
    """Runs of each shipped config, exported, validate against the published schema."""
    record = orchestrated(config, text, tmp_path)
    document = json.loads(export_bytes(record, "json", pseudonymiser=Pseudonymiser("k" * 32)))
    _validate(document)
    assert any(item["input_sequence"] is not None for item in document["items"])


@pytest.mark.filterwarnings(LARGE_REPR)
@HOSTILE_SETTINGS
@given(record=hostile_records())
def test_hostile_exports_validate(record: ExecutionRecord) -> None:
    """Hostile texts, odd metadata, missing media: the export still matches the schema."""
    document = json.loads(export_bytes(record, "json"))
    errors = [e.message for e in _validator().iter_errors(document)]
    assert errors == []
    assert document["run_id"] == record.run_id and len(document["items"]) == len(record.items)


@pytest.mark.parametrize(
    "damage",
    [
        "drop export_format_version",
        "wrong export_format_version",
        "unknown top-level key",
        "unknown item key",
        "item without input_sequence",
        "integrity without a counter",
        "stage out of range",
    ],
)
def test_the_schema_refuses_what_export_never_writes(
    finished_record: ExecutionRecord, damage: str
) -> None:
    """The schema is exact: a key missing or added anywhere fails validation."""
    document = json.loads(export_bytes(finished_record, "json"))
    _validate(document)
    broken = copy.deepcopy(document)
    item = broken["items"][0]
    if damage == "drop export_format_version":
        del broken["export_format_version"]
    elif damage == "wrong export_format_version":
        broken["export_format_version"] = "0.9"
    elif damage == "unknown top-level key":
        broken["raw_user_id"] = "child-42"
    elif damage == "unknown item key":
        item["prompt"] = "x"
    elif damage == "item without input_sequence":
        del item["input_sequence"]
    elif damage == "integrity without a counter":
        del broken["integrity"]["items_dropped"]
    else:
        item["stage"] = 9
    with pytest.raises(jsonschema.ValidationError):
        _validate(broken)


def test_metadata_stays_open(finished_record: ExecutionRecord) -> None:
    """Backend parameters are free-form: any key in an item's metadata is valid."""
    document = json.loads(export_bytes(finished_record, "json"))
    document["items"][0]["metadata"] = {"anything": [1, {"nested": None}], "ключ": "значение"}
    assert [e.message for e in _validator().iter_errors(document)] == []
    # …while the same value where the schema is closed is refused.
    document["items"][0]["ключ"] = "значение"
    assert [e.message for e in _validator().iter_errors(document)] != []


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
