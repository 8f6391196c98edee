"""The researchers' page is served like the children's page: CSP, no inline code, no data."""

from __future__ import annotations

from html.parser import HTMLParser

from flask import Flask
from flask.testing import FlaskClient

from devserver.api._ui import CONTENT_SECURITY_POLICY


class _Inline(HTMLParser):
    """Collects what a strict CSP would block: inline scripts, styles, handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script":
            self.scripts.append(dict(attrs).get("src") or "")
            if "src" not in names:
                self.found.append("inline script")
        if tag == "style":
            self.found.append("style element")
        self.found += [name for name in names if name == "style" or name.startswith("on")]


def test_the_page_is_served_with_the_strict_csp_and_no_inline_code(
    app: Flask, client: FlaskClient
) -> None:
    response = client.get("/research")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["Referrer-Policy"] == "no-referrer"
    parser = _Inline()
    parser.feed(response.get_data(as_text=True))
    assert parser.found == []
    assert parser.scripts == ["/static/research-i18n.js", "/static/lang.js", "/static/research.js"]
    # The page holds no research data and no secret: everything comes through the API.
    token = app.extensions["devserver"].settings.research_token
    assert token not in response.get_data(as_text=True)


def test_the_page_and_its_files_are_in_the_openapi_description(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").json
    assert spec["paths"]["/research"]["get"]["operationId"] == "researchPage"
    for name in ("research.js", "research-i18n.js", "lang.js", "research.css"):
        response = client.get(f"/static/{name}")
        response.close()  # a file response: close it, or its file stays open
        assert response.status_code == 200
