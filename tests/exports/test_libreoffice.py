"""An exported DOCX renders in LibreOffice (skipped locally without it, required in CI).

LibreOffice runs headless with a private profile and HOME, converts the DOCX
to PDF, and poppler's pdffonts/pdftotext read that PDF: an independent
renderer and an independent reader.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from execution_history import ExecutionRecord, ExecutionTracker
from tests.exports._support import export_bytes

GERMAN = "Grüße aus Köln, Straße ÄÖÜ äöü ß"
CHINESE = "汉字中文你好世界"
ARABIC = "مرحبا بالعالم"
EMOJI = "😀🎨🐶"
#: Bidi embedding marks pdftotext puts around right-to-left text.
_BIDI_MARKS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u200e\u200f"))


def _soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


def _tool(name: str) -> str:
    """The path of a required tool; fails in CI, skips locally when it is missing."""
    path = _soffice() if name == "soffice" else shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI (libreoffice-writer-nogui, poppler-utils)")
        pytest.skip(f"{name} is not installed here")
    return path


def _office_fonts_only(tmp_path: Path) -> dict[str, str]:
    """Environment for a fontconfig that sees only LibreOffice's own OpenSymbol.

    LibreOffice does not start without any font; with just its own symbol font every
    letter it draws must come from the fonts embedded in the document. Empty when
    OpenSymbol cannot be found: then the machine's fonts stay visible (on a machine
    without CJK and emoji fonts the test still proves those are embedded).
    """
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return {}
    found = subprocess.run(
        [fc_match, "-f", "%{family}\n%{file}", "OpenSymbol"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.splitlines()
    if len(found) != 2 or "OpenSymbol" not in found[0]:
        return {}
    config = tmp_path / "fonts.conf"
    config.write_text(
        '<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>'
        f"<dir>{Path(found[1]).parent}</dir><cachedir>{tmp_path / 'fc-cache'}</cachedir>"
        "</fontconfig>",
        encoding="utf-8",
    )
    return {"FONTCONFIG_FILE": str(config)}


def convert(data: bytes, tmp_path: Path, *, only_embedded_fonts: bool = False) -> Path:
    """The DOCX ``data`` converted to PDF by headless LibreOffice in a private HOME.

    With ``only_embedded_fonts``, fontconfig shows LibreOffice no font of the machine
    but its own OpenSymbol (see ``_office_fonts_only``).
    """
    soffice = _tool("soffice")
    source = tmp_path / "run.docx"
    source.write_bytes(data)
    out_dir = tmp_path / "out"
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    if only_embedded_fonts:
        env.update(_office_fonts_only(tmp_path))
    result = subprocess.run(
        [
            soffice,
            f"-env:UserInstallation={(tmp_path / 'lo-profile').as_uri()}",
            "--headless",
            "--norestore",
            "--convert-to",
            "pdf",
            "--outdir",
            str(out_dir),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env=env,
    )
    pdf = out_dir / "run.pdf"
    assert result.returncode == 0, result.stderr
    assert pdf.is_file(), result.stdout + result.stderr
    return pdf


def _run(tool: str, *args: str) -> str:
    done = subprocess.run(
        [_tool(tool), *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


@pytest.mark.libreoffice
@pytest.mark.slow
def test_docx_converts_to_pdf_in_libreoffice(
    finished_record: ExecutionRecord, media_dir: Path, tmp_path: Path
) -> None:
    """LibreOffice opens the DOCX and writes a PDF that pypdf reads, text included."""
    pdf = convert(
        export_bytes(finished_record, "docx", media_dir), tmp_path, only_embedded_fonts=True
    )
    reader = PdfReader(pdf, strict=True)
    assert len(reader.pages) >= 2
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert finished_record.run_id in text
    assert "Iteration 8" in text
    # the stage summary's headings each stay one word on one line (no "Failur es")
    layout = _run("pdftotext", "-layout", str(pdf), "-")
    head = next(line for line in layout.splitlines() if line.split()[:2] == ["Stage", "Name"])
    assert head.split() == [
        "Stage",
        "Name",
        "Status",
        "Items",
        "Failures",
        "Blocks",
        "Iterations",
        "Loops",
        "Duration",
    ]


@pytest.mark.libreoffice
@pytest.mark.slow
def test_german_chinese_arabic_and_emoji_render_from_embedded_fonts(tmp_path: Path) -> None:
    """With none of the machine's fonts, LibreOffice draws every character.

    LibreOffice sees only its own OpenSymbol (``_office_fonts_only``), so each
    glyph must come from the fonts the DOCX embeds. pdffonts: every font of the
    rendered PDF is embedded, among them DejaVu Sans and Droid Sans Fallback (CJK)
    from the DOCX. pdftotext gives back each text, with no U+FFFD and no NUL (what
    a missing glyph extracts as).
    """
    tracker = ExecutionTracker("stillepost")
    with tracker, tracker.stage(1):
        tracker.log_user_input(GERMAN)
        tracker.log_translation(CHINESE, from_lang="de", to_lang="zh")
        tracker.log_translation(ARABIC, from_lang="zh", to_lang="ar")
        tracker.log_translation(f"Emoji {EMOJI}", from_lang="ar", to_lang="de")
    restricted = bool(_office_fonts_only(tmp_path))
    pdf = convert(export_bytes(tracker.finalize(), "docx"), tmp_path, only_embedded_fonts=True)
    fonts = _run("pdffonts", str(pdf)).splitlines()[2:]
    assert fonts
    names = [line.split()[0] for line in fonts]
    assert all(line.split()[-5] == "yes" for line in fonts), fonts  # the "emb" column
    assert any(name.endswith("+DroidSansFallback") for name in names), names
    if restricted:  # nothing else was there to draw the Latin and Arabic text with
        assert any(name.endswith("+DejaVuSans") for name in names), names
    text = _run("pdftotext", str(pdf), "-").translate(_BIDI_MARKS)
    for expected in (GERMAN, CHINESE, ARABIC, EMOJI):
        assert expected in text
    assert "\ufffd" not in text and "\x00" not in text
