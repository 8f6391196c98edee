"""Sizes and checksums of a run's media files, read from its media folder."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path, PurePosixPath

from ._record import ExecutionRecord, MediaRef


def complete_media(record: ExecutionRecord, media_dir: Path | None) -> ExecutionRecord:
    """Fill in size and sha256 of media files logged without them (reads the files).

    Runs off the pipeline's thread (the finaliser's). A missing or unreadable
    file, or a path that leaves the run's folder (a symbolic link included),
    leaves the fields empty: nothing is invented.
    """
    if media_dir is None:
        return record
    changed = False
    items = []
    for item in record.items:
        media = item.media
        if media is not None and (media.size_bytes is None or media.sha256 is None):
            filled = _measure(media, media_dir)
            if filled is not media:
                item = item.model_copy(update={"media": filled})
                changed = True
        items.append(item)
    return record.model_copy(update={"items": items}) if changed else record


def media_file(media_dir: Path | None, relative: str | None) -> Path | None:
    """Where a media reference points inside a run's media folder, or None when unsafe.

    A media path is data: it must not lead anywhere else. Refused (None): no
    folder or no path, a NUL or a backslash, an absolute path, ``..`` or ``.``
    parts, and any symbolic link on the way (the run's folder itself
    included), so neither a link planted in a run's folder nor a folder
    replaced by a link can make a reader serve, hash or embed a file from
    elsewhere. A safe path is returned even when nothing is there yet: open
    it with ``open_media``, which also refuses anything but a regular file
    and cannot be led through a link swapped in between.
    """
    if media_dir is None or not relative or len(relative) > 1024:
        return None
    if "\x00" in relative or "\\" in relative:
        return None
    pure = PurePosixPath(relative)
    if not pure.parts or pure.is_absolute() or any(p in ("..", ".") for p in pure.parts):
        return None
    path = media_dir
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            return None
        for part in pure.parts:
            path = path / part
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return None
    except FileNotFoundError:
        return media_dir.joinpath(*pure.parts)  # nothing there: opening it says so
    except (OSError, ValueError):
        return None
    return path


def open_media(path: Path) -> int:
    """A read-only descriptor of ``path`` (from ``media_file``) that never follows a link.

    Raises:
        FileNotFoundError: nothing there, or not a regular file (a folder, a FIFO).
        OSError: the last part is a link (swapped in since it was checked), or unreadable.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileNotFoundError(f"not a regular file: {path.name}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _measure(media: MediaRef, media_dir: Path) -> MediaRef:
    path = media_file(media_dir, media.path)
    if path is None:
        return media
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(open_media(path), "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except (OSError, ValueError):
        return media
    return media.model_copy(update={"size_bytes": size, "sha256": digest.hexdigest()})
