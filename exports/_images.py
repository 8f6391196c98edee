"""Turn a run's image file into safe, bounded PNG or JPEG bytes, or a drawn placeholder.

Images are untrusted input: they may be missing, truncated, a decompression
bomb, an animated WebP, or carry the prompt in a PNG text chunk or in EXIF.
``normalise_image`` never raises; every document format embeds its result.

Output format rule: PNG by default (lossless, keeps alpha). A JPEG source (a
photo) is re-encoded as JPEG, and with ``prefer="JPEG"`` any image without
alpha is, because a photo stored as PNG is several times larger. A PNG that is
already small enough is not re-encoded: its chunks are filtered instead (only
pixel and colour chunks are kept), which is lossless and fast.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from execution_history import media_file, open_media

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: Files above this size are not opened at all.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Images above this many pixels are treated as decompression bombs (Pillow's own
#: limit is about 89 M; a pipeline output is a few megapixels).
MAX_PIXELS = 40_000_000
JPEG_QUALITY = 88

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG chunks that carry pixels or colour only; everything else (tEXt, zTXt, iTXt,
#: eXIf, tIME, APNG frames, private chunks) is dropped because it may carry text.
_SAFE_PNG_CHUNKS = frozenset(
    {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"pHYs"}
)


@dataclass(frozen=True, slots=True)
class NormalisedImage:
    """Image bytes ready to embed in a document.

    Attributes:
        data: the encoded image, free of text chunks and EXIF.
        format: ``"PNG"`` or ``"JPEG"``.
        mime_type: ``image/png`` or ``image/jpeg``.
        width, height: pixel size of ``data``.
        placeholder: True when ``data`` is a drawn "image missing" picture.
        reason: why the placeholder was drawn (None for a real image).
    """

    data: bytes
    format: str
    mime_type: str
    width: int
    height: int
    placeholder: bool
    reason: str | None


class _Unusable(Exception):
    """The file cannot be shown; the message is the placeholder's reason."""


def resolve_media(media_dir: Path | None, relative: str | None) -> Path | None:
    """Where a media reference points inside ``media_dir``, or None when that is unsafe.

    A record's media path is data: ``../``, an absolute path or a symbolic
    link anywhere on the way (the run's folder included) must not let an
    export embed a file from elsewhere on the server. The rules are the
    core's (``media_file``); open the result with ``open_media``.
    """
    return media_file(media_dir, relative)


def normalise_image(
    path: Path | None, *, max_px: int = 1600, prefer: str = "PNG"
) -> NormalisedImage:
    """Read, check and clean an image file for embedding; never raises.

    Args:
        path: the image file, or None when the item has no usable file.
        max_px: the longest side of the result; larger images are scaled down.
        prefer: ``"PNG"`` (default) or ``"JPEG"`` for images without alpha.

    Returns:
        The cleaned image, or a placeholder PNG (``placeholder=True`` and
        ``reason`` set) when the file is missing, unreadable, unsafe or not an image.
    """
    max_px = max(16, int(max_px))
    try:
        return _normalise(path, max_px, prefer.upper())
    except _Unusable as exc:
        return placeholder(str(exc))
    except Exception:  # never raise for any input file (DESIGN.md §6: contained)
        return placeholder("not a readable image")


def _normalise(path: Path | None, max_px: int, prefer: str) -> NormalisedImage:
    from PIL import Image

    if path is None:
        raise _Unusable("no image file")
    try:
        with os.fdopen(open_media(path), "rb") as handle:
            if os.fstat(handle.fileno()).st_size > MAX_FILE_BYTES:
                raise _Unusable("image file too large")
            raw = handle.read()
    except FileNotFoundError as exc:
        raise _Unusable("image file not found") from exc
    except OSError as exc:
        raise _Unusable("image file not readable") from exc
    with warnings.catch_warnings():
        # Pillow warns about odd-but-harmless files; a bomb warning means unsafe.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(raw)) as probe:
                width, height = probe.size
                if width * height > MAX_PIXELS:
                    raise _Unusable("image too large to open safely")
                probe.verify()
            image = Image.open(io.BytesIO(raw))
            source_format = image.format or ""
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _Unusable("image too large to open safely") from exc
        except _Unusable:
            raise
        except Exception as exc:
            raise _Unusable("not a readable image") from exc
        if (
            source_format == "PNG"
            and max(width, height) <= max_px
            and not getattr(image, "is_animated", False)
        ):
            filtered = _filter_png_chunks(raw)
            if filtered is not None:
                return NormalisedImage(filtered, "PNG", "image/png", width, height, False, None)
        return _reencode(image, source_format, max_px, prefer)


def _reencode(image: PILImage, source_format: str, max_px: int, prefer: str) -> NormalisedImage:
    from PIL import Image, ImageOps

    if getattr(image, "is_animated", False):
        image.seek(0)  # the first frame stands for an animation
    try:
        # Photos are stored sideways with an EXIF hint; the hint is stripped below.
        image = ImageOps.exif_transpose(image) or image
    except Exception:
        pass
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        image = image.convert("RGBA")
    elif image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    if max(image.size) > max_px:
        image = image.copy()
        image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    use_jpeg = not has_alpha and (source_format in ("JPEG", "MPO") or prefer == "JPEG")
    out = io.BytesIO()
    # A fresh save without exif=/pnginfo= writes no metadata at all.
    if use_jpeg:
        image.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=False)
        fmt, mime = "JPEG", "image/jpeg"
    else:
        image.save(out, format="PNG", compress_level=3)
        fmt, mime = "PNG", "image/png"
    width, height = image.size
    return NormalisedImage(out.getvalue(), fmt, mime, width, height, False, None)


def _filter_png_chunks(raw: bytes) -> bytes | None:
    """The PNG with only pixel and colour chunks, or None if its structure is odd."""
    if not raw.startswith(_PNG_SIGNATURE):
        return None
    parts = [_PNG_SIGNATURE]
    pos = len(_PNG_SIGNATURE)
    end = len(raw)
    while pos + 12 <= end:
        (length,) = struct.unpack(">I", raw[pos : pos + 4])
        kind = raw[pos + 4 : pos + 8]
        stop = pos + 12 + length
        if stop > end:
            return None
        if kind in _SAFE_PNG_CHUNKS:
            parts.append(raw[pos:stop])
        pos = stop
        if kind == b"IEND":
            return b"".join(parts)
    return None


@lru_cache(maxsize=16)
def placeholder(reason: str) -> NormalisedImage:
    """A drawn PNG saying the image is missing, with ``reason`` underneath.

    Args:
        reason: a short, fixed explanation (never user text); also stored in ``reason``.

    Returns:
        The placeholder image (cached per reason: the reasons are a small fixed set).
    """
    width, height = 480, 270
    try:
        from PIL import Image, ImageDraw

        image = Image.new("RGB", (width, height), (238, 238, 238))
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, width - 1, height - 1), outline=(150, 150, 150), width=3)
        draw.line((0, 0, width - 1, height - 1), fill=(205, 205, 205), width=2)
        draw.line((0, height - 1, width - 1, 0), fill=(205, 205, 205), width=2)
        draw.rectangle((40, 100, width - 40, 170), fill=(255, 255, 255), outline=(150, 150, 150))
        draw.text((width // 2, 122), "Image missing", fill=(60, 60, 60), anchor="mm")
        draw.text((width // 2, 148), reason[:60], fill=(90, 90, 90), anchor="mm")
        out = io.BytesIO()
        image.save(out, format="PNG")
        data = out.getvalue()
    except Exception:  # even without a working Pillow, a valid PNG comes back
        data = _grey_png(width, height)
    return NormalisedImage(data, "PNG", "image/png", width, height, True, reason)


def _grey_png(width: int, height: int) -> bytes:
    """A plain grey PNG written by hand, the placeholder's last resort."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xcc" * width for _ in range(height))
    return (
        _PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
