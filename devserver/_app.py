"""The app factory: configuration, error handlers, resources and one blueprint per concern."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response
from werkzeug.routing import BaseConverter

from execution_history import RUN_ID_PATTERN

from . import _state, api
from ._settings import defaults_from_environment


class RunIdConverter(BaseConverter):
    """``<run_id:…>``: only well-formed run ids reach a view; anything else is a 404."""

    regex = RUN_ID_PATTERN


def _harden(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the devserver app.

    Args:
        test_config: config keys that override the environment (see
            ``devserver._settings.ENVIRONMENT``; also ``BACKEND_INSTANCE``, a
            ready backend object, and ``TRACKING=False`` for the no-op tracker).

    Returns:
        The Flask app; its resources are in ``app.extensions["devserver"]``
        and are released by ``app.extensions["devserver"].close()``.

    Raises:
        SettingsError, ConfigError: bad configuration (named in the message).
    """
    app = Flask("devserver")
    app.config.from_mapping(defaults_from_environment())
    if test_config is not None:
        app.config.from_mapping(test_config)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.converters["run_id"] = RunIdConverter
    app.after_request(_harden)
    state = _state.init_app(app)
    api.init_app(app, state.settings.max_body_bytes)
    return app
