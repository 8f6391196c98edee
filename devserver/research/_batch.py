"""Batch export: a ZIP of many runs in one format with media and a manifest, streamed in pieces.

Formats that hold many runs in one file (``FormatInfo.batch``: a REFI-QDA
project, an RO-Crate, the tidy tables) get one combined ``all_runs.<ext>``
instead of a file per run; the media files are always added per run.

The ZIP is written by ``zipfile`` into a small buffer that the generator
empties after every chunk, so memory stays flat however many runs match: one
record and one export (spooled to disk past a few MiB) at a time. Entries
carry data descriptors (the stream is never seeked back), and the
``manifest.json`` goes last, when every file's size and sha256 are known.
When the consumer stops iterating (an HTTP client that disconnected), the
generator is closed at its next ``yield`` and the work stops there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import exports
from execution_history import (
    ExecutionRecord,
    Pseudonymiser,
    RecordStore,
    RunFilter,
    is_run_id,
    media_file,
    open_media,
)

logger = logging.getLogger("devserver")

CHUNK = 64 * 1024
DEFLATE = zipfile.ZIP_DEFLATED
#: An export larger than this is spooled to a temporary file instead of memory.
SPOOL_BYTES = 4 * 1024 * 1024
MANIFEST_VERSION = "1.0"
PSEUDONYMISATION_NOTE = (
    "No raw user or session ids are in this export. Each person and session appears as a "
    "keyed pseudonym (HMAC-SHA256 with the server's DEVSERVER_PSEUDONYM_KEY, e.g. user-3f2a…, "
    "session-9c41…). The same person has the same pseudonym in every export from this server, "
    "so runs can be linked across exports; without the key, which is not part of any export, "
    "the pseudonyms cannot be turned back into ids."
)
#: Media formats that are compressed already: stored, not deflated again.
_STORED_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp3", ".ogg", ".mp4", ".webm"}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def safe_file_name(run_id: str, config: str | None, extension: str) -> str:
    """``<run_id>_<config>.<extension>`` with the config reduced to ``[A-Za-z0-9_-]``, 40 at most.

    Args:
        run_id: a validated run id.
        config: the run's config name (untrusted text; may be None).
        extension: the format's extension without a dot (e.g. ``csv.zip``).
    """
    label = _SAFE_NAME.sub("-", config or "").strip("-_")[:40] or "run"
    return f"{run_id}_{label}.{extension}"


class _Buffer:
    """The ZIP's output: collects what ``zipfile`` writes until the generator hands it on."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.pending = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self.pending += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: the generator decides when bytes leave."""

    def close(self) -> None:
        """Nothing to release."""

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self.pending = 0
        return data


@dataclass
class BatchReport:
    """What a batch export contained; filled while the ZIP is written."""

    runs: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)
    missing_media: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    bytes_written: int = 0
    complete: bool = False


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """Everything a batch export needs, gathered before the first byte is sent.

    Attributes:
        store: where the records are read from.
        media_root: ``<data_dir>/media``.
        pseudonymiser: turns raw ids into pseudonyms in every file.
        format: the format's ``FormatInfo``.
        run_filter: which runs.
        shown_filters: the filters as the manifest shows them (pseudonymised).
        software_version: this server's name and version.
        options: export options (licence, organisation …) for the formats that use them.
    """

    store: RecordStore
    media_root: Path
    pseudonymiser: Pseudonymiser
    format: exports.FormatInfo
    run_filter: RunFilter
    shown_filters: dict[str, str]
    software_version: str
    options: Mapping[str, str] = field(default_factory=dict)


def _zip_info(name: str, moment: datetime, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=moment.timetuple()[:6])
    info.compress_type = compress
    info.external_attr = 0o644 << 16
    return info


def stream_batch(
    batch: BatchRequest,
    *,
    summary: BatchReport | None = None,
    on_run: Callable[[str], None] | None = None,
) -> Iterator[bytes]:
    """The ZIP of every run matching ``batch.run_filter``, as a sequence of byte chunks.

    Args:
        batch: what to export.
        summary: filled as the ZIP is written (for a caller that reports on it).
        on_run: called with each run id once its files are in the ZIP (progress bars).

    Yields:
        Pieces of the ZIP file, each at most a little over ``CHUNK`` bytes (one
        compressed export may be larger).

    Raises:
        exports.MissingDependencyError: when the format's library is missing
            (raised before the first byte).
    """
    info = exports.get_format(batch.format.name)
    if not info.available:  # fail before the first byte, not inside a half-sent ZIP
        raise exports.MissingDependencyError(info.name, ", ".join(info.requires), info.extra)
    return _generate(batch, summary or BatchReport(), on_run)


def _generate(
    batch: BatchRequest, summary: BatchReport, on_run: Callable[[str], None] | None
) -> Iterator[bytes]:
    started = datetime.now(UTC)
    buffer = _Buffer()
    try:
        with zipfile.ZipFile(buffer, "w", allowZip64=True) as archive:
            combined = batch.format.batch
            for record in _records(batch):
                if not combined:
                    yield from _add_run(batch, archive, buffer, record, started, summary)
                if batch.format.batch_media == "beside":  # else inside the file, or of no use
                    run_folder = f"runs/{record.run_id}"
                    media_dir = _media_dir(batch, record.run_id)
                    yield from _add_media(
                        archive, buffer, record, media_dir, run_folder, started, summary
                    )
                summary.runs += 1
                if on_run is not None:
                    on_run(record.run_id)
            if combined:
                yield from _add_combined(batch, archive, buffer, started, summary)
            manifest = _manifest(batch, summary, started)
            data = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
            info = _zip_info("manifest.json", started, DEFLATE)
            with archive.open(info, "w") as entry:
                entry.write(data)
    except GeneratorExit:
        logger.info("batch export stopped after %d run(s): the client went away", summary.runs)
        raise
    tail = buffer.take()
    summary.bytes_written += len(tail)
    summary.complete = True
    yield tail


def _records(batch: BatchRequest) -> Iterator[ExecutionRecord]:
    """Every matching record, newest first, one at a time (erased ones are skipped)."""
    for row in batch.store.iter_runs(batch.run_filter):
        record = batch.store.load(row.run_id)
        if record is not None:  # None: erased while we were exporting
            yield record


def _media_dir(batch: BatchRequest, run_id: str) -> Path | None:
    return batch.media_root / run_id if is_run_id(run_id) else None


def _add_combined(
    batch: BatchRequest,
    archive: zipfile.ZipFile,
    buffer: _Buffer,
    moment: datetime,
    summary: BatchReport,
) -> Iterator[bytes]:
    """One file holding every run, for formats made for that (a QDA project, a crate)."""
    fmt = batch.format
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        try:
            exports.export_batch(
                ((record, _media_dir(batch, record.run_id)) for record in _records(batch)),
                fmt.name,
                cast(BinaryIO, spool),
                pseudonymiser=batch.pseudonymiser,
                options=batch.options,
            )
        except exports.ExportError as exc:
            logger.warning("batch export: the combined %s file failed: %s", fmt.name, exc)
            summary.failed.append(
                {"run_id": "*", "error": f"the combined {fmt.name} export failed"}
            )
            return
        size = spool.tell()
        spool.seek(0)
        compress = zipfile.ZIP_STORED if fmt.media_type == "application/zip" else DEFLATE
        info = _zip_info(f"all_runs.{fmt.extension}", moment, compress)
        yield from _copy(archive, buffer, summary, info, spool, size)
        summary.files[-1].update({"kind": "export", "runs": summary.runs})


def _emit(buffer: _Buffer, summary: BatchReport) -> Iterator[bytes]:
    if buffer.pending >= CHUNK:
        data = buffer.take()
        summary.bytes_written += len(data)
        yield data


def _copy(
    archive: zipfile.ZipFile,
    buffer: _Buffer,
    summary: BatchReport,
    info: zipfile.ZipInfo,
    source: IO[bytes],
    size: int,
) -> Iterator[bytes]:
    """Copy ``source`` into a new entry chunk by chunk; records its path, size and sha256."""
    digest = hashlib.sha256()
    written = 0
    with archive.open(info, "w", force_zip64=size > 1 << 30) as entry:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            written += len(chunk)
            entry.write(chunk)
            yield from _emit(buffer, summary)
    summary.files.append({"path": info.filename, "size": written, "sha256": digest.hexdigest()})


def _add_run(
    batch: BatchRequest,
    archive: zipfile.ZipFile,
    buffer: _Buffer,
    record: ExecutionRecord,
    moment: datetime,
    summary: BatchReport,
) -> Iterator[bytes]:
    run_id = record.run_id
    folder = f"runs/{run_id}"
    media_dir = _media_dir(batch, run_id)
    fmt = batch.format
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        try:
            exports.export(
                record,
                fmt.name,
                cast(BinaryIO, spool),
                media_dir=media_dir,
                pseudonymiser=batch.pseudonymiser,
                options=batch.options,
            )
        except exports.ExportError as exc:
            # One broken run must not cost the researcher the other thousand.
            logger.warning("batch export: run %s failed in %s: %s", run_id, fmt.name, exc)
            summary.failed.append({"run_id": run_id, "error": f"the {fmt.name} export failed"})
        else:
            size = spool.tell()
            spool.seek(0)
            name = f"{folder}/{safe_file_name(run_id, record.config_name, fmt.extension)}"
            compress = zipfile.ZIP_STORED if fmt.media_type == "application/zip" else DEFLATE
            info = _zip_info(name, moment, compress)
            yield from _copy(archive, buffer, summary, info, spool, size)
            summary.files[-1].update({"run_id": run_id, "kind": "export"})


def _add_media(
    archive: zipfile.ZipFile,
    buffer: _Buffer,
    record: ExecutionRecord,
    media_dir: Path | None,
    folder: str,
    moment: datetime,
    summary: BatchReport,
) -> Iterator[bytes]:
    seen: set[str] = set()
    for item in record.items:
        if item.media is None or item.media.path in seen:
            continue
        relative = item.media.path
        seen.add(relative)
        path = media_file(media_dir, relative) if media_dir is not None else None
        if path is None:
            summary.missing_media.append(
                {"run_id": record.run_id, "path": relative[:200], "reason": "unsafe path"}
            )
            continue
        try:
            handle = os.fdopen(open_media(path), "rb")
        except OSError:
            summary.missing_media.append(
                {"run_id": record.run_id, "path": relative, "reason": "file not found"}
            )
            note = (
                f"The media file {relative} of run {record.run_id} was missing when this "
                "export was made; see missing_media in manifest.json.\n"
            ).encode()
            info = _zip_info(f"{folder}/media/{relative}.missing.txt", moment, DEFLATE)
            with archive.open(info, "w") as entry:
                entry.write(note)
            summary.files.append(
                {
                    "path": info.filename,
                    "size": len(note),
                    "sha256": hashlib.sha256(note).hexdigest(),
                    "run_id": record.run_id,
                    "kind": "placeholder",
                }
            )
            continue
        with handle:
            size = path.stat().st_size
            stored = path.suffix.lower() in _STORED_SUFFIXES
            compress = zipfile.ZIP_STORED if stored else DEFLATE
            info = _zip_info(f"{folder}/media/{relative}", moment, compress)
            yield from _copy(archive, buffer, summary, info, handle, size)
        entry_meta: dict[str, Any] = {"run_id": record.run_id, "kind": "media"}
        recorded = item.media.sha256
        if recorded:
            entry_meta["matches_record"] = recorded == summary.files[-1]["sha256"]
        summary.files[-1].update(entry_meta)


def _manifest(batch: BatchRequest, summary: BatchReport, started: datetime) -> dict[str, Any]:
    fmt = batch.format
    return {
        "manifest_version": MANIFEST_VERSION,
        "exported_at": started.isoformat().replace("+00:00", "Z"),
        "software_version": batch.software_version,
        "format": {"name": fmt.name, "media_type": fmt.media_type, "extension": fmt.extension},
        "filters": batch.shown_filters,
        "pseudonymisation": PSEUDONYMISATION_NOTE,
        "runs": summary.runs,
        "files": summary.files,
        "missing_media": summary.missing_media,
        "failed_runs": summary.failed,
    }
