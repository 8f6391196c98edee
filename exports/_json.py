"""JSON: the canonical record, UTF-8, sorted keys, strict JSON, annotated with its export version.

The file is the record itself (``ExecutionRecord.model_dump(mode="json")``) plus
one top-level key, ``export_format_version``; ``ExecutionRecord`` reads it back
as it is (unknown keys are ignored). ``json_schema()`` is the schema of the file,
published as ``exports/schema/json-export.schema.json`` (``make schema``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, BinaryIO

from execution_history import ExecutionRecord

name = "json"
media_type = "application/json"
extension = "json"
description = "The canonical record as JSON, with its JSON Schema"
requires: tuple[str, ...] = ()
extra = ""

#: Version of this file layout (the record inside has its own ``record_format_version``).
EXPORT_FORMAT_VERSION = "1.0"
#: The identifier of the published schema (a name, not a location to fetch).
SCHEMA_ID = f"urn:execution-history:json-export:{EXPORT_FORMAT_VERSION}"
#: Where the schema is published inside the package (a copy sits in docs/).
SCHEMA_FILE = Path(__file__).parent / "schema" / "json-export.schema.json"

_SURROGATES = re.compile("[\ud800-\udfff]")


def to_document(record: ExecutionRecord) -> dict[str, Any]:
    """The JSON document of a record, as Python values.

    Args:
        record: a finished (pseudonymised) record.

    Returns:
        The record's JSON form with ``export_format_version`` added.
    """
    document = record.model_dump(mode="json")
    document["export_format_version"] = EXPORT_FORMAT_VERSION
    return document


def export(record: ExecutionRecord, stream: BinaryIO, *, media_dir: Path | None = None) -> None:
    """Write the record as UTF-8 JSON with sorted keys and a final newline.

    Args:
        record: a finished (pseudonymised) record.
        stream: a writable binary stream.
        media_dir: unused; JSON references media by path and checksum.

    Raises:
        ValueError: if the record holds a value strict JSON cannot express
            (the tracker coerces these, so a tracker-made record never does).
    """
    text = json.dumps(
        to_document(record), ensure_ascii=False, sort_keys=True, allow_nan=False, indent=2
    )
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8; replace it one for one as the tracker does.
        data = _SURROGATES.sub("\ufffd", text).encode("utf-8")
    stream.write(data)
    stream.write(b"\n")


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an exported file, exactly as ``export`` writes it.

    ``ExecutionRecord.model_json_schema()`` describes what the model accepts;
    the file is narrower: ``model_dump`` writes every field of every object
    (so all are required) and nothing else (so no other key is allowed), plus
    ``export_format_version``. Free-form dicts (``metadata``, ``model_versions``)
    stay open.

    Returns:
        The schema, with ``$schema``, ``$id`` and ``title`` set.
    """
    schema = ExecutionRecord.model_json_schema(mode="serialization")
    schema["properties"]["export_format_version"] = {
        "type": "string",
        "const": EXPORT_FORMAT_VERSION,
        "description": "Version of the export file layout.",
        "title": "Export Format Version",
    }
    for node in (schema, *schema.get("$defs", {}).values()):
        if "properties" in node:
            node["required"] = sorted(node["properties"])
            node["additionalProperties"] = False
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "Execution record (JSON export)"
    return schema


def schema_text() -> str:
    """The published form of ``json_schema()``: sorted keys, indented by 2, final newline.

    Returns:
        The text ``make schema`` writes to ``SCHEMA_FILE`` and its copy in docs/.
    """
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
