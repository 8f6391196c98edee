"""Bundled fonts for DOCX: which font draws each character, and the subset font files to embed.

A DOCX names fonts and relies on the reader's machine unless the fonts are
embedded. We embed subsets of the fonts the PDF bundles (``exports/fonts``,
every licence allows embedding: Bitstream Vera/DejaVu, SIL OFL for Noto,
Apache 2.0 for Droid Sans Fallback, "free for any use" for Symbola; all have
OS/2 ``fsType`` 0 or 8, installable or editable embedding), obfuscated as
ECMA-376 Part 1 §17.8.1 requires, so Word and LibreOffice draw Chinese,
Arabic, Indic scripts and (monochrome) emoji on a machine without those fonts.

Each character goes to the first font of the PDF's fallback chain
(``_fonts.FONT_CHAIN``) with a glyph for it, exactly as in the PDF; characters
no bundled font has stay in the main font and are left to the reader's system.
"""

from __future__ import annotations

import io
import threading
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from ._fonts import BOLD_FACES, FONT_CHAIN, FONT_DIR

__all__ = ["BundledFonts", "EmbeddedFont", "bundled_fonts", "font_runs", "subset_font"]

#: Ranges the main font's subset always covers (Latin, Greek, Cyrillic, Hebrew, Arabic,
#: punctuation, arrows, control pictures …): that subset is made once per process and
#: reused, because subsetting costs about 0.1 s per document and call.
_BASE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0020, 0x024F),
    (0x0370, 0x03FF),
    (0x0400, 0x04FF),
    (0x0590, 0x05FF),
    (0x0600, 0x06FF),
    (0x2000, 0x206F),
    (0x20A0, 0x20CF),
    (0x2100, 0x214F),
    (0x2190, 0x21FF),
    (0x2200, 0x22FF),
    (0x2400, 0x243F),
    (0x25A0, 0x25FF),
    (0xFB1D, 0xFB4F),
    (0xFB50, 0xFDFF),
    (0xFE70, 0xFEFF),
    (0xFFFD, 0xFFFD),
)
_BASE = frozenset(cp for low, high in _BASE_RANGES for cp in range(low, high + 1))
# Spaces, punctuation and combining marks stay in the font of the run they are in.
_NEUTRAL_CATEGORIES = frozenset({"Zs", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Mn", "Me"})
#: Namespace of the font keys: the same run and font give the same key (reproducible files).
_KEY_NAMESPACE = uuid.UUID("5f0c6b8e-3f55-4f3e-9d55-0d4c7f1d6a21")


@dataclass(frozen=True, slots=True)
class BundledFonts:
    """The bundled fonts as a DOCX names them.

    Attributes:
        main: family name of the main font (DejaVu Sans), also the name for
            characters that no bundled font has.
        families: family names in fallback order.
        regular: family name to its regular TrueType file.
        bold: family name to its bold file, for the families that have one.
        owner: code point to the family of the first font with a glyph for it.
        coverage: family name to the code points it has glyphs for.
    """

    main: str
    families: tuple[str, ...]
    regular: Mapping[str, Path]
    bold: Mapping[str, Path]
    owner: Mapping[int, str]
    coverage: Mapping[str, frozenset[int]]


@dataclass(frozen=True, slots=True)
class EmbeddedFont:
    """One obfuscated font part: its family, face (``Regular``/``Bold``), key and bytes."""

    family: str
    face: str
    key: str
    data: bytes


_lock = threading.Lock()
_loaded: BundledFonts | None = None


def bundled_fonts() -> BundledFonts:
    """The bundled fonts' names and coverage, read once per process (thread-safe).

    Raises:
        ImportError: fontTools is not installed (install the ``docx`` extra).
        OSError: a bundled font file is missing or unreadable.
    """
    global _loaded
    loaded = _loaded
    if loaded is not None:
        return loaded
    with _lock:
        if _loaded is None:
            _loaded = _load()
        return _loaded


def _load() -> BundledFonts:
    from fontTools.ttLib import TTFont

    regular: dict[str, Path] = {}
    bold: dict[str, Path] = {}
    coverage: dict[str, frozenset[int]] = {}
    owner: dict[int, str] = {}
    families: list[str] = []
    for _, filename in FONT_CHAIN:
        path = FONT_DIR / filename
        font = TTFont(str(path), lazy=True)
        family = font["name"].getDebugName(1) or path.stem
        # Glyph ".notdef" is the tofu box itself: mapping to it is no coverage.
        cmap = frozenset(cp for cp, glyph in font.getBestCmap().items() if glyph != ".notdef")
        font.close()
        families.append(family)
        regular[family] = path
        coverage[family] = cmap
        for cp in cmap:
            owner.setdefault(cp, family)
    for name, (_, bold_file) in BOLD_FACES.items():
        family = next(f for f, (n, _) in zip(families, FONT_CHAIN, strict=True) if n == name)
        bold[family] = FONT_DIR / bold_file
    return BundledFonts(
        main=families[0],
        families=tuple(families),
        regular=MappingProxyType(regular),
        bold=MappingProxyType(bold),
        owner=MappingProxyType(owner),
        coverage=MappingProxyType(coverage),
    )


def font_runs(text: str, fonts: BundledFonts) -> list[tuple[str, str]]:
    """Split ``text`` into (family, text) runs, each drawable by its bundled font.

    Unlike the PDF's runs nothing is replaced or dropped: the DOCX keeps the
    record's text as it is (it is for editing); a character no bundled font has
    stays in the current run's font (the main font at the start).

    Args:
        text: text already legal in XML (``sanitise``).
        fonts: ``bundled_fonts()``.

    Returns:
        The runs in order; adjacent runs have different families; empty for "".
    """
    owner, coverage = fonts.owner, fonts.coverage
    runs: list[tuple[str, str]] = []
    current = ""
    start = 0
    for index, char in enumerate(text):
        family = owner.get(ord(char))
        if family is None or (
            current
            and family != current
            and ord(char) in coverage[current]
            and unicodedata.category(char) in _NEUTRAL_CATEGORIES
        ):
            family = current or fonts.main
        if family != current:
            if index > start:
                runs.append((current, text[start:index]))
            current, start = family, index
    if len(text) > start:
        runs.append((current or fonts.main, text[start:]))
    return runs


def subset_font(path: Path, code_points: Iterable[int], *, base: bool) -> bytes:
    """A TrueType subset of ``path`` with glyphs for ``code_points`` (and their shaping).

    Args:
        path: a bundled font file.
        code_points: the characters the document draws with it.
        base: for the main font: when every code point lies in the common ranges,
            the once-per-process subset of those ranges is returned.

    Returns:
        The subset font's bytes, layout tables (Arabic joining …) kept.

    Raises:
        ImportError: fontTools is not installed.
    """
    wanted = frozenset(code_points)
    if base and wanted <= _BASE:
        return _subset(path, _BASE)
    return _subset(path, wanted)


@lru_cache(maxsize=32)
def _subset(path: Path, code_points: frozenset[int]) -> bytes:
    from fontTools import subset
    from fontTools.ttLib import TTFont

    options = subset.Options()
    options.layout_features = ["*"]  # Arabic joining, marks, ligatures
    options.name_IDs = ["*"]  # the family name must stay what the document names
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.hinting = False  # screens and printers do well without; halves the size
    options.drop_tables += ["FFTM"]
    subsetter = subset.Subsetter(options)
    # U+FFFD and the space always: a document's replacement characters and blanks
    subsetter.populate(unicodes=sorted(code_points | {0x20, 0xFFFD}))
    font = TTFont(str(path))
    subsetter.subset(font)
    out = io.BytesIO()
    font.save(out)
    font.close()
    return out.getvalue()


def font_key(seed: str, family: str, face: str) -> str:
    """The GUID that obfuscates one font part, ``{XXXXXXXX-XXXX-…}``, stable per seed."""
    return "{" + str(uuid.uuid5(_KEY_NAMESPACE, f"{seed}\x00{family}\x00{face}")).upper() + "}"


def obfuscate(data: bytes, key: str) -> bytes:
    """Obfuscate a font for a DOCX (ECMA-376 Part 1, §17.8.1; the same call undoes it).

    The first 32 bytes are XORed with the key's 16 bytes, which are the GUID's
    hex digits read from the last pair to the first.
    """
    secret = bytes.fromhex(key.strip("{}").replace("-", ""))[::-1]
    head = bytes(byte ^ secret[index % 16] for index, byte in enumerate(data[:32]))
    return head + data[32:]
