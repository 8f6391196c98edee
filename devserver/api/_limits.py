"""Limits at the edge: request bodies too large (413) or JSON nested too deep (400).

Checked before any view runs, so no handler ever sees such a request
(DESIGN.md §4). A declared ``Content-Length`` beyond the cap is answered 413
before a byte of the body is read (the server reads a body only as the app
asks for it); a chunked body is read up to the cap and refused when it goes on.
"""

from __future__ import annotations

from flask import Flask, request

from ._errors import ApiError

#: The deepest JSON a request body may hold (a run's body is one level deep).
MAX_JSON_DEPTH = 32


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
        # The body is never read, so the connection cannot carry another request: close it
        # rather than keep it alive for the client's unsent bytes.
        raise ApiError(
            413,
            "body_too_large",
            f"The request body is larger than {limit} bytes.",
            headers={"Connection": "close"},
        )
    if limit is not None and request.content_length is None:
        # A body of unknown length (chunked): werkzeug reads it up to the cap and stops
        # without a word, so one more byte of the raw input tells whether there was more.
        data = request.get_data(cache=True)
        if len(data) >= limit and request.environ["wsgi.input"].read(1):
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
