"""Right-to-left text in the PDF, read back by pdftotext and pypdf: line order, controls."""

from __future__ import annotations

import io
import itertools
import os
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest

pytest.importorskip("reportlab")
pypdf = pytest.importorskip("pypdf")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from execution_history import ExecutionRecord, ExecutionTracker  # noqa: E402
from exports import _pdf  # noqa: E402
from exports._pdf_bidi import wrap_logical  # noqa: E402

#: 60 distinct Hebrew and Arabic "words" (two letters each, no digits: digits are weak in
#: bidi and would move), so every word's line and position can be told apart.
HEBREW_WORDS = ["".join(p) for p in itertools.product("אבגדהוזחטיכלמנסעפצקרשת", repeat=2)][:60]
ARABIC_WORDS = ["".join(p) for p in itertools.product("بتثجحخسشصضطظعغفقكمنهي", repeat=2)][:60]
#: Bidi marks pdftotext wraps right-to-left runs in; they stand between words, so a space.
_MARKS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u200e\u200f"), " ")


def render(record: ExecutionRecord) -> bytes:
    stream = io.BytesIO()
    _pdf.export(record, stream)
    return stream.getvalue()


def record_with(*texts: str) -> ExecutionRecord:
    tracker = ExecutionTracker("dada")
    with tracker, tracker.stage(1):
        for text in texts:
            tracker.log_user_input(text)
    return tracker.finalize()


def pdftotext(data: bytes, tmp_path: Path) -> str:
    """Text of the PDF as poppler's pdftotext reads it (it puts RTL lines in reading order)."""
    tool = shutil.which("pdftotext")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdftotext is required in CI (poppler-utils)")
        pytest.skip("pdftotext is not installed here")
    path = tmp_path / "run.pdf"
    path.write_bytes(data)
    done = subprocess.run(
        [tool, "-enc", "UTF-8", str(path), "-"], capture_output=True, timeout=60, check=True
    )
    return done.stdout.decode("utf-8").translate(_MARKS)


def lines_of_words(text: str, vocabulary: list[str]) -> list[list[str]]:
    """The extracted lines holding words of ``vocabulary``, each as its words in order."""
    known = set(vocabulary)
    found = []
    for line in text.splitlines():
        words = [unicodedata.normalize("NFKC", word) for word in line.split()]
        if words and all(word in known for word in words):
            found.append(words)
    return found


@pytest.mark.parametrize("words", [HEBREW_WORDS, ARABIC_WORDS], ids=["hebrew", "arabic"])
def test_a_wrapped_right_to_left_paragraph_keeps_its_lines_in_reading_order(
    words: list[str], tmp_path: Path
) -> None:
    """The first words are on the first line, and the lines read on where the last one ended."""
    text = pdftotext(render(record_with(" ".join(words))), tmp_path)
    lines = lines_of_words(text, words)
    assert len(lines) >= 2, text  # it did wrap
    assert lines[0][0] == words[0]
    assert [word for line in lines for word in line] == words


def test_a_wrapped_mixed_paragraph_keeps_reading_order_per_line(tmp_path: Path) -> None:
    """A Hebrew paragraph with Latin words in it still starts with its first words."""
    words = [w if n % 7 else f"{w} Latin{n}" for n, w in enumerate(HEBREW_WORDS)]
    text = pdftotext(render(record_with(" ".join(words))), tmp_path)
    known = set(HEBREW_WORDS)
    lines = [line.split() for line in text.splitlines() if known & set(line.split())]
    assert len(lines) >= 2
    assert HEBREW_WORDS[0] in lines[0] and "Latin0" in lines[0]
    # pdftotext keeps a mixed line in display order, so only the lines' order is compared:
    # reading the words in logical order never goes back to an earlier line
    line_of = {word: number for number, line in enumerate(lines) for word in line}
    numbers = [line_of[word] for word in HEBREW_WORDS]
    assert numbers == sorted(numbers) and numbers[-1] == len(lines) - 1


def test_control_characters_next_to_rtl_text_show_as_control_pictures() -> None:
    """U+0001 and U+001B beside Hebrew and Arabic appear as ␁ and ␛, as on other lines."""
    data = render(record_with("שלום \x01 עולם", "مرحبا\x1bبالعالم", "plain \x01 latin"))
    reader = pypdf.PdfReader(io.BytesIO(data), strict=True)
    text = "".join(page.extract_text() for page in reader.pages)
    assert text.count("\u2401") == 2
    assert "\u241b" in text
    assert "\x01" not in text and "\x1b" not in text


MIXED = st.lists(
    st.sampled_from(
        [
            "שלום",
            "עולם",
            "مرحبا",
            "لا",
            "abc",
            "Grüße",
            "中文",
            "😀",
            "123",
            "(",
            ")",
            "\u202e",
            "\u200f",
            "\x00",
            "\x01",
            "\x7f",
            "\ud800",
            "\n",
            "\r\n",
            "\t",
            " ",
            "  ",
            "ـ",
            "\u0651",
        ]
    )
    | st.text(max_size=5),
    max_size=400,
).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=MIXED)
def test_hostile_mixed_direction_text_always_exports(text: str) -> None:
    """Any mix of directions, controls, marks and broken surrogates exports and reopens."""
    data = render(record_with(text, text * 3))
    reader = pypdf.PdfReader(io.BytesIO(data), strict=True)
    assert len(reader.pages) >= 1


@settings(max_examples=200, deadline=None)
@given(text=MIXED, width=st.floats(min_value=1, max_value=400))
def test_wrapping_keeps_every_character_and_the_width(text: str, width: float) -> None:
    """Lines only lose the whitespace they broke at, and none is wider than the width
    unless it is a single character."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = wrap_logical(text, width, lambda piece: 7.0 * len(piece))
    assert "".join("".join(lines).split()) == "".join(text.split())
    for line in lines:
        assert 7.0 * len(line) <= width or len(line) == 1
