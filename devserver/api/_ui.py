"""Blueprint: the educational UI at ``/``, served with a Content-Security-Policy."""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from .._state import get_state
from ..pipeline.safety import SAFETY_LEVELS

bp = Blueprint("ui", __name__)

#: Only this server's own scripts, styles, images, audio and connections; no inline script,
#: no inline style, no plugins, no framing. Prompts and model output are inserted as text.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "media-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


@bp.get("/favicon.ico")
def favicon() -> WerkzeugResponse:
    """Browsers ask for it whatever the page says: the page's icon, not a 404."""
    return redirect(url_for("static", filename="favicon.svg"), code=301)


@bp.get("/")
def index() -> Response:
    """The page where a child starts a run and watches its journey (docs/ui.md)."""
    settings = get_state().settings
    workshop = settings.safety_level
    # The workshop's level and the stricter ones: the page offers no way to loosen it.
    levels = SAFETY_LEVELS[: SAFETY_LEVELS.index(workshop) + 1]
    page = render_template(
        "index.html",
        levels=levels,
        workshop_level=workshop,
        # Attribute values (escaped by the template): the page's script reads them.
        workshop_name=settings.workshop or "",
        recording_notice=settings.recording_notice or "",
        step_ms=settings.journey_step_ms,
    )
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response
