"""The PDF report reopened with pypdf (strict): fonts, footer, order, images, hostile text."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("reportlab")
pypdf = pytest.importorskip("pypdf")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from execution_history import ExecutionRecord, ExecutionTracker, ItemType  # noqa: E402
from exports import _pdf  # noqa: E402
from tests.exports._support import export_bytes  # noqa: E402
from tests.records import (  # noqa: E402
    STILLE_POST_LANGUAGES,
    STILLE_POST_TEXTS,
    stille_post_record,
    write_png,
)

MIXED_SCRIPTS = (
    "Grüße aus Köln, Straße ÄÖÜ äöü ß · Ελληνικά γράμματα · Русский текст · "
    "中文字符 · 日本語のテキスト · 한국어 문장 · العربية · עברית · 😀🎨🐶"
)
MIXED_WORDS = ("Grüße", "Straße", "ÄÖÜ", "Ελληνικά", "Русский", "中文字符", "日本語", "한국어")
HOSTILE_MARKUP = "<script>alert(1)</script> & <b>bold</b>"


# --------------------------------------------------------------------------- helpers


def render(record: ExecutionRecord, media_dir: Path | None = None) -> bytes:
    """Export through the module itself (the registry's own tests cover the registry)."""
    stream = io.BytesIO()
    _pdf.export(record, stream, media_dir=media_dir)
    return stream.getvalue()


def read(data: bytes) -> Any:
    """Open with pypdf in strict mode: malformed structure raises instead of being repaired."""
    assert data.startswith(b"%PDF-")
    return pypdf.PdfReader(io.BytesIO(data), strict=True)


def page_texts(reader: Any) -> list[str]:
    return [page.extract_text() for page in reader.pages]


def flat(text: str) -> str:
    """Whitespace collapsed to single spaces (extraction breaks lines where the layout does)."""
    return re.sub(r"\s+", " ", text)


def resources_of(obj: Any) -> list[Any]:
    """The resource dictionary of a page or form and of every form XObject inside it."""
    found: list[Any] = []
    pending = [obj.get("/Resources")]
    seen: set[int] = set()
    while pending:
        resources = pending.pop()
        if resources is None:
            continue
        resources = resources.get_object()
        if id(resources) in seen:
            continue
        seen.add(id(resources))
        found.append(resources)
        for xobject in (resources.get("/XObject") or {}).values():
            xobject = xobject.get_object()
            if xobject.get("/Subtype") == "/Form":
                pending.append(xobject.get("/Resources"))
    return found


def font_descriptors(font: Any) -> list[Any]:
    font = font.get_object()
    if font.get("/Subtype") == "/Type0":
        return [d.get_object().get("/FontDescriptor") for d in font["/DescendantFonts"]]
    return [font.get("/FontDescriptor")]


def unembedded_fonts(reader: Any) -> list[str]:
    """Base names of fonts used on any page (or in its forms) without an embedded font file."""
    missing = []
    for page in reader.pages:
        for resources in resources_of(page):
            for font in (resources.get("/Font") or {}).values():
                for descriptor in font_descriptors(font):
                    descriptor = descriptor.get_object() if descriptor is not None else None
                    if descriptor is None or not (
                        "/FontFile2" in descriptor or "/FontFile3" in descriptor
                    ):
                        missing.append(str(font.get_object().get("/BaseFont")))
    return missing


def image_count(reader: Any) -> int:
    return sum(
        1
        for page in reader.pages
        for resources in resources_of(page)
        for xobject in (resources.get("/XObject") or {}).values()
        if xobject.get_object().get("/Subtype") == "/Image"
    )


def one_item_record(content: str, **fields: Any) -> ExecutionRecord:
    """A short run through the real tracker whose prompt is ``content``."""
    tracker = ExecutionTracker("dada", safety_level="teens", user_id="u", session_id="s")
    with tracker:
        with tracker.stage(1):
            tracker.log_user_input(content, **fields)
    return tracker.finalize()


@pytest.fixture(autouse=True)
def no_pypdf_warnings(caplog: pytest.LogCaptureFixture) -> Any:
    """pypdf reports broken structures it works around as log warnings, not exceptions."""
    caplog.set_level(logging.WARNING, logger="pypdf")
    yield
    complaints = [r.getMessage() for r in caplog.records if r.name.startswith("pypdf")]
    assert complaints == []


# --------------------------------------------------------------------------- the Stille Post run


@pytest.fixture
def stille_post_pdf(finished_record: ExecutionRecord, media_dir: Path) -> tuple[Any, list[str]]:
    reader = read(render(finished_record, media_dir))
    return reader, page_texts(reader)


def test_every_font_is_embedded(stille_post_pdf: tuple[Any, list[str]]) -> None:
    reader, _ = stille_post_pdf
    assert len(reader.pages) >= 1
    assert unembedded_fonts(reader) == []


def test_every_page_has_the_run_id_and_its_page_number(
    finished_record: ExecutionRecord, stille_post_pdf: tuple[Any, list[str]]
) -> None:
    _, texts = stille_post_pdf
    total = len(texts)
    for number, text in enumerate(texts, start=1):
        assert f"Run {finished_record.run_id}" in text
        assert f"Page {number} of {total}" in flat(text)


def test_title_block_and_summary_name_the_run(
    finished_record: ExecutionRecord, stille_post_pdf: tuple[Any, list[str]]
) -> None:
    _, texts = stille_post_pdf
    first = flat(texts[0])
    for expected in ("Execution history report", "stillepost", "kids", "partial", "Stage summary"):
        assert expected in first
    assert "Taxonomy version" in first and finished_record.taxonomy_version in first
    everything = flat(" ".join(texts))
    assert "Integrity" in everything
    assert "Items recorded" in everything


def test_the_eight_iterations_appear_in_order(stille_post_pdf: tuple[Any, list[str]]) -> None:
    _, texts = stille_post_pdf
    text = flat(" ".join(texts))
    position = text.index("Stage 2: Interception")
    for number, expected in enumerate(STILLE_POST_TEXTS, start=1):
        pair = f"{STILLE_POST_LANGUAGES[number - 1]} → {STILLE_POST_LANGUAGES[number]}"
        heading = text.index(f"Iteration {number} ({pair})", position)
        content = text.index(expected, heading)
        nxt = f"Iteration {number + 1} (" if number < 8 else "interception_final"
        assert content < text.index(nxt, heading), f"iteration {number} out of order"
        position = content


def test_the_outline_lists_stages_iterations_and_outputs(
    stille_post_pdf: tuple[Any, list[str]],
) -> None:
    reader, _ = stille_post_pdf

    def titles(entries: list[Any]) -> list[str]:
        found: list[str] = []
        for entry in entries:
            found.extend(titles(entry) if isinstance(entry, list) else [entry.title])
        return found

    outline = titles(reader.outline)
    assert outline[:3] == ["Overview", "Stage summary", "Journey"]
    assert outline[-1] == "Integrity"
    iterations = [t for t in outline if t.startswith("Iteration ")]
    assert iterations == [
        f"Iteration {n} ({STILLE_POST_LANGUAGES[n - 1]} → {STILLE_POST_LANGUAGES[n]})"
        for n in range(1, 9)
    ]
    assert [t for t in outline if t.startswith("Output ")] == [
        "Output 1: generated",
        "Output 2: blocked",
        "Output 3: generated",
    ]


def test_outputs_run_from_safety_verdict_to_media(stille_post_pdf: tuple[Any, list[str]]) -> None:
    _, texts = stille_post_pdf
    text = flat(" ".join(texts))
    out1, out2, out3 = (text.index(f"Output {n}: ") for n in (1, 2, 3))
    assert out1 < out2 < out3
    assert "passed" in text[out1:out2] and "output_1.png" in text[out1:out2]
    assert "blocked" in text[out2:out3] and "not suitable for kids" in text[out2:out3]
    assert "output_2.png" not in text
    assert "passed" in text[out3:] and "output_3.png" in text[out3:]


def test_generated_images_are_embedded(
    finished_record: ExecutionRecord, stille_post_pdf: tuple[Any, list[str]]
) -> None:
    reader, _ = stille_post_pdf
    generated = sum(1 for item in finished_record.items if item.item_type == ItemType.OUTPUT_IMAGE)
    assert generated == 2
    assert image_count(reader) >= generated


def test_the_registry_exports_pseudonyms_never_raw_ids(
    finished_record: ExecutionRecord, media_dir: Path, pseudonymiser: Any
) -> None:
    reader = read(export_bytes(finished_record, "pdf", media_dir, pseudonymiser))
    text = flat(" ".join(page_texts(reader)))
    assert pseudonymiser.user("child-42") in text
    assert pseudonymiser.session("class-7b") in text
    assert "child-42" not in text and "class-7b" not in text


# --------------------------------------------------------------------------- text


def test_mixed_scripts_extract_without_tofu() -> None:
    reader = read(render(one_item_record(MIXED_SCRIPTS)))
    assert unembedded_fonts(reader) == []
    text = " ".join(page_texts(reader))
    assert "\x00" not in text
    assert "■" not in text and "□" not in text and "\ufffd" not in text
    for word in MIXED_WORDS:
        assert word in text
    # emoji lie above U+FFFF: their ToUnicode entries must be UTF-16 surrogate pairs
    assert "😀🎨🐶" in text


def test_markup_in_user_text_shows_as_typed() -> None:
    record = one_item_record(HOSTILE_MARKUP, metadata={"note": HOSTILE_MARKUP})
    text = flat(" ".join(page_texts(read(render(record)))))
    assert text.count(HOSTILE_MARKUP) == 2  # the prompt and its metadata value


def strip_furniture(texts: list[str], run_id: str) -> str:
    """The pages' text without footers and whitespace, for checking a long text is whole."""
    lines = [
        line
        for text in texts
        for line in text.splitlines()
        if not line.startswith(f"Run {run_id}") and not re.fullmatch(r"Page \d+ of ?|\d+", line)
    ]
    return re.sub(r"\s+", "", "".join(lines))


@pytest.mark.parametrize("spaces", [False, True], ids=["one-word", "with-spaces"])
def test_a_100000_character_text_flows_over_pages(spaces: bool) -> None:
    tokens = [f"t{i:05d}" for i in range(100_000 // 7)]
    content = (" " if spaces else "").join(tokens)
    content += "x" * (100_000 - len(content))
    assert len(content) == 100_000
    record = one_item_record(content)
    reader = read(render(record))
    assert len(reader.pages) >= 5
    whole = strip_furniture(page_texts(reader), record.run_id)
    assert content.replace(" ", "") in whole


def test_a_flood_of_line_breaks_is_summarised_not_drawn_as_blank_pages() -> None:
    record = one_item_record("before" + "\r\n" * 100_000 + "after\n\n\nend")
    reader = read(render(record))
    text = flat(" ".join(page_texts(reader)))
    assert len(reader.pages) <= 3
    assert "before (100,000 line breaks in a row) after" in text
    assert "end" in text


def test_a_long_metadata_value_is_printed_in_full_below_its_table() -> None:
    value = "v" * 5000 + "END"
    key = "k" * 300
    record = one_item_record("short", metadata={"long": value, key: "x"})
    reader = read(render(record))
    text = strip_furniture(page_texts(reader), record.run_id)
    assert value in text and key in text
    assert "5,003characters,printedinfullbelow" in text


# --------------------------------------------------------------------------- media


def test_missing_and_corrupt_images_are_reported_in_the_pdf(tmp_path: Path) -> None:
    media_dir = tmp_path / "media"
    record = stille_post_record(media_dir)
    (media_dir / "output_1.png").unlink()
    (media_dir / "output_3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    text = flat(" ".join(page_texts(read(render(record, media_dir)))))
    assert "Image missing: image file not found (output_1.png)" in text
    assert "Image missing: not a readable image (output_3.png)" in text


def test_without_a_media_folder_images_are_reported_missing(
    finished_record: ExecutionRecord,
) -> None:
    text = flat(" ".join(page_texts(read(render(finished_record, None)))))
    assert text.count("Image missing: no media folder given") == 2


def test_a_media_path_outside_the_media_folder_is_not_read(tmp_path: Path) -> None:
    media_dir = tmp_path / "media"
    media_dir.mkdir()
    write_png(tmp_path / "secret.png")
    tracker = ExecutionTracker("dada", safety_level="kids", media_dir=media_dir)
    with tracker, tracker.stage(4), tracker.loop_iteration(1):
        tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": "../secret.png"})
    reader = read(render(tracker.finalize(), media_dir))
    assert "Image missing: outside the media folder" in flat(" ".join(page_texts(reader)))


def test_a_large_image_is_scaled_down_before_embedding(tmp_path: Path) -> None:
    media_dir = tmp_path / "media"
    write_png(media_dir / "big.png", size=(2048, 1536))
    tracker = ExecutionTracker("dada", safety_level="kids", media_dir=media_dir)
    with tracker, tracker.stage(4), tracker.loop_iteration(1):
        tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": "big.png", "mime_type": "image/png"})
    reader = read(render(tracker.finalize(), media_dir))
    sizes = [
        (int(x["/Width"]), int(x["/Height"]))
        for page in reader.pages
        for resources in resources_of(page)
        for x in ((resources.get("/XObject") or {}).values())
        if x.get_object().get("/Subtype") == "/Image"
    ]
    assert sizes and all(max(w, h) <= _pdf._IMAGE_MAX_PX for w, h in sizes)


# --------------------------------------------------------------------------- hostile input

_HOSTILE_PIECES = st.sampled_from(
    [
        "<",
        "&",
        "]]>",
        "<b>",
        "</para>",
        "&amp;",
        "\x00",
        "\x01\x07\x1b",
        "\t",
        "\r\n",
        "\u2028",
        "\ud800",
        "\udfff",
        "😀",
        "👩\u200d👩\u200d👧",
        "🇩🇪",
        "\U0010ffff",
        "שלום",
        "مرحبا",
        "\u202e",
        "中文",
        "日本語",
        "한국어",
        "e\u0301\u0302\u0303",
        "\ufeff",
        "\ufffe",
        " ",
    ]
)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(_HOSTILE_PIECES, st.text(max_size=5)), max_size=30).map("".join),
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(prompt=HOSTILE_TEXT, model=HOSTILE_TEXT, key=HOSTILE_TEXT, value=HOSTILE_TEXT)
def test_hostile_text_through_the_real_tracker_always_exports(
    prompt: str, model: str, key: str, value: str, tmp_path: Path
) -> None:
    tracker = ExecutionTracker(
        prompt or "config", safety_level=value, user_id=key, session_id=model, media_dir=tmp_path
    )
    with tracker:
        with tracker.stage(1):
            tracker.log_user_input(prompt, model=model, metadata={key: value, "n": [value]})
            tracker.log_safety_check(passed=False, content=value)
        with tracker.stage(2), tracker.stage_iteration(1):
            tracker.log_interception_iteration(value, from_lang=key, to_lang=prompt, backend=model)
        with tracker.loop_iteration(1):
            with tracker.stage(3):
                tracker.log_blocked(prompt)
            with tracker.stage(4):
                tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": value or "x.png"})
                tracker.log_output_failed(key, config=prompt)
    reader = read(render(tracker.finalize(), tmp_path))
    assert len(reader.pages) >= 1
    texts = page_texts(reader)
    assert "Execution history report" in texts[0]
    assert unembedded_fonts(reader) == []


def test_styles_are_built_once_per_process() -> None:
    assert _pdf._styles() is _pdf._styles()


# Characters whose extracted text is the text itself: left-to-right scripts the
# bundled fonts cover, and markup characters. (Right-to-left text, emoji and
# controls come back reordered, shaped or as visible substitutes; their own
# tests above check them.)
_FAITHFUL = st.sampled_from(
    list("abcxyzABCXYZäöüßÄÖÜéèñçøå0123456789")
    + list("αβγδΩλπΣ")
    + list("абвгдЖЩЯ")
    + list("你好世界中文字")
    + list("こんにちはカタ")
    + list("안녕하세요")
    + list("<>&]/[!?.,;:'\"()-_=+*#@%$")
    + [" ", " ", "\n"]
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    texts=st.lists(
        st.lists(_FAITHFUL, min_size=1, max_size=120).map("".join).filter(str.strip),
        min_size=1,
        max_size=6,
    )
)
def test_every_content_string_is_found_in_the_reopened_pdf(texts: list[str]) -> None:
    """Each item's content, whitespace aside, is in the text pypdf extracts."""
    tracker = ExecutionTracker("stillepost", safety_level="kids")
    with tracker:
        with tracker.stage(2):
            for n, text in enumerate(texts, start=1):
                with tracker.stage_iteration(n):
                    tracker.log_interception_iteration(text, from_lang="de", to_lang="fr")
    reader = read(render(tracker.finalize()))
    extracted = re.sub(r"[\s\u200b]+", "", "".join(page_texts(reader)))
    for text in texts:
        assert re.sub(r"\s+", "", text) in extracted
