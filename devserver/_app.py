"""The app factory: configuration, error handlers, resources and one blueprint per concern."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response
from werkzeug.routing import BaseConverter

from execution_history import RUN_ID_PATTERN

from . import _errors, _limits, _state
from ._api_configs import bp as configs_bp
from ._api_downloads import bp as downloads_bp
from ._api_events import bp as events_bp
from ._api_health import bp as health_bp
from ._api_progress import bp as progress_bp
from ._api_research import bp as research_bp
from ._api_runs import bp as runs_bp
from ._openapi import bp as openapi_bp
from ._settings import defaults_from_environment
from ._ui import bp as ui_bp


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
    _errors.init_app(app)
    state = _state.init_app(app)
    _limits.init_app(app, state.settings.max_body_bytes)
    app.register_blueprint(configs_bp)
    app.register_blueprint(runs_bp)
    app.register_blueprint(progress_bp)
    app.register_blueprint(events_bp)
    app.register_blueprint(ui_bp)
    app.register_blueprint(downloads_bp)
    app.register_blueprint(research_bp)
    app.register_blueprint(openapi_bp)
    app.register_blueprint(health_bp)
    return app
