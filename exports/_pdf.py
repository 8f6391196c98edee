"""PDF export: an A4 report of one run (reportlab), with embedded fonts and images.

Layout: a title block (the run's header), the stage summary table, the journey
with a heading per stage (Stille Post iterations as a numbered sequence, each
output config as its own section from its safety verdict to its media), then
the integrity block. Every page has a footer with the run id and "Page n of m".

What is said about items and the run (verdicts, fields, times) comes from
``_journey``; this module only lays it out. Untrusted text (prompts, model
output, metadata, even ids) only ever reaches reportlab's paragraph markup
through ``_fonts.markup``, which escapes it and picks a bundled font with glyphs
for every character; item texts and table cells go through
``_pdf_bidi.paragraph``, which wraps right-to-left text in reading order before
reordering each line for display. Long texts are cut into
paragraphs of a few thousand characters so they flow across pages; table cells
only hold bounded text, longer values are printed in full below their table, so
no flowable is ever taller than a page (reportlab's ``LayoutError``).
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from execution_history import ExecutionItem, ExecutionRecord, ItemType, MediaType, StageSummary

from ._fonts import FontSet, font_runs, markup, register_fonts, split_paragraphs
from ._images import normalise_image, placeholder, resolve_media
from ._journey import (
    SINK_HEADINGS,
    SUMMARY_HEADINGS,
    Iteration,
    Journey,
    Output,
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
from ._pdf_bidi import paragraph as text_paragraph
from ._text import sanitise
from ._timefmt import utc_iso

name = "pdf"
media_type = "application/pdf"
extension = "pdf"
description = "An A4 report of the whole journey, with images and embedded fonts"
requires = ("reportlab", "PIL")
extra = "pdf"

__all__ = ["description", "export", "extension", "extra", "media_type", "name", "requires"]

# --------------------------------------------------------------------------- layout constants

_MM = 72 / 25.4
_PAGE_W, _PAGE_H = 210 * _MM, 297 * _MM  # A4
_MARGIN_X = 18 * _MM
_MARGIN_TOP = 16 * _MM
_MARGIN_BOTTOM = 20 * _MM  # room for the footer
_FRAME_W = _PAGE_W - 2 * _MARGIN_X
_FOOTER_SIZE = 7.5
#: Images are shown fitted into this box: readable, and two fit on one page.
_IMAGE_BOX = (120 * _MM, 105 * _MM)
#: No image is blown up more than this many points per pixel (a 64 px icon stays an icon).
_MAX_UPSCALE = 3.0
#: Longest side an image is scaled down to before embedding: 120 mm at about 170 dpi.
#: Smaller files embed faster and the page does not show more detail anyway.
_IMAGE_MAX_PX = 800
#: Characters of a long text per paragraph: reportlab's layout time grows faster than a
#: paragraph's length, and pieces this size lay out quickly and flow across pages.
_PIECE_CHARS = 1500
#: A table cell holds at most this many characters and line breaks; a longer value is
#: printed in full below its table, because a table row cannot split across pages.
_CELL_CHARS = 400
_CELL_LINES = 12
#: Longer runs of line breaks are summarised (see ``_StoryBuilder.text``).
_MAX_BLANK_RUN = 5
_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x85\u2028\u2029]")
_BREAK_RUN = re.compile(f"(?:{_LINE_BREAK.pattern}){{{_MAX_BLANK_RUN + 1},}}")
#: The footer shows at most this many characters of the run id.
_FOOTER_ID_CHARS = 72
_PAGE_COUNT_FORM = "pageCount"

_GREY = "#5f6368"
_RULE = "#c8ccd0"
_HEAD_BG = "#eef1f4"
_ZEBRA = "#f8f9fa"
_PASS = "#1e7d32"
_FAIL = "#b3261e"


# --------------------------------------------------------------------------- public entry point


def export(record: ExecutionRecord, stream: BinaryIO, *, media_dir: Path | None = None) -> None:
    """Write ``record`` as an A4 PDF report to ``stream``.

    Args:
        record: a finished record, already pseudonymised by the registry.
        stream: a writable binary stream; the whole PDF is written at the end, in one go.
        media_dir: the run's media folder; images are read from there (only from there).
            Without it, or when a file is missing or corrupt, a drawn placeholder and a
            caption saying the image is missing stand in the image's place.

    Raises:
        Exception: only a failure of reportlab or Pillow themselves (hostile, empty or
            very long text, odd metadata and missing or corrupt images do not raise);
            the registry wraps it in ``ExportFailedError``.
    """
    from reportlab.platypus import Frame, PageTemplate

    styles = _styles()
    journey = build_journey(record)
    builder = _StoryBuilder(styles, media_dir)
    story = builder.build(journey)

    run_id = sanitise(record.run_id)
    footer_id = run_id if len(run_id) <= _FOOTER_ID_CHARS else run_id[:_FOOTER_ID_CHARS] + "…"
    buffer = io.BytesIO()
    doc = _template_class()(
        buffer,
        pagesize=(_PAGE_W, _PAGE_H),
        leftMargin=_MARGIN_X,
        rightMargin=_MARGIN_X,
        topMargin=_MARGIN_TOP,
        bottomMargin=_MARGIN_BOTTOM,
        title=f"Execution history: run {footer_id}",
        subject=sanitise(f"Run of the {_clip(record.config_name or 'unknown', 100)} pipeline"),
        creator="execution-history",
        author="",
        # The canvas's initial font would otherwise be Helvetica: a non-embedded font
        # in every page's resources, and readers substitute it differently.
        initialFontName=styles.fonts.regular,
    )
    frame = Frame(
        _MARGIN_X,
        _MARGIN_BOTTOM,
        _FRAME_W,
        _PAGE_H - _MARGIN_TOP - _MARGIN_BOTTOM,
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
        id="body",
    )
    footer = _Footer(styles.fonts, footer_id)
    doc.addPageTemplates([PageTemplate(id="report", frames=[frame], onPage=footer.draw)])
    doc.build(story, canvasmaker=_canvas_class())
    stream.write(buffer.getvalue())


# --------------------------------------------------------------------------- styles (once)


@dataclass(frozen=True, slots=True)
class _Styles:
    """Paragraph and table styles, built once per process (see ``_styles``)."""

    fonts: FontSet
    title: Any
    subtitle: Any
    h1: Any
    h2: Any
    h3: Any
    label: Any
    body: Any
    note: Any
    caption: Any
    facts: Any
    missing: Any
    cell: Any
    cell_key: Any
    cell_head: Any
    cell_note: Any
    table: Any
    grid: Any


_styles_lock = threading.Lock()
_styles_built: _Styles | None = None


def _styles() -> _Styles:
    """The report's styles, built once per process (thread-safe); fonts registered with them."""
    global _styles_built
    built = _styles_built
    if built is not None:
        return built
    with _styles_lock:
        if _styles_built is None:
            _styles_built = _build_styles()
        return _styles_built


def _build_styles() -> _Styles:
    """Register the fonts, switch off ASCII85, and build every style."""
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import TableStyle

    fonts = register_fonts()  # also makes reportlab's ToUnicode maps right for emoji
    _prefer_binary_streams()
    regular, bold = fonts.regular, fonts.bold

    def style(name: str, **kw: Any) -> Any:
        base: dict[str, Any] = {
            "fontName": regular,
            # bullets default to Helvetica, which would pull a non-embedded font in
            "bulletFontName": regular,
            "fontSize": 9,
            "leading": 12,
        }
        base.update(kw)
        return ParagraphStyle(name, **base)

    grey = colors.HexColor(_GREY)
    table = TableStyle(
        [
            # plain-string cells (the padding of a short row) would be Helvetica otherwise
            ("FONT", (0, 0), (-1, -1), regular, 7.5),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor(_RULE)),
        ]
    )
    grid = TableStyle(
        [
            ("FONT", (0, 0), (-1, -1), regular, 7.5),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ("TOPPADDING", (0, 0), (-1, -1), 2),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor(_HEAD_BG)),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor(_ZEBRA)]),
            ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.HexColor(_GREY)),
            ("LINEBELOW", (0, -1), (-1, -1), 0.5, colors.HexColor(_GREY)),
        ]
    )
    return _Styles(
        fonts=fonts,
        title=style("title", fontName=bold, fontSize=20, leading=24, spaceAfter=2),
        subtitle=style("subtitle", fontSize=11, leading=14, textColor=grey, spaceAfter=10),
        h1=style(
            "h1",
            fontName=bold,
            fontSize=14,
            leading=18,
            spaceBefore=14,
            spaceAfter=6,
            keepWithNext=1,
        ),
        h2=style(
            "h2",
            fontName=bold,
            fontSize=12,
            leading=15,
            spaceBefore=12,
            spaceAfter=4,
            keepWithNext=1,
            textColor=colors.HexColor("#1f3b57"),
        ),
        h3=style(
            "h3",
            fontName=bold,
            fontSize=10.5,
            leading=13.5,
            spaceBefore=9,
            spaceAfter=3,
            keepWithNext=1,
        ),
        label=style(
            "label", fontSize=8.5, leading=11, spaceBefore=5, textColor=grey, keepWithNext=1
        ),
        body=style("body", fontSize=9.5, leading=13, leftIndent=8),
        note=style("note", fontSize=8.5, leading=11, textColor=grey, spaceBefore=2, spaceAfter=2),
        caption=style(
            "caption", fontSize=8, leading=10, textColor=grey, spaceBefore=2, spaceAfter=4
        ),
        missing=style(
            "missing",
            fontName=bold,
            fontSize=9,
            leading=12,
            textColor=colors.HexColor(_FAIL),
            spaceBefore=2,
        ),
        facts=style(
            "facts", fontSize=7.5, leading=9.5, textColor=grey, spaceBefore=1, spaceAfter=1
        ),
        cell=style("cell", fontSize=7.5, leading=9.5),
        cell_key=style("cell_key", fontSize=7.5, leading=9.5, textColor=grey),
        cell_head=style("cell_head", fontName=bold, fontSize=7.5, leading=9.5),
        cell_note=style("cell_note", fontSize=7.5, leading=9.5, textColor=grey),
        table=table,
        grid=grid,
    )


def _prefer_binary_streams() -> None:
    """Write PDF streams as binary instead of ASCII85 text; process-wide, idempotent.

    reportlab ASCII85-encodes every image, font and page stream by default, in pure
    Python unless the optional ``rl_accel`` extension is installed: about 50 ms per
    1024 px JPEG, most of a typical export. ASCII85 only matters for 7-bit channels;
    binary streams are valid PDF, a fifth smaller, and read by every reader.
    """
    from reportlab import rl_config

    rl_config.useA85 = 0


# --------------------------------------------------------------------------- page furniture


class _Footer:
    """Draws the footer of every page: run id on the left, "Page n of m" on the right."""

    def __init__(self, fonts: FontSet, run_id: str) -> None:
        self._fonts = fonts
        self._left = font_runs(f"Run {run_id}")

    def draw(self, canvas: Any, doc: Any) -> None:
        """Draw the footer on ``canvas`` (reportlab's ``onPage`` hook)."""
        from reportlab.lib import colors

        y = _MARGIN_BOTTOM - 10 * _MM
        canvas.saveState()
        canvas.setStrokeColor(colors.HexColor(_RULE))
        canvas.setLineWidth(0.5)
        canvas.line(_MARGIN_X, y + 10, _PAGE_W - _MARGIN_X, y + 10)
        canvas.setFillColor(colors.HexColor(_GREY))
        _draw_runs(canvas, _MARGIN_X, y, self._left)
        # The total is a form drawn once the last page is known (see _canvas_class); the
        # form's width is not known yet, so "Page n of " is placed left of a fixed slot.
        text = f"Page {canvas.getPageNumber()} of "
        slot = canvas.stringWidth("0000", self._fonts.regular, _FOOTER_SIZE)
        x = _PAGE_W - _MARGIN_X - slot - canvas.stringWidth(text, self._fonts.regular, _FOOTER_SIZE)
        canvas.setFont(self._fonts.regular, _FOOTER_SIZE)
        canvas.drawString(x, y, text)
        canvas.translate(_PAGE_W - _MARGIN_X - slot, y)
        canvas.doForm(_PAGE_COUNT_FORM)
        canvas.restoreState()


def _draw_runs(canvas: Any, x: float, y: float, runs: Iterable[tuple[str, str]]) -> None:
    """Draw font runs (from ``font_runs``) left to right on one line, without markup."""
    for font, text in runs:
        line = text.replace("\n", " ")
        canvas.setFont(font, _FOOTER_SIZE)
        canvas.drawString(x, y, line)
        x += canvas.stringWidth(line, font, _FOOTER_SIZE)


@lru_cache(maxsize=1)
def _canvas_class() -> Any:
    """The canvas class that draws the page total into the footers' form when saved."""
    from reportlab.pdfgen.canvas import Canvas

    class _Canvas(Canvas):  # type: ignore[misc]
        def save(self) -> None:
            # Forms may be referenced before they are defined: every footer already
            # points at this one, which now receives the final page count.
            fonts = register_fonts()
            self.beginForm(_PAGE_COUNT_FORM)
            self.setFont(fonts.regular, _FOOTER_SIZE)
            self.setFillColor(_GREY)
            self.drawString(0, 0, str(max(1, self.getPageNumber() - 1)))
            self.endForm()
            super().save()

    return _Canvas


@lru_cache(maxsize=1)
def _template_class() -> Any:
    """The document template that turns headings into PDF bookmarks (the outline)."""
    from reportlab.platypus import BaseDocTemplate

    class _Template(BaseDocTemplate):  # type: ignore[misc]
        def afterFlowable(self, flowable: Any) -> None:
            outline = getattr(flowable, "_outline", None)
            if outline is None:
                return
            title, level = outline
            key = f"o{id(flowable)}"
            self.canv.bookmarkPage(key)
            self.canv.addOutlineEntry(title, key, level=level, closed=level > 0)

    return _Template


# --------------------------------------------------------------------------- the story


class _StoryBuilder:
    """Turns a journey into reportlab flowables; one instance per export."""

    def __init__(self, styles: _Styles, media_dir: Path | None) -> None:
        self.s = styles
        self.media_dir = media_dir
        self.story: list[Any] = []

    # ---- primitives

    def add(self, flowable: Any) -> None:
        self.story.append(flowable)

    def para(self, text_markup: str, style: Any) -> Any:
        from reportlab.platypus import Paragraph

        return Paragraph(text_markup, style)

    def heading(self, text_markup: str, style: Any, outline: str, level: int) -> None:
        """A heading that is also a bookmark; ``outline`` is plain text."""
        paragraph = self.para(text_markup, style)
        # Outline titles are plain strings in the PDF: bounded, and legal in UTF-16.
        title = sanitise(outline.replace("\n", " "))
        paragraph._outline = (title[:120] + "…" if len(title) > 120 else title, level)
        self.add(paragraph)

    def text(self, value: str, style: Any) -> None:
        """Untrusted text of any length as one or more paragraphs.

        A run of more than ``_MAX_BLANK_RUN`` line breaks is shown as a note with its
        count: drawn, 100,000 line breaks would be 1,800 blank pages and half a minute.
        """
        if value == "":
            self.add(self.para("<i>(empty text)</i>", self.s.note))
            return
        start = 0
        for run in _BREAK_RUN.finditer(value):
            self._pieces(value[start : run.start()], style)
            breaks = len(_LINE_BREAK.findall(run.group()))
            self.add(self.para(f"<i>({breaks:,} line breaks in a row)</i>", self.s.note))
            start = run.end()
        self._pieces(value[start:], style)

    def _pieces(self, value: str, style: Any) -> None:
        if value:
            for piece in split_paragraphs(value, _PIECE_CHARS):
                self.add(text_paragraph(piece, style))

    def pairs(self, rows: Sequence[tuple[str, str]], *, columns: int = 2) -> None:
        """A compact label/value table; ``columns`` pairs side by side per row.

        Bounded values sit in the table; longer ones (or long labels) are named in the
        table and printed in full under it, so every row stays shorter than a page.
        """
        from reportlab.platypus import Table

        if not rows:
            return
        overflow: list[tuple[str, str]] = []
        cells: list[Any] = []
        for label, value in rows:
            if _fits_cell(label, 80) and _fits_cell(value, _CELL_CHARS):
                cells.append(text_paragraph(label, self.s.cell_key))
                cells.append(text_paragraph(value, self.s.cell))
                continue
            overflow.append((label, value))
            short = label if _fits_cell(label, 80) else label[:60] + "…"
            cells.append(text_paragraph(short, self.s.cell_key))
            cells.append(
                self.para(
                    f"<i>{len(value):,} characters, printed in full below</i>", self.s.cell_note
                )
            )
        width = _FRAME_W / columns
        col_widths = [width * 0.34, width * 0.66] * columns
        per_row = 2 * columns
        data = [cells[i : i + per_row] for i in range(0, len(cells), per_row)]
        if len(data[-1]) < per_row:
            data[-1] = data[-1] + [""] * (per_row - len(data[-1]))
        table = Table(data, colWidths=col_widths, hAlign="LEFT", splitByRow=1)
        table.setStyle(self.s.table)
        self.add(table)
        for label, value in overflow:
            if len(label) <= 1000:
                self.add(self.para("<b>In full:</b> " + markup(label), self.s.label))
            else:  # a label this long is itself printed like a long text
                self.add(self.para("<b>In full, the label and then its value:</b>", self.s.label))
                self.text(label, self.s.body)
            self.text(value, self.s.body)

    def grid(
        self, head: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[float]
    ) -> None:
        """A table with a header row, for values that are ours or short by construction.

        A cell longer than ``_CELL_CHARS`` is cut with a visible "…" so that no row can
        outgrow a page; only stage names and sink outcomes are shown this way.
        """
        from reportlab.platypus import Table

        data = [[self.para(markup(h), self.s.cell_head) for h in head]]
        for row in rows:
            data.append([text_paragraph(_clip(v, _CELL_CHARS), self.s.cell) for v in row])
        table = Table(data, colWidths=[w * _FRAME_W for w in widths], hAlign="LEFT", repeatRows=1)
        table.setStyle(self.s.grid)
        self.add(table)

    # ---- the report

    def build(self, journey: Journey) -> list[Any]:
        self.title_block(journey)
        self.summary(journey.summary)
        self.heading("Journey", self.s.h1, "Journey", 0)
        for section in journey.sections:
            self.section(section)
        self.integrity(journey)
        return self.story

    def title_block(self, journey: Journey) -> None:
        header = journey.header
        self.heading("Execution history report", self.s.title, "Overview", 0)
        config = header.config_name or "unknown config"
        self.add(
            self.para(
                markup(_clip(config, 300)) + " · " + markup(header.status or "unknown status"),
                self.s.subtitle,
            )
        )
        self.pairs(list(header.rows()), columns=1)

    def summary(self, stages: Sequence[StageSummary]) -> None:
        self.heading("Stage summary", self.s.h1, "Stage summary", 0)
        if not stages:
            self.add(self.para("No stage was entered.", self.s.note))
            return
        head = list(SUMMARY_HEADINGS)
        rows = [list(row) for row in summary_rows(tuple(stages))]
        widths = [0.07, 0.25, 0.1, 0.08, 0.1, 0.08, 0.11, 0.08, 0.13]
        self.grid(head, rows, widths)

    def section(self, section: Section) -> None:
        self.heading(markup(section.title), self.s.h2, section.title, 1)
        if not section.entries:
            self.add(self.para("No items were recorded in this stage.", self.s.note))
            return
        for entry in section.entries:
            if isinstance(entry, Iteration):
                self.iteration(entry)
            elif isinstance(entry, Output):
                self.output(entry)
            else:
                self.item(entry)

    def iteration(self, iteration: Iteration) -> None:
        title = _clip(iteration.title, 200)
        self.heading(markup(title), self.s.h3, title, 2)
        for item in iteration.items:
            self.item(item)

    def output(self, output: Output) -> None:
        shown = markup(output.title)
        if output.outcome in ("blocked", "failed"):
            shown = f'Output {output.loop}: <font color="{_FAIL}">{output.outcome}</font>'
        self.heading(shown, self.s.h3, output.title, 2)
        for item in output.items:
            self.item(item)

    def item(self, item: ExecutionItem) -> None:
        """One item: its title line and verdict, content, media, then its fields table."""
        label = markup(_clip(item_title(item), 300))
        verdict = safety_verdict(item)
        if verdict is not None:
            colour = _PASS if verdict == "passed" else _FAIL
            label += f' · <font color="{colour}"><b>{verdict}</b></font>'
        transition = _transition(item)
        if transition is not None:
            # A stage transition carries nothing but its two stages: one line says it all.
            line = f"{label} · {transition} · recorded {utc_iso(item.timestamp)}"
            self.add(self.para(line, self.s.label))
            return
        head = self.para(label, self.s.label)
        if item.content is None and item.media is not None:
            # The label travels with the picture, so it never ends a page on its own.
            self.media(item, head)
        else:
            self.add(head)
        if item.content is not None:
            self.text(item.content, self.s.body)
        if item.content is not None and item.media is not None:
            self.media(item, None)
        self.pairs(list(item_fields(item)), columns=2)

    def media(self, item: ExecutionItem, head: Any) -> None:
        """An item's media: its image, a placeholder saying why it is missing, or a note.

        Audio, video and 3D files cannot be shown in a PDF; a note names them. ``head``
        (the item's label, or None) is kept on the same page as the picture.
        """
        from reportlab.platypus import Image, KeepTogether

        media = item.media
        assert media is not None
        mime = media.mime_type or ""
        is_image = item.media_type == MediaType.IMAGE or mime.startswith("image/")
        if not is_image:
            kind = type_name(item.media_type) or "media"
            if head is not None:
                self.add(head)
            self.add(
                self.para(
                    f"{markup(kind.capitalize())} file, not embedded in a PDF: "
                    + markup(_clip(media.path, 300)),
                    self.s.note,
                )
            )
            return
        path = resolve_media(self.media_dir, media.path)
        if path is None:
            image = placeholder(
                "no media folder given" if self.media_dir is None else "outside the media folder"
            )
        else:
            # JPEG: the reader embeds it as is; a re-encoded PNG would be inflated and
            # deflated again by reportlab, several times slower for a photo-like output.
            image = normalise_image(path, max_px=_IMAGE_MAX_PX, prefer="JPEG")
        box_w, box_h = _IMAGE_BOX
        scale = min(box_w / image.width, box_h / image.height, _MAX_UPSCALE)
        flowable = Image(
            io.BytesIO(image.data), width=image.width * scale, height=image.height * scale
        )
        flowable.hAlign = "LEFT"
        if image.placeholder:
            caption = self.para(
                "Image missing: "
                + markup(image.reason or "unknown reason")
                + " ("
                + markup(_clip(media.path, 300))
                + ")",
                self.s.missing,
            )
        else:
            caption = self.para(
                markup(_clip(media.path, 300))
                + f" · {image.width} × {image.height} px as embedded",
                self.s.caption,
            )
        self.add(KeepTogether([f for f in (head, flowable, caption) if f is not None]))

    def integrity(self, journey: Journey) -> None:
        integrity = journey.integrity
        self.heading("Integrity", self.s.h1, "Integrity", 0)
        self.add(
            self.para(
                "What the tracker had to cap, cut, coerce or catch while recording this run.",
                self.s.note,
            )
        )
        rows = list(integrity_rows(integrity))
        self.pairs(rows, columns=2)
        if integrity.tracker_error_messages:
            self.add(self.para("Tracker error messages", self.s.label))
            for message in integrity.tracker_error_messages:
                self.text(message, self.s.body)
        if integrity.sinks:
            self.add(self.para("Sinks", self.s.label))
            self.grid(
                list(SINK_HEADINGS),
                [list(row) for row in sink_rows(integrity)],
                [0.18, 0.14, 0.1, 0.12, 0.46],
            )


# --------------------------------------------------------------------------- helpers


def _fits_cell(text: str, limit: int) -> bool:
    return len(text) <= limit and text.count("\n") <= _CELL_LINES


def _clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, for places that show a value in passing (captions)."""
    return text if len(text) <= limit else text[:limit] + "…"


def _transition(item: ExecutionItem) -> str | None:
    """``2 → 3`` for a stage transition that holds nothing else, otherwise None."""
    if item.item_type != ItemType.STAGE_TRANSITION or item.content is not None:
        return None
    if item.media is not None or set(item.metadata) != {"from_stage", "to_stage"}:
        return None
    source, target = item.metadata["from_stage"], item.metadata["to_stage"]
    if not all(isinstance(v, int) for v in (source, target)):
        return None
    # Anything else recorded on it gets the full item layout, so nothing is hidden.
    if any(v is not None for v in (item.model, item.backend, item.config, item.duration_ms)):
        return None
    return f"stage {source} → {target}"
