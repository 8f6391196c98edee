"""Sizes and checksums of a run's media files, read from its media folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

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


def _measure(media: MediaRef, media_dir: Path) -> MediaRef:
    try:
        root = media_dir.resolve()
        path = (root / media.path).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return media
        digest = hashlib.sha256()
        size = 0
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except (OSError, ValueError):
        return media
    return media.model_copy(update={"size_bytes": size, "sha256": digest.hexdigest()})
