"""Blueprint: research queries, statistics and batch exports, behind the research token."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, json, request, stream_with_context, url_for
from pydantic import BaseModel, Field
from werkzeug.datastructures import MultiDict

import exports

from .._state import get_state, software_version
from ..research._batch import BatchRequest, stream_batch
from ..research._cursor import CursorCodec, CursorError
from ..research._queries import (
    FILTER_NAMES,
    MAX_LIMIT,
    QueryError,
    fetch_page,
    list_entry,
    parse_filters,
    parse_limit,
    public_filters,
    run_filter,
)
from ._auth import TOKEN_QUERY_NAMES, research_only
from ._downloads import format_or_404
from ._errors import ApiError

bp = Blueprint("research", __name__, url_prefix="/api")


# ----------------------------------------------------------------- answer models
# They document the answers in /api/openapi.json; the tests validate answers against them.


class RunIntegrity(BaseModel):
    """What the tracker had to drop, cut, coerce or catch in this run."""

    items_dropped: int
    fields_truncated: int
    values_coerced: int
    tracker_errors: int


class RunLinks(BaseModel):
    """Where to read or download the run."""

    record: str
    export: str = Field(description="URL template; replace {format} by a name from /api/formats.")


class RunSummary(BaseModel):
    """One run in a research list: pseudonyms only, never a raw id."""

    run_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    config: str | None
    status: str
    safety_level: str | None
    user_pseudonym: str | None
    session_pseudonym: str | None
    started_at: str = Field(description="UTC, ISO 8601.")
    ended_at: str | None
    duration_ms: float | None
    items: int
    integrity: RunIntegrity
    links: RunLinks


class RunList(BaseModel):
    """A page of runs, newest first."""

    runs: list[RunSummary]
    limit: int = Field(ge=1, le=MAX_LIMIT)
    filters: dict[str, str] = Field(description="The filters applied (session id pseudonymised).")
    next: str | None = Field(description="The next page's URL; null on the last page.")
    cursor: str | None = Field(description="The opaque cursor inside ``next``.")


class StageCounts(BaseModel):
    """Totals of one stage over the selected runs."""

    items: int
    failures: int
    blocks: int
    runs_with_failures: int
    runs_with_blocks: int


class StatsAnswer(BaseModel):
    """Counts over the selected runs."""

    runs: int
    runs_in_flight: int = Field(description="Runs started on this server and not yet stored.")
    runs_waiting_to_be_written: int = Field(
        default=0,
        description="Ended runs counted in 'runs' that are not in the store yet "
        "(held in memory after failed writes, or quarantined).",
    )
    filters: dict[str, str]
    by_status: dict[str, int]
    by_config: dict[str, int]
    by_safety_level: dict[str, int]
    by_day: dict[str, int] = Field(description="UTC day (YYYY-MM-DD) → runs started.")
    stages: dict[str, StageCounts] = Field(description="Stage number (0–5) → totals.")
    integrity: dict[str, int]


# ------------------------------------------------------------------- parameters

_LIST_PARAMS = {*FILTER_NAMES, "limit", "cursor"}
_STATS_PARAMS = set(FILTER_NAMES)
_EXPORT_PARAMS = {*FILTER_NAMES, "format"}


def _single_values(args: MultiDict[str, str], allowed: set[str]) -> dict[str, str]:
    """The query parameters as one value each; unknown or repeated ones are refused."""
    values: dict[str, str] = {}
    for name in args:
        if name in TOKEN_QUERY_NAMES:
            continue  # answered by the token check with its own message
        if name not in allowed:
            raise ApiError(
                400,
                "bad_request",
                f"Unknown query parameter; the known ones are: {', '.join(sorted(allowed))}.",
            )
        given = args.getlist(name)
        if len(given) != 1:
            raise ApiError(400, "bad_request", f"'{name}' must be given once.")
        values[name] = given[0]
    return values


def _filters(values: dict[str, str]) -> dict[str, str]:
    try:
        return parse_filters(values)
    except QueryError as exc:
        raise ApiError(400, "bad_request", str(exc) + ".") from None


# ----------------------------------------------------------------------- views


@bp.get("/runs")
@research_only
def list_runs() -> Response:
    """Runs newest first with filters and keyset pagination (``limit``, opaque ``cursor``)."""
    state = get_state()
    values = _single_values(request.args, _LIST_PARAMS)
    filters = _filters(values)
    try:
        limit = parse_limit(values.get("limit"))
    except QueryError as exc:
        raise ApiError(400, "bad_request", str(exc) + ".") from None
    codec = CursorCodec(state.settings.pseudonym_key)
    after = None
    if "cursor" in values:
        try:
            after, cursor_filters = codec.decode(values["cursor"])
        except CursorError as exc:
            raise ApiError(400, "bad_cursor", str(exc).capitalize() + ".") from None
        # The cursor carries its query's filters, so the next link needs no raw ids;
        # filters sent alongside it must be the same ones.
        if filters and filters != cursor_filters:
            raise ApiError(400, "bad_cursor", "The cursor belongs to a query with other filters.")
        filters = {k: str(v) for k, v in cursor_filters.items() if k in FILTER_NAMES}
    page = fetch_page(state.store, filters, limit, after)
    pseudonymiser = state.pseudonymiser
    runs = []
    for row in page.rows:
        summary = list_entry(row, pseudonymiser)
        summary["links"] = {
            "record": url_for("runs.get_run", run_id=row.run_id),
            "export": f"/api/runs/{row.run_id}/export/{{format}}",
        }
        runs.append(summary)
    cursor = codec.encode(page.after, filters) if page.after is not None else None
    next_url = url_for(".list_runs", limit=limit, cursor=cursor) if cursor else None
    body: dict[str, Any] = {
        "runs": runs,
        "limit": limit,
        "filters": public_filters(filters, pseudonymiser),
        "next": next_url,
        "cursor": cursor,
    }
    response = _json(body)
    if next_url is not None:
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


@bp.get("/stats")
@research_only
def stats() -> Response:
    """Counts by status, config, safety level and day; per-stage failures; integrity totals."""
    state = get_state()
    filters = _filters(_single_values(request.args, _STATS_PARAMS))
    selected = run_filter(filters)
    result = state.store.stats(selected)
    # Runs that wait to be written (held in memory, quarantined) count too: they happened.
    waiting = [r for r in state.runs.waiting_records() if selected.matches(r)]
    stored = state.store.run_ids([r.run_id for r in waiting]) if waiting else set()
    waiting = [r for r in waiting if r.run_id not in stored]
    for record in waiting:
        result.add(record)
    body = {
        "runs": result.runs,
        "runs_in_flight": state.runs.active(),
        "runs_waiting_to_be_written": len(waiting),
        "filters": public_filters(filters, state.pseudonymiser),
        "by_status": result.by_status,
        "by_config": result.by_config,
        "by_safety_level": result.by_safety_level,
        "by_day": result.by_day,
        "stages": {str(stage): counts for stage, counts in result.stages.items()},
        "integrity": result.integrity,
    }
    return _json(body)


@bp.get("/exports")
@research_only
def batch_export() -> Response:
    """A ZIP of every matching run in one format, with media and ``manifest.json``, streamed."""
    state = get_state()
    values = _single_values(request.args, _EXPORT_PARAMS)
    name = values.pop("format", None)
    if not name:
        raise ApiError(400, "bad_request", "'format' is required; see /api/formats.")
    filters = _filters(values)
    fmt = format_or_404(name)
    batch = BatchRequest(
        store=state.store,
        media_root=state.settings.data.media_root,
        pseudonymiser=state.pseudonymiser,
        format=fmt,
        run_filter=run_filter(filters),
        shown_filters=public_filters(filters, state.pseudonymiser),
        software_version=software_version(),
        options=state.settings.export_options,
    )
    try:
        # On an export thread, not this request thread: see _export_pool for why.
        chunks = state.exports.stream(stream_batch(batch))
    except exports.MissingDependencyError as exc:
        raise ApiError(501, "format_unavailable", str(exc)) from None
    stamp = _stamp()
    response = Response(stream_with_context(chunks), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="runs_{fmt.name}_{stamp}.zip"'
    response.headers["Cache-Control"] = "no-store"
    return response


# --------------------------------------------------------------------- helpers


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _json(body: dict[str, Any]) -> Response:
    response = Response(json.dumps(body), mimetype="application/json")
    # Research answers hold data about children: no shared cache may keep them.
    response.headers["Cache-Control"] = "no-store"
    return response
