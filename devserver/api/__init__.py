"""The HTTP API: one blueprint per concern, behind the edge's limits and JSON errors."""

from __future__ import annotations

from flask import Flask

from . import _errors, _limits
from ._configs import bp as configs_bp
from ._downloads import bp as downloads_bp
from ._events import bp as events_bp
from ._health import bp as health_bp
from ._openapi import bp as openapi_bp
from ._progress import bp as progress_bp
from ._research import bp as research_bp
from ._research_page import bp as research_page_bp
from ._runs import bp as runs_bp
from ._ui import bp as ui_bp

BLUEPRINTS = (
    configs_bp,
    runs_bp,
    progress_bp,
    events_bp,
    ui_bp,
    downloads_bp,
    research_bp,
    research_page_bp,
    openapi_bp,
    health_bp,
)


def init_app(app: Flask, max_body_bytes: int) -> None:
    """Wire the error handlers, the body limits and every blueprint into ``app``."""
    _errors.init_app(app)
    _limits.init_app(app, max_body_bytes)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)


__all__ = ["BLUEPRINTS", "init_app"]
