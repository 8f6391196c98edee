"""Small things a workshop notices: the page's icon, and serve --help naming its settings."""

from __future__ import annotations

from typing import Any


def test_the_favicon_is_the_pages_icon_not_a_404(client: Any) -> None:
    redirect = client.get("/favicon.ico")
    assert redirect.status_code == 301
    icon = client.get(redirect.headers["Location"])
    try:
        assert icon.status_code == 200
        assert icon.mimetype == "image/svg+xml" and icon.get_data().startswith(b"<svg")
    finally:
        icon.close()
    assert 'rel="icon"' in client.get("/").get_data(as_text=True)


def test_serve_help_names_the_environment(runner: Any) -> None:
    result = runner.invoke(["serve", "--help"])
    assert result.exit_code == 0
    for name in ("DEVSERVER_DATA_DIR", "DEVSERVER_SAFETY_LEVEL", "DEVSERVER_PORT"):
        assert name in result.output, name
