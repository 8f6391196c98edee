"""Helpers of the exporter tests: export to bytes, list formats, read OOXML parts."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

import exports
from execution_history import ExecutionRecord

#: Formats whose modules this package's own tests cover (pdf has its own tests too).
DOCUMENT_FORMATS = ("json", "xml", "docx", "pdf")
PSEUDONYM_KEY = "test-pseudonym-key-0123456789"


def available(name: str) -> bool:
    """Whether format ``name`` is registered and installed here."""
    return any(info.name == name and info.available for info in exports.formats())


def export_bytes(
    record: ExecutionRecord,
    name: str,
    media_dir: Path | None = None,
    pseudonymiser: Any = None,
) -> bytes:
    """Export ``record`` through the public API and return the bytes written."""
    stream = io.BytesIO()
    exports.export(record, name, stream, media_dir=media_dir, pseudonymiser=pseudonymiser)
    return stream.getvalue()


def zip_text(data: bytes) -> str:
    """Every XML part of an OOXML (zip) file, decoded and joined, for raw searches."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return "\n".join(
            archive.read(part).decode("utf-8")
            for part in archive.namelist()
            if part.endswith((".xml", ".rels"))
        )


def document_formats() -> list[Any]:
    """The document formats as pytest params; pdf only when its module is installed.

    pdf is added by another module's author; when it is absent the param is
    marked skip with the reason, so the report shows it (it is never a silent pass).
    """
    params: list[Any] = []
    for name in DOCUMENT_FORMATS:
        marks = [] if available(name) else [pytest.mark.skip(reason=f"{name} not available")]
        params.append(pytest.param(name, marks=marks))
    return params
