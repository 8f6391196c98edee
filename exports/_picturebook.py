"""Picture-book PDF: a child's journey as big pages, one step per page, no research data.

The children's page offers this instead of the research formats. Each page is one step of
the journey in the order the child watched it: the idea, its translation, every
transformation of stage 2, the final text, then each output with its picture as large as the
page allows (or a kind sentence when an output was blocked or could not be made). Headings
are German with the English below them, as the page is bilingual. It carries no ids, no
pseudonyms, no metadata tables: only what the child saw. Untrusted text goes through
``_fonts.markup`` (escaped, bundled fonts) like the A4 report.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from execution_history import ExecutionItem, ExecutionRecord, ItemType

from ._fonts import markup, register_fonts, split_paragraphs
from ._images import normalise_image, placeholder, resolve_media
from ._journey import build_journey
from ._pdf_bidi import paragraph as text_paragraph
from ._text import sanitise

name = "picturebook"
media_type = "application/pdf"
extension = "picturebook.pdf"
description = "A picture book of the journey for the child: one step per page, big images"
requires = ("reportlab", "PIL")
extra = "pdf"

__all__ = ["description", "export", "extension", "extra", "media_type", "name", "requires"]

_MM = 72 / 25.4
_PAGE_W, _PAGE_H = 297 * _MM, 210 * _MM  # A4 landscape: a picture book lies on the table
_MARGIN = 14 * _MM
_FRAME_W = _PAGE_W - 2 * _MARGIN
#: An image fills what is left of the page under its heading and a line of text.
_IMAGE_BOX = (_FRAME_W, _PAGE_H - 2 * _MARGIN - 38 * _MM)
_IMAGE_MAX_PX = 1200
#: A very long text flows onto further pages; pieces this size lay out quickly.
_PIECE_CHARS = 1200
_INK = "#1d2b53"
_SOFT = "#6b7280"

#: Headings: (German, English). Kept here because the book is the same for every workshop.
_TITLES = {
    "cover": ("Die Reise deiner Idee", "Your idea's journey"),
    "idea": ("Deine Idee", "Your idea"),
    "translation": ("Übersetzt", "Translated"),
    "step": ("Verwandlung {n}", "Transformation {n}"),
    "final": ("Am Ende", "In the end"),
    "output": ("Ausgabe {n}", "Output {n}"),
    "stopped": ("Angehalten", "Stopped"),
    "blocked1": (
        "Diese Idee konnte hier nicht verwandelt werden.",
        "This idea could not be transformed here.",
    ),
    "blocked3": (
        "Diese Ausgabe passt nicht zu deiner Altersstufe und wurde nicht erstellt.",
        "This output was not right for your age level and was not made.",
    ),
    "failed": (
        "Diese Ausgabe konnte leider nicht erstellt werden.",
        "Sorry, this output could not be made.",
    ),
    "missing": ("Das Bild fehlt.", "The picture is missing."),
    "end": ("Ende", "The end"),
}


@dataclass(frozen=True, slots=True)
class _Page:
    """One page of the book: a heading key with its number, texts, an optional image item."""

    title: str
    number: int | None = None
    text: str | None = None
    note: str | None = None
    image: ExecutionItem | None = None


def export(record: ExecutionRecord, stream: BinaryIO, *, media_dir: Path | None = None) -> None:
    """Write ``record`` as a landscape picture book, one step of the journey per page.

    Args:
        record: a finished record, already pseudonymised by the registry (the book shows
            no ids or pseudonyms anyway).
        stream: a writable binary stream; the whole PDF is written at the end.
        media_dir: the run's media folder; images are read only from there. A missing or
            broken image is drawn as a placeholder with a sentence saying so.

    Raises:
        Exception: only a failure of reportlab or Pillow themselves; the registry wraps it.
    """
    from reportlab.platypus import PageBreak, SimpleDocTemplate

    styles = _styles()
    story: list[Any] = []
    for index, page in enumerate(_pages(record)):
        if index:
            story.append(PageBreak())
        story.extend(_flowables(page, styles, media_dir))
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=(_PAGE_W, _PAGE_H),
        leftMargin=_MARGIN,
        rightMargin=_MARGIN,
        topMargin=_MARGIN,
        bottomMargin=_MARGIN,
        title="Die Reise deiner Idee / Your idea's journey",
        creator="execution-history",
        author="",
        initialFontName=styles["fonts"].regular,
    )
    doc.build(story)
    stream.write(buffer.getvalue())


def _pages(record: ExecutionRecord) -> list[_Page]:
    """The book's pages in the order the child saw the steps."""
    pages = [_Page("cover")]
    journey = build_journey(record)
    step = 0
    for item in journey.items():
        kind = item.item_type
        if kind == ItemType.USER_INPUT_TEXT:
            pages.append(_Page("idea", text=item.content or ""))
        elif kind == ItemType.TRANSLATION_RESULT:
            pages.append(_Page("translation", text=item.content or ""))
        elif kind == ItemType.STAGE1_BLOCKED:
            pages.append(_Page("stopped", note="blocked1"))
        elif kind == ItemType.INTERCEPTION_ITERATION:
            step = item.stage_iteration or step + 1
            pages.append(_Page("step", number=step, text=item.content or ""))
        elif kind == ItemType.INTERCEPTION_FINAL:
            pages.append(_Page("final", text=item.content or ""))
        elif kind == ItemType.STAGE3_BLOCKED:
            pages.append(_Page("output", number=item.loop_iteration, note="blocked3"))
        elif kind == ItemType.OUTPUT_FAILED:
            pages.append(_Page("output", number=item.loop_iteration, note="failed"))
        elif kind == ItemType.OUTPUT_IMAGE:
            pages.append(_Page("output", number=item.loop_iteration, image=item))
    pages.append(_Page("end"))
    return pages


def _flowables(page: _Page, styles: dict[str, Any], media_dir: Path | None) -> list[Any]:
    from reportlab.platypus import Paragraph, Spacer

    german, english = _TITLES[page.title]
    number = {"n": page.number if page.number is not None else ""}
    big = styles["cover"] if page.title in ("cover", "end") else styles["title"]
    out: list[Any] = []
    if page.title in ("cover", "end"):
        out.append(Spacer(1, 55 * _MM))
    out.append(Paragraph(markup(german.format(**number), bold=True), big))
    small = styles["cover_sub"] if page.title in ("cover", "end") else styles["subtitle"]
    out.append(Paragraph(markup(english.format(**number)), small))
    if page.text is not None:
        pieces = split_paragraphs(page.text, _PIECE_CHARS) if page.text else [""]
        for piece in pieces:
            # Hebrew or Arabic ideas wrap in reading order, like the A4 report's texts.
            out.append(text_paragraph(piece, styles["text"]))
    if page.note is not None:
        note_de, note_en = _TITLES[page.note]
        out.append(Paragraph(markup(note_de), styles["text"]))
        out.append(Paragraph(markup(note_en), styles["subtitle"]))
    if page.image is not None:
        out.extend(_image(page.image, styles, media_dir))
    return out


def _image(item: ExecutionItem, styles: dict[str, Any], media_dir: Path | None) -> list[Any]:
    from reportlab.platypus import Image, Paragraph

    media = item.media
    if media is None:
        image = placeholder("no image file")
    else:
        path = resolve_media(media_dir, media.path)
        image = (
            placeholder("no media folder")
            if path is None
            else normalise_image(path, max_px=_IMAGE_MAX_PX, prefer="JPEG")
        )
    box_w, box_h = _IMAGE_BOX
    # Big, but a tiny image is not blown up into a blur of blocks.
    scale = min(box_w / image.width, box_h / image.height, 4.0)
    flowable = Image(io.BytesIO(image.data), width=image.width * scale, height=image.height * scale)
    flowable.hAlign = "CENTER"
    out: list[Any] = [flowable]
    if image.placeholder:
        german, english = _TITLES["missing"]
        out.append(Paragraph(markup(f"{german} / {english}"), styles["subtitle"]))
    elif item.content:
        out.append(text_paragraph(sanitise(item.content)[:300], styles["caption"]))
    return out


_built: dict[str, Any] = {}


def _styles() -> dict[str, Any]:
    """Paragraph styles, built once per process (the fonts are registered with them)."""
    if _built:
        return _built
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_CENTER
    from reportlab.lib.styles import ParagraphStyle

    fonts = register_fonts()
    ink, soft = colors.HexColor(_INK), colors.HexColor(_SOFT)

    def style(key: str, size: float, colour: Any, **kw: Any) -> ParagraphStyle:
        return ParagraphStyle(
            key,
            fontName=fonts.regular,
            bulletFontName=fonts.regular,
            fontSize=size,
            leading=size * 1.3,
            textColor=colour,
            **kw,
        )

    built = {
        "fonts": fonts,
        "cover": style("pb-cover", 40, ink, alignment=TA_CENTER, spaceAfter=8),
        "cover_sub": style("pb-cover-sub", 20, soft, alignment=TA_CENTER),
        "title": style("pb-title", 28, ink, spaceAfter=2),
        "subtitle": style("pb-subtitle", 16, soft, spaceAfter=12),
        "text": style("pb-text", 24, ink, spaceAfter=10),
        "caption": style("pb-caption", 13, soft, alignment=TA_CENTER, spaceBefore=6),
    }
    # Built fully before it is published, so another thread never sees half of it.
    _built.update(built)
    return _built
