"""The shared building blocks: sanitiser, time formatting, image normaliser, journey."""

from __future__ import annotations

import io
import struct
import zlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from execution_history import ExecutionRecord, ExecutionTracker, ItemType
from exports._images import normalise_image, placeholder, resolve_media
from exports._journey import Iteration, Output, build_journey
from exports._text import sanitise
from exports._timefmt import duration_human, utc_iso

# ------------------------------------------------------------------------- sanitise


def test_sanitise_replaces_illegal_characters_one_for_one() -> None:
    """C0 controls (not TAB/LF/CR), surrogates, U+FFFE/U+FFFF become U+FFFD; length kept."""
    text = "a\x00\x08\x0b\x0c\x1f\ud800\udfff\ufffe\uffff\t\n\r😀é"
    cleaned = sanitise(text)
    assert cleaned == "a" + "\ufffd" * 9 + "\t\n\r😀é"
    assert len(cleaned) == len(text)


def test_sanitise_returns_clean_text_unchanged() -> None:
    """Legal text, even exotic, comes back as the very same object (fast path)."""
    text = "Grüße <&]]> 汉字 مرحبا \u0301 \U0010fffd \x7f"
    assert sanitise(text) is text


# ------------------------------------------------------------------------- timefmt


def test_utc_formats() -> None:
    """ISO with microseconds and Z; offsets converted; a naive time read as UTC; None empty."""
    moment = datetime(2026, 11, 21, 7, 46, 7, 375789, tzinfo=timezone(timedelta(hours=1)))
    assert utc_iso(moment) == "2026-11-21T06:46:07.375789Z"
    assert utc_iso(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000000Z"
    assert utc_iso(None) == ""
    assert utc_iso(datetime(2026, 1, 2, tzinfo=UTC)).endswith("T00:00:00.000000Z")


def test_duration_human() -> None:
    """Durations read naturally from sub-millisecond to minutes."""
    assert duration_human(None) == ""
    assert duration_human(0.4) == "0.4 ms"
    assert duration_human(15.12) == "15.1 ms"
    assert duration_human(2345) == "2.35 s"
    assert duration_human(185_000) == "3 min 05 s"


# -------------------------------------------------------------------------- images


def _png_with_text(path: Path, size: tuple[int, int] = (40, 30)) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", "SECRET PROMPT")
    info.add_itxt("parameters", "SECRET ITXT")
    Image.new("RGB", size, "red").save(path, format="PNG", pnginfo=info)


def test_png_text_chunks_are_stripped(tmp_path: Path) -> None:
    """tEXt/iTXt chunks (they may carry the prompt) do not survive normalisation."""
    path = tmp_path / "a.png"
    _png_with_text(path)
    assert b"SECRET" in path.read_bytes()
    result = normalise_image(path)
    assert not result.placeholder and result.format == "PNG"
    assert b"SECRET" not in result.data
    with Image.open(io.BytesIO(result.data)) as image:
        assert image.size == (40, 30) and not image.text


def test_large_png_is_scaled_and_cleaned(tmp_path: Path) -> None:
    """An image beyond max_px is scaled to fit, aspect kept, text chunks gone."""
    path = tmp_path / "big.png"
    _png_with_text(path, (400, 200))
    result = normalise_image(path, max_px=100)
    assert (result.width, result.height) == (100, 50)
    assert b"SECRET" not in result.data
    with Image.open(io.BytesIO(result.data)) as image:
        assert image.size == (100, 50)


def test_jpeg_exif_is_stripped(tmp_path: Path) -> None:
    """A photo stays JPEG, without its EXIF block."""
    path = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x010E] = "SECRET DESCRIPTION"  # ImageDescription
    Image.new("RGB", (50, 40), "blue").save(path, format="JPEG", exif=exif)
    assert b"SECRET" in path.read_bytes()
    result = normalise_image(path)
    assert result.format == "JPEG" and result.mime_type == "image/jpeg"
    assert b"SECRET" not in result.data and b"Exif" not in result.data


@pytest.mark.parametrize("fmt", ["WEBP", "GIF", "BMP", "TIFF"])
def test_other_formats_become_png(tmp_path: Path, fmt: str) -> None:
    """WebP, GIF, BMP and TIFF are converted to PNG."""
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (30, 20), "green").save(path, format=fmt)
    result = normalise_image(path)
    assert (result.format, result.width, result.height, result.placeholder) == (
        "PNG",
        30,
        20,
        False,
    )
    with Image.open(io.BytesIO(result.data)) as image:
        assert image.format == "PNG"


def test_alpha_is_kept_even_when_jpeg_is_preferred(tmp_path: Path) -> None:
    """Transparent images stay PNG; opaque ones honour prefer='JPEG'."""
    transparent, opaque = tmp_path / "t.webp", tmp_path / "o.webp"
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(transparent, format="WEBP")
    Image.new("RGB", (20, 20), "white").save(opaque, format="WEBP")
    assert normalise_image(transparent, prefer="JPEG").format == "PNG"
    assert normalise_image(opaque, prefer="JPEG").format == "JPEG"


def _bomb_png(path: Path) -> None:
    """A tiny PNG whose header claims 100,000 × 100,000 pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "image file not found"),
        (b"", "not a readable image"),
        (b"GIF89a garbage", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a readable image"),
        ("bomb", "image too large to open safely"),
        ("truncated", "not a readable image"),
    ],
)
def test_bad_files_become_placeholders(tmp_path: Path, content: object, reason: str) -> None:
    """Missing, empty, corrupt, truncated and bomb files give a placeholder, never an error."""
    path = tmp_path / "bad.png"
    if content == "bomb":
        _bomb_png(path)
    elif content == "truncated":
        good = io.BytesIO()
        Image.new("RGB", (300, 300), "red").save(good, format="PNG")
        path.write_bytes(good.getvalue()[:200])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    result = normalise_image(path)
    assert result.placeholder and result.reason == reason
    with Image.open(io.BytesIO(result.data)) as image:
        assert image.format == "PNG" and image.size == (result.width, result.height)


def test_placeholder_for_none_and_directories(tmp_path: Path) -> None:
    """No path, or a folder instead of a file, also gives a placeholder."""
    assert normalise_image(None).placeholder
    assert normalise_image(tmp_path).reason == "image file not found"
    assert placeholder("x").data.startswith(b"\x89PNG")


def test_resolve_media_refuses_paths_outside_the_folder(tmp_path: Path) -> None:
    """``../``, absolute paths and NUL bytes never leave the run's media folder."""
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    assert resolve_media(media, "sub/a.png") == (media / "sub" / "a.png").resolve()
    assert resolve_media(media, "../secret.png") is None
    assert resolve_media(media, "/etc/passwd") is None
    assert resolve_media(media, "a\x00.png") is None
    assert resolve_media(media, "") is None
    assert resolve_media(None, "a.png") is None


# ------------------------------------------------------------------------- journey


def test_journey_groups_the_stille_post_run(finished_record: ExecutionRecord) -> None:
    """Sections 0, 1, 2, 3+4, 5; eight iterations in order; three outputs, one blocked."""
    journey = build_journey(finished_record)
    assert [section.stages for section in journey.sections] == [(0,), (1,), (2,), (3, 4), (5,)]
    stage2 = journey.section(2)
    assert [it.number for it in stage2.iterations] == list(range(1, 9))
    outputs = journey.section(4).outputs
    assert [(o.loop, o.outcome) for o in outputs] == [
        (1, "generated"),
        (2, "blocked"),
        (3, "generated"),
    ]
    assert [i.item_type for i in outputs[0].checks][-1] == ItemType.STAGE3_SAFETY_CHECK
    assert outputs[1].blocked and not outputs[1].media_items
    assert journey.header.run_id == finished_record.run_id
    assert [s.stage for s in journey.summary] == [1, 2, 3, 4]


def test_journey_places_every_item_exactly_once(finished_record: ExecutionRecord) -> None:
    """Flattening the journey gives back every item, each once, in recording order."""
    journey = build_journey(finished_record)
    assert [i.sequence for i in journey.items()] == [i.sequence for i in finished_record.items]


def test_journey_keeps_odd_orders_and_loose_items() -> None:
    """Items outside groups stay where they happened; iteration 0 is a real group."""
    tracker = ExecutionTracker("odd")
    with tracker:
        with tracker.stage(2):
            tracker.log(ItemType.INTERCEPTION_ITERATION, "loose before")
            with tracker.stage_iteration(0):
                tracker.log_interception_iteration("zero")
            tracker.log(ItemType.INTERCEPTION_ITERATION, "loose between")
            with tracker.stage_iteration(1):
                tracker.log_interception_iteration("one")
        with tracker.stage(4):
            tracker.log_output_failed("no loop")
            with tracker.loop_iteration(1):
                tracker.log_output_failed("gpu out of memory")
    journey = build_journey(tracker.finalize())
    entries = journey.section(2).entries
    kinds = [type(e).__name__ for e in entries]
    assert kinds == ["ExecutionItem", "ExecutionItem", "Iteration", "ExecutionItem", "Iteration"]
    assert isinstance(entries[2], Iteration) and entries[2].number == 0
    outputs_section = journey.section(3)
    assert isinstance(outputs_section.entries[-1], Output)
    assert outputs_section.entries[-1].outcome == "failed"
    assert [i.content for i in outputs_section.items() if i.content] == [
        "no loop",
        "gpu out of memory",
    ]
