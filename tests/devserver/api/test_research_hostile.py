"""Hostile ids, file names and parameters, sent raw to a real server: 400 or 404, never 500."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from flask import Flask

from ..research_support import bearer, live_server, raw_get, seed_runs

SECRET = "TOP-SECRET-OUTSIDE-THE-DATA-DIR"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, str, str]]:
    """One server for the whole module (each case is a single read-only request)."""
    import os

    from devserver import create_app

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("DEVSERVER_")}
    root = tmp_path_factory.mktemp("hostile")
    (root / "secret.png").write_text(SECRET)
    (root / "secret.txt").write_text(SECRET)
    app = create_app({"TESTING": True, "DATA_DIR": str(root / "instance")})
    try:
        run_id = seed_runs(app, 1).records[0].run_id
        with live_server(app) as base:
            yield app, base, run_id
    finally:
        app.extensions["devserver"].close()
        os.environ.update(saved)


HUGE = "a" * 10_240
RUN_ID_PATHS = [
    "../../secret.txt",
    "..%2f..%2fsecret.txt",
    "%2e%2e%2f%2e%2e%2fsecret.txt",
    "%2E%2E%5C%2E%2E%5Csecret.txt",
    "..\\..\\secret.txt",
    "%00",
    "abc%00def",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "C:%5CWindows%5Cwin.ini",
    HUGE,
    "%C3%BC%C3%B1%C3%AF%C3%A7%C3%B8d%C3%A9",
    "%F0%9F%90%B6" * 8,
    "%FF%FE",
    "0123456789ABCDEF0123456789ABCDEF",  # upper case: not the pattern
    "0123456789abcdef0123456789abcdef0",  # 33 characters
]
NAMES = [
    "../../../secret.png",
    "..%2f..%2f..%2fsecret.png",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.png",
    "..%5C..%5C..%5Csecret.png",
    "%00.png",
    "output_1.png%00.txt",
    "%2Fetc%2Fpasswd",
    HUGE + ".png",
    "%C3%BC.png",
    ".hidden.png",
    "output_1.PNG%20",
]


def assert_clean(status: int, body: bytes, allowed: tuple[int, ...] = (400, 404)) -> None:
    assert status in allowed, (status, body[:200])
    assert SECRET.encode() not in body
    assert b"Traceback" not in body and b"root:" not in body
    if status >= 400 and body:
        try:
            error = json.loads(body)["error"]
        except (ValueError, KeyError):
            return  # waitress refused the request line itself: fine, it is a 400
        assert len(error["message"]) < 400  # never echoes a 10 kB input


@pytest.mark.parametrize("bad", RUN_ID_PATHS)
@pytest.mark.parametrize("suffix", ["", "/export/json", "/media/output_1.png", "/progress"])
def test_hostile_run_ids(served: tuple[Flask, str, str], bad: str, suffix: str) -> None:
    _, base, _ = served
    status, body = raw_get(base, f"/api/runs/{bad}{suffix}")
    assert_clean(status, body)


@pytest.mark.parametrize("bad", NAMES)
def test_hostile_media_names(served: tuple[Flask, str, str], bad: str) -> None:
    _, base, run_id = served
    status, body = raw_get(base, f"/api/runs/{run_id}/media/{bad}")
    assert_clean(status, body)


@pytest.mark.parametrize("bad", [*NAMES, "json%00", "JSON/..", "%2e%2e", "pdf%C3%BC", HUGE])
def test_hostile_format_names(served: tuple[Flask, str, str], bad: str) -> None:
    _, base, run_id = served
    status, body = raw_get(base, f"/api/runs/{run_id}/export/{bad}")
    assert_clean(status, body)
    status, body = raw_get(base, f"/api/exports?format={bad}", bearer(served[0]))
    assert_clean(status, body)


@pytest.mark.parametrize(
    "query",
    [
        f"config={HUGE}",
        f"session_id={HUGE}",
        f"since={HUGE}",
        "config=%00",
        "config=..%2f..%2fsecret.txt",
        "since=%C3%BC",
        "limit=-5",
        "limit=1e9",
        f"cursor={HUGE}",
        "cursor=%00%00",
        "%00=1",
        f"{HUGE}=1",
    ],
)
@pytest.mark.parametrize("path", ["/api/runs", "/api/stats", "/api/exports?format=json&"])
def test_hostile_research_parameters_are_400(
    served: tuple[Flask, str, str], query: str, path: str
) -> None:
    app, base, _ = served
    separator = "" if path.endswith("&") else "?"
    status, body = raw_get(base, f"{path}{separator}{query}", bearer(app))
    assert_clean(status, body, allowed=(400,))


@pytest.mark.parametrize(
    "header",
    ["Bearer " + HUGE, "Bearer \x7f\x7f", "Bearer ../../secret", "Bearer %00", "Bearer ü" * 50],
)
def test_hostile_tokens_are_refused_cleanly(served: tuple[Flask, str, str], header: str) -> None:
    _, base, _ = served
    try:
        encoded = header.encode("latin-1").decode("latin-1")
    except UnicodeEncodeError:
        encoded = header.encode("utf-8").decode("latin-1")
    status, body = raw_get(base, "/api/runs", {"Authorization": encoded})
    assert_clean(status, body, allowed=(400, 401, 403))


def test_the_token_is_never_accepted_from_the_url(served: tuple[Flask, str, str]) -> None:
    app, base, _ = served
    token = app.extensions["devserver"].settings.research_token
    for query in (f"token={token}", f"access_token={token}"):
        status, body = raw_get(base, f"/api/runs?{query}")
        assert status == 400 and token.encode() not in body
    status, _ = raw_get(base, f"/api/stats?research_token={token}")
    assert status == 400


@pytest.mark.parametrize("value", ["%FF%FE", "%C3%BC%F0%9F%90%B6", "..%2f..%2fsecret.txt", "a%5Cb"])
def test_odd_session_ids_are_just_text(served: tuple[Flask, str, str], value: str) -> None:
    """A session id is any text the class used: an odd one matches nothing, harmlessly."""
    app, base, _ = served
    status, body = raw_get(base, f"/api/runs?session_id={value}", bearer(app))
    assert_clean(status, body, allowed=(200,))
    assert json.loads(body)["runs"] == []
