"""Make any text legal in XML 1.0 (so in DOCX, PDF markup, spreadsheets) keeping offsets."""

from __future__ import annotations

import re

#: Code points XML 1.0 forbids: C0 controls except TAB, LF and CR; every surrogate code
#: point (a Python str can only hold them unpaired); and the non-characters U+FFFE, U+FFFF.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

REPLACEMENT = "\ufffd"


def sanitise(text: str) -> str:
    """Return ``text`` with every character illegal in XML 1.0 replaced by U+FFFD.

    The replacement is one for one, so character offsets and lengths stay the
    same as in the record; legal text is returned unchanged (the same object).

    Args:
        text: any string, including lone surrogates and control characters.

    Returns:
        A string that every XML 1.0 writer and UTF-8 encoder accepts.
    """
    # search() first: almost all text is clean, and this avoids building a copy.
    if _ILLEGAL.search(text) is None:
        return text
    return _ILLEGAL.sub(REPLACEMENT, text)


def needs_sanitising(text: str) -> bool:
    """Whether ``sanitise(text)`` would change anything.

    Args:
        text: any string.

    Returns:
        True when ``text`` holds a character illegal in XML 1.0.
    """
    return _ILLEGAL.search(text) is not None
