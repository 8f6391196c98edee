"""The children's picture book reopened with pypdf: one step per page, big images, no ids."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("reportlab")
pypdf = pytest.importorskip("pypdf")

from execution_history import ExecutionTracker  # noqa: E402
from tests.exports._support import PSEUDONYM_KEY, export_bytes  # noqa: E402
from tests.exports.test_pdf_bidi import pdftotext  # noqa: E402
from tests.records import STILLE_POST_TEXTS, stille_post_record  # noqa: E402

HOSTILE = "<script>alert(1)</script> & <b>fett</b> Grüße 汉字"


def read(data: bytes) -> Any:
    assert data.startswith(b"%PDF-")
    return pypdf.PdfReader(io.BytesIO(data), strict=True)


def texts(reader: Any) -> list[str]:
    return [re.sub(r"\s+", " ", page.extract_text()) for page in reader.pages]


def image_sizes(page: Any) -> list[tuple[float, float]]:
    """Drawn sizes (points) of the page's images, from the transformation before each Do."""
    sizes: list[tuple[float, float]] = []

    def visit(op: bytes, args: Any, cm: Any, tm: Any) -> None:
        if op == b"Do":
            sizes.append((abs(cm[0]), abs(cm[3])))

    page.extract_text(visitor_operand_before=visit)
    return sizes


def test_the_book_has_one_page_per_step_in_the_order_the_child_saw_them(tmp_path: Path) -> None:
    record = stille_post_record(tmp_path / "media")
    reader = read(export_bytes(record, "picturebook", tmp_path / "media"))
    pages = texts(reader)
    # cover, idea, translation, 8 steps, final, 3 outputs, end
    assert len(pages) == 1 + 2 + 8 + 1 + 3 + 1
    assert "Die Reise deiner Idee" in pages[0] and "Your idea's journey" in pages[0]
    assert "Deine Idee" in pages[1] and "Ein Hund spielt im Garten" in pages[1]
    for n, text in enumerate(STILLE_POST_TEXTS, start=1):
        page = pages[2 + n]
        assert f"Verwandlung {n}" in page and text in page
    assert "Am Ende" in pages[11]
    assert "Ausgabe 1" in pages[12] and "Ausgabe 3" in pages[14]
    assert "nicht erstellt" in pages[13]  # output 2 was blocked at stage 3
    assert "Ende" in pages[-1]


def test_images_are_drawn_big(tmp_path: Path) -> None:
    """A 64×48 px output fills a good part of the landscape page, not a thumbnail."""
    record = stille_post_record(tmp_path / "media")
    reader = read(export_bytes(record, "picturebook", tmp_path / "media"))
    drawn = image_sizes(reader.pages[12]) + image_sizes(reader.pages[14])
    assert len(drawn) == 2
    for width, height in drawn:
        assert width >= 200 and height >= 150  # points; the source is 64×48 px
    assert image_sizes(reader.pages[13]) == []  # the blocked output has no picture


def test_no_ids_or_pseudonyms_are_in_the_book(tmp_path: Path) -> None:
    from execution_history import Pseudonymiser

    record = stille_post_record(tmp_path / "media")
    pseudonymiser = Pseudonymiser(PSEUDONYM_KEY)
    data = export_bytes(record, "picturebook", tmp_path / "media", pseudonymiser)
    whole = " ".join(texts(read(data)))
    for secret in (record.run_id, "child-42", "class-7b", "user-", "session-"):
        assert secret not in whole


def test_hostile_text_is_shown_as_typed_and_a_missing_image_is_said(tmp_path: Path) -> None:
    media_dir = tmp_path / "media"
    record = stille_post_record(media_dir, prompt=HOSTILE)
    (media_dir / "output_1.png").unlink()
    pages = texts(read(export_bytes(record, "picturebook", media_dir)))
    assert HOSTILE in pages[1]
    assert "Das Bild fehlt" in pages[12]


def test_a_blocked_idea_gets_a_kind_page_and_a_long_text_flows_over_pages() -> None:
    tracker = ExecutionTracker("dada", safety_level="kids")
    with tracker:
        with tracker.stage(1):
            tracker.log_user_input("Wort " * 3000)
            tracker.log_blocked("forbidden term", metadata={"matched_terms": ["x"]})
    pages = texts(read(export_bytes(tracker.finalize(), "picturebook")))
    assert any("Angehalten" in page and "nicht verwandelt" in page for page in pages)
    assert len(pages) > 4  # cover, the idea over several pages, the stop, the end


def test_a_hebrew_idea_keeps_its_first_words_on_its_first_line(tmp_path: Path) -> None:
    """Wrapped in reading order (the shared right-to-left paragraph), not reversed as a block."""
    words = "ראשון " + " ".join(["שלום", "עולם", "ילד", "כלב", "גן"] * 12) + " אחרון"
    record = stille_post_record(tmp_path / "media", prompt=words)
    text = pdftotext(export_bytes(record, "picturebook", tmp_path / "media"), tmp_path)
    lines = [line for line in text.splitlines() if re.search("[\u05d0-\u05ea]", line)]
    assert len(lines) > 1  # the idea wraps over several lines
    assert "ראשון" in lines[0] and "אחרון" in lines[-1]
