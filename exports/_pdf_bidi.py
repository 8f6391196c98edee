"""Right-to-left paragraphs for the PDF: wrapped in logical order, then each line reordered.

reportlab wraps lines left to right and knows nothing of bidi. Reordering a
whole paragraph first and letting reportlab wrap it afterwards puts the end of
a Hebrew or Arabic paragraph on its first line. Here the paragraph is wrapped
in logical (reading) order at the width reportlab offers, measured with the
shaped glyphs of the bundled fonts; then each line is reordered on its own
with the paragraph's base direction, and the lines are handed to reportlab as
a paragraph of explicit line breaks, right-aligned when the text reads right
to left.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from ._fonts import (
    font_runs,
    has_rtl,
    lf_newlines,
    markup,
    register_fonts,
    rtl_visual,
    shape_rtl,
)

__all__ = ["base_direction", "paragraph", "wrap_logical"]

#: Words and the whitespace between them, in logical order.
_TOKENS = re.compile(r"\s+|\S+")
#: Lines are filled to this share of the width: reportlab's own measure of a line may
#: differ by kerning-free rounding, and a line it re-wrapped would be out of order again.
_FILL = 0.97


def base_direction(text: str) -> str:
    """``"R"`` when the first strong letter of ``text`` is right-to-left, else ``"L"``."""
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind in ("R", "AL"):
            return "R"
        if kind == "L":
            return "L"
    return "L"


@lru_cache(maxsize=8192)
def _width(token: str, size: float, bold: bool) -> float:
    """Width in points of ``token`` drawn shaped in the bundled fonts at ``size``."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    fonts = register_fonts()
    total = 0.0
    for font, run in font_runs(shape_rtl(token)):
        total += stringWidth(run, fonts.bold_of[font] if bold else font, size)
    return total


def wrap_logical(text: str, width: float, measure: Callable[[str], float]) -> list[str]:
    """Break ``text`` into lines no wider than ``width``, in logical order.

    Lines break at whitespace (dropped at the break); a word wider than a line
    is cut between characters; each "\\n" ends a line. Nothing else is removed,
    so joining the lines with the dropped whitespace gives ``text`` back.

    Args:
        text: text whose line breaks are all "\\n".
        width: the line width, in the unit ``measure`` returns.
        measure: width of a piece of text.

    Returns:
        The lines, at least one.
    """
    lines: list[str] = []
    for hard_line in text.split("\n"):
        current, used = "", 0.0
        for token in _TOKENS.findall(hard_line):
            size = measure(token)
            if token.isspace():
                if current:
                    current, used = current + token, used + size
                continue
            if current and used + size > width:
                lines.append(current.rstrip())
                current, used = "", 0.0
            if not current and size > width:
                pieces = _cut(token, width, measure)
                lines.extend(pieces[:-1])
                current, used = pieces[-1], measure(pieces[-1])
                continue
            current, used = current + token, used + size
        lines.append(current.rstrip())
    return lines


def _cut(word: str, width: float, measure: Callable[[str], float]) -> list[str]:
    """A word wider than a line, cut into pieces that fit (at least one character each)."""
    pieces: list[str] = []
    start, used = 0, 0.0
    for index, char in enumerate(word):
        size = measure(char)
        if index > start and used + size > width:
            pieces.append(word[start:index])
            start, used = index, 0.0
        used += size
    pieces.append(word[start:])
    return pieces


def paragraph(text: str, style: Any) -> Any:
    """A flowable showing untrusted ``text`` in ``style``, right-to-left text done right.

    Text without right-to-left letters is an ordinary reportlab ``Paragraph`` of
    ``markup(text)``. Other text becomes a ``BidiParagraph``, wrapped when its
    width is known; its base direction (and right alignment) is that of its first
    strong letter, for all of its lines.
    """
    from reportlab.platypus import Paragraph

    if not has_rtl(text):
        return Paragraph(markup(text) or "&nbsp;", style)
    return _bidi_class()(text, style)


@lru_cache(maxsize=1)
def _bidi_class() -> Any:
    """The flowable class, made on first use so that reportlab is imported lazily."""
    from reportlab.lib.enums import TA_RIGHT
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Flowable, Paragraph

    class BidiParagraph(Flowable):  # type: ignore[misc]
        """Wraps its logical text at the offered width, then lays out the display lines."""

        def __init__(self, text: str, style: Any) -> None:
            super().__init__()
            self.text = lf_newlines(text)
            self.style = style
            self.rtl = base_direction(self.text) == "R"
            if self.rtl:
                style = ParagraphStyle(f"{style.name}-rtl", parent=style, alignment=TA_RIGHT)
            self._style = style
            self._width: float | None = None
            self._para: Any = None

        def _layout(self, avail_width: float) -> Any:
            width = avail_width - self.style.leftIndent - self.style.rightIndent
            if self._para is None or width != self._width:
                bold = self.style.fontName == register_fonts().bold
                size = float(self.style.fontSize)

                def measure(piece: str) -> float:
                    return _width(piece, size, bold)

                base = "R" if self.rtl else "L"
                shown = [
                    markup(rtl_visual(line, base=base), bold=bold, rtl=False)
                    for line in wrap_logical(self.text, width * _FILL, measure)
                ]
                self._para = Paragraph("<br/>".join(shown) or "&nbsp;", self._style)
                self._width = width
            return self._para

        def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
            para = self._layout(avail_width)
            size: tuple[float, float] = para.wrap(avail_width, avail_height)
            self.width, self.height = size
            return size

        def split(self, avail_width: float, avail_height: float) -> list[Any]:
            parts: list[Any] = self._layout(avail_width).split(avail_width, avail_height)
            return parts

        def draw(self) -> None:
            self._para.drawOn(self.canv, 0, 0)

        def getSpaceBefore(self) -> float:
            return float(self.style.spaceBefore)

        def getSpaceAfter(self) -> float:
            return float(self.style.spaceAfter)

        def minWidth(self) -> float:
            return 0.0

    return BidiParagraph
