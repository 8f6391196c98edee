"""OTLP/JSON: a run as the OpenTelemetry trace the OTLP sink sends, for tools without a collector.

The file is one ``ExportTraceServiceRequest`` in the OTLP specification's JSON
encoding (hex trace and span ids, lowerCamelCase names, enums as integers), the
kind of file Jaeger's, Phoenix's and the OpenTelemetry Collector's file
receivers read. The spans come from ``execution_history.record_spans``, the one
path the sink uses too, so a file and a live export of a run agree id for id.
docs/otel.md describes the spans and how to reload the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from execution_history import ExecutionRecord, TraceOptions, otlp_json, otlp_request

name = "otlp-json"
media_type = "application/json"
extension = "otlp.json"
description = "The run as one OpenTelemetry trace in OTLP/JSON (Jaeger, Phoenix, Langfuse import)"
requires: tuple[str, ...] = ("opentelemetry.sdk", "opentelemetry.proto")
extra = "otel"
#: The deployment's trace settings (docs/otel.md): the service name, and whether the
#: children's texts are included ("true"; otherwise they are left out as in the sink).
options = ("otel_service_name", "otel_capture_content")


def _options(otel_service_name: str | None, otel_capture_content: str | None) -> TraceOptions:
    capture = (otel_capture_content or "").strip().lower() == "true"
    return TraceOptions(service_name=otel_service_name or "devserver", capture_content=capture)


def _write(records: Iterable[ExecutionRecord], stream: BinaryIO, trace: TraceOptions) -> None:
    document = otlp_json(otlp_request(records, trace))
    # ensure_ascii: a lone surrogate cannot reach the file as invalid UTF-8 (the
    # record's builder replaces them already; this keeps the file valid regardless).
    stream.write(json.dumps(document, ensure_ascii=True, sort_keys=True).encode("ascii"))
    stream.write(b"\n")


def export(
    record: ExecutionRecord,
    stream: BinaryIO,
    *,
    media_dir: Path | None = None,
    otel_service_name: str | None = None,
    otel_capture_content: str | None = None,
) -> None:
    """Write one run's trace as OTLP/JSON.

    Args:
        record: a finished (pseudonymised) record.
        stream: a writable binary stream.
        media_dir: unused; spans reference media by path and checksum.
        otel_service_name: ``service.name`` of the resource (default ``devserver``).
        otel_capture_content: ``"true"`` to include the texts; anything else leaves them out.
    """
    _write([record], stream, _options(otel_service_name, otel_capture_content))


def export_batch(
    records: Iterable[tuple[ExecutionRecord, Path | None]],
    stream: BinaryIO,
    *,
    otel_service_name: str | None = None,
    otel_capture_content: str | None = None,
) -> None:
    """Write many runs' traces into one OTLP/JSON request (one trace per run).

    Args:
        records: pairs of a finished (pseudonymised) record and its media folder.
        stream: a writable binary stream.
        otel_service_name: as for ``export``.
        otel_capture_content: as for ``export``.
    """
    trace = _options(otel_service_name, otel_capture_content)
    _write((record for record, _ in records), stream, trace)
