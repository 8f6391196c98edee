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


#: Text that breaks careless exporters: controls, lone surrogates, non-characters, emoji
#: sequences, right-to-left and CJK text, combining marks, markup, CSV and formula
#: syntax, every kind of line break. Hypothesis strategies join these with random text.
HOSTILE_FRAGMENTS = [
    "\x00",
    "\x01",
    "\x08",
    "\x0b",
    "\x0c",
    "\x1b[31m",
    "\x1f",
    "\x7f",
    "\ud800",
    "\udfff",
    "\ufffe",
    "\uffff",
    "😀",
    "👩\u200d👩\u200d👧",
    "🇩🇪",
    "مرحبا",
    "שלום",
    "\u202e",
    "\u200b",
    "汉字",
    "かな",
    "한글",
    "é",
    "กิ",
    "<",
    "&",
    "]]>",
    "<b>bold</b>",
    "<script>alert(1)</script>",
    "&amp;",
    "\t",
    "\n",
    "\r\n",
    "\r",
    " ",
    "Grüße",
    "Ελληνικά",
    "Кириллица",
    "=1+1",
    '"quoted"',
    "\x85",
    "\x9f",
    "<b>x</b>",
    "=cmd|' /C calc'!A0",
    "+1",
    "-1",
    "@SUM(A1)",
    "'",
    '"',
    ",",
    "#N/A",
]
