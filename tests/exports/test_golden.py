"""Golden structure (not bytes) of the fixed Stille Post run, read back from each format."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import docx
import pytest
from lxml import etree

from execution_history import ExecutionRecord
from exports._xml import NAMESPACE, schema
from tests.exports._support import available, export_bytes
from tests.records import STILLE_POST_LANGUAGES, STILLE_POST_TEXTS

NS = {"r": NAMESPACE}
GOLDEN_OUTPUTS = [(1, "generated"), (2, "blocked"), (3, "generated")]


def test_golden_json(finished_record: ExecutionRecord) -> None:
    """JSON: 8 interception iterations in order with their texts and language pairs."""
    document = json.loads(export_bytes(finished_record, "json"))
    iterations = [i for i in document["items"] if i["item_type"] == "interception_iteration"]
    assert [i["stage_iteration"] for i in iterations] == list(range(1, 9))
    assert [i["content"] for i in iterations] == STILLE_POST_TEXTS
    pairs = [(i["metadata"]["from_lang"], i["metadata"]["to_lang"]) for i in iterations]
    assert pairs == list(itertools.pairwise(STILLE_POST_LANGUAGES))
    checks = [
        i for i in document["items"] if i["stage"] == 3 and i["item_type"] != "stage_transition"
    ]
    assert [(i["loop_iteration"], i["item_type"]) for i in checks] == [
        (1, "stage3_safety_check"),
        (2, "stage3_blocked"),
        (3, "stage3_safety_check"),
    ]
    assert document["status"] == "partial"


def test_golden_xml(finished_record: ExecutionRecord) -> None:
    """XML: 8 iteration elements in order; 3 outputs, each with its check; one blocked."""
    root = etree.fromstring(export_bytes(finished_record, "xml"))
    schema().assertValid(root)
    iterations = root.findall("r:journey/r:stage[@n='2']/r:iteration", NS)
    assert [int(it.get("n")) for it in iterations] == list(range(1, 9))
    texts = [it.findtext("r:item/r:content", namespaces=NS) for it in iterations]
    assert texts == STILLE_POST_TEXTS
    outputs = root.findall("r:journey/r:outputs/r:output", NS)
    assert [(int(o.get("loop")), o.get("outcome")) for o in outputs] == GOLDEN_OUTPUTS
    for output in outputs:
        stage3 = [i.get("type") for i in output.findall("r:item[@stage='3']", NS)]
        assert {"stage3_safety_check", "stage3_blocked"} & set(stage3)
    media = [o.find("r:item/r:media", NS) for o in outputs]
    assert [m.get("path") if m is not None else None for m in media] == [
        "output_1.png",
        None,
        "output_3.png",
    ]


def test_golden_docx(finished_record: ExecutionRecord, media_dir: Path) -> None:
    """DOCX: iteration headings 1..8 each followed by its text; outputs in order; 2 images."""
    document = docx.Document(io.BytesIO(export_bytes(finished_record, "docx", media_dir)))
    paragraphs = [p.text for p in document.paragraphs]
    starts = [n for n, text in enumerate(paragraphs) if text.startswith("Iteration ")]
    assert len(starts) == 8
    for number, (start, text) in enumerate(zip(starts, STILLE_POST_TEXTS, strict=True), start=1):
        assert paragraphs[start].startswith(f"Iteration {number} (")
        assert paragraphs[start + 2] == text  # heading, item facts line, then the text
    outputs = [text for text in paragraphs if text.startswith("Output ")]
    assert outputs == [f"Output {loop}: {outcome}" for loop, outcome in GOLDEN_OUTPUTS]
    blocked_at = paragraphs.index("Output 2: blocked")
    assert "not suitable for kids" in paragraphs[blocked_at : blocked_at + 4]
    assert len(document.inline_shapes) == 2


def test_golden_pdf(finished_record: ExecutionRecord, media_dir: Path) -> None:
    """PDF: the iteration texts appear in order, and the three outputs in order."""
    if not available("pdf"):
        pytest.skip("exports._pdf is not installed here")
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(export_bytes(finished_record, "pdf", media_dir)), strict=True)
    text = "\n".join(page.extract_text() for page in reader.pages)
    positions = []
    start = 0
    for expected in STILLE_POST_TEXTS:
        start = text.index(expected, start)
        positions.append(start)
    assert positions == sorted(positions)
    outputs = [text.index(f"Output {loop}") for loop, _ in GOLDEN_OUTPUTS]
    assert outputs == sorted(outputs)
