"""A finished record as one OpenTelemetry trace: the one path for the OTLP sink and OTLP/JSON.

``record_spans(record, options)`` is a pure function: the same record and options
give the same spans, ids included (derived from the run id and the item sequence
by SHA-256), so a re-export, the OTLP/JSON file and the sink agree span for span.
Every time comes from the record, never from the clock. docs/otel.md gives the
span tree and the attribute mapping.

The OpenTelemetry SDK is an optional dependency (extra ``otel``): it is imported
inside the functions that need it, so importing this module costs nothing.

Privacy (DESIGN.md §5): only pseudonyms are read (``user_pseudonym`` …), never the
raw ids, whatever the record holds. Texts (contents, matched terms, metadata
values that are not known to be structural) leave only with
``TraceOptions.capture_content``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._record import ExecutionItem, ExecutionRecord, StageSummary
from ._taxonomy import (
    BLOCK_ITEM_TYPES,
    FAILURE_ITEM_TYPES,
    OUTPUT_ITEM_TYPES,
    ItemType,
    RunStatus,
    StageStatus,
)

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan

#: The instrumentation scope every span carries.
SCOPE_NAME = "execution_history"
#: Version of the span layout and attribute mapping of docs/otel.md.
TRACE_LAYOUT_VERSION = "1"

#: Metadata keys whose values are structural (codes, numbers, flags), never a child's
#: words; only these leave without ``capture_content``. A string value is sent only when
#: it is short (a code or a config name), so a future key holding text cannot leak.
STRUCTURAL_METADATA = frozenset(
    {
        "from_lang", "to_lang", "language", "language_source", "language_confidence",
        "language_detector", "seed", "steps", "width", "height", "duration_s",
        "sample_rate", "cfg", "sampler", "output", "kind", "interception", "iterations",
        "filter", "safety_level", "passed", "translated", "unsupported_language",
        "error_code", "from_stage", "to_stage",
    }
)  # fmt: skip
_MAX_STRUCTURAL_CHARS = 64

_TEXT_STEPS = frozenset({ItemType.TRANSLATION_RESULT, ItemType.INTERCEPTION_ITERATION})
_CHECKS = frozenset({ItemType.STAGE1_SAFETY_CHECK, ItemType.STAGE3_SAFETY_CHECK})
_OUTPUT_TYPE = {"text": "text", "image": "image"}  # gen_ai.output.type where one fits


@dataclass(frozen=True, slots=True)
class TraceOptions:
    """How a record becomes a trace.

    Attributes:
        service_name: ``service.name`` of the resource (``OTEL_SERVICE_NAME``).
        capture_content: send the children's texts (prompts, model output, matched
            terms, free metadata); off by default
            (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``).
        resource_attributes: further resource attributes (``service.version`` …).
    """

    service_name: str = "devserver"
    capture_content: bool = False
    resource_attributes: Mapping[str, str] = field(default_factory=dict)

    def resource(self) -> Resource:
        """The OpenTelemetry resource: ``OTEL_RESOURCE_ATTRIBUTES``, then these options.

        Not ``Resource.create``: its default detectors add a random
        ``service.instance.id`` per call, and a run's trace must be the same on
        every export.
        """
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource

        own = Resource({**self.resource_attributes, "service.name": self.service_name})
        return OTELResourceDetector().detect().merge(own)


def trace_id_of(run_id: str) -> int:
    """The 128-bit trace id of a run: stable for its run id, never zero."""
    digest = hashlib.sha256(b"execution-history trace\x00" + run_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:16], "big") or 1


def span_id_of(run_id: str, *key: object) -> int:
    """The 64-bit id of one span of a run (``key`` names it: ``("stage", 2)`` …); never zero."""
    text = "\x00".join([run_id, *(str(part) for part in key)])
    digest = hashlib.sha256(b"execution-history span\x00" + text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") or 1


def _ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Integer arithmetic: a float of seconds since 1970 loses the microseconds.
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def item_times(item: ExecutionItem) -> tuple[int, int]:
    """An item's start and end in ns since the epoch: it is recorded when its step ended,
    so it began ``duration_ms`` before its timestamp (no duration: an instant)."""
    end = _ns(item.timestamp)
    if item.duration_ms is None or item.duration_ms < 0:
        return end, end
    return end - round(item.duration_ms * 1_000_000), end


class _Builder:
    """Collects the spans of one record (a helper of ``record_spans``)."""

    def __init__(self, record: ExecutionRecord, options: TraceOptions, resource: Resource) -> None:
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self.record = record
        self.options = options
        self.resource = resource
        self.scope = InstrumentationScope(SCOPE_NAME, TRACE_LAYOUT_VERSION)
        self.trace_id = trace_id_of(record.run_id)
        self.spans: list[ReadableSpan] = []
        self.by_sequence = {item.sequence: item for item in record.items}

    def span(
        self,
        key: tuple[object, ...],
        name: str,
        parent: int | None,
        start: int,
        end: int,
        attributes: dict[str, Any],
        events: Sequence[tuple[str, int, dict[str, Any]]] = (),
        error: str | None = None,
    ) -> int:
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import SpanContext, TraceFlags
        from opentelemetry.trace.status import Status, StatusCode

        span_id = span_id_of(self.record.run_id, *key)
        flags = TraceFlags(TraceFlags.SAMPLED)
        context = SpanContext(self.trace_id, span_id, is_remote=False, trace_flags=flags)
        parent_context = (
            SpanContext(self.trace_id, parent, is_remote=False, trace_flags=flags)
            if parent is not None
            else None
        )
        status = Status(StatusCode.ERROR, error) if error else Status(StatusCode.UNSET)
        self.spans.append(
            ReadableSpan(
                name=name,
                context=context,
                parent=parent_context,
                resource=self.resource,
                attributes=attributes,
                events=[Event(n, a, timestamp=t) for n, t, a in events],
                instrumentation_scope=self.scope,
                status=status,
                start_time=start,
                end_time=max(end, start),
            )
        )
        return span_id

    # ---------------------------------------------------------------- items

    def item_attributes(self, item: ExecutionItem) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "execution_history.item.sequence": item.sequence,
            "execution_history.item.type": str(item.item_type),
            "execution_history.stage": item.stage,
        }
        _put(attrs, "execution_history.item.media_type", _text_or_none(item.media_type))
        _put(attrs, "execution_history.stage_iteration", item.stage_iteration)
        _put(attrs, "execution_history.loop_iteration", item.loop_iteration)
        _put(attrs, "execution_history.item.input_sequence", item.input_sequence)
        _put(attrs, "execution_history.item.duration_ms", item.duration_ms)
        _put(attrs, "execution_history.item.config", item.config)
        if item.content is not None:
            length = item.content_length if item.content_length is not None else len(item.content)
            attrs["execution_history.item.content_length"] = length
        if item.model is not None:
            attrs["gen_ai.request.model"] = item.model
            attrs["langfuse.observation.model.name"] = item.model
            _put(
                attrs, "execution_history.model_version", self.record.model_versions.get(item.model)
            )
        _put(attrs, "gen_ai.provider.name", item.backend)
        kind = item.item_type
        if kind in _TEXT_STEPS or kind in OUTPUT_ITEM_TYPES:
            attrs["gen_ai.operation.name"] = (
                "text_completion" if kind in _TEXT_STEPS else "generate_content"
            )
            _put(attrs, "gen_ai.output.type", _OUTPUT_TYPE.get(str(item.media_type)))
            seed = item.metadata.get("seed")
            if isinstance(seed, int) and not isinstance(seed, bool):
                attrs["gen_ai.request.seed"] = seed
            attrs["langfuse.observation.type"] = "generation"
            attrs["openinference.span.kind"] = "LLM"
        elif kind in _CHECKS:
            attrs["langfuse.observation.type"] = "guardrail"
            attrs["openinference.span.kind"] = "GUARDRAIL"
        else:
            attrs["langfuse.observation.type"] = "span"
            attrs["openinference.span.kind"] = "CHAIN"
        passed = item.metadata.get("passed")
        if isinstance(passed, bool):
            attrs["execution_history.safety.passed"] = passed
        terms = item.metadata.get("matched_terms")
        if isinstance(terms, list):
            attrs["execution_history.safety.matched_terms_count"] = len(terms)
        if item.media is not None:
            media = item.media
            _put(attrs, "execution_history.media.path", media.path)
            _put(attrs, "execution_history.media.mime_type", media.mime_type)
            _put(attrs, "execution_history.media.size_bytes", media.size_bytes)
            _put(attrs, "execution_history.media.sha256", media.sha256)
            _put(attrs, "execution_history.media.width", media.width)
            _put(attrs, "execution_history.media.height", media.height)
            _put(attrs, "execution_history.media.duration_s", media.duration_s)
        for key, value in item.metadata.items():
            if key in STRUCTURAL_METADATA and _structural(value):
                attrs[f"execution_history.metadata.{key}"] = value
        if self.options.capture_content:
            self.content_attributes(item, attrs)
        return attrs

    def content_attributes(self, item: ExecutionItem, attrs: dict[str, Any]) -> None:
        """The texts, only with ``capture_content``: what Langfuse and Phoenix show."""
        if item.input_sequence is not None:
            source = self.by_sequence.get(item.input_sequence)
            if source is not None and source.content is not None:
                attrs["input.value"] = source.content
                attrs["langfuse.observation.input"] = source.content
        if item.content is not None:
            attrs["output.value"] = item.content
            attrs["langfuse.observation.output"] = item.content
        if item.metadata:
            attrs["execution_history.metadata"] = json.dumps(
                item.metadata, ensure_ascii=False, sort_keys=True, default=str
            )

    def item_status(self, item: ExecutionItem) -> str | None:
        if item.item_type in FAILURE_ITEM_TYPES:
            code = item.metadata.get("error_code")
            return f"{item.item_type}: {code}" if isinstance(code, str) else str(item.item_type)
        if item.item_type in BLOCK_ITEM_TYPES:
            return str(item.item_type)
        return None

    def add_items(
        self, items: Iterable[ExecutionItem], parent: int
    ) -> list[tuple[str, int, dict[str, Any]]]:
        """Items with a duration become child spans of ``parent``; the others are returned
        as events for it (an instant has no span to show)."""
        events = []
        for item in items:
            attrs = self.item_attributes(item)
            start, end = item_times(item)
            if item.duration_ms is None:
                events.append((str(item.item_type), end, attrs))
                continue
            self.span(
                ("item", item.sequence),
                _item_name(item),
                parent,
                start,
                end,
                attrs,
                error=self.item_status(item),
            )
        return events

    # --------------------------------------------------------------- groups

    def group(
        self,
        key: tuple[object, ...],
        name: str,
        parent: int,
        items: list[ExecutionItem],
        attrs: dict[str, Any],
    ) -> None:
        """A span around ``items`` (an iteration, an output's stage 3 or 4), from the
        earliest start to the latest end among them."""
        span_id = span_id_of(self.record.run_id, *key)
        events = self.add_items(items, span_id)
        times = [item_times(i) for i in items]
        blocked = [i for i in items if i.item_type in BLOCK_ITEM_TYPES]
        failed = [i for i in items if i.item_type in FAILURE_ITEM_TYPES]
        error = "blocked" if blocked else ("failed" if failed else None)
        attrs = {**attrs, "execution_history.items": len(items)}
        if error:
            attrs["execution_history.outcome"] = error
        self.span(
            key,
            name,
            parent,
            min(t[0] for t in times),
            max(t[1] for t in times),
            attrs,
            events,
            error=error,
        )

    def stage(self, summary: StageSummary, items: list[ExecutionItem], root: int) -> None:
        if summary.started_at is None or summary.ended_at is None:
            return  # a stage without items has no times; none are invented
        number = summary.stage
        span_id = span_id_of(self.record.run_id, "stage", number)
        attrs: dict[str, Any] = {
            "execution_history.stage": number,
            "execution_history.stage.name": summary.name,
            "execution_history.stage.status": str(summary.status),
            "execution_history.stage.items": summary.items,
            "execution_history.stage.failures": summary.failures,
            "execution_history.stage.blocks": summary.blocks,
            "execution_history.stage.iterations": summary.iterations,
            "execution_history.stage.loops": summary.loops,
            "langfuse.observation.type": "span",
            "openinference.span.kind": "CHAIN",
        }
        _put(attrs, "execution_history.stage.duration_ms", summary.duration_ms)
        # Stage 2 groups by stage_iteration, stages 3 and 4 by loop_iteration; items
        # outside a group (a transition, interception_final) hang on the stage itself.
        field_name = "stage_iteration" if number == 2 else "loop_iteration"
        label = "iteration" if number == 2 else "output"
        loose: list[ExecutionItem] = []
        groups: dict[int, list[ExecutionItem]] = {}
        for item in items:
            value = getattr(item, field_name) if number in (2, 3, 4) else None
            if value is None:
                loose.append(item)
            else:
                groups.setdefault(value, []).append(item)
        for value, members in sorted(groups.items()):
            self.group(
                (label, number, value),
                f"{label} {value}",
                span_id,
                members,
                {"execution_history.stage": number, f"execution_history.{field_name}": value},
            )
        events = self.add_items(loose, span_id)
        error = None
        if summary.status == StageStatus.BLOCKED:
            error = f"blocked ({summary.blocks} block(s))"
        elif summary.status == StageStatus.FAILED:
            error = f"failed ({summary.failures} failure(s))"
        self.span(
            ("stage", number),
            f"stage {number} {summary.name}",
            root,
            _ns(summary.started_at),
            _ns(summary.ended_at),
            attrs,
            events,
            error=error,
        )

    def root(self) -> None:
        record = self.record
        root_id = span_id_of(record.run_id, "run")
        by_stage: dict[int, list[ExecutionItem]] = {}
        for item in record.items:
            by_stage.setdefault(item.stage, []).append(item)
        for summary in record.stages:
            self.stage(summary, by_stage.get(summary.stage, []), root_id)
        summarised = {s.stage for s in record.stages if s.started_at is not None}
        # Stages 0 and 5 (start, end, errors) and any stage without a summary.
        loose = [i for i in record.items if i.stage not in summarised]
        events = self.add_items(loose, root_id)
        attrs: dict[str, Any] = {
            "execution_history.run_id": record.run_id,
            "execution_history.status": str(record.status),
            "execution_history.items": len(record.items),
            "execution_history.record_format_version": record.record_format_version,
            "execution_history.taxonomy_version": record.taxonomy_version,
            "execution_history.trace_layout_version": TRACE_LAYOUT_VERSION,
            "langfuse.observation.type": "span",
            "openinference.span.kind": "CHAIN",
        }
        _put(attrs, "execution_history.config", record.config_name)
        _put(attrs, "langfuse.trace.name", record.config_name)
        _put(attrs, "execution_history.safety_level", record.safety_level)
        _put(attrs, "execution_history.safety_level_set_by", record.safety_level_set_by)
        _put(attrs, "execution_history.software_version", record.software_version)
        _put(attrs, "execution_history.duration_ms", record.duration_ms)
        integrity = record.integrity
        attrs["execution_history.integrity.items_dropped"] = integrity.items_dropped
        attrs["execution_history.integrity.tracker_errors"] = integrity.tracker_errors
        attrs["execution_history.integrity.recovered"] = integrity.recovered
        # Pseudonyms only: the raw ids are never read here (DESIGN.md §5).
        for attr, value in (
            ("session.id", record.session_pseudonym),
            ("langfuse.session.id", record.session_pseudonym),
            ("user.id", record.user_pseudonym),
            ("langfuse.user.id", record.user_pseudonym),
            ("execution_history.device.id", record.device_pseudonym),
        ):
            _put(attrs, attr, value)
        if self.options.capture_content:
            first = next((i for i in record.items if i.item_type == ItemType.USER_INPUT_TEXT), None)
            final = next(
                (i for i in record.items if i.item_type == ItemType.INTERCEPTION_FINAL), None
            )
            for step, names in (
                (first, ("input.value", "langfuse.trace.input")),
                (final, ("output.value", "langfuse.trace.output")),
            ):
                if step is not None and step.content is not None:
                    for attr in names:
                        attrs[attr] = step.content
        status = record.status
        error = (
            str(status)
            if status in (RunStatus.ERROR, RunStatus.BLOCKED, RunStatus.NO_OUTPUT,
                          RunStatus.INCOMPLETE)
            else None
        )  # fmt: skip
        start = _ns(record.started_at)
        end = _ns(record.ended_at) if record.ended_at is not None else start
        if record.ended_at is None:  # a run without an end has only what was recorded
            end = max([start, *(item_times(i)[1] for i in record.items)])
        name = f"run {record.config_name}" if record.config_name else "run"
        self.span(("run",), name, None, start, end, attrs, events, error=error)


def _item_name(item: ExecutionItem) -> str:
    if item.model:
        return f"{item.item_type} {item.model}"
    return str(item.item_type)


def _put(attrs: dict[str, Any], key: str, value: Any) -> None:
    """Set an attribute only when the record knows the value (None stays absent)."""
    if value is not None:
        attrs[key] = value


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _structural(value: object) -> bool:
    if isinstance(value, bool | int | float):
        return value == value and value not in (float("inf"), float("-inf"))
    return isinstance(value, str) and len(value) <= _MAX_STRUCTURAL_CHARS


def record_spans(
    record: ExecutionRecord, options: TraceOptions, resource: Resource | None = None
) -> list[ReadableSpan]:
    """The spans of one run's trace, parents after their children, the root last.

    Args:
        record: a finished record; only its pseudonyms are read, never its raw ids.
        options: service name and whether texts are sent.
        resource: the resource to attach (``options.resource()`` when None; pass
            one built once when making many traces).

    Returns:
        ``ReadableSpan`` objects for an OpenTelemetry exporter.

    Raises:
        ImportError: when the OpenTelemetry SDK (extra ``otel``) is not installed.
    """
    builder = _Builder(record, options, resource if resource is not None else options.resource())
    builder.root()
    return builder.spans


def otlp_request(
    records: Iterable[ExecutionRecord], options: TraceOptions
) -> ExportTraceServiceRequest:
    """One OTLP ``ExportTraceServiceRequest`` holding the traces of ``records``.

    Raises:
        ImportError: when the OpenTelemetry SDK (extra ``otel``) is not installed.
    """
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    resource = options.resource()
    spans = [span for record in records for span in record_spans(record, options, resource)]
    return encode_spans(spans)


#: The OTLP/JSON fields that hold ids: hex strings in OTLP/JSON, bytes in protobuf.
ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """The OTLP/JSON form of a request (the OTLP specification's JSON encoding).

    Field names in lowerCamelCase, enums as integers, 64-bit integers as decimal
    strings, and trace and span ids as hex strings (not the base64 that the
    generic protobuf JSON mapping gives bytes). ``from_otlp_json`` reverses it.
    """
    from google.protobuf.json_format import MessageToDict

    document: dict[str, Any] = MessageToDict(request, use_integers_for_enums=True)
    _convert_ids(document, _base64_to_hex)
    return document


def from_otlp_json(document: Mapping[str, Any]) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON document back into an ``ExportTraceServiceRequest``.

    Hex ids are turned into the base64 the protobuf JSON parser expects for bytes.

    Raises:
        google.protobuf.json_format.ParseError: the document is not OTLP/JSON.
        ValueError: an id is not hex.
    """
    from google.protobuf.json_format import ParseDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    copy = json.loads(json.dumps(document))
    _convert_ids(copy, _hex_to_base64)
    request = ExportTraceServiceRequest()
    ParseDict(copy, request)
    return request


def _base64_to_hex(value: str) -> str:
    import base64

    return base64.b64decode(value).hex()


def _hex_to_base64(value: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def _convert_ids(node: Any, convert: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ID_FIELDS and isinstance(value, str):
                node[key] = convert(value)
            else:
                _convert_ids(value, convert)
    elif isinstance(node, list):
        for value in node:
            _convert_ids(value, convert)


__all__ = [
    "ID_FIELDS",
    "STRUCTURAL_METADATA",
    "TRACE_LAYOUT_VERSION",
    "TraceOptions",
    "from_otlp_json",
    "item_times",
    "otlp_json",
    "otlp_request",
    "record_spans",
    "span_id_of",
    "trace_id_of",
]
