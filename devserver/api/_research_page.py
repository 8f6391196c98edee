"""Blueprint: the researchers' page at ``/research``, under the children's page's CSP."""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from ..research._queries import STATUSES
from ._ui import CONTENT_SECURITY_POLICY

bp = Blueprint("research_page", __name__)


@bp.get("/research")
def research_page() -> Response:
    """The page where researchers sign in with the token, browse, count and download runs.

    The page itself holds no data: everything comes from the research API, called by its
    script with the token from the tab's ``sessionStorage`` (docs/ui.md).
    """
    page = render_template("research.html", statuses=STATUSES)
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    # No referrer: the page's filters never leak to another site through a link.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response
