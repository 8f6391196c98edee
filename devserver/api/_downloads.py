"""Blueprint: the export formats, and the download of one run in one format."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from typing import Any, BinaryIO, cast

from flask import Blueprint, Response, request
from pydantic import BaseModel, Field
from werkzeug.wsgi import wrap_file

import exports
from execution_history import RunStatus

from .._state import get_state, software_version
from ..research._batch import CHUNK, safe_file_name
from ._errors import ApiError

logger = logging.getLogger("devserver")

bp = Blueprint("downloads", __name__, url_prefix="/api")

#: An export larger than this is spooled to a temporary file instead of memory.
SPOOL_BYTES = 8 * 1024 * 1024


class FormatEntry(BaseModel):
    """One export format."""

    name: str = Field(description="The name to put in /api/runs/{run_id}/export/{format}.")
    media_type: str
    extension: str = Field(description="File extension without a dot, e.g. 'pdf' or 'csv.zip'.")
    description: str
    available: bool = Field(description="Whether its libraries are installed on this server.")
    batch: bool = Field(description="Whether it can hold many runs in one file.")
    extra: str = Field(description="The package extra that installs its libraries.")


class FormatList(BaseModel):
    """Every registered export format."""

    formats: list[FormatEntry]


def format_or_404(name: str) -> exports.FormatInfo:
    """The registered format ``name``.

    Raises:
        ApiError: 404 naming the known formats (also in ``error.formats``).
    """
    try:
        return exports.get_format(name)
    except exports.UnknownFormatError as exc:
        # The message lists the formats but never echoes the (untrusted, maybe huge) name.
        raise ApiError(
            404,
            "unknown_format",
            f"There is no such export format; known formats: {', '.join(exc.known)}.",
            details={"formats": exc.known},
        ) from None


@bp.get("/formats")
def list_formats() -> Response:
    """Every export format: name, media type, file extension, description, availability."""
    entries = [
        FormatEntry(
            name=info.name,
            media_type=info.media_type,
            extension=info.extension,
            description=info.description,
            available=info.available,
            batch=info.batch,
            extra=info.extra,
        )
        for info in exports.formats()
    ]
    response = Response(FormatList(formats=entries).model_dump_json(), mimetype="application/json")
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


def _etag(stored_json: str, fmt: str) -> str:
    state = get_state()
    digest = hashlib.sha256()
    for part in (
        stored_json,
        fmt,
        software_version(),
        # Changes when the pseudonym key changes (the file would change), reveals nothing.
        state.pseudonymiser.user("etag"),
    ):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


@bp.get("/runs/<run_id:run_id>/export/<fmt>")
def export_run(run_id: str, fmt: str) -> Response:
    """One run as a download in format ``fmt``, pseudonymised, with an ``ETag``.

    Answers 404 for an unknown run or format (listing the formats), 409 while
    the run is still running, 304 when ``If-None-Match`` holds the current ETag.
    """
    state = get_state()
    info = format_or_404(fmt)
    found = state.runs.lookup(run_id)
    if found is None:
        raise ApiError(404, "not_found", "There is no run with this id.")
    if found.in_flight and found.record().status == RunStatus.RUNNING:
        raise ApiError(
            409,
            "run_in_progress",
            "The run is still running; export it once it has ended "
            f"(follow it at /api/runs/{run_id}/progress).",
        )
    stored = found.json()
    etag = _etag(stored, info.name)
    headers = {"ETag": f'"{etag}"', "Cache-Control": "private, no-cache"}
    if request.if_none_match.contains_weak(etag):
        return Response(status=304, headers=headers)
    if not info.available:
        raise ApiError(
            501,
            "format_unavailable",
            f"The {info.name} format is not installed on this server "
            f"(pip install 'execution-history[{info.extra}]').",
        )
    record = found.record()
    # Not a with-block: a large export is closed by the response after the last byte.
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
    try:
        exports.export(
            record,
            info.name,
            cast(BinaryIO, spool),
            media_dir=state.runs.media_dir(run_id),
            pseudonymiser=state.pseudonymiser,
            options=state.settings.export_options,
        )
    except exports.MissingDependencyError as exc:
        spool.close()
        raise ApiError(501, "format_unavailable", str(exc)) from None
    except exports.ExportError:
        spool.close()
        logger.exception("export of run %s as %s failed", run_id, info.name)
        raise ApiError(
            500, "export_failed", "The export failed on the server; the error is logged."
        ) from None
    size = spool.tell()
    spool.seek(0)
    body: Any
    if size <= SPOOL_BYTES:  # in memory already: hand the bytes over, free the spool now
        body = spool.read()
        spool.close()
    else:  # on disk: streamed in chunks, closed by the server after the last one
        body = wrap_file(request.environ, spool, buffer_size=CHUNK)
    name = safe_file_name(run_id, record.config_name, info.extension)
    response = Response(body, mimetype=info.media_type, headers=headers, direct_passthrough=True)
    response.content_length = size
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
