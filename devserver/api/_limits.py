"""Limits at the edge: request bodies too large (413) or JSON nested too deep (400).

Checked before any view runs, so no handler ever sees such a request
(DESIGN.md §4). The size is enforced twice: waitress refuses a declared
``Content-Length`` beyond the cap plus a small margin before reading the body
(its own plain-text 413), and Flask's ``MAX_CONTENT_LENGTH`` answers 413 as
JSON for everything up to that, chunked bodies included.
"""

from __future__ import annotations

from flask import Flask, request

from ._errors import ApiError

#: The deepest JSON a request body may hold (a run's body is one level deep).
MAX_JSON_DEPTH = 32
#: What waitress reads beyond the cap, so that the app (not waitress) answers most 413s.
WAITRESS_MARGIN_BYTES = 64 * 1024


def json_depth(value: object, limit: int) -> int:
    """How deeply ``value`` nests lists and objects, counting no further than ``limit + 1``."""
    deepest = 0
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return deepest


def _check_body() -> None:
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    limit = request.max_content_length
    if limit is not None and request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"The request body is larger than {limit} bytes.")
    try:
        # Parsed once here and cached by Flask: the view's get_json() gets this value. A
        # body that is not JSON is None; the view says what is wrong with it.
        value = request.get_json(silent=True)  # werkzeug stops a chunked body at the cap
    except RecursionError:
        too_deep = True
    else:
        too_deep = json_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH
    if too_deep:
        raise ApiError(
            400,
            "body_too_deep",
            f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.",
        )


def init_app(app: Flask, max_body_bytes: int) -> None:
    """Check every request's body against ``max_body_bytes`` and ``MAX_JSON_DEPTH`` first."""
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.before_request(_check_body)
