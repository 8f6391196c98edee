"""The OpenAPI 3.1 description of the HTTP API, built from the pydantic models (/api/openapi.json).

Schemas come from the models (``ExecutionRecord``, the research answers, the
formats…) through pydantic's JSON Schema generator; this module only adds
the paths, parameters and status codes. An operation is described only when
the app has its route, and a test checks that every route is described.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, json
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

import execution_history
import exports
from execution_history import RUN_ID_PATTERN, ExecutionRecord

from .._state import get_state, software_version
from ..pipeline.safety import SAFETY_LEVELS
from ..research._cursor import MAX_CURSOR_CHARS
from ..research._queries import (
    CONFIG_NAME,
    DEFAULT_LIMIT,
    MAX_FILTER_CHARS,
    MAX_LIMIT,
    MOMENT,
    STATUSES,
)
from ._downloads import FormatList
from ._events import LARGEST_SEQUENCE
from ._health import HealthAnswer
from ._research import RunList, StatsAnswer
from ._run_body import MAX_ID_CHARS, MAX_SEED, NOT_BLANK, SPACE_CLASS

bp = Blueprint("openapi", __name__, url_prefix="/api")

_REF = "#/components/schemas/{model}"


class ErrorDetail(BaseModel):
    """What went wrong, for people (``message``) and programs (``code``)."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer."""

    error: ErrorDetail


class RunBody(BaseModel):
    """The body of ``POST /api/runs``; the server refuses any other field (400)."""

    model_config = ConfigDict(extra="forbid")  # additionalProperties: false, as parse_run_body

    config: str = Field(description="A config name from /api/configs.")
    # maxLength and the NUL rule are set per server in _components (MAX_INPUT_CHARS).
    input: str = Field(description="The child's prompt; not only white space, no NUL.")
    safety_level: str = Field(default="kids", json_schema_extra={"enum": list(SAFETY_LEVELS)})
    # Ids: at most MAX_ID_CHARS characters, not only white space (_run_body._optional_id).
    user_id: str | None = Field(
        default=None, max_length=MAX_ID_CHARS, pattern=NOT_BLANK, description="Stored, never shown."
    )
    session_id: str | None = Field(
        default=None, max_length=MAX_ID_CHARS, pattern=NOT_BLANK, description="Stored, never shown."
    )
    device_id: str | None = Field(
        default=None, max_length=MAX_ID_CHARS, pattern=NOT_BLANK, description="Stored, never shown."
    )
    # The enum is this server's backend's languages, set in _components.
    language: str | None = Field(default=None, description="The prompt's language code.")
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)


class RunStarted(BaseModel):
    """The answer of ``POST /api/runs``."""

    run_id: str
    status: str
    links: dict[str, str]
    summary: dict[str, Any] | None = Field(default=None, description="With ?wait=true only.")


class ConfigList(BaseModel):
    """The pipeline configs."""

    configs: list[dict[str, Any]]


def _models() -> list[type[BaseModel]]:
    models: list[type[BaseModel]] = [
        ExecutionRecord,
        RunList,
        StatsAnswer,
        FormatList,
        ErrorBody,
        RunBody,
        RunStarted,
        ConfigList,
        HealthAnswer,
    ]
    progress = getattr(execution_history, "RunProgress", None)
    if isinstance(progress, type) and issubclass(progress, BaseModel):
        models.append(progress)
    return models


def _components(configs: list[str], languages: list[str], max_input_chars: int) -> dict[str, Any]:
    pairs = [(model, "serialization") for model in _models()]
    _, top = models_json_schema(pairs, ref_template=_REF)  # type: ignore[arg-type]
    schemas = dict(top.get("$defs", {}))
    body = schemas["RunBody"]["properties"]
    if configs:  # this server's configs: generated clients (and fuzzers) can start real runs
        body["config"]["enum"] = configs
    # What parse_run_body takes, per server: a prompt of at most MAX_INPUT_CHARS characters,
    # without NUL, not only white space; a language the backend knows (none: only null).
    body["input"].update(
        minLength=1,
        maxLength=max_input_chars,
        pattern=f"^[^\\u0000]*[^{SPACE_CLASS}\\u0000][^\\u0000]*$",
    )
    language = [{"type": "string", "enum": languages}] if languages else []
    body["language"]["anyOf"] = [*language, {"type": "null"}]
    return schemas


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(model=name)}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _links_to_run(pointer: str) -> dict[str, Any]:
    """OpenAPI links from an answer naming a run (at JSON ``pointer``) to the run's GET routes.

    They tell clients (and stateful fuzzers) where a run id can be used next, so a
    generated sequence reaches real runs instead of random ids.
    """
    targets = {
        "GetRun": "getRun",
        "GetProgress": "getProgress",
        "StreamEvents": "streamEvents",
        "ExportRun": "exportRun",
    }
    return {
        name: {"operationId": operation, "parameters": {"run_id": f"$response.body#{pointer}"}}
        for name, operation in targets.items()
    }


def _with_links(response: dict[str, Any], pointer: str) -> dict[str, Any]:
    return {**response, "links": _links_to_run(pointer)}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Bad parameters; the message says which and why.",
        401: "No research token in the Authorization header.",
        403: "A wrong research token; or, for a run, a less protective age level than the "
        "workshop's without the research token.",
        404: "No such run, file or format.",
        409: "The run is still running.",
        413: "The request body is larger than the server takes (1 MiB by default).",
        501: "The format's libraries are not installed on this server.",
        503: "Busy or shutting down; see Retry-After.",
    }
    answers = {str(s): _json("ErrorBody", reasons[s]) for s in statuses}
    if 401 in statuses:  # _auth.check_research_token sends the challenge with every 401
        answers["401"]["headers"] = {
            "WWW-Authenticate": {
                "required": True,
                "schema": {"type": "string", "const": 'Bearer realm="research"'},
                "description": "The Bearer challenge.",
            }
        }
    return answers


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_RUN_ID = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": f"^{RUN_ID_PATTERN}$"},
    "description": "32 lowercase hex characters.",
}
_TEXT = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_FILTER_CHARS,
    "pattern": "^[^\\u0000]*$",
}
_CONFIG_NAME = {"type": "string", "pattern": f"^{CONFIG_NAME.pattern}$"}
# The server's own pattern (_queries.MOMENT), not "format: date-time": it also takes a date
# alone and a time without offset (UTC), and it refuses years before 1970.
_TIME = {"type": "string", "pattern": f"^{MOMENT.pattern}$"}
_WINDOW = (
    " 'until' must be later than 'since' (400 otherwise: 'until' is exclusive, so "
    "since == until would select nothing)."
)
_FILTERS = [
    _query("config", _CONFIG_NAME, "Only runs of this config."),
    _query("status", {"type": "string", "enum": list(STATUSES)}, "Only runs with this status."),
    _query(
        "safety_level", {"type": "string", "enum": list(SAFETY_LEVELS)}, "Only this safety level."
    ),
    _query("session_id", _TEXT, "Only runs of this session (the raw id, as the class knows it)."),
    _query("device_id", _TEXT, "Only runs from this device (the raw id the page made)."),
    _query(
        "since",
        _TIME,
        "Runs started at or after this moment (ISO 8601, UTC by default; a date alone is "
        "midnight UTC)." + _WINDOW,
    ),
    _query("until", _TIME, "Runs started before this moment (ISO 8601, UTC by default)." + _WINDOW),
]
_RESEARCH: dict[str, Any] = {"security": [{"researchToken": []}]}
#: A sequence number of the feed: the server reads up to 18 digits (_api_events._SEQUENCE).
_SEQUENCE = {"type": "integer", "minimum": 0, "maximum": LARGEST_SEQUENCE}
_FORMAT = {"type": "string", "minLength": 1}


def _download_types() -> list[str]:
    """The media types downloads of one run are sent with: those of the registered formats."""
    return sorted({info.media_type for info in exports.formats()})


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(OpenAPI path, method) → operation, for every route the devserver may have."""
    return {
        ("/", "get"): {
            "summary": "The educational UI",
            "operationId": "ui",
            "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}}},
        },
        ("/research", "get"): {
            "summary": "The researchers' page (sign in with the research token in the page)",
            "operationId": "researchPage",
            "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}}},
        },
        ("/favicon.ico", "get"): {
            "summary": "The page's icon (a redirect to the static SVG)",
            "operationId": "favicon",
            "responses": {"301": {"description": "Location: the icon"}},
        },
        ("/api/configs", "get"): {
            "summary": "The pipeline configs",
            "operationId": "listConfigs",
            "responses": {"200": _json("ConfigList", "Every config.")},
        },
        ("/api/runs", "post"): {
            "summary": "Start a run",
            "operationId": "startRun",
            "parameters": [
                _query(
                    "wait",
                    {"type": "boolean"},
                    "true: answer when the run has ended; false (the default): at once. "
                    "Any other value is refused (400 invalid_wait).",
                ),
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("RunBody")}},
            },
            "responses": {
                "200": _with_links(_json("RunStarted", "It ended (with ?wait=true)."), "/run_id"),
                "202": _with_links(_json("RunStarted", "The run started."), "/run_id"),
                **_errors(400, 403, 413, 503),
            },
        },
        ("/api/runs", "get"): {
            "summary": "Research: list runs, newest first",
            "operationId": "listRuns",
            **_RESEARCH,
            "parameters": [
                *_FILTERS,
                _query(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                    f"Runs per page (default {DEFAULT_LIMIT}).",
                ),
                _query(
                    "cursor",
                    {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_CURSOR_CHARS,
                        "pattern": "^[A-Za-z0-9_-]+$",
                    },
                    "From a previous page's 'next' link, as it was given (400 bad_cursor for "
                    "any other). Filters sent with it must be the cursor's own, or left out.",
                ),
            ],
            "responses": {
                "200": _with_links(_json("RunList", "A page."), "/runs/0/run_id"),
                **_errors(400, 401, 403),
            },
        },
        ("/api/runs/{run_id}", "get"): {
            "summary": "A run's record (pseudonymised)",
            "operationId": "getRun",
            "parameters": [_RUN_ID],
            "responses": {"200": _json("ExecutionRecord", "The record."), **_errors(404)},
        },
        ("/api/runs/{run_id}/progress", "get"): {
            "summary": "Per-stage progress, while running and after",
            "operationId": "getProgress",
            "parameters": [_RUN_ID],
            "responses": {
                "200": (
                    _json("RunProgress", "The progress.")
                    if getattr(execution_history, "RunProgress", None) is not None
                    else {"description": "The progress.", "content": {"application/json": {}}}
                ),
                **_errors(404),
            },
        },
        ("/api/runs/{run_id}/events", "get"): {
            "summary": "Server-Sent Events, one per item, resumable",
            "operationId": "streamEvents",
            "parameters": [
                _RUN_ID,
                _query("since", _SEQUENCE, "Resume after this sequence number."),
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "schema": _SEQUENCE,
                    "description": "Resume after this sequence number (wins over 'since'); "
                    "a browser's EventSource sends it when it reconnects.",
                },
            ],
            "responses": {
                "200": {"description": "An event stream", "content": {"text/event-stream": {}}},
                **_errors(400, 404, 503),
            },
        },
        ("/api/runs/{run_id}/media/{name}", "get"): {
            "summary": "A media file of the run",
            "operationId": "getMedia",
            "parameters": [
                _RUN_ID,
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "The file", "content": {"*/*": {}}},
                **_errors(404),
            },
        },
        ("/api/runs/{run_id}/export/{format}", "get"): {
            "summary": "Download one run in one format",
            "operationId": "exportRun",
            "parameters": [
                _RUN_ID,
                {
                    "name": "format",
                    "in": "path",
                    "required": True,
                    "schema": _FORMAT,
                    "description": "A name from /api/formats.",
                },
            ],
            "responses": {
                "200": {
                    "description": "The file, as an attachment, with an ETag; its media type "
                    "is the format's (/api/formats).",
                    # Each format's own Content-Type, as the download sends it (found by the
                    # stateful fuzzing, which reached finished runs: a .docx is not octet-stream).
                    "content": {media_type: {} for media_type in _download_types()},
                },
                "304": {"description": "Not modified (If-None-Match)."},
                **_errors(404, 409, 501),
            },
        },
        ("/api/health", "get"): {
            "summary": "Liveness and what waits where: runs in flight, waiting, held, quarantined",
            "operationId": "getHealth",
            "responses": {
                "200": _json("HealthAnswer", "What waits, and whether the store answers.")
            },
        },
        ("/api/formats", "get"): {
            "summary": "The export formats",
            "operationId": "listFormats",
            "responses": {"200": _json("FormatList", "Every format.")},
        },
        ("/api/stats", "get"): {
            "summary": "Research: counts by status, config, level, day; stage failures; integrity",
            "operationId": "getStats",
            **_RESEARCH,
            "parameters": _FILTERS,
            "responses": {"200": _json("StatsAnswer", "The counts."), **_errors(400, 401, 403)},
        },
        ("/api/exports", "get"): {
            "summary": "Research: a streamed ZIP of every matching run, with a manifest",
            "operationId": "exportRuns",
            **_RESEARCH,
            "parameters": [
                {
                    "name": "format",
                    "in": "query",
                    "required": True,
                    "schema": _FORMAT,
                    "description": "A name from /api/formats.",
                },
                *_FILTERS,
            ],
            "responses": {
                "200": {"description": "A ZIP file", "content": {"application/zip": {}}},
                **_errors(400, 401, 403, 404, 501),
            },
        },
        ("/api/openapi.json", "get"): {
            "summary": "This description",
            "operationId": "openapi",
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
            },
        },
    }


_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
#: Flask's variable names where they differ from the documented ones.
_RENAMED = {"fmt": "format"}


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``/api/runs/<run_id:run_id>`` → ``/api/runs/{run_id}``."""
    return _VARIABLE.sub(lambda m: "{" + _RENAMED.get(m.group(1), m.group(1)) + "}", rule)


def routes(app: Flask) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every route of ``app`` except static files, HEAD and OPTIONS."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                found.add((openapi_path(rule.rule), method.lower()))
    return found


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI description of ``app``'s routes.

    Returns:
        An OpenAPI 3.1 document as a dict.
    """
    present = routes(app)
    state = get_state(app)
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), operation in _operations().items():
        if (path, method) in present:
            paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Execution history devserver",
            "version": software_version().removeprefix("devserver "),
            "description": (
                "Runs the 4-stage AI-art pipeline and serves its recorded runs. Raw user and "
                "session ids never leave the store: answers carry keyed pseudonyms. Research "
                "endpoints need 'Authorization: Bearer <research token>'. See docs/api.md."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": _components(
                sorted(state.configs),
                sorted(getattr(state.backend, "languages", ())),
                state.settings.max_input_chars,
            ),
            "securitySchemes": {
                "researchToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The research token (DEVSERVER_RESEARCH_TOKEN).",
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    """This API's OpenAPI 3.1 description."""
    spec = current_app.extensions.get("devserver.openapi")
    if spec is None:  # built once per app: the routes do not change after start
        spec = current_app.extensions["devserver.openapi"] = build_spec(current_app)
    response = Response(json.dumps(spec), mimetype="application/json")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
