"""Blueprint: start a run, read its record, fetch its media (DESIGN.md §4)."""

from __future__ import annotations

import concurrent.futures
import os
from typing import Any

from flask import Blueprint, Response, jsonify, request, send_file, url_for

from execution_history import RunSummary, media_file, open_media, summarise_run

from .._state import get_state
from ..pipeline._media_names import MEDIA_NAME, MEDIA_TYPES
from ..pipeline._runs import RunResult, ServiceUnavailable
from ._auth import check_research_token
from ._errors import ApiError
from ._run_body import less_protective, parse_run_body

bp = Blueprint("runs", __name__, url_prefix="/api/runs")

#: ``?wait=`` as OpenAPI serialises a boolean; anything else is refused, not read as false
#: (``?wait=yes`` used to start a run and answer at once, which was not what was asked).
_WAIT = {"true": True, "false": False}


def _links(run_id: str) -> dict[str, str]:
    return {
        "record": url_for("runs.get_run", run_id=run_id),
        "progress": url_for("progress.get_progress", run_id=run_id),
        "events": url_for("events.events", run_id=run_id),
    }


def _summary_answer(summary: RunSummary) -> dict[str, Any]:
    def media_url(path: str) -> str | None:
        # a path with a folder cannot be served by the media route
        return None if "/" in path else url_for("runs.get_media", run_id=summary.run_id, name=path)

    return summary.to_json(media_url)


def _wait() -> bool:
    """``?wait=``: ``true`` or ``false``, given at most once; absent is false.

    Raises:
        ApiError: 400 ``invalid_wait`` for any other value, before a run is started.
    """
    given = request.args.getlist("wait")
    if not given:
        return False
    if len(given) > 1 or given[0] not in _WAIT:
        raise ApiError(400, "invalid_wait", "'wait' must be true or false, given once.")
    return _WAIT[given[0]]


@bp.post("")
def start_run() -> tuple[Response, int, dict[str, str]]:
    """Validate the body and start the run; ``?wait=true`` answers when it has ended.

    Returns 202 ``{"run_id", "status", "links"}``; with ``wait`` 200 and a
    ``summary`` (or 202 when the run outlasts the wait timeout).
    """
    state = get_state()
    wait = _wait()
    body = request.get_json(silent=True)
    workshop = state.settings.safety_level
    parsed = parse_run_body(
        body,
        state.configs,
        languages=getattr(state.backend, "languages", ()),
        max_input_chars=state.settings.max_input_chars,
        default_level=workshop,
    )
    level = parsed.request.safety_level
    if less_protective(level, workshop):
        # The age level is the workshop's, never the child's: only a researcher may loosen it.
        if not request.headers.get("Authorization"):
            raise ApiError(
                403,
                "safety_level_not_allowed",
                f"This workshop runs at the age level '{workshop}'; the less protective level "
                f"'{level}' needs the research token.",
            )
        check_research_token()
        set_by = "research token"
    else:
        set_by = "request" if level != workshop else "workshop"
    try:
        run = state.runs.submit(
            parsed.request,
            user_id=parsed.user_id,
            session_id=parsed.session_id,
            device_id=parsed.device_id,
            level_set_by=set_by,
        )
    except ServiceUnavailable as exc:
        raise ApiError(
            503, "unavailable", str(exc), headers={"Retry-After": str(exc.retry_after_s)}
        ) from None
    headers = {"Location": url_for("runs.get_run", run_id=run.run_id)}
    answer: dict[str, Any] = {
        "run_id": run.run_id,
        "status": "running",
        "links": _links(run.run_id),
    }
    if wait:
        try:
            result: RunResult = run.future.result(timeout=state.settings.wait_timeout_s)
        except concurrent.futures.TimeoutError:
            return jsonify(answer), 202, headers
        except concurrent.futures.CancelledError:
            raise ApiError(
                503,
                "unavailable",
                "The server shut down before the run started.",
                headers={"Retry-After": "10"},
            ) from None
        # The answer promises a stored run: wait for the finaliser here, on the
        # request's thread, not on the worker that ran the pipeline. The summary
        # comes from the record the finaliser built (none when tracking is off).
        run.tracker.wait_until_stored()
        record = run.tracker.record()
        summary = summarise_run(record) if record is not None else None
        answer["status"] = str(summary.status if summary is not None else result.status)
        answer["summary"] = _summary_answer(summary) if summary is not None else None
        return jsonify(answer), 200, headers
    return jsonify(answer), 202, headers


@bp.get("/<run_id:run_id>")
def get_run(run_id: str) -> Response:
    """The run's record as JSON, with people's ids replaced by keyed pseudonyms."""
    state = get_state()
    found = state.runs.lookup(run_id)
    if found is None:
        raise ApiError(404, "not_found", "There is no run with this id.")
    public = found.record().pseudonymised(state.pseudonymiser)
    response = Response(public.model_dump_json(), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/<run_id:run_id>/media/<name>")
def get_media(run_id: str, name: str) -> Response:
    """One media file of the run, with its content type; names are validated first."""
    suffix = name.rsplit(".", 1)[-1].lower()
    if not MEDIA_NAME.fullmatch(name) or suffix not in MEDIA_TYPES:
        raise ApiError(404, "not_found", "There is no such media file.")
    state = get_state()
    # Only a regular file inside the run's own folder, never through a symbolic link
    # (the folder, or a link planted in it, could otherwise serve any file of the server).
    path = media_file(state.runs.media_dir(run_id), name)
    try:
        handle = os.fdopen(open_media(path), "rb") if path is not None else None
    except OSError:
        handle = None
    if handle is None:
        raise ApiError(404, "not_found", "There is no such media file.")
    response = send_file(
        handle,
        mimetype=MEDIA_TYPES[suffix],
        max_age=3600,
        last_modified=os.fstat(handle.fileno()).st_mtime,
        conditional=True,
    )
    return response
