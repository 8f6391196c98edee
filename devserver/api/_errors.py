"""JSON errors for every failure: ``{"error": {"code", "message"}}``, never a stack trace.

Callers' faults are 4xx with a message that says what to fix. Anything
unexpected is logged with its traceback on the server and answered with a
generic 500: an exception's text never reaches the client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

logger = logging.getLogger("devserver")


class ApiError(Exception):
    """An error answered as JSON with ``status``, a stable ``code`` and a ``message``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = dict(details or {})


def error_response(
    status: int, code: str, message: str, details: Mapping[str, object] | None = None
) -> Response:
    """The JSON error body with ``status``."""
    error: dict[str, object] = {"code": code, "message": message}
    if details:
        error.update(details)
    response = jsonify({"error": error})
    response.status_code = status
    return response


def _api_error(error: ApiError) -> Response:
    response = error_response(error.status, error.code, error.message, error.details)
    response.headers.update(error.headers)
    return response


def _http_error(error: HTTPException) -> WerkzeugResponse:
    # Keep werkzeug's headers (e.g. Allow on 405) and replace only the body.
    response = error.get_response()
    status = error.code or 500
    name = (error.name or "error").lower().replace(" ", "_").replace("'", "")
    body = error_response(status, name, error.description or error.name or "Error")
    response.set_data(body.get_data())
    response.content_type = "application/json"
    return response


def _unexpected(error: Exception) -> Response:
    logger.exception("unexpected error while answering a request", exc_info=error)
    return error_response(500, "internal_server_error", "Something went wrong on the server.")


def init_app(app: Flask) -> None:
    """Answer every error of ``app`` as JSON."""
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
