"""The PDF font layer: every script and emoji drawn with embedded fonts, never tofu."""

from __future__ import annotations

import io
import itertools
import threading
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("reportlab")
pypdf = pytest.importorskip("pypdf")

from reportlab.lib.styles import ParagraphStyle  # noqa: E402
from reportlab.platypus import Paragraph, SimpleDocTemplate  # noqa: E402

from exports import _fonts  # noqa: E402
from exports._fonts import (  # noqa: E402
    FONT_DIR,
    REPLACEMENT,
    font_runs,
    markup,
    register_fonts,
    rtl_visual,
    split_paragraphs,
)

# One sample word per script; RTL words are checked in logical or visual order.
WORDS = {
    "german": "Grüße aus Köln, Mädchen",
    "greek": "Καλημέρα",
    "cyrillic": "Привет",
    "chinese": "你好世界",
    "japanese": "こんにちはカタカナ",
    "korean": "안녕하세요",
    "hindi": "नमस्ते",
    "thai": "สวัสดี",
}
ARABIC = "مرحبا بالعالم"
HEBREW = "שלום עולם"
EMOJI = "😀🎨🚀"
ZWJ_FAMILY = "👨\u200d👩\u200d👧"
FLAG = "🇩🇪"
UNTRUSTED = "<script>&amp;<b>"
SAMPLE = " ".join(
    [
        *WORDS.values(),
        ARABIC,
        HEBREW,
        EMOJI,
        ZWJ_FAMILY,
        FLAG,
        "❤\ufe0f",
        "e\u0301 a\u0308 n\u0303",  # combining marks
        "ctl\x00\x07\x1b\x7f\x9f",  # C0, DEL and C1 controls
        "lone\ud800surrogate",
        "unassigned\U000e0080\U0010fffe",
        UNTRUSTED,
        "tab\there\r\nline\u2028break",
    ]
)
TOFU = ("\x00", "\u25a0", "\u25a1")


def _style() -> ParagraphStyle:
    return ParagraphStyle("body", fontName=register_fonts().regular, fontSize=10, leading=14)


def _pdf(paragraph_markups: list[str]) -> bytes:
    """Build a PDF of one paragraph per markup string, as the exporter would."""
    fonts = register_fonts()
    buffer = io.BytesIO()
    # initialFontName: reportlab otherwise starts every page with a non-embedded Helvetica.
    document = SimpleDocTemplate(buffer, initialFontName=fonts.regular)
    document.build([Paragraph(text, _style()) for text in paragraph_markups])
    return buffer.getvalue()


def _reader(pdf: bytes) -> Any:
    return pypdf.PdfReader(io.BytesIO(pdf), strict=True)


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in _reader(pdf).pages)


def _font_dicts(pdf: bytes) -> list[Any]:
    fonts = []
    for page in _reader(pdf).pages:
        resources = page["/Resources"]
        for font in resources.get("/Font", {}).values():
            fonts.append(font.get_object())
    return fonts


def _is_embedded(font: Any) -> bool:
    if font["/Subtype"] == "/Type0":
        font = font["/DescendantFonts"][0].get_object()
    descriptor = font.get("/FontDescriptor")
    if descriptor is None:
        return False
    descriptor = descriptor.get_object()
    return any(key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3"))


def test_mixed_scripts_render_with_embedded_fonts_and_no_tofu() -> None:
    """All scripts, emoji, controls and surrogates: embedded fonts, words extractable, no tofu."""
    pdf = _pdf([markup(SAMPLE)])
    fonts = _font_dicts(pdf)
    assert fonts
    for font in fonts:
        assert _is_embedded(font), font["/BaseFont"]
        assert font["/Subtype"] == "/TrueType"
        descriptor = font["/FontDescriptor"].get_object()
        assert "/FontFile2" in descriptor
    names = {str(font["/BaseFont"]).split("+", 1)[1] for font in fonts}
    assert {"DejaVuSans", "DroidSansFallback", "Symbola"} <= names

    text = _text(pdf)
    for tofu in TOFU:
        assert tofu not in text
    for script, word in WORDS.items():
        if script in ("hindi", "thai"):
            # No shaping in reportlab: the letters are there, in their stored order.
            assert all(char in text for char in word), script
        else:
            assert word in text, script
    # RTL: the letters, in logical or visual order (Arabic as presentation forms).
    plain = unicodedata.normalize("NFKC", text)
    for word in (ARABIC, HEBREW):
        for part in word.split():
            assert part in plain or part[::-1] in plain, part
    for emoji in [*EMOJI, "👨", "👩", "👧", "🇩", "🇪", "❤"]:
        assert emoji in text, emoji
    assert UNTRUSTED in text
    assert "\u2400\u2407\u241b\u2421" in text  # controls shown as Control Pictures
    assert REPLACEMENT in text  # the surrogate, the unassigned and the C1 control


def test_markup_escapes_untrusted_markup() -> None:
    """<script>, <b> and entities in untrusted text are shown as typed, never interpreted."""
    result = markup("<script>alert(1)</script> &amp; <b>x</b> <br/> &nbsp;")
    assert "<script>" not in result
    assert "<b>" not in result
    assert "&lt;script&gt;" in result
    assert "&amp;amp;" in result
    text = _text(_pdf([result]))
    assert "<script>alert(1)</script>" in text
    assert "&amp;" in text
    assert "<b>x</b>" in text
    assert "<br/>" in text
    assert "&nbsp;" in text


def test_markup_turns_line_breaks_into_br() -> None:
    """Every line-break flavour becomes <br/>, so lines stay separate in the PDF."""
    result = markup("one\ntwo\r\nthree\rfour\u2029five")
    assert result.count("<br/>") == 4
    lines = [line.strip() for line in _text(_pdf([result])).splitlines() if line.strip()]
    assert lines == ["one", "two", "three", "four", "five"]


def test_register_fonts_is_cached_and_thread_safe() -> None:
    """register_fonts() registers once: every call, from any thread, returns the same set."""
    first = register_fonts()
    assert register_fonts() is first
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(register_fonts())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result is first for result in results)


def test_bundled_fonts_and_licences_are_shipped() -> None:
    """Every font file is in the package with its licence and listed in the README."""
    from reportlab.pdfbase import pdfmetrics

    fonts = register_fonts()
    readme = (FONT_DIR / "README.md").read_text(encoding="utf-8")
    for name, path in fonts.files.items():
        assert path.parent == FONT_DIR
        assert path.is_file()
        assert path.name in readme
        assert pdfmetrics.getFont(name).fontName == name
    for licence in ("LICENSE-DejaVu.txt", "LICENSE-Apache-2.0.txt", "LICENSE-Symbola.txt"):
        assert (FONT_DIR / licence).is_file()
    assert (FONT_DIR / "LICENSE-Noto.txt").is_file()


def test_font_runs_use_fonts_that_have_every_glyph() -> None:
    """Each run's font has a glyph for each of its characters; nothing else gets through."""
    fonts = register_fonts()
    runs = font_runs(SAMPLE)
    assert "".join(run for _, run in runs)
    for font, run in runs:
        for char in run.replace("\n", ""):
            assert ord(char) in fonts.coverage[font], (font, hex(ord(char)))
    assert all(a != b for (a, _), (b, _) in itertools.pairwise(runs))


def test_font_runs_substitutes_and_drops_invisible_characters() -> None:
    """Controls become pictures, holes become U+FFFD, VS16/ZWJ/tags/skin tones are dropped."""
    drawn = "".join(run for _, run in font_runs("a\x00b\x1fc\ud800d\U0010fffee\u0378f"))
    assert drawn == "a\u2400b\u241fc\ufffdd\ufffde\ufffdf"
    drawn = "".join(run for _, run in font_runs("❤\ufe0f" + ZWJ_FAMILY + "🏴\U000e0067\U000e007f"))
    assert drawn == "❤👨👩👧🏴"
    # A skin tone after an emoji would be a swatch box in a monochrome font: dropped.
    assert "".join(run for _, run in font_runs("👍🏽 ok")) == "👍 ok"
    assert font_runs("") == []
    assert "".join(run for _, run in font_runs("x\ty")) == "x y"


def test_font_runs_keep_spaces_and_punctuation_in_the_current_run() -> None:
    """A CJK sentence with spaces and punctuation is one run, not one per word."""
    runs = font_runs("你好 世界。こんにちは、世界！")
    assert runs == [("DroidSansFallback", "你好 世界。こんにちは、世界！")]
    assert font_runs("Grüße, Привет!") == [("DejaVuSans", "Grüße, Привет!")]


def test_bold_markup_uses_the_bold_face() -> None:
    """markup(bold=True) draws the main font in its bold face; <b> works on plain text."""
    assert 'name="DejaVuSans-Bold"' in markup("Titel", bold=True)
    assert 'name="DroidSansFallback"' in markup("标题", bold=True)
    pdf = _pdf([markup("Titel", bold=True), "<b>Label</b>"])
    names = {str(font["/BaseFont"]).split("+", 1)[1] for font in _font_dicts(pdf)}
    assert names == {"DejaVuSans-Bold"}


def test_rtl_visual_reorders_and_shapes() -> None:
    """Hebrew is put in visual order; Arabic is shaped into joined presentation forms."""
    pytest.importorskip("bidi")
    pytest.importorskip("arabic_reshaper")
    assert rtl_visual("שלום") == "םולש"
    assert rtl_visual("abc (שלום)") == "abc (םולש)"
    shaped = rtl_visual("مرحبا")
    assert all(0xFE70 <= ord(char) <= 0xFEFF for char in shaped)
    assert unicodedata.normalize("NFKC", shaped) == "مرحبا"[::-1]
    assert rtl_visual("no rtl here\r\n") == "no rtl here\n"
    assert rtl_visual("\ud800 שלום") == "םולש \ufffd"


def test_rtl_visual_degrades_without_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without python-bidi/arabic-reshaper the text stays in logical order, still drawable."""
    monkeypatch.setattr(_fonts, "_rtl_tools", lambda: None)
    assert rtl_visual("שלום مرحبا") == "שלום مرحبا"
    text = _text(_pdf([markup("שלום مرحبا")]))
    assert all(char in text for char in "שלוםمرحبا")


def test_very_long_word_flows_across_pages() -> None:
    """A 100,000-character word splits into paragraphs that wrap and fill several pages."""
    word = "a" * 50_000 + "中" * 50_000
    pieces = split_paragraphs(word)
    assert len(pieces) > 1
    assert "".join(pieces) == word
    pdf = _pdf([markup(piece) for piece in pieces])
    assert len(_reader(pdf).pages) > 10
    text = _text(pdf)
    assert text.count("a") == 50_000
    assert text.count("中") == 50_000


def test_long_word_in_one_paragraph_wraps() -> None:
    """Without splitting, a 5,000-character word still wraps (reportlab splitLongWords)."""
    pdf = _pdf([markup("x" * 5_000)])
    assert _text(pdf).count("x") == 5_000


def test_split_paragraphs_prefers_line_breaks_then_spaces() -> None:
    """Cuts drop a line break, keep a space, and never orphan a combining mark."""
    assert split_paragraphs("") == [""]
    assert split_paragraphs("short") == ["short"]
    assert split_paragraphs("aaaa\nbbbb", max_chars=6) == ["aaaa", "bbbb"]
    assert split_paragraphs("aaaa bbbb", max_chars=6) == ["aaaa ", "bbbb"]
    assert split_paragraphs("aaae\u0301bbbb", max_chars=4) == ["aaa", "e\u0301bb", "bb"]
    with pytest.raises(ValueError):
        split_paragraphs("x", max_chars=0)


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(exclude_categories=()), max_size=40), st.integers(1, 12))
def test_split_paragraphs_keeps_every_character(text: str, max_chars: int) -> None:
    """Pieces are short enough and, minus the line breaks cut at, are the text."""
    pieces = split_paragraphs(text, max_chars)
    assert all(len(piece) <= max_chars for piece in pieces)
    normalised = _fonts._NEWLINES.sub("\n", text)
    assert "".join(pieces).replace("\n", "") == normalised.replace("\n", "")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(exclude_categories=())))
def test_any_text_renders_in_a_pdf(text: str) -> None:
    """Arbitrary text (surrogates, controls, unassigned) becomes markup that renders."""
    pdf = _pdf([markup(text), markup(text, bold=True)])
    assert pdf.startswith(b"%PDF")
    fonts = register_fonts()
    for font, run in font_runs(text):
        assert all(ord(char) in fonts.coverage[font] for char in run.replace("\n", ""))


def test_split_paragraphs_cuts_an_endless_cluster_into_full_pieces() -> None:
    """A letter with 50,000 combining marks is cut into ~25 pieces, not 50,000."""
    text = "e" + "\u0301" * 50_000
    pieces = split_paragraphs(text, max_chars=2000)
    assert "".join(pieces) == text
    assert len(pieces) <= 27
