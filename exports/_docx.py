"""DOCX: the journey as an editable Word document researchers annotate (python-docx).

Layout (A4): title, run metadata table, stage summary table, one heading per
stage (stages 3 and 4 together, one sub-heading per output), Stille Post
iterations as numbered sub-headings, each item as its title line, its text, its
image inline and its fields in a table; then the integrity block. Wording and
order come from ``_journey``. Each run of text names the bundled font that has
its glyphs, and subsets of those fonts are embedded (``_docx_fonts``), so the
document looks the same on a machine without CJK, Indic or symbol fonts. The
core properties describe the run and this software, not python-docx's template.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from execution_history import ExecutionItem, ExecutionRecord, Integrity, StageSummary

from ._docx_fonts import (
    BundledFonts,
    bundled_fonts,
    font_key,
    font_runs,
    obfuscate,
    subset_font,
)
from ._images import normalise_image, placeholder, resolve_media
from ._journey import (
    SINK_HEADINGS,
    SUMMARY_HEADINGS,
    Section,
    build_journey,
    integrity_rows,
    item_fields,
    item_title,
    safety_verdict,
    sink_rows,
    summary_rows,
    type_name,
)
from ._software import SOFTWARE_NAME, software_id
from ._text import sanitise

if TYPE_CHECKING:
    from docx.document import Document as DocxDocument
    from lxml.etree import _Element

name = "docx"
media_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
extension = "docx"
description = "An editable Word document of the whole journey, for annotating"
requires: tuple[str, ...] = ("docx", "PIL", "lxml", "fontTools")
extra = "docx"

#: A4 with 20 mm margins, the same paper as the PDF; sizes in millimetres.
PAGE_MM = (210, 297)
MARGIN_MM = 20
#: Text width in twentieths of a point (twips): 170 mm.
TEXT_WIDTH_TWIPS = round((PAGE_MM[0] - 2 * MARGIN_MM) * 1440 / 25.4)
#: Widest an image is shown, in inches (the A4 text width is about 6.7).
MAX_IMAGE_INCHES = 6.0
#: Images are scaled to this many pixels on the longest side before embedding.
IMAGE_MAX_PX = 1600
EMPTY_TEXT = "(empty text)"
#: Font size of grid tables (stage summary, sinks) in half points: 8 pt, so every
#: heading word fits its column in one line.
GRID_SIZE = 16
#: Column widths of the stage summary in twips; each fits its heading word in bold 8 pt
#: DejaVu Sans ("Iterations" is the widest) plus the cell margins; Name takes the rest.
_SUMMARY_WIDTHS = (760, 0, 1000, 760, 1150, 900, 1350, 760, 1150)
_SINK_WIDTHS = (1800, 1300, 1150, 1150, 0)
_RT_FONT = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/font"
_RT_FONT_TABLE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/fontTable"
_RT_THUMBNAIL = "http://schemas.openxmlformats.org/package/2006/relationships/metadata/thumbnail"
_RT_APP = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/extended-properties"
_CT_FONT = "application/vnd.openxmlformats-officedocument.obfuscatedFont"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
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
    document = build_document(record, media_dir)
    # zipfile needs a seekable stream; buffer, then copy.
    buffer = io.BytesIO()
    _save(document, buffer)
    stream.write(buffer.getvalue())


def build_document(record: ExecutionRecord, media_dir: Path | None) -> DocxDocument:
    """The python-docx document of a record.

    The body is written as WordprocessingML elements directly: python-docx's
    paragraph and table API looks styles up and re-scans the body on every
    call, which is quadratic in a run of a thousand items.

    Args:
        record: a finished (pseudonymised) record.
        media_dir: the run's media folder, or None.

    Returns:
        An unsaved python-docx ``Document``: A4, core properties of the run, no
        template thumbnail, the fonts its text uses embedded.
    """
    import docx

    journey = build_journey(record)
    document = docx.Document()
    fonts = bundled_fonts()
    _page_setup(document)
    _set_default_fonts(document, fonts.main)
    writer = _BodyWriter(document, media_dir, fonts)
    header = journey.header
    writer.heading(document_title(record), "title")
    writer.paragraph(f"Run {header.run_id} · {header.status} · started {header.started_at}")
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
    _embed_fonts(document, fonts, writer.used, record.run_id)
    _describe(document, record)
    return document


def document_title(record: ExecutionRecord) -> str:
    """The title: ``Execution record: stillepost``, or ``…: run <id>`` without a config."""
    return f"Execution record: {record.config_name or 'run ' + record.run_id}"


# ------------------------------------------------------------------ package properties


def _page_setup(document: DocxDocument) -> None:
    """A4 portrait with 20 mm margins (python-docx's template is US Letter)."""
    from docx.shared import Mm

    for section in document.sections:
        section.page_width, section.page_height = Mm(PAGE_MM[0]), Mm(PAGE_MM[1])
        section.left_margin = section.right_margin = Mm(MARGIN_MM)
        section.top_margin = section.bottom_margin = Mm(MARGIN_MM)
        section.header_distance = section.footer_distance = Mm(MARGIN_MM // 2)


def _utc_naive(moment: datetime) -> datetime:
    # python-docx writes a datetime as UTC with a "Z" without converting it
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _describe(document: DocxDocument, record: ExecutionRecord) -> None:
    """Core and app properties from the record and this software; no template leftovers.

    Title (config and run id), subject, identifier (run id), created (run start), modified (run end,
    or start while the run has none), creator and last modified by (this software
    and version). The template's author, description, keywords and category are
    emptied, its thumbnail part dropped, its app properties ("Microsoft Macintosh
    Word", a page and word count of the empty template) replaced.
    """
    from docx.opc.part import Part

    core = document.core_properties
    # the run id too: a folder of exports is told apart by title in any file browser
    title = document_title(record)
    core.title = sanitise(title if not record.config_name else f"{title}, run {record.run_id}")
    core.subject = sanitise(
        f"Run {record.run_id} of the {record.config_name or 'unknown'} pipeline"
    )
    core.identifier = sanitise(record.run_id)
    core.author = core.last_modified_by = software_id()
    core.comments = core.keywords = core.category = core.content_status = ""
    core.revision = 1
    core.created = _utc_naive(record.started_at)
    core.modified = _utc_naive(record.ended_at or record.started_at)
    package = document.part.package
    for r_id, rel in list(package.rels.items()):
        if rel.reltype == _RT_THUMBNAIL:
            del package.rels[r_id]
        elif rel.reltype == _RT_APP and isinstance(rel.target_part, Part):
            rel.target_part._blob = _app_properties()
    # The template asks Word to save a new thumbnail on every save; we ship none.
    settings = document.settings.element
    for stale in settings.findall(_W + "savePreviewPicture"):
        settings.remove(stale)


def _app_properties() -> bytes:
    return (
        "<?xml version='1.0' encoding='UTF-8' standalone='yes'?>\n"
        '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/'
        'extended-properties"><Application>'
        f"{SOFTWARE_NAME}</Application><DocSecurity>0</DocSecurity></Properties>"
    ).encode()


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
        ext = str(pack_uri.ext).lower()
        if ext in ("png", "jpeg", "jpg"):
            self._zip.writestr(pack_uri.membername, blob, compress_type=zipfile.ZIP_STORED)
        elif ext == "odttf":
            # fonts: the fastest deflate level gets most of the gain at a third of the time
            self._zip.writestr(
                pack_uri.membername, blob, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1
            )
        else:
            self._zip.writestr(pack_uri.membername, blob, compress_type=zipfile.ZIP_DEFLATED)

    def close(self) -> None:
        self._zip.close()


# ------------------------------------------------------------------ text and fonts

#: Theme font attributes win over named fonts in the same w:rFonts, so they go.
_THEME_FONTS = ("asciiTheme", "hAnsiTheme", "eastAsiaTheme", "cstheme")


def _set_fonts(r_pr: Any, family: str) -> None:
    """Name ``family`` for all four script slots (Latin, high ANSI, East Asian, complex)."""
    fonts = r_pr.find(_W + "rFonts")
    if fonts is None:
        fonts = r_pr.makeelement(_W + "rFonts", {})
        r_pr.insert(0, fonts)
    for theme in _THEME_FONTS:
        fonts.attrib.pop(_W + theme, None)
    for slot in ("ascii", "hAnsi", "eastAsia", "cs"):
        fonts.set(_W + slot, family)


def _set_default_fonts(document: DocxDocument, family: str) -> None:
    # The document defaults and the styles too, so text typed later gets the main font.
    defaults = document.styles.element.find(f"{_W}docDefaults/{_W}rPrDefault/{_W}rPr")
    if defaults is not None:
        _set_fonts(defaults, family)
    for style_name in ("Normal", "Title", "Heading 1", "Heading 2", "Heading 3", "List Bullet"):
        style = document.styles[style_name]
        _set_fonts(style.element.get_or_add_rPr(), family)


def _embed_fonts(
    document: DocxDocument, fonts: BundledFonts, used: dict[str, set[int]], seed: str
) -> None:
    """Embed an obfuscated subset of every bundled font the text uses (regular and bold).

    The main font is always embedded (styles name it), with a bold face; other
    fonts only when a character needs them, regular only (bold is synthesised).
    """
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from lxml import etree

    used.setdefault(fonts.main, set())
    table_part = document.part.part_related_by(_RT_FONT_TABLE)
    table = etree.fromstring(table_part.blob)
    number = 0
    for family in fonts.families:
        if family not in used:
            continue
        entry = next(
            (font for font in table.findall(_W + "font") if font.get(_W + "name") == family), None
        )
        if entry is None:
            entry = table.makeelement(_W + "font", {_W + "name": family})
            table.append(entry)
        faces = [("Regular", fonts.regular[family])]
        if family in fonts.bold:
            faces.append(("Bold", fonts.bold[family]))
        for face, path in faces:
            number += 1
            key = font_key(seed, family, face)
            data = subset_font(path, used[family], base=family == fonts.main)
            part = Part(
                PackURI(f"/word/fonts/font{number}.odttf"),
                _CT_FONT,
                obfuscate(data, key),
                document.part.package,
            )
            r_id = table_part.relate_to(part, _RT_FONT)
            # subsetted: the office must not rely on it for characters typed later
            attributes = {_R + "id": r_id, _W + "fontKey": key, _W + "subsetted": "1"}
            entry.append(entry.makeelement(_W + f"embed{face}", attributes))
    table_part._blob = etree.tostring(
        table, xml_declaration=True, encoding="UTF-8", standalone=True
    )
    settings = document.settings.element
    if settings.find(_W + "embedTrueTypeFonts") is None:
        # after w:zoom (the schema's order); saveSubsetFonts says the fonts are subsets
        zoom = settings.find(_W + "zoom")
        flags = [
            settings.makeelement(_W + n, {}) for n in ("embedTrueTypeFonts", "saveSubsetFonts")
        ]
        for flag in reversed(flags):
            if zoom is not None:
                zoom.addnext(flag)
            else:
                settings.insert(0, flag)


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

    def __init__(self, document: DocxDocument, media_dir: Path | None, fonts: BundledFonts) -> None:
        from docx.oxml.parser import OxmlElement

        self.document = document
        self.media_dir = media_dir
        self.fonts = fonts
        #: family name to the code points written in it, for embedding the fonts
        self.used: dict[str, set[int]] = {}
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

    def _p(
        self, parent: _Element, style: str | None = None, rtl: bool = False, before: int = 0
    ) -> _Element:
        p = parent.makeelement(_W + "p", {})
        parent.append(p)
        if style is not None or rtl or before:
            # children in the schema's order: pStyle, keepNext, bidi, spacing
            p_pr = p.makeelement(_W + "pPr", {})
            p.append(p_pr)
            if style is not None:
                p_pr.append(p_pr.makeelement(_W + "pStyle", {_W + "val": self.styles[style]}))
            if before:
                p_pr.append(p_pr.makeelement(_W + "keepNext", {}))
            if rtl:
                p_pr.append(p_pr.makeelement(_W + "bidi", {}))
            if before:
                p_pr.append(p_pr.makeelement(_W + "spacing", {_W + "before": str(before)}))
        return p

    def _r(
        self,
        p: _Element,
        text: str,
        *,
        bold: bool = False,
        italic: bool = False,
        size: int | None = None,
    ) -> None:
        """Runs of ``text`` (sanitised), one per bundled font its characters need."""
        for family, chunk in font_runs(sanitise(text), self.fonts):
            self.used.setdefault(family, set()).update(map(ord, chunk))
            r = p.makeelement(_W + "r", {})
            p.append(r)
            r_pr = r.makeelement(_W + "rPr", {})
            r.append(r_pr)
            _set_fonts(r_pr, family)
            # w:bCs/w:szCs: the same formatting for complex scripts (Arabic, Hebrew)
            if bold:
                r_pr.append(r_pr.makeelement(_W + "b", {}))
                r_pr.append(r_pr.makeelement(_W + "bCs", {}))
            if italic:
                r_pr.append(r_pr.makeelement(_W + "i", {}))
                r_pr.append(r_pr.makeelement(_W + "iCs", {}))
            if size is not None:
                r_pr.append(r_pr.makeelement(_W + "sz", {_W + "val": str(size)}))
                r_pr.append(r_pr.makeelement(_W + "szCs", {_W + "val": str(size)}))
            if _is_rtl(chunk):
                r_pr.append(r_pr.makeelement(_W + "rtl", {}))
            # TAB is a w:tab, CR and LF each a w:br (as python-docx writes them).
            for piece in _BREAKS.split(chunk):
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
        self,
        text: str,
        *,
        bold: bool = False,
        italic: bool = False,
        style: str | None = None,
        before: int = 0,
    ) -> None:
        """A paragraph of ``text`` (sanitised), marked bidi when it reads RTL.

        ``before`` is space above in twips; such a paragraph also keeps with the next.
        """
        p = self._p(self.body, style, _is_rtl(text), before)
        self._r(p, text, bold=bold, italic=italic)

    def heading(self, text: str, style: str) -> None:
        """A heading (``title``, ``h1``, ``h2``, ``h3``)."""
        self.paragraph(text, style=style)

    # ------------------------------------------------------------------ tables

    def table(
        self,
        rows: list[tuple[str, ...]],
        widths: tuple[int, ...],
        *,
        header: bool = False,
        size: int | None = None,
    ) -> None:
        """A grid table of fixed column ``widths`` (twips; one 0 takes the rest of the
        text width); the first row bold and repeated on each page when ``header``;
        ``size`` in half points, None for the style's."""
        if 0 in widths:
            rest = TEXT_WIDTH_TWIPS - sum(widths)
            widths = tuple(width or rest for width in widths)
        tbl = self.body.makeelement(_W + "tbl", {})
        self.body.append(tbl)
        tbl_pr = tbl.makeelement(_W + "tblPr", {})
        tbl.append(tbl_pr)
        tbl_pr.append(tbl_pr.makeelement(_W + "tblStyle", {_W + "val": self.styles["table"]}))
        total = str(sum(widths))
        tbl_pr.append(tbl_pr.makeelement(_W + "tblW", {_W + "w": total, _W + "type": "dxa"}))
        # fixed: the widths are kept, never re-fitted to the content (which broke
        # header words such as "Failures" into "Failur es")
        tbl_pr.append(tbl_pr.makeelement(_W + "tblLayout", {_W + "type": "fixed"}))
        grid = tbl.makeelement(_W + "tblGrid", {})
        tbl.append(grid)
        for width in widths:
            grid.append(grid.makeelement(_W + "gridCol", {_W + "w": str(width)}))
        for index, row in enumerate(rows):
            tr = tbl.makeelement(_W + "tr", {})
            tbl.append(tr)
            if header and index == 0:
                tr_pr = tr.makeelement(_W + "trPr", {})
                tr.append(tr_pr)
                tr_pr.append(tr_pr.makeelement(_W + "tblHeader", {}))
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
                    self._r(p, text, bold=bold, size=size)

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
    rows: list[tuple[str, ...]] = [SUMMARY_HEADINGS, *summary_rows(summary)]
    writer.table(rows, _SUMMARY_WIDTHS, header=True, size=GRID_SIZE)


def _section(writer: _BodyWriter, section: Section) -> None:
    writer.heading(section.title, "h2")
    if not section.entries:
        writer.paragraph("No items were recorded in this stage.", italic=True)
        return
    for entry in section.entries:
        if isinstance(entry, ExecutionItem):
            _item(writer, entry)
            continue
        writer.heading(entry.title, "h3")
        for item in entry.items:
            _item(writer, item)


def _item(writer: _BodyWriter, item: ExecutionItem) -> None:
    title = item_title(item)
    verdict = safety_verdict(item)
    # space above: the title line must not stick to the previous item's table
    writer.paragraph(title if verdict is None else f"{title} · {verdict}", bold=True, before=160)
    if item.content is not None:
        if item.content:
            writer.paragraph(item.content)
        else:
            writer.paragraph(EMPTY_TEXT, italic=True)
    if _is_image(item):
        writer.image(item)
    writer.key_value_table(item_fields(item))


def _is_image(item: ExecutionItem) -> bool:
    if item.media is None:
        return False
    mime = item.media.mime_type or ""
    return type_name(item.media_type) == "image" or mime.startswith("image/")


def _integrity(writer: _BodyWriter, integrity: Integrity) -> None:
    writer.key_value_table(integrity_rows(integrity))
    if integrity.tracker_error_messages:
        writer.heading("Tracker errors", "h2")
        for message in integrity.tracker_error_messages:
            writer.paragraph(message or EMPTY_TEXT, style="bullet")
    if integrity.sinks:
        writer.heading("Sinks", "h2")
        rows: list[tuple[str, ...]] = [SINK_HEADINGS, *sink_rows(integrity)]
        writer.table(rows, _SINK_WIDTHS, header=True, size=GRID_SIZE)
