"""Bundled fonts and text runs that let the PDF exporter draw any Unicode text without tofu."""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

__all__ = [
    "BOLD_FACES",
    "FONT_CHAIN",
    "FONT_DIR",
    "REPLACEMENT",
    "FontSet",
    "font_runs",
    "has_rtl",
    "lf_newlines",
    "markup",
    "register_fonts",
    "rtl_visual",
    "shape_rtl",
    "split_paragraphs",
]

FONT_DIR = Path(__file__).resolve().parent / "fonts"
"""Folder of the bundled TrueType files and their licences."""

REPLACEMENT = "\ufffd"
"""Drawn in place of a character that no bundled font has a glyph for."""

# Fallback chain, tried in this order for every character: the first font with a glyph wins.
# DejaVu Sans first: Latin, Greek, Cyrillic, Arabic (with presentation forms, which the
# Arabic shaper emits), Hebrew, Armenian, Georgian and many symbols. Then one Noto font per
# script DejaVu lacks, Droid Sans Fallback for Chinese, Japanese and Korean, and two
# monochrome symbol fonts for emoji. Adding a script = adding a (name, file) pair here.
#: (reportlab name, file) of every bundled font, in fallback order; the DOCX uses it too.
FONT_CHAIN: tuple[tuple[str, str], ...] = (
    ("DejaVuSans", "DejaVuSans.ttf"),
    ("NotoSansDevanagari", "NotoSansDevanagari-Regular.ttf"),
    ("NotoSansBengali", "NotoSansBengali-Regular.ttf"),
    ("NotoSansGurmukhi", "NotoSansGurmukhi-Regular.ttf"),
    ("NotoSansGujarati", "NotoSansGujarati-Regular.ttf"),
    ("NotoSansOriya", "NotoSansOriya-Regular.ttf"),
    ("NotoSansTamil", "NotoSansTamil-Regular.ttf"),
    ("NotoSansTelugu", "NotoSansTelugu-Regular.ttf"),
    ("NotoSansKannada", "NotoSansKannada-Regular.ttf"),
    ("NotoSansMalayalam", "NotoSansMalayalam-Regular.ttf"),
    ("NotoSansSinhala", "NotoSansSinhala-Regular.ttf"),
    ("NotoSansThai", "NotoSansThai-Regular.ttf"),
    ("NotoSansLao", "NotoSansLao-Regular.ttf"),
    ("NotoSansKhmer", "NotoSansKhmer-Regular.ttf"),
    ("NotoSansMyanmar", "NotoSansMyanmar-Regular.ttf"),
    ("NotoSansEthiopic", "NotoSansEthiopic-Regular.ttf"),
    ("DroidSansFallback", "DroidSansFallback.ttf"),
    ("Symbola", "Symbola_hint.ttf"),
    ("NotoSansSymbols2", "NotoSansSymbols2-Regular.ttf"),
)
# Bold faces that are bundled; every other font is its own bold (keeps the PDF small).
#: Regular font name to (bold name, bold file), for the fonts with a bundled bold face.
BOLD_FACES: Mapping[str, tuple[str, str]] = {
    "DejaVuSans": ("DejaVuSans-Bold", "DejaVuSans-Bold.ttf")
}

# Line breaks of every flavour become "\n", which markup() turns into <br/>.
_NEWLINES = re.compile("\r\n|[\r\v\f\x85\u2028\u2029]")
# Lone surrogates cannot be encoded, so C extensions (and PDF text) would choke on them.
_SURROGATES = re.compile("[\ud800-\udfff]")
# Strong right-to-left letters: Hebrew, Arabic, Syriac, Thaana, NKo ... and their
# presentation forms, plus the RTL ranges of the supplementary planes.
_RTL = re.compile(
    "[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc\U00010800-\U00010fff\U0001e800-\U0001efff]"
)
# C0 controls (other than TAB and LF; CR, VT and FF are line breaks by then) and DEL: the
# bidi algorithm removes them (class BN), so they become Control Pictures before it runs.
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1f\x7f]")
# Unicode's Default_Ignorable_Code_Point ranges (minus U+200B, which reportlab treats as a
# break opportunity): invisible by definition, so they are dropped rather than drawn. This
# covers emoji variation selectors, ZWJ and the tag characters of subdivision flags.
_IGNORABLE: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200C, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
# Characters that stay in the font of the run they are in when that font has them, so
# "中文 日本" is one run and not three: spaces, punctuation and combining marks.
_NEUTRAL_CATEGORIES = frozenset({"Zs", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Mn", "Me"})


@dataclass(frozen=True, slots=True, eq=False)
class FontSet:
    """The bundled fonts, registered with reportlab.

    Attributes:
        regular: Name of the main font (Latin, Greek, Cyrillic, Arabic, Hebrew); use it
            as ``fontName`` in paragraph styles. Also a registered font family, so ``<b>``
            in a paragraph switches to ``bold``.
        bold: Name of the main font's bold face.
        fallbacks: Every regular font name, in the order ``font_runs`` tries them.
        bold_of: Font name to the name of its bold face (the font itself when none is bundled).
        files: Font name to its TrueType file.
        owner: Code point to the first font of ``fallbacks`` that has a glyph for it.
        coverage: Font name to the code points it has glyphs for.
    """

    regular: str
    bold: str
    fallbacks: tuple[str, ...]
    bold_of: Mapping[str, str]
    files: Mapping[str, Path]
    owner: Mapping[int, str] = field(repr=False)
    coverage: Mapping[str, frozenset[int]] = field(repr=False)

    def covers(self, char: str) -> bool:
        """Return whether some bundled font has a glyph for the single character ``char``."""
        return ord(char) in self.owner


_lock = threading.Lock()
_fontset: FontSet | None = None


def register_fonts() -> FontSet:
    """Register the bundled fonts with reportlab, once per process.

    Thread-safe; the first call loads the files (well under a second), later calls return
    the same object at the cost of a global read.

    Returns:
        The registered ``FontSet``.

    Raises:
        ImportError: reportlab is not installed (install the ``pdf`` extra).
        OSError: a bundled font file is missing or unreadable (a broken installation).
    """
    global _fontset
    fontset = _fontset
    if fontset is not None:
        return fontset
    with _lock:
        if _fontset is None:
            _fontset = _load()
        return _fontset


_BFCHAR_ASTRAL = re.compile(r"^(<[0-9A-Fa-f]+>) <([0-9A-Fa-f]{5,6})>$", re.MULTILINE)


def _utf16_hex(match: re.Match[str]) -> str:
    """Rewrite one ``bfchar`` entry's code point above U+FFFF as UTF-16BE hex."""
    code = chr(int(match.group(2), 16)).encode("utf-16-be").hex().upper()
    return f"{match.group(1)} <{code}>"


def _patch_to_unicode_cmap() -> None:
    """Make reportlab write emoji and other astral characters correctly into ToUnicode.

    reportlab (up to at least 5.1) writes a code point above U+FFFF as five hex digits,
    which the PDF spec does not allow (a ToUnicode destination is UTF-16BE), so readers
    such as pypdf drop those characters from extracted text. The wrapper only rewrites
    such entries; every other CMap stays byte for byte what reportlab makes, and a fixed
    reportlab (no five-digit entries) leaves it untouched.
    """
    from reportlab.pdfbase import ttfonts

    original: Callable[[str, list[int]], str] = ttfonts.makeToUnicodeCMap
    if getattr(original, "_astral_fixed", False):
        return

    def make_to_unicode_cmap(fontname: str, subset: list[int]) -> str:
        cmap = original(fontname, subset)
        if all(code <= 0xFFFF for code in subset):
            return cmap
        return _BFCHAR_ASTRAL.sub(_utf16_hex, cmap)

    make_to_unicode_cmap._astral_fixed = True  # type: ignore[attr-defined]
    ttfonts.makeToUnicodeCMap = make_to_unicode_cmap


def _load() -> FontSet:
    """Register every font of the chain and read its cmap; called once under the lock."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    _patch_to_unicode_cmap()

    files: dict[str, Path] = {}
    coverage: dict[str, frozenset[int]] = {}
    owner: dict[int, str] = {}
    bold_of: dict[str, str] = {}
    for name, filename in FONT_CHAIN:
        path = FONT_DIR / filename
        font = TTFont(name, str(path))
        pdfmetrics.registerFont(font)
        files[name] = path
        # Glyph 0 is .notdef, the tofu box itself: mapping to it is no coverage.
        char_to_glyph: Mapping[int, int] = font.face.charToGlyph
        cmap = frozenset(cp for cp, glyph in char_to_glyph.items() if glyph)
        coverage[name] = cmap
        for cp in cmap:
            owner.setdefault(cp, name)
        bold_name, bold_file = BOLD_FACES.get(name, (name, filename))
        if bold_name != name:
            pdfmetrics.registerFont(TTFont(bold_name, str(FONT_DIR / bold_file)))
            files[bold_name] = FONT_DIR / bold_file
        bold_of[name] = bold_name
        bold_of[bold_name] = bold_name
        # A family per font, so <b>/<i> inside <font name=...> never fails to map; no
        # italic faces are bundled, so italic falls back to the upright one.
        pdfmetrics.registerFontFamily(
            name, normal=name, bold=bold_name, italic=name, boldItalic=bold_name
        )
    if ord(REPLACEMENT) not in owner:
        raise OSError(f"no bundled font in {FONT_DIR} has U+FFFD; the installation is broken")
    regular = FONT_CHAIN[0][0]
    return FontSet(
        regular=regular,
        bold=bold_of[regular],
        fallbacks=tuple(name for name, _ in FONT_CHAIN),
        bold_of=MappingProxyType(bold_of),
        files=MappingProxyType(files),
        owner=MappingProxyType(owner),
        coverage=MappingProxyType(coverage),
    )


def _is_ignorable(cp: int) -> bool:
    """Return whether ``cp`` is a default-ignorable code point (drawn as nothing)."""
    return any(low <= cp <= high for low, high in _IGNORABLE)


@lru_cache(maxsize=65536)
def _resolve(char: str) -> tuple[str, str] | None:
    """Map one character (not a newline) to (font, text to draw), or None to drop it."""
    fontset = register_fonts()
    owner = fontset.owner
    cp = ord(char)
    if char == "\t":
        return fontset.regular, " "
    category = unicodedata.category(char)
    if category == "Cc":
        # C0 controls become their visible Control Pictures (U+2400..), DEL becomes ␡.
        if cp < 0x20:
            char = chr(0x2400 + cp)
        elif cp == 0x7F:
            char = "\u2421"
        else:
            char = REPLACEMENT
    elif category == "Cs":
        char = REPLACEMENT
    elif _is_ignorable(cp):
        return None
    font = owner.get(ord(char))
    if font is not None:
        return font, char
    # Compatibility forms (ligatures, presentation forms, styled letters) fall back to
    # their plain letters when one font has all of them; anything else is U+FFFD.
    plain = unicodedata.normalize("NFKC", char)
    if plain != char and plain:
        fonts = {owner.get(ord(part)) for part in plain}
        if len(fonts) == 1 and None not in fonts:
            return fonts.pop() or fontset.regular, plain
    return owner[ord(REPLACEMENT)], REPLACEMENT


def font_runs(text: str) -> list[tuple[str, str]]:
    """Split ``text`` into runs of (font name, text) that the bundled fonts can draw.

    Each character goes to the first font of the fallback chain with a glyph for it;
    spaces, punctuation and combining marks stay in the current run's font when it has
    them. Characters no font covers (unassigned code points, lone surrogates, private
    use, emoji newer than Unicode 9) become U+FFFD; C0 controls become their Control
    Picture (U+0000 → ␀); a tab becomes a space; default-ignorable code points (variation
    selectors, ZWJ, bidi controls, tags) are dropped, and so are emoji skin-tone modifiers
    that follow another character. Every line break (CR LF, CR, VT, FF,
    NEL, U+2028, U+2029) becomes "\\n" inside a run.

    Args:
        text: Any string, including lone surrogates.

    Returns:
        The runs in order; adjacent runs have different fonts. Empty for empty text.

    Raises:
        ImportError: reportlab is not installed.
    """
    fontset = register_fonts()
    coverage = fontset.coverage
    runs: list[tuple[str, str]] = []
    current = ""
    buffer: list[str] = []
    for char in _NEWLINES.sub("\n", text):
        if char == "\n":
            font, drawn = current or fontset.regular, char
        else:
            if buffer and 0x1F3FB <= ord(char) <= 0x1F3FF and not buffer[-1].isspace():
                # A skin-tone modifier after an emoji: a monochrome font can only draw it
                # as a separate colour swatch that looks like a tofu box, so drop it.
                continue
            resolved = _resolve(char)
            if resolved is None:
                continue
            font, drawn = resolved
            if (
                current
                and font != current
                and len(drawn) == 1
                and unicodedata.category(drawn) in _NEUTRAL_CATEGORIES
                and ord(drawn) in coverage[current]
            ):
                font = current
        if font != current:
            if buffer:
                runs.append((current, "".join(buffer)))
                buffer.clear()
            current = font
        buffer.append(drawn)
    if buffer:
        runs.append((current, "".join(buffer)))
    return runs


def _escape(text: str) -> str:
    """Escape text for reportlab's paragraph markup so every character shows as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markup(text: str, *, bold: bool = False, rtl: bool = True) -> str:
    """Return reportlab ``Paragraph`` markup that draws untrusted ``text`` as typed.

    Every run is escaped (``<script>`` and ``&amp;`` appear literally) and wrapped in
    ``<font name="...">`` of a bundled font with glyphs for it; line breaks become
    ``<br/>``. Very long words need nothing extra: reportlab's ``splitLongWords`` (on by
    default) breaks them at the frame width; split very long texts with
    ``split_paragraphs`` so they flow across pages quickly.

    Args:
        text: Any string (prompts, model output), including controls and lone surrogates.
        bold: Use the bold face of each font where one is bundled.
        rtl: Put right-to-left runs in visual order and shape Arabic (see ``rtl_visual``).

    Returns:
        Markup for ``reportlab.platypus.Paragraph``; empty for empty text.

    Raises:
        ImportError: reportlab is not installed.
    """
    if rtl:
        text = rtl_visual(text)
    bold_of = register_fonts().bold_of if bold else None
    parts: list[str] = []
    for font, run in font_runs(text):
        name = bold_of[font] if bold_of is not None else font
        for index, line in enumerate(run.split("\n")):
            if index:
                parts.append("<br/>")
            if line:
                parts.append(f'<font name="{name}">{_escape(line)}</font>')
    return "".join(parts)


_RtlTools = tuple[Callable[[str], str], Callable[[str, str | None], str]]


@lru_cache(maxsize=1)
def _rtl_tools() -> _RtlTools | None:
    """Return (Arabic shaper, bidi reorderer), or None when the libraries are missing."""
    try:
        import arabic_reshaper
    except ImportError:
        return None
    try:
        # The pure-Python v0 algorithm also mirrors brackets (rule L4); the newer
        # compiled get_display of python-bidi 0.5+ does not.
        from bidi.algorithm import get_display
    except ImportError:
        try:
            from bidi import get_display
        except ImportError:
            return None
    reshaper = arabic_reshaper.ArabicReshaper(configuration={"delete_harakat": False})

    def reshape(text: str) -> str:
        return str(reshaper.reshape(text))

    def display(text: str, base: str | None = None) -> str:
        return str(get_display(text, base_dir=base))

    return reshape, display


def _covered_forms(shaped: str, fontset: FontSet) -> str:
    """Replace shaped forms no bundled font has (rare ligatures) by their plain letters."""
    if all(ord(char) in fontset.owner for char in shaped):
        return shaped
    parts: list[str] = []
    for char in shaped:
        if ord(char) in fontset.owner:
            parts.append(char)
            continue
        plain = unicodedata.normalize("NFKC", char)
        parts.append(plain if all(ord(p) in fontset.owner for p in plain) else char)
    return "".join(parts)


def lf_newlines(text: str) -> str:
    """Return ``text`` with every kind of line break (CR LF, CR, VT, FF, NEL, U+2028/9) as LF."""
    return _NEWLINES.sub("\n", text)


def has_rtl(text: str) -> bool:
    """Return whether ``text`` holds a strong right-to-left letter (Hebrew, Arabic …)."""
    return _RTL.search(text) is not None


def _control_picture(match: re.Match[str]) -> str:
    cp = ord(match.group())
    return "\u2421" if cp == 0x7F else chr(0x2400 + cp)


def shape_rtl(text: str) -> str:
    """Return ``text`` with Arabic letters joined (presentation forms), in logical order.

    Used to measure how wide a piece of right-to-left text will be once drawn;
    text without RTL letters, or without the shaping library, comes back as it is.
    """
    if not _RTL.search(text):
        return text
    tools = _rtl_tools()
    if tools is None:
        return text
    try:
        return _covered_forms(tools[0](_SURROGATES.sub(REPLACEMENT, text)), register_fonts())
    except Exception:  # a third-party bug must not stop an export
        return text


def rtl_visual(text: str, *, base: str | None = None) -> str:
    """Return ``text`` with right-to-left lines in visual order and Arabic letters shaped.

    reportlab lays text out left to right and does no shaping, so Arabic and Hebrew would
    read backwards with Arabic letters unjoined. Each line holding RTL letters is shaped
    with ``arabic-reshaper`` (to presentation forms the bundled fonts have) and reordered
    with the Unicode bidi algorithm of ``python-bidi`` (base direction from the first strong
    letter, brackets mirrored). Lines without RTL letters are returned unchanged.

    The reordering is per line of ``text``: a line that reportlab wraps afterwards would
    show its end first, so paragraphs that may wrap are wrapped in logical order first
    (``_pdf_bidi``) and each of their lines is passed here on its own. Control characters
    on such lines become Control Pictures (U+2400 …) here, because the bidi algorithm
    removes them. Without the two libraries, or if they fail, the text is returned in
    logical order, unshaped (still readable letters). Lone surrogates become U+FFFD and
    line breaks become "\\n".

    Args:
        text: Any string.
        base: ``"R"`` or ``"L"`` to set every line's base direction (the direction of
            the paragraph a wrapped line came from); None takes each line's first
            strong letter, as the bidi algorithm does.

    Returns:
        The text to pass on to ``font_runs`` or draw.
    """
    text = _NEWLINES.sub("\n", text)
    if not _RTL.search(text):
        return text
    tools = _rtl_tools()
    if tools is None:
        return text
    reshape, display = tools
    fontset = register_fonts()
    text = _SURROGATES.sub(REPLACEMENT, text)
    lines = text.split("\n")
    for number, line in enumerate(lines):
        if not _RTL.search(line):
            continue
        line = _CONTROLS.sub(_control_picture, line)
        try:
            lines[number] = display(_covered_forms(reshape(line), fontset), base)
        except Exception:  # a third-party bug must not stop an export; keep logical order
            lines[number] = line
    return "\n".join(lines)


def _is_cluster_continuation(char: str) -> bool:
    """Return whether ``char`` belongs to the character before it (mark, joiner, modifier)."""
    cp = ord(char)
    return (
        unicodedata.category(char) in ("Mn", "Mc", "Me")
        or _is_ignorable(cp)
        or 0x1F3FB <= cp <= 0x1F3FF  # emoji skin-tone modifiers
    )


def split_paragraphs(text: str, max_chars: int = 2000) -> list[str]:
    """Split ``text`` into pieces of at most ``max_chars`` characters, one per paragraph.

    reportlab lays out a paragraph in time growing faster than its length; pieces of a
    few thousand characters keep a 100,000-character text fast and let it flow across
    pages. Cuts prefer the last line break in a piece (which is dropped), then the last
    whitespace (kept at the end of the piece), then a hard cut that does not separate a
    letter from its combining marks or emoji modifiers.

    Args:
        text: Any string; line breaks of every flavour count as "\\n".
        max_chars: Upper bound of a piece's length, at least 1.

    Returns:
        The pieces in order, never empty: ``[""]`` for empty text.

    Raises:
        ValueError: ``max_chars`` is less than 1.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    text = _NEWLINES.sub("\n", text)
    pieces: list[str] = []
    start = 0
    while len(text) - start > max_chars:
        window = text[start : start + max_chars + 1]
        cut = window.rfind("\n")
        if cut >= 0:
            pieces.append(text[start : start + cut])
            start += cut + 1
            continue
        cut = max_chars
        space = next((i for i in range(max_chars - 1, 0, -1) if window[i].isspace()), 0)
        if space:
            cut = space + 1
        else:
            while cut > 1 and _is_cluster_continuation(text[start + cut]):
                cut -= 1
            if cut == 1:
                # One "cluster" longer than a piece (a letter with thousands of
                # combining marks): cut it, or the text would split per character.
                cut = max_chars
        pieces.append(text[start : start + cut])
        start += cut
    pieces.append(text[start:])
    return pieces
