"""XML: the journey in the ``urn:execution-history:record:1`` vocabulary, valid against its XSD.

Iterations nest inside their stage (``<stage n="2"><iteration n="1">``) and each
output config is one ``<output loop="1">`` inside ``<outputs>``, holding its
safety check and its media. Every string is made legal XML 1.0 by ``sanitise``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from execution_history import ExecutionItem, ExecutionRecord, Integrity, StageSummary

from ._journey import Header, Iteration, Output, Section, build_journey, type_name
from ._text import sanitise
from ._timefmt import utc_iso

if TYPE_CHECKING:
    from lxml import etree

name = "xml"
media_type = "application/xml"
extension = "xml"
description = "XML in the urn:execution-history:record:1 namespace, valid against the shipped XSD"
requires: tuple[str, ...] = ("lxml",)
extra = "xml"

NAMESPACE = "urn:execution-history:record:1"
EXPORT_FORMAT_VERSION = "1.0"
SCHEMA_FILE = "execution-record.xsd"

_NS = "{" + NAMESPACE + "}"


def schema_text() -> bytes:
    """The XSD shipped in the package.

    Returns:
        The bytes of ``exports/schema/execution-record.xsd``.
    """
    return (resources.files("exports") / "schema" / SCHEMA_FILE).read_bytes()


@lru_cache(maxsize=1)
def schema() -> etree.XMLSchema:
    """The compiled XSD, loaded once per process.

    Returns:
        An ``lxml.etree.XMLSchema`` that every export validates against.
    """
    from lxml import etree

    return etree.XMLSchema(etree.fromstring(schema_text()))


def export(record: ExecutionRecord, stream: BinaryIO, *, media_dir: Path | None = None) -> None:
    """Write the record as UTF-8 XML.

    Args:
        record: a finished (pseudonymised) record.
        stream: a writable binary stream.
        media_dir: unused; media are referenced by path and checksum.
    """
    stream.write(to_bytes(record))


def to_bytes(record: ExecutionRecord) -> bytes:
    """The XML document of a record.

    Args:
        record: a finished (pseudonymised) record.

    Returns:
        UTF-8 XML with a declaration, pretty-printed.
    """
    from lxml import etree

    return etree.tostring(
        build_tree(record), xml_declaration=True, encoding="UTF-8", pretty_print=True
    )


def build_tree(record: ExecutionRecord) -> etree._Element:
    """The XML element tree of a record.

    Args:
        record: a finished (pseudonymised) record.

    Returns:
        The ``record`` root element.
    """
    from lxml import etree

    journey = build_journey(record)
    root = etree.Element(_NS + "record", nsmap={None: NAMESPACE})  # type: ignore[dict-item]
    root.set("export-format-version", EXPORT_FORMAT_VERSION)
    root.set("record-format-version", sanitise(record.record_format_version))
    root.set("taxonomy-version", sanitise(record.taxonomy_version))
    _header(etree.SubElement(root, _NS + "header"), journey.header)
    summary = etree.SubElement(root, _NS + "summary")
    for stage in journey.summary:
        _stage_summary(etree.SubElement(summary, _NS + "stage-summary"), stage)
    journey_el = etree.SubElement(root, _NS + "journey")
    for section in journey.sections:
        _section(journey_el, section)
    _integrity(etree.SubElement(root, _NS + "integrity"), journey.integrity)
    return root


def _text(parent: etree._Element, tag: str, value: str | None) -> None:
    from lxml import etree

    if value is None:
        return
    etree.SubElement(parent, _NS + tag).text = sanitise(value)


def _number(value: float) -> str:
    if math.isfinite(value):
        return repr(float(value)) if isinstance(value, float) else str(value)
    return "NaN" if math.isnan(value) else ("INF" if value > 0 else "-INF")


def _set(element: etree._Element, attribute: str, value: Any) -> None:
    """Set an attribute only when the value is known (None stays absent)."""
    if value is None:
        return
    if isinstance(value, bool):
        element.set(attribute, "true" if value else "false")
    elif isinstance(value, int):
        element.set(attribute, str(value))
    elif isinstance(value, float):
        element.set(attribute, _number(value))
    else:
        element.set(attribute, sanitise(str(value)))


def _header(element: etree._Element, header: Header) -> None:
    from lxml import etree

    _text(element, "run-id", header.run_id)
    _text(element, "config", header.config_name or None)
    _text(element, "safety-level", header.safety_level or None)
    _text(element, "user-pseudonym", header.user_pseudonym or None)
    _text(element, "session-pseudonym", header.session_pseudonym or None)
    _text(element, "started-at", header.started_at)
    _text(element, "ended-at", header.ended_at or None)
    if header.duration_ms is not None:
        _text(element, "duration-ms", _number(header.duration_ms))
    _text(element, "status", header.status)
    _text(element, "software-version", header.software_version or None)
    models = etree.SubElement(element, _NS + "model-versions")
    for model_name, version in header.model_versions:
        model = etree.SubElement(models, _NS + "model")
        _set(model, "name", model_name)
        _set(model, "version", version or None)


def _stage_summary(element: etree._Element, stage: StageSummary) -> None:
    _set(element, "n", stage.stage)
    _set(element, "name", stage.name)
    _set(element, "status", type_name(stage.status))
    for attribute in ("items", "failures", "blocks", "iterations", "loops"):
        _set(element, attribute, getattr(stage, attribute))
    _set(element, "started-at", utc_iso(stage.started_at) or None)
    _set(element, "ended-at", utc_iso(stage.ended_at) or None)
    _set(element, "duration-ms", stage.duration_ms)


def _section(parent: etree._Element, section: Section) -> None:
    from lxml import etree

    if section.is_outputs:
        element = etree.SubElement(parent, _NS + "outputs")
        _set(element, "stages", " ".join(str(stage) for stage in section.stages))
    else:
        element = etree.SubElement(parent, _NS + "stage")
        _set(element, "n", section.stages[0])
    _set(element, "name", section.title.split(": ", 1)[-1])
    for entry in section.entries:
        if isinstance(entry, Iteration):
            group = etree.SubElement(element, _NS + "iteration")
            _set(group, "n", entry.number)
        elif isinstance(entry, Output):
            group = etree.SubElement(element, _NS + "output")
            _set(group, "loop", entry.loop)
            _set(group, "outcome", entry.outcome)
        else:
            _item(element, entry)
            continue
        for item in entry.items:
            _item(group, item)


def _item(parent: etree._Element, item: ExecutionItem) -> None:
    from lxml import etree

    element = etree.SubElement(parent, _NS + "item")
    _set(element, "seq", item.sequence)
    _set(element, "timestamp", utc_iso(item.timestamp))
    _set(element, "stage", item.stage)
    _set(element, "stage-iteration", item.stage_iteration)
    _set(element, "loop-iteration", item.loop_iteration)
    _set(element, "type", type_name(item.item_type))
    _set(element, "media-type", type_name(item.media_type) or None)
    _set(element, "duration-ms", item.duration_ms)
    _set(element, "content-length", item.content_length)
    _text(element, "config", item.config)
    _text(element, "model", item.model)
    _text(element, "backend", item.backend)
    _text(element, "content", item.content)
    if item.media is not None:
        media = etree.SubElement(element, _NS + "media")
        ref = item.media
        _set(media, "path", ref.path)
        _set(media, "mime-type", ref.mime_type)
        _set(media, "size-bytes", ref.size_bytes)
        _set(media, "sha256", ref.sha256)
        _set(media, "width", ref.width)
        _set(media, "height", ref.height)
        _set(media, "duration-s", ref.duration_s)
    metadata = etree.SubElement(element, _NS + "metadata")
    for key, value in sorted(item.metadata.items()):  # the order every format uses
        _entry(metadata, value, key)


def _entry(parent: etree._Element, value: Any, key: str | None) -> None:
    """One JSON value as an ``entry``; objects and arrays nest (iteratively, no depth limit)."""
    from lxml import etree

    stack: list[tuple[etree._Element, Any, str | None]] = [(parent, value, key)]
    while stack:
        into, current, current_key = stack.pop()
        element = etree.SubElement(into, _NS + "entry")
        if current_key is not None:
            element.set("key", sanitise(str(current_key)))
        if isinstance(current, dict):
            element.set("type", "object")
            # reversed onto the stack so children come out in their own order
            stack.extend((element, v, str(k)) for k, v in reversed(list(current.items())))
        elif isinstance(current, list | tuple):
            element.set("type", "array")
            stack.extend((element, v, None) for v in reversed(current))
        elif current is None:
            element.set("type", "null")
        elif isinstance(current, bool):
            element.set("type", "boolean")
            element.text = "true" if current else "false"
        elif isinstance(current, int | float):
            element.set("type", "number")
            element.text = _number(current)
        else:
            element.set("type", "string")
            element.text = sanitise(str(current))


def _integrity(element: etree._Element, integrity: Integrity) -> None:
    from lxml import etree

    for attribute in (
        "items_recorded",
        "items_dropped",
        "items_after_finalize",
        "fields_truncated",
        "values_coerced",
        "characters_replaced",
        "tracker_errors",
        "recovered",
    ):
        _set(element, attribute.replace("_", "-"), getattr(integrity, attribute))
    for message in integrity.tracker_error_messages:
        _text(element, "tracker-error", message)
    for sink in integrity.sinks:
        sink_el = etree.SubElement(element, _NS + "sink")
        _set(sink_el, "name", sink.name)
        _set(sink_el, "status", sink.status)
        _set(sink_el, "attempts", sink.attempts)
        _set(sink_el, "duration-ms", sink.duration_ms)
        if sink.error is not None:
            sink_el.text = sanitise(sink.error)
