"""How a run's media files are named and typed: one rule for the orchestrator, the media
route and the live feed."""

from __future__ import annotations

import re

#: Media names the orchestrator writes: no folders, no leading dot, one known suffix.
MEDIA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,120}\.[a-z0-9]{2,5}")
MEDIA_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "glb": "model/gltf-binary",
}


def media_name(j: int, output_name: str, suffix: str) -> str:
    """The file name of output ``j`` (named ``output_name`` in its config) with ``suffix``."""
    return f"output_{j}_{output_name}.{suffix}"
