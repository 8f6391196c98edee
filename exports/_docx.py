"""DOCX: the journey as an editable Word document researchers annotate (python-docx).

Layout: title, run metadata table, stage summary table, one heading per stage
(stages 3 and 4 together, one sub-heading per output), Stille Post iterations as
numbered sub-headings, each item as a line of facts, its text, its image inline
and its metadata in a table; then the integrity block. Every run carries Latin,
East Asian and complex-script fonts (w:ascii, w:eastAsia, w:cs), so CJK, Arabic
and Hebrew text picks a suitable font in Word and LibreOffice.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from execution_history import ExecutionItem, ExecutionRecord, Integrity, StageSummary

from ._images import normalise_image, placeholder, resolve_media
from ._journey import Iteration, Journey, Output, Section, build_journey, type_name
from ._text import sanitise
from ._timefmt import duration_human, utc_iso

if TYPE_CHECKING:
    from docx.document import Document as DocxDocument
    from lxml.etree import _Element

name = "docx"
media_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
extension = "docx"
description = "An editable Word document of the whole journey, for annotating"
requires: tuple[str, ...] = ("docx", "PIL", "lxml")
extra = "docx"

#: Fonts named on every run; Word and LibreOffice substitute the closest installed font.
LATIN_FONT = "Calibri"
EAST_ASIAN_FONT = "Noto Sans CJK SC"
COMPLEX_SCRIPT_FONT = "Arial"

#: Widest an image is shown, in inches (A4 / Letter text width is about 6.3).
MAX_IMAGE_INCHES = 6.0
#: Images are scaled to this many pixels on the longest side before embedding.
IMAGE_MAX_PX = 1600
EMPTY_TEXT = "(empty text)"
#: Text width of the template's page (Letter, 1 inch margins) in twentieths of a point.
TEXT_WIDTH_TWIPS = 9360
#: Style names of the default template, turned into style ids once per document.
_STYLE_NAMES = {
    "title": "Title",
    "h1": "Heading 1",
    "h2": "Heading 2",
    "h3": "Heading 3",
    "table": "Table Grid",
    "bullet": "List Bullet",
}
_BREAKS = re.compile("(\t|\r|\n)")
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"


def export(record: ExecutionRecord, stream: BinaryIO, *, media_dir: Path | None = None) -> None:
    """Write the record as a DOCX document.

    Args:
        record: a finished (pseudonymised) record.
        stream: a writable binary stream.
        media_dir: the run's media folder; images are embedded from it, and a
            drawn placeholder stands in for any that is missing or unreadable.
    """
    document = build_document(build_journey(record), media_dir)
    # zipfile needs a seekable stream; buffer, then copy.
    buffer = io.BytesIO()
    _save(document, buffer)
    stream.write(buffer.getvalue())


def build_document(journey: Journey, media_dir: Path | None) -> DocxDocument:
    """The python-docx document of a journey.

    The body is written as WordprocessingML elements directly: python-docx's
    paragraph and table API looks styles up and re-scans the body on every
    call, which is quadratic in a run of a thousand items.

    Args:
        journey: the journey of a (pseudonymised) record.
        media_dir: the run's media folder, or None.

    Returns:
        An unsaved python-docx ``Document``.
    """
    import docx

    document = docx.Document()
    _set_default_fonts(document)
    writer = _BodyWriter(document, media_dir)
    header = journey.header
    writer.heading(f"Execution record: {header.config_name or 'run'}", "title")
    writer.paragraph(f"Run {header.run_id} · {header.status} · {header.started_human}")
    writer.heading("Run", "h1")
    writer.key_value_table(header.rows())
    writer.heading("Stage summary", "h1")
    _summary_table(writer, journey.summary)
    writer.heading("Journey", "h1")
    for section in journey.sections:
        _section(writer, section)
    writer.heading("Integrity", "h1")
    _integrity(writer, journey.integrity)
    writer.attach()
    return document


def _save(document: DocxDocument, stream: BinaryIO) -> None:
    """Save like python-docx, but store images (already compressed) instead of deflating them."""
    try:
        from docx.opc.pkgwriter import PackageWriter

        # private helpers of python-docx's own save(), typed loosely on purpose
        package_writer: Any = PackageWriter
        package = document.part.package
        for part in package.parts:
            part.before_marshal()
        writer = _ZipWriter(stream)
        package_writer._write_content_types_stream(writer, package.parts)
        package_writer._write_pkg_rels(writer, package.rels)
        package_writer._write_parts(writer, package.parts)
        writer.close()
    except AttributeError:  # python-docx changed its internals: its own (slower) save
        stream.seek(0)
        stream.truncate()
        document.save(stream)


class _ZipWriter:
    """The physical package writer python-docx expects: ``write(pack_uri, blob)``, ``close()``."""

    def __init__(self, stream: BinaryIO) -> None:
        self._zip = zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED)

    def write(self, pack_uri: Any, blob: bytes) -> None:
        stored = str(pack_uri.ext).lower() in ("png", "jpeg", "jpg")
        kind = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        self._zip.writestr(pack_uri.membername, blob, compress_type=kind)

    def close(self) -> None:
        self._zip.close()


# ------------------------------------------------------------------ text and fonts


def _set_fonts(r_pr: Any) -> None:
    """Name Latin, East Asian and complex-script fonts in a ``w:rPr``."""
    fonts = r_pr.find(_W + "rFonts")
    if fonts is None:
        fonts = r_pr.makeelement(_W + "rFonts", {})
        r_pr.insert(0, fonts)
    fonts.set(_W + "ascii", LATIN_FONT)
    fonts.set(_W + "hAnsi", LATIN_FONT)
    fonts.set(_W + "eastAsia", EAST_ASIAN_FONT)
    fonts.set(_W + "cs", COMPLEX_SCRIPT_FONT)


def _set_default_fonts(document: DocxDocument) -> None:
    # Styles too, so text a researcher types later gets the same fonts.
    for style_name in ("Normal", "Title", "Heading 1", "Heading 2", "Heading 3"):
        style = document.styles[style_name]
        _set_fonts(style.element.get_or_add_rPr())


def _is_rtl(text: str) -> bool:
    """Whether the first strongly directional character is right-to-left."""
    for char in text[:200]:
        direction = unicodedata.bidirectional(char)
        if direction in ("R", "AL"):
            return True
        if direction == "L":
            return False
    return False


class _BodyWriter:
    """Builds body elements detached from the document, then attaches them in one go."""

    def __init__(self, document: DocxDocument, media_dir: Path | None) -> None:
        from docx.oxml.parser import OxmlElement

        self.document = document
        self.media_dir = media_dir
        # A detached container made by python-docx's parser, so children get its classes.
        self.body: _Element = OxmlElement("w:body")
        self.styles = {key: document.styles[value].style_id for key, value in _STYLE_NAMES.items()}
        self._shape_id = 1000

    def attach(self) -> None:
        """Move every built element into the document body, before its section properties."""
        body = self.document.element.body
        anchor = body.find(_W + "sectPr")
        for element in list(self.body):
            if anchor is not None:
                anchor.addprevious(element)
            else:
                body.append(element)

    # -------------------------------------------------------------- paragraphs

    def _p(self, parent: _Element, style: str | None = None, rtl: bool = False) -> _Element:
        p = parent.makeelement(_W + "p", {})
        parent.append(p)
        if style is not None or rtl:
            p_pr = p.makeelement(_W + "pPr", {})
            p.append(p_pr)
            if style is not None:
                p_pr.append(p_pr.makeelement(_W + "pStyle", {_W + "val": self.styles[style]}))
            if rtl:
                p_pr.append(p_pr.makeelement(_W + "bidi", {}))
        return p

    def _r(self, p: _Element, text: str, *, bold: bool = False, italic: bool = False) -> None:
        r = p.makeelement(_W + "r", {})
        p.append(r)
        r_pr = r.makeelement(_W + "rPr", {})
        r.append(r_pr)
        _set_fonts(r_pr)
        if bold:
            r_pr.append(r_pr.makeelement(_W + "b", {}))
        if italic:
            r_pr.append(r_pr.makeelement(_W + "i", {}))
        if _is_rtl(text):
            r_pr.append(r_pr.makeelement(_W + "rtl", {}))
        # TAB is a w:tab, CR and LF each a w:br (as python-docx writes them).
        for piece in _BREAKS.split(sanitise(text)):
            if piece == "\t":
                r.append(r.makeelement(_W + "tab", {}))
            elif piece in ("\r", "\n"):
                r.append(r.makeelement(_W + "br", {}))
            elif piece:
                t = r.makeelement(_W + "t", {})
                t.text = piece
                if piece[0].isspace() or piece[-1].isspace():
                    t.set(_XML_SPACE, "preserve")
                r.append(t)

    def paragraph(
        self, text: str, *, bold: bool = False, italic: bool = False, style: str | None = None
    ) -> None:
        """A paragraph of one run of ``text`` (sanitised), marked bidi when it reads RTL."""
        p = self._p(self.body, style, _is_rtl(text))
        self._r(p, text, bold=bold, italic=italic)

    def heading(self, text: str, style: str) -> None:
        """A heading (``title``, ``h1``, ``h2``, ``h3``)."""
        self.paragraph(text, style=style)

    # ------------------------------------------------------------------ tables

    def table(
        self, rows: list[tuple[str, ...]], widths: tuple[int, ...], *, header: bool = False
    ) -> None:
        """A grid table; ``widths`` in twips; the first row bold when ``header``."""
        tbl = self.body.makeelement(_W + "tbl", {})
        self.body.append(tbl)
        tbl_pr = tbl.makeelement(_W + "tblPr", {})
        tbl.append(tbl_pr)
        tbl_pr.append(tbl_pr.makeelement(_W + "tblStyle", {_W + "val": self.styles["table"]}))
        tbl_pr.append(tbl_pr.makeelement(_W + "tblW", {_W + "w": "0", _W + "type": "auto"}))
        grid = tbl.makeelement(_W + "tblGrid", {})
        tbl.append(grid)
        for width in widths:
            grid.append(grid.makeelement(_W + "gridCol", {_W + "w": str(width)}))
        for index, row in enumerate(rows):
            tr = tbl.makeelement(_W + "tr", {})
            tbl.append(tr)
            for column, (text, width) in enumerate(zip(row, widths, strict=True)):
                tc = tr.makeelement(_W + "tc", {})
                tr.append(tc)
                tc_pr = tc.makeelement(_W + "tcPr", {})
                tc.append(tc_pr)
                tc_pr.append(
                    tc_pr.makeelement(_W + "tcW", {_W + "w": str(width), _W + "type": "dxa"})
                )
                # a cell must hold a paragraph; an empty value leaves it without a run
                p = self._p(tc, rtl=_is_rtl(text))
                if text:
                    bold = (header and index == 0) or (not header and column == 0)
                    self._r(p, text, bold=bold)

    def key_value_table(self, rows: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> None:
        """A two-column label/value table."""
        self.table(list(rows), (2600, TEXT_WIDTH_TWIPS - 2600))

    # ------------------------------------------------------------------ images

    def image(self, item: ExecutionItem) -> None:
        """Embed the item's image inline; on failure a placeholder, never an empty paragraph."""
        from docx.oxml.shape import CT_Inline
        from docx.shared import Inches

        assert item.media is not None
        path = resolve_media(self.media_dir, item.media.path)
        image = normalise_image(path, max_px=IMAGE_MAX_PX)
        if path is None and self.media_dir is not None and image.placeholder:
            reason = "outside the media folder" if item.media.path else "no image file"
            image = placeholder(reason)
        inline = None
        for candidate in (image, placeholder("image could not be embedded")):
            try:
                # The picture part is made before any paragraph exists, so a
                # failure leaves nothing behind in the body.
                r_id, picture = self.document.part.get_or_add_image(io.BytesIO(candidate.data))
                # 96 px per inch, the screen convention Word uses, capped at the text width.
                width = Inches(min(candidate.width / 96, MAX_IMAGE_INCHES))
                cx, cy = picture.scaled_dimensions(width, None)
                self._shape_id += 1
                inline = CT_Inline.new_pic_inline(self._shape_id, r_id, picture.filename, cx, cy)
            except Exception:
                continue
            image = candidate
            break
        if inline is None:
            self.paragraph("Image could not be embedded.", italic=True)
            return
        p = self._p(self.body)
        r = p.makeelement(_W + "r", {})
        p.append(r)
        drawing = r.makeelement(_W + "drawing", {})
        r.append(drawing)
        drawing.append(inline)
        if image.placeholder:
            self.paragraph(f"Image not available: {image.reason}", italic=True)


# ------------------------------------------------------------------------ sections


def _summary_table(writer: _BodyWriter, summary: tuple[StageSummary, ...]) -> None:
    rows: list[tuple[str, ...]] = [
        ("Stage", "Name", "Status", "Items", "Failures", "Blocks", "Iter.", "Loops", "Time")
    ]
    for stage in summary:
        rows.append(
            (
                str(stage.stage),
                stage.name,
                type_name(stage.status),
                str(stage.items),
                str(stage.failures),
                str(stage.blocks),
                str(stage.iterations),
                str(stage.loops),
                duration_human(stage.duration_ms),
            )
        )
    widths = (700, 2300, 1000, 800, 1000, 900, 800, 800, 1060)
    writer.table(rows, widths, header=True)


def _section(writer: _BodyWriter, section: Section) -> None:
    writer.heading(section.title, "h2")
    if not section.entries:
        writer.paragraph("No items were recorded in this stage.", italic=True)
        return
    for entry in section.entries:
        if isinstance(entry, Iteration):
            writer.heading(_iteration_title(entry), "h3")
        elif isinstance(entry, Output):
            writer.heading(f"Output {entry.loop}: {entry.outcome}", "h3")
        else:
            _item(writer, entry)
            continue
        for item in entry.items:
            _item(writer, item)


def _iteration_title(iteration: Iteration) -> str:
    title = f"Iteration {iteration.number}"
    metadata = iteration.items[0].metadata if iteration.items else {}
    source, target = metadata.get("from_lang"), metadata.get("to_lang")
    if isinstance(source, str) and isinstance(target, str):
        title += f" ({source} → {target})"
    return title


def _item_facts(item: ExecutionItem) -> str:
    facts = [f"#{item.sequence}", type_name(item.item_type), f"stage {item.stage}"]
    if item.stage_iteration is not None:
        facts.append(f"iteration {item.stage_iteration}")
    if item.loop_iteration is not None:
        facts.append(f"output {item.loop_iteration}")
    facts.append(utc_iso(item.timestamp))
    return " · ".join(facts)


def _item_fields(item: ExecutionItem) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for label, value in (
        ("Media type", type_name(item.media_type)),
        ("Config", item.config),
        ("Model", item.model),
        ("Backend", item.backend),
        ("Duration", duration_human(item.duration_ms)),
    ):
        if value:
            rows.append((label, value))
    if item.content_length is not None:
        rows.append(("Original length", f"{item.content_length} characters (truncated)"))
    if item.media is not None:
        ref = item.media
        rows.append(("Media file", ref.path))
        for label, known in (
            ("MIME type", ref.mime_type),
            ("Size", f"{ref.size_bytes} bytes" if ref.size_bytes is not None else None),
            ("SHA-256", ref.sha256),
            ("Pixels", f"{ref.width} × {ref.height}" if ref.width and ref.height else None),
            ("Length", f"{ref.duration_s} s" if ref.duration_s is not None else None),
        ):
            if known:
                rows.append((label, known))
    for key, value in item.metadata.items():
        rows.append((str(key), _metadata_text(value)))
    return rows


def _metadata_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _item(writer: _BodyWriter, item: ExecutionItem) -> None:
    writer.paragraph(_item_facts(item), bold=True)
    if item.content is not None:
        if item.content:
            writer.paragraph(item.content)
        else:
            writer.paragraph(EMPTY_TEXT, italic=True)
    if _is_image(item):
        writer.image(item)
    fields = _item_fields(item)
    if fields:
        writer.key_value_table(fields)


def _is_image(item: ExecutionItem) -> bool:
    if item.media is None:
        return False
    mime = item.media.mime_type or ""
    return type_name(item.media_type) == "image" or mime.startswith("image/")


def _integrity(writer: _BodyWriter, integrity: Integrity) -> None:
    writer.key_value_table(
        (
            ("Items recorded", str(integrity.items_recorded)),
            ("Items dropped at the cap", str(integrity.items_dropped)),
            ("Items logged after finalising", str(integrity.items_after_finalize)),
            ("Fields truncated", str(integrity.fields_truncated)),
            ("Values coerced to JSON", str(integrity.values_coerced)),
            ("Characters replaced", str(integrity.characters_replaced)),
            ("Tracker errors caught", str(integrity.tracker_errors)),
            ("Recovered after a crash", "yes" if integrity.recovered else "no"),
        )
    )
    if integrity.tracker_error_messages:
        writer.heading("Tracker errors", "h2")
        for message in integrity.tracker_error_messages:
            writer.paragraph(message or EMPTY_TEXT, style="bullet")
    if integrity.sinks:
        writer.heading("Sinks", "h2")
        rows: list[tuple[str, ...]] = [("Sink", "Status", "Attempts", "Time", "Error")]
        for sink in integrity.sinks:
            rows.append(
                (
                    sink.name,
                    sink.status,
                    str(sink.attempts),
                    duration_human(sink.duration_ms),
                    sink.error or "",
                )
            )
        writer.table(rows, (1800, 1400, 1100, 1300, 3760), header=True)
