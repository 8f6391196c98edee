"""One view of a record in every document: verdict words, field order and times, read back
from the PDF (pypdf) and the DOCX (python-docx) independently of each other."""

from __future__ import annotations

import io
import re
from datetime import UTC
from pathlib import Path

import pytest

pypdf = pytest.importorskip("pypdf")
docx = pytest.importorskip("docx")

from execution_history import ExecutionRecord, ExecutionTracker, ItemType  # noqa: E402
from tests.exports._support import available, export_bytes  # noqa: E402
from tests.records import write_png  # noqa: E402

#: What docs/exports.md promises, in this order, for an item with a media file (Pixels,
#: between Size and SHA-256, is left out: the tracker records no pixel size for it).
MEDIA_ORDER = ["Media file", "MIME type", "Size", "SHA-256"]
#: Words the formats used before they agreed on one wording; none may come back.
RETIRED = ("not passed", "verdict not recorded")


@pytest.fixture
def verdict_record(tmp_path: Path) -> tuple[ExecutionRecord, Path]:
    """A run with each kind of verdict, unsorted metadata keys and an image."""
    media = tmp_path / "media"
    write_png(media / "out.png")
    tracker = ExecutionTracker("dada", safety_level="kids", media_dir=media)
    with tracker:
        with tracker.stage(1):
            tracker.log(ItemType.STAGE1_SAFETY_CHECK, content="fine", metadata={"passed": True})
        with tracker.stage(3):
            with tracker.loop_iteration(1):
                tracker.log(
                    ItemType.STAGE3_SAFETY_CHECK,
                    content="too scary",
                    metadata={"zeta": 1, "passed": False, "alpha": "first"},
                )
            with tracker.loop_iteration(2):
                tracker.log(ItemType.STAGE3_SAFETY_CHECK, content="unsure", metadata={"n": 1})
            with tracker.loop_iteration(3):
                tracker.log(ItemType.STAGE3_BLOCKED, content="blocked for kids")
        with tracker.stage(4), tracker.loop_iteration(1):
            tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": "out.png", "mime_type": "image/png"})
    return tracker.finalize(), media


def pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data), strict=True)
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))


def docx_titles_and_labels(data: bytes) -> tuple[list[str], list[list[str]]]:
    document = docx.Document(io.BytesIO(data))
    titles = [p.text for p in document.paragraphs if p.text.startswith("#")]
    labels = [[row.cells[0].text for row in table.rows] for table in document.tables]
    return titles, labels


def _iso(record: ExecutionRecord) -> str:
    return record.started_at.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def test_the_pdf_states_verdicts_in_the_one_wording(
    verdict_record: tuple[ExecutionRecord, Path],
) -> None:
    """passed / failed / blocked on the item lines; an unrecorded verdict shows no word."""
    record, media = verdict_record
    text = pdf_text(export_bytes(record, "pdf", media))
    assert "stage1_safety_check · stage 1 · passed" in text
    assert "stage3_safety_check · stage 3, output 1 · failed" in text
    assert "stage3_blocked · stage 3, output 3 · blocked" in text
    unrecorded = text[text.index("stage 3, output 2") :][:40]
    assert "passed" not in unrecorded and "failed" not in unrecorded
    for retired in RETIRED:
        assert retired not in text
    # metadata sorted by key, after the fixed fields
    item = text[text.index("output 1 · failed") :]
    assert item.index("Recorded") < item.index("alpha") < item.index("passed") < item.index("zeta")
    # media facts in the documented order, and the run's start as an ISO instant
    image = text[text.index("output_image") : text.index("Output 2")]
    positions = [image.index(label) for label in MEDIA_ORDER]
    assert positions == sorted(positions)
    media_ref = next(item.media for item in record.items if item.media is not None)
    assert media_ref.width is None and "Pixels" not in image  # not recorded, not invented
    assert _iso(record) in text


def test_the_docx_states_the_same_words_and_order(
    verdict_record: tuple[ExecutionRecord, Path],
) -> None:
    """The same verdict words, field order and times, read with python-docx."""
    record, media = verdict_record
    titles, labels = docx_titles_and_labels(export_bytes(record, "docx", media))
    assert any(t.endswith("stage1_safety_check · stage 1 · passed") for t in titles)
    assert any(t.endswith("stage3_safety_check · stage 3, output 1 · failed") for t in titles)
    assert any(t.endswith("stage3_blocked · stage 3, output 3 · blocked") for t in titles)
    assert any(t.endswith("stage3_safety_check · stage 3, output 2") for t in titles)
    assert not [t for t in titles for retired in RETIRED if retired in t]
    assert ["Recorded", "Media type", "alpha", "passed", "zeta"] in labels
    image_rows = next(rows for rows in labels if "Media file" in rows)
    assert [label for label in image_rows if label in MEDIA_ORDER] == MEDIA_ORDER
    assert "Pixels" not in image_rows
    document = docx.Document(io.BytesIO(export_bytes(record, "docx", media)))
    run_table = {row.cells[0].text: row.cells[1].text for row in document.tables[0].rows}
    assert run_table["Started"] == _iso(record)


@pytest.mark.skipif(not available("csv"), reason="the csv format is not installed here")
def test_the_csv_column_uses_the_same_verdict_words(
    verdict_record: tuple[ExecutionRecord, Path],
) -> None:
    """The tables' safety_verdict column says what the documents say."""
    import csv
    import zipfile

    record, media = verdict_record
    with zipfile.ZipFile(io.BytesIO(export_bytes(record, "csv", media))) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("items.csv").decode("utf-8-sig"))))
    verdicts = [row["safety_verdict"] for row in rows if row["item_type"].startswith("stage")]
    assert [v for v in verdicts if v] == ["passed", "failed", "blocked"]
