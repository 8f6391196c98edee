"""An exported DOCX converts to PDF in LibreOffice (skipped locally without it, required in CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from execution_history import ExecutionRecord
from tests.exports._support import export_bytes


def _soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


@pytest.mark.libreoffice
@pytest.mark.slow
def test_docx_converts_to_pdf_in_libreoffice(
    finished_record: ExecutionRecord, media_dir: Path, tmp_path: Path
) -> None:
    """LibreOffice opens the DOCX and writes a PDF that pypdf reads, text included."""
    soffice = _soffice()
    if soffice is None:
        if os.environ.get("CI") == "true":
            pytest.fail("LibreOffice is required in CI (install libreoffice-writer-nogui)")
        pytest.skip("LibreOffice is not installed here")
    source = tmp_path / "run.docx"
    source.write_bytes(export_bytes(finished_record, "docx", media_dir))
    out_dir = tmp_path / "out"
    profile = (tmp_path / "lo-profile").as_uri()  # a private profile: no clash with a running one
    result = subprocess.run(
        [
            soffice,
            f"-env:UserInstallation={profile}",
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
    )
    pdf = out_dir / "run.pdf"
    assert result.returncode == 0, result.stderr
    assert pdf.is_file(), result.stdout + result.stderr
    reader = PdfReader(pdf, strict=True)
    assert len(reader.pages) >= 2
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert finished_record.run_id in text
    assert "Iteration 8" in text
