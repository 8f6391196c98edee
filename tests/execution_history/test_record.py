"""The record model: JSON Schema, and records of older or newer taxonomies still load."""

from __future__ import annotations

import json
import logging

import jsonschema
import pytest

from execution_history import ExecutionRecord, ItemType, RunStatus


def test_a_record_validates_against_its_published_json_schema(finished_record) -> None:
    schema = ExecutionRecord.model_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(finished_record.model_dump_json()), schema)


def test_json_round_trip_is_lossless(finished_record) -> None:
    assert ExecutionRecord.model_validate_json(finished_record.model_dump_json()) == finished_record


def test_unknown_item_type_from_a_newer_taxonomy_is_kept_with_a_warning(
    finished_record, caplog: pytest.LogCaptureFixture
) -> None:
    data = json.loads(finished_record.model_dump_json())
    data["taxonomy_version"] = "9.0"
    data["items"][3]["item_type"] = "hologram_output"
    data["items"][3]["media_type"] = "hologram"
    data["status"] = "teleported"
    data["future_field"] = {"anything": 1}
    with caplog.at_level(logging.WARNING, logger="execution_history"):
        record = ExecutionRecord.model_validate(data)
    assert record.items[3].item_type == "hologram_output"
    assert record.items[3].media_type == "hologram"
    assert len(record.items) == len(finished_record.items)
    assert record.status == RunStatus.ERROR
    assert "hologram_output" in caplog.text
    # and it serialises again with the unknown type intact
    assert json.loads(record.model_dump_json())["items"][3]["item_type"] == "hologram_output"


def test_record_of_an_older_taxonomy_without_newer_fields_loads(finished_record) -> None:
    data = json.loads(finished_record.model_dump_json())
    data["taxonomy_version"] = "0.9"
    for key in ("integrity", "stages", "model_versions", "record_format_version"):
        data.pop(key)
    for item in data["items"]:
        item.pop("content_length", None)
        item.pop("media_type", None)
    record = ExecutionRecord.model_validate(data)
    assert record.taxonomy_version == "0.9"
    assert record.items[2].item_type == ItemType.USER_INPUT_TEXT
    assert record.integrity.items_recorded == 0  # unknown in the old record: not invented


def test_pseudonymised_copy_has_no_raw_ids(finished_record) -> None:
    from execution_history import Pseudonymiser

    key = Pseudonymiser("k" * 32)
    safe = finished_record.pseudonymised(key)
    text = safe.model_dump_json()
    assert "child-42" not in text and "class-7b" not in text
    assert safe.user_pseudonym == key.user("child-42")
    assert safe.session_pseudonym == key.session("class-7b")
    assert (
        finished_record.pseudonymised(Pseudonymiser("k" * 32)).user_pseudonym == safe.user_pseudonym
    )
    assert Pseudonymiser("j" * 32).user("child-42") != safe.user_pseudonym
    dropped = finished_record.pseudonymised(None)
    assert dropped.user_id is None and dropped.user_pseudonym is None
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Pseudonymiser("short")
