"""Hostile content: any text a child or a model can produce exports and reads back everywhere."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import docx
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from execution_history import ExecutionRecord, ExecutionTracker, ItemType
from exports._json import json_schema
from exports._text import sanitise
from exports._xml import NAMESPACE, schema
from tests.exports._support import HOSTILE_FRAGMENTS, available, export_bytes
from tests.records import write_png

FRAGMENTS = HOSTILE_FRAGMENTS

hostile_text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=8
).map("".join)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
    st.binary(max_size=8),
)
hostile_metadata = st.dictionaries(
    hostile_text,
    st.recursive(
        json_leaf,
        lambda children: st.one_of(
            st.lists(children, max_size=3), st.dictionaries(hostile_text, children, max_size=3)
        ),
        max_leaves=8,
    ),
    max_size=4,
)

MEDIA_KINDS = ["good.png", "photo.webp", "corrupt.png", "missing.png", "../escape.png", ""]


@pytest.fixture(scope="module")
def hostile_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A media folder with a good PNG, a WebP and a corrupt file (and one outside it)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("hostile")
    media = root / "media"
    write_png(media / "good.png")
    Image.new("RGB", (30, 20), "red").save(media / "photo.webp", format="WEBP")
    (media / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    write_png(root / "escape.png")
    return media


@st.composite
def hostile_records(draw: st.DrawFn, media_dir: Path) -> ExecutionRecord:
    """A run recorded through the real tracker with hostile texts, metadata and media."""
    tracker = ExecutionTracker(
        draw(st.one_of(st.none(), hostile_text)),
        safety_level=draw(st.one_of(st.none(), hostile_text)),
        user_id=draw(hostile_text),
        session_id=draw(hostile_text),
        media_dir=media_dir,
        software_version=draw(st.one_of(st.none(), hostile_text)),
        model_versions=draw(st.dictionaries(hostile_text, st.one_of(st.none(), hostile_text))),
    )
    with tracker:
        with tracker.stage(1):
            tracker.log_user_input(draw(hostile_text), metadata=draw(hostile_metadata))
        with tracker.stage(2):
            for n in range(1, draw(st.integers(0, 3)) + 1):
                with tracker.stage_iteration(n):
                    tracker.log_interception_iteration(
                        draw(hostile_text),
                        model=draw(st.one_of(st.none(), hostile_text)),
                        backend=draw(st.one_of(st.none(), hostile_text)),
                        duration_ms=draw(st.one_of(st.none(), st.floats(0, 1e6))),
                        metadata=draw(hostile_metadata),
                    )
        for loop in range(1, draw(st.integers(0, 2)) + 1):
            with tracker.loop_iteration(loop):
                with tracker.stage(3):
                    if draw(st.booleans()):
                        tracker.log_blocked(draw(hostile_text))
                        continue
                    tracker.log_safety_check(passed=True, metadata=draw(hostile_metadata))
                with tracker.stage(4):
                    tracker.log_output(
                        ItemType.OUTPUT_IMAGE,
                        {"path": draw(st.sampled_from(MEDIA_KINDS)), "mime_type": "image/png"},
                        content=draw(st.one_of(st.none(), hostile_text)),
                    )
    return tracker.finalize()


def _contents(record: ExecutionRecord) -> list[str]:
    return [item.content for item in record.items if item.content is not None]


def _string_leaves(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_string_leaves(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _string_leaves(v)]
    return []


def check_json(record: ExecutionRecord, data: bytes) -> None:
    """json + JSON Schema: the document validates and holds every text exactly."""
    document = json.loads(data.decode("utf-8"), parse_constant=lambda c: pytest.fail(c))
    jsonschema.validate(document, json_schema())
    assert [i["content"] for i in document["items"] if i["content"] is not None] == _contents(
        record
    )
    assert [i["metadata"] for i in document["items"]] == [i.metadata for i in record.items]


def check_xml(record: ExecutionRecord, data: bytes) -> None:
    """lxml + XSD: valid, and every text and metadata string is there, sanitised."""
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, huge_tree=True))
    schema().assertValid(root)
    items = list(root.iter(f"{{{NAMESPACE}}}item"))
    assert len(items) == len(record.items)
    ns = {"r": NAMESPACE}
    found = [item.findtext("r:content", namespaces=ns) for item in items]
    assert [f for f in found if f is not None] == [sanitise(c) for c in _contents(record)]
    xml_strings = set(root.itertext()) | {v for el in root.iter() for v in el.attrib.values()}
    for item in record.items:
        for string in _string_leaves(item.metadata):
            if string:
                assert sanitise(string) in xml_strings


def check_docx(record: ExecutionRecord, data: bytes) -> None:
    """python-docx: reopens; every text (sanitised, CR as a break) is in the document."""
    document = docx.Document(io.BytesIO(data))
    body = "\n".join(p.text for p in document.paragraphs)
    cells = "\n".join(
        cell.text for table in document.tables for row in table.rows for cell in row.cells
    )
    for content in _contents(record):
        # python-docx writes CR and LF both as <w:br/>, read back as "\n"
        assert sanitise(content).replace("\r", "\n") in body
    for item in record.items:
        for value in item.metadata.values():
            if isinstance(value, str) and value:
                assert sanitise(value).replace("\r", "\n") in cells


def check_pdf(record: ExecutionRecord, data: bytes) -> None:
    """pypdf (strict): opens, has pages, names the run (text fidelity: see test_pdf.py)."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=True)
    assert len(reader.pages) >= 1
    assert record.run_id in "".join(page.extract_text() for page in reader.pages)


CHECKS = {"json": check_json, "xml": check_xml, "docx": check_docx, "pdf": check_pdf}


@pytest.mark.parametrize("fmt", list(CHECKS))
def test_hostile_records_export_and_read_back(fmt: str, hostile_media: Path) -> None:
    """Any hostile run exports without raising and its independent reader finds every text."""
    if not available(fmt):
        pytest.skip(f"{fmt} is not installed here")

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(record=hostile_records(hostile_media))
    def run(record: ExecutionRecord) -> None:
        data = export_bytes(record, fmt, hostile_media)
        CHECKS[fmt](record, data)

    run()


LONG = ("Grüße 汉字 مرحبا <&]]>\x00\ud800 " * 5000)[:100_000]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(CHECKS))
def test_a_100000_character_text_exports(fmt: str) -> None:
    """A 100,000-character hostile text and an empty one export and read back in full."""
    if not available(fmt):
        pytest.skip(f"{fmt} is not installed here")
    tracker = ExecutionTracker("dada")
    with tracker, tracker.stage(1):
        tracker.log_user_input(LONG)
        tracker.log_translation("", from_lang=None, to_lang=None)
    record = tracker.finalize()
    assert len(_contents(record)[0]) == 100_000
    CHECKS[fmt](record, export_bytes(record, fmt))


def test_non_finite_metadata_is_coerced_not_crashing() -> None:
    """NaN and infinities in metadata reach every format as strict values."""
    tracker = ExecutionTracker("dada")
    with tracker, tracker.stage(1):
        tracker.log_user_input("x", metadata={"a": math.nan, "b": math.inf})
    record = tracker.finalize()
    for fmt in ("json", "xml", "docx"):
        CHECKS[fmt](record, export_bytes(record, fmt))

    def refuse(literal: str) -> object:
        raise AssertionError(f"non-standard JSON literal {literal} in the export")

    exported = json.loads(export_bytes(record, "json"), parse_constant=refuse)
    assert "NaN" in json.dumps(exported) and "Infinity" in json.dumps(exported)
