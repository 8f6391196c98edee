"""JSON: the canonical record, UTF-8, sorted keys, strict JSON, annotated with its export version.

The file is the record itself (``ExecutionRecord.model_dump(mode="json")``) plus
one top-level key, ``export_format_version``; ``ExecutionRecord`` reads it back
as it is (unknown keys are ignored). ``json_schema()`` is the schema of the file.
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
    """The JSON Schema (draft 2020-12) of an exported file.

    Returns:
        ``ExecutionRecord.model_json_schema()`` with ``export_format_version`` required.
    """
    schema = ExecutionRecord.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["properties"]["export_format_version"] = {
        "type": "string",
        "const": EXPORT_FORMAT_VERSION,
        "description": "Version of the export file layout.",
    }
    schema["required"] = sorted({*schema.get("required", []), "export_format_version"})
    return schema
