"""DOCX export: reopened with python-docx: headings, tables, inline images, fonts, no empties."""

from __future__ import annotations

import importlib.metadata
import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import docx
from docx.document import Document
from docx.oxml.ns import qn
from lxml import etree

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


# ------------------------------------------------------------------ what the package says it is


def _multilingual_record() -> ExecutionRecord:
    tracker = ExecutionTracker("stillepost", safety_level="kids")
    with tracker, tracker.stage(1):
        tracker.log_user_input(GERMAN)
        tracker.log_translation(CHINESE, from_lang="de", to_lang="zh")
        tracker.log_translation(ARABIC, from_lang="zh", to_lang="ar")
        tracker.log_translation(EMOJI, from_lang="ar", to_lang="de")
    return tracker.finalize()


GERMAN = "Grüße aus Köln, Straße ÄÖÜ äöü ß"
CHINESE = "汉字中文你好世界"
ARABIC = "مرحبا بالعالم"
EMOJI = "Emoji 😀🎨🐶"


def test_core_properties_describe_the_run_and_this_software(
    finished_record: ExecutionRecord, media_dir: Path
) -> None:
    """Title, subject, identifier, times and authorship come from the record, not the template."""
    data = export_bytes(finished_record, "docx", media_dir)
    core = reopen(data).core_properties
    assert core.title == f"Execution record: stillepost, run {finished_record.run_id}"
    assert finished_record.run_id in core.subject and core.identifier == finished_record.run_id
    expected = f"execution-history {importlib.metadata.version('execution-history')}"
    assert core.author == core.last_modified_by == expected
    assert core.comments == "" and core.keywords == "" and core.category == ""

    def second(moment: datetime) -> datetime:
        return moment.astimezone(UTC).replace(tzinfo=None, microsecond=0)

    assert finished_record.ended_at is not None
    assert second(core.created) == second(finished_record.started_at)
    assert second(core.modified) == second(finished_record.ended_at)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        core_xml = archive.read("docProps/core.xml").decode()
        app_xml = archive.read("docProps/app.xml").decode()
    assert "python-docx" not in core_xml and "2013-12-23" not in core_xml
    assert "Microsoft" not in app_xml and "<Pages>" not in app_xml


def test_a_run_without_an_end_is_modified_when_it_started() -> None:
    """modified falls back to the start; nothing is invented for a missing end."""
    tracker = ExecutionTracker("dada")
    with tracker, tracker.stage(1):
        tracker.log_user_input("x")
    record = tracker.finalize().model_copy(update={"ended_at": None})
    core = reopen(export_bytes(record, "docx")).core_properties
    assert core.modified == core.created


def test_the_page_is_a4_with_margins_and_no_thumbnail_ships(
    finished_record: ExecutionRecord,
) -> None:
    """A4 like the PDF (not the template's Letter); no thumbnail part, relationship or request."""
    data = export_bytes(finished_record, "docx")
    section = reopen(data).sections[0]
    assert round(section.page_width.mm) == 210 and round(section.page_height.mm) == 297
    for margin in (section.left_margin, section.right_margin, section.top_margin):
        assert 15 <= margin.mm <= 25
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        package_rels = archive.read("_rels/.rels").decode()
        settings = archive.read("word/settings.xml").decode()
    assert not [name for name in names if "thumbnail" in name.lower()]
    assert "thumbnail" not in package_rels
    assert "savePreviewPicture" not in settings


def _deobfuscate(data: bytes, key: str) -> bytes:
    """ECMA-376 Part 1 §17.8.1, written out here: XOR the first 32 bytes with the reversed GUID."""
    digits = key.strip("{}").replace("-", "")
    secret = [int(digits[i : i + 2], 16) for i in range(0, 32, 2)][::-1]
    head = bytes(data[i] ^ secret[i % 16] for i in range(32))
    return head + data[32:]


def test_embedded_fonts_open_as_fonts_with_the_glyphs_the_text_needs() -> None:
    """fontTable names embedded fonts; each part, unobfuscated, is a font with the needed glyphs."""
    from fontTools.ttLib import TTFont

    data = export_bytes(_multilingual_record(), "docx")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        table = etree.fromstring(archive.read("word/fontTable.xml"))
        rels = etree.fromstring(archive.read("word/_rels/fontTable.xml.rels"))
        targets = {rel.get("Id"): rel.get("Target") for rel in rels}
        embedded: dict[str, set[int]] = {}
        for font in table.findall(qn("w:font")):
            for embed in font:
                if not embed.tag.startswith(qn("w:embed")):
                    continue
                blob = archive.read("word/" + targets[embed.get(qn("r:id"))])
                ttf = TTFont(io.BytesIO(_deobfuscate(blob, embed.get(qn("w:fontKey")))))
                assert ttf["name"].getDebugName(1) == font.get(qn("w:name"))
                embedded.setdefault(font.get(qn("w:name")), set()).update(ttf.getBestCmap())
        settings = archive.read("word/settings.xml").decode()
    assert "embedTrueTypeFonts" in settings
    assert {ord(c) for c in GERMAN + ARABIC} <= embedded["DejaVu Sans"]
    assert {ord(c) for c in CHINESE} <= embedded["Droid Sans Fallback"]
    # every run names one embedded font for all four script slots, and that font has a
    # glyph for each of the run's characters: nothing is left to the reader's fonts
    document = reopen(data)
    drawn: set[str] = set()
    for paragraph in document.paragraphs:
        for run in paragraph.runs:
            fonts = run._r.rPr.find(qn("w:rFonts"))
            slots = {fonts.get(qn(f"w:{slot}")) for slot in ("ascii", "hAnsi", "eastAsia", "cs")}
            assert len(slots) == 1
            family = slots.pop()
            assert {ord(c) for c in run.text if c not in "\t\n"} <= embedded[family], run.text
            drawn.update(run.text)
    assert set(GERMAN + CHINESE + ARABIC + EMOJI) <= drawn


def test_verdicts_fields_and_metadata_order_read_back_from_the_docx(tmp_path: Path) -> None:
    """The safety verdict words and the field order (metadata sorted by key) as documented."""
    tracker = ExecutionTracker("dada", safety_level="kids")
    with tracker:
        with tracker.stage(1):
            tracker.log(ItemType.STAGE1_SAFETY_CHECK, content="ok", metadata={"passed": True})
        with tracker.stage(3):
            with tracker.loop_iteration(1):
                tracker.log(
                    ItemType.STAGE3_SAFETY_CHECK,
                    content="too scary",
                    model="guard",
                    metadata={"zeta": 1, "passed": False, "alpha": {"b": 2, "a": 1}},
                )
            with tracker.loop_iteration(2):
                tracker.log(ItemType.STAGE3_SAFETY_CHECK, content="?", metadata={"note": "x"})
    document = reopen(export_bytes(tracker.finalize(), "docx"))
    titles = [p.text for p in document.paragraphs if p.text.startswith("#")]
    assert any(t.endswith("stage1_safety_check · stage 1 · passed") for t in titles)
    assert any(t.endswith("stage3_safety_check · stage 3, output 1 · failed") for t in titles)
    unrecorded = next(t for t in titles if t.endswith("output 2"))
    assert "passed" not in unrecorded and "failed" not in unrecorded
    labels = [
        [row.cells[0].text for row in table.rows]
        for table in document.tables
        if table.rows[0].cells[0].text == "Recorded"
    ]
    guarded = next(rows for rows in labels if "Model" in rows)
    assert guarded == ["Recorded", "Media type", "Model", "alpha", "passed", "zeta"]
    values = {
        row.cells[0].text: row.cells[1].text
        for table in document.tables
        for row in table.rows
        if row.cells[0].text == "alpha"
    }
    assert values["alpha"] == '{"a": 1, "b": 2}'
