"""DOCX export: reopened with python-docx: headings, tables, inline images, fonts, no empties."""

from __future__ import annotations

import io
from datetime import UTC
from pathlib import Path

import docx
from docx.document import Document
from docx.oxml.ns import qn

from execution_history import ExecutionRecord, ExecutionTracker, ItemType
from tests.exports._support import export_bytes
from tests.records import stille_post_record, write_png


def reopen(data: bytes) -> Document:
    """The exported bytes opened by python-docx."""
    return docx.Document(io.BytesIO(data))


def headings(document: Document) -> list[tuple[str, str]]:
    """(style, text) of every heading and the title, in order."""
    return [
        (p.style.name, p.text)
        for p in document.paragraphs
        if p.style is not None and (p.style.name.startswith("Heading") or p.style.name == "Title")
    ]


def body_paragraphs_without_content(document: Document) -> list[int]:
    """Indexes of body paragraphs with neither text nor a drawing."""
    empty = []
    for index, paragraph in enumerate(document.paragraphs):
        has_drawing = paragraph._p.find(".//" + qn("w:drawing")) is not None
        if not paragraph.text.strip() and not has_drawing:
            empty.append(index)
    return empty


def test_docx_has_a_heading_per_stage_and_per_iteration(
    finished_record: ExecutionRecord, media_dir: Path
) -> None:
    """Title, stage headings 0..5 (3 and 4 together), iterations 1..8 and outputs 1..3."""
    document = reopen(export_bytes(finished_record, "docx", media_dir))
    found = headings(document)
    assert found[0] == ("Title", "Execution record: stillepost")
    level2 = [text for style, text in found if style == "Heading 2"]
    assert [text.split(":")[0] for text in level2] == [
        "Stage 0",
        "Stage 1",
        "Stage 2",
        "Stages 3 and 4",
        "Stage 5",
    ]
    level3 = [text for style, text in found if style == "Heading 3"]
    assert [text.split(" (")[0] for text in level3[:8]] == [f"Iteration {n}" for n in range(1, 9)]
    assert level3[0] == "Iteration 1 (de → en)"
    assert level3[8:] == ["Output 1: generated", "Output 2: blocked", "Output 3: generated"]


def test_docx_tables_hold_metadata_and_stage_summary(
    finished_record: ExecutionRecord, media_dir: Path
) -> None:
    """The run table has the pseudonymous header; the summary table has one row per stage."""
    document = reopen(export_bytes(finished_record, "docx", media_dir))
    run_table = {row.cells[0].text: row.cells[1].text for row in document.tables[0].rows}
    assert run_table["Run id"] == finished_record.run_id
    assert run_table["Status"] == "partial"
    started = finished_record.started_at.astimezone(UTC).isoformat(timespec="microseconds")
    assert run_table["Started"] == started.replace("+00:00", "Z")
    assert run_table["Started"].endswith("Z")
    summary = document.tables[1]
    assert summary.rows[0].cells[0].text == "Stage"
    assert [row.cells[0].text for row in summary.rows[1:]] == ["1", "2", "3", "4"]
    assert summary.rows[3].cells[5].text == "1"  # stage 3: one block
    cells = {cell.text for table in document.tables for row in table.rows for cell in row.cells}
    assert {"from_lang", "seed", "1235"} <= cells


def test_docx_embeds_images_inline(finished_record: ExecutionRecord, media_dir: Path) -> None:
    """The two generated images are inline pictures sized within the text width."""
    document = reopen(export_bytes(finished_record, "docx", media_dir))
    shapes = list(document.inline_shapes)
    assert len(shapes) == 2
    for shape in shapes:
        assert 0 < shape.width.inches <= 6.0
    assert body_paragraphs_without_content(document) == []


def test_missing_and_corrupt_images_become_placeholders_without_empty_paragraphs(
    tmp_path: Path,
) -> None:
    """A missing, a corrupt and an out-of-folder image each show a placeholder and a note."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    write_png(tmp_path / "outside.png")
    tracker = ExecutionTracker("dada", media_dir=media)
    with tracker, tracker.stage(4):
        for loop, path in enumerate(("absent.png", "corrupt.png", "../outside.png"), start=1):
            with tracker.loop_iteration(loop):
                tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": path, "mime_type": "image/png"})
    document = reopen(export_bytes(tracker.finalize(), "docx", media))
    assert len(document.inline_shapes) == 3
    notes = [p.text for p in document.paragraphs if p.text.startswith("Image not available")]
    assert notes == [
        "Image not available: image file not found",
        "Image not available: not a readable image",
        "Image not available: outside the media folder",
    ]
    assert body_paragraphs_without_content(document) == []


def test_runs_name_east_asian_and_complex_script_fonts(tmp_path: Path) -> None:
    """Every run names w:eastAsia and w:cs fonts; RTL paragraphs are marked bidi."""
    tracker = ExecutionTracker("dada")
    with tracker, tracker.stage(1):
        tracker.log_user_input("汉字かな한글")
        tracker.log_translation("مرحبا بالعالم", from_lang="zh", to_lang="ar")
    document = reopen(export_bytes(tracker.finalize(), "docx"))
    runs = [run for paragraph in document.paragraphs for run in paragraph.runs]
    assert runs
    for run in runs:
        fonts = run._r.rPr.find(qn("w:rFonts"))
        assert fonts.get(qn("w:eastAsia")) and fonts.get(qn("w:cs"))
    arabic = next(p for p in document.paragraphs if p.text == "مرحبا بالعالم")
    assert arabic._p.pPr.find(qn("w:bidi")) is not None
    assert any(p.text == "汉字かな한글" for p in document.paragraphs)


def test_a_blocked_run_states_the_stages_it_never_reached() -> None:
    """A run blocked in stage 1 shows the later stages as empty, with a sentence, not blanks."""
    tracker = ExecutionTracker("stillepost", safety_level="kids")
    with tracker, tracker.stage(1):
        tracker.log_user_input("verbotener Begriff")
        tracker.log_blocked("§86a term", metadata={"matched_terms": ["x"]})
    document = reopen(export_bytes(tracker.finalize(), "docx"))
    texts = [p.text for p in document.paragraphs]
    assert texts.count("No items were recorded in this stage.") >= 2
    assert "§86a term" in texts
    assert body_paragraphs_without_content(document) == []


def test_large_run_exports(tmp_path: Path) -> None:
    """A run with many items and a 100,000-character text still exports and reopens."""
    record = stille_post_record(tmp_path / "m", prompt="Ü" * 100_000)
    document = reopen(export_bytes(record, "docx", tmp_path / "m"))
    assert any(p.text == "Ü" * 100_000 for p in document.paragraphs)
    assert len(document.inline_shapes) == 2
