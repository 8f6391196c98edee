"""Where the OpenAPI description and the server once disagreed: each case pinned on both sides.

Every test asks the server *and* checks what /api/openapi.json says about the same
value, so neither can drift alone. The fuzzing is in test_schemathesis.py.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient

from devserver.api._openapi import build_spec

from ..research_support import bearer, seed_runs

RUN_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def spec(app: Flask) -> dict[str, Any]:
    return build_spec(app)


def operation(spec: dict[str, Any], path: str, method: str = "get") -> dict[str, Any]:
    found: dict[str, Any] = spec["paths"][path][method]
    return found


def parameter(spec: dict[str, Any], path: str, name: str, method: str = "get") -> dict[str, Any]:
    found: dict[str, Any] = next(
        p for p in operation(spec, path, method)["parameters"] if p["name"] == name
    )
    return found


def valid(schema: dict[str, Any], value: object, spec: dict[str, Any] | None = None) -> bool:
    """Whether ``value`` is valid by ``schema`` (references resolved against ``spec``)."""
    root = {**schema, "components": spec["components"]} if spec else schema
    return jsonschema.Draft202012Validator(root).is_valid(value)


def run_body(spec: dict[str, Any]) -> dict[str, Any]:
    """The body schema of POST /api/runs, as a reference into ``spec``'s components."""
    schema: dict[str, Any] = operation(spec, "/api/runs", "post")["requestBody"]["content"][
        "application/json"
    ]["schema"]
    return schema


def error_code(response: Any) -> str:
    code: str = response.json["error"]["code"]
    return code


# --------------------------------------------------------------- research queries


def test_an_empty_format_is_refused_and_the_spec_says_so(
    app: Flask, client: FlaskClient, spec: dict[str, Any]
) -> None:
    response = client.get("/api/exports?format=", headers=bearer(app))
    assert response.status_code == 400 and error_code(response) == "bad_request"
    assert not valid(parameter(spec, "/api/exports", "format")["schema"], "")
    path_format = parameter(spec, "/api/runs/{run_id}/export/{format}", "format")["schema"]
    assert not valid(path_format, "")
    assert client.get(f"/api/runs/{RUN_ID}/export/").status_code == 404


def test_an_empty_or_made_up_cursor_is_refused_and_the_spec_says_what_one_looks_like(
    app: Flask, client: FlaskClient, spec: dict[str, Any]
) -> None:
    schema = parameter(spec, "/api/runs", "cursor")["schema"]
    for cursor in ("", "not a cursor", "AAAA"):
        response = client.get(f"/api/runs?cursor={cursor}", headers=bearer(app))
        assert response.status_code == 400 and error_code(response) == "bad_cursor", cursor
    assert not valid(schema, "") and not valid(schema, "not a cursor")
    # A genuine cursor fits the published pattern, and it is taken.
    seed_runs(app, 3, with_media=False)
    first = client.get("/api/runs?limit=1", headers=bearer(app)).json
    assert valid(schema, first["cursor"])
    assert client.get(first["next"], headers=bearer(app)).status_code == 200


@pytest.mark.parametrize("path", ["/api/runs", "/api/stats", "/api/exports?format=json"])
def test_since_equal_to_until_is_refused_with_the_reason(
    app: Flask, client: FlaskClient, spec: dict[str, Any], path: str
) -> None:
    joiner = "&" if "?" in path else "?"
    for window in ("since=2024-05-01&until=2024-05-01", "since=2024-05-02&until=2024-05-01"):
        response = client.get(f"{path}{joiner}{window}", headers=bearer(app))
        assert response.status_code == 400, (path, window)
        message = response.json["error"]["message"]
        assert "'until' must be later than 'since'" in message and "exclusive" in message
    # One whole day is since=that day&until=the next.
    response = client.get(f"{path}{joiner}since=2024-05-01&until=2024-05-02", headers=bearer(app))
    assert response.status_code == 200
    # The spec cannot express a rule over two parameters; it says it in both descriptions.
    bare = path.split("?")[0]
    for name in ("since", "until"):
        assert "'until' must be later than 'since'" in parameter(spec, bare, name)["description"]


#: Moments and whether the server takes them; the published pattern must agree with each.
MOMENTS = [
    ("2024-05-01", True),
    ("2024-05-01T12:00", True),
    ("2024-05-01T12:00:00Z", True),
    ("2024-05-01T12:00:00.123456+02:00", True),
    ("2024-05-01 12:00Z", True),
    ("2024-02-29", True),
    ("2000-02-29", True),
    ("1970-01-01T00:30+01:00", True),  # 1969 in UTC, still four digits
    ("9998-12-31T23:59:59.999999-23:59", True),
    ("2023-02-29", False),
    ("1900-02-29", False),
    ("2024-04-31", False),
    ("1969-12-31", False),
    ("9999-01-01", False),
    ("0562-08-04T18:26:58Z", False),
    (" 2024-05-01", False),
    ("2024-05-01 ", False),
    ("20240501", False),
    ("2024-05-01T12", False),
    ("2024-05-01T12:00:00.1234567", False),
    ("2024-05-01T24:00", False),
    ("2024-05-01Z", False),
    ("2024-05-01t12:00z", False),
    ("2024-W18-3", False),
    ("２０２４-05-01", False),  # fullwidth digits: \d would take them
]


@pytest.mark.parametrize(("text", "taken"), MOMENTS)
def test_the_server_and_the_spec_take_the_same_moments(
    app: Flask, client: FlaskClient, spec: dict[str, Any], text: str, taken: bool
) -> None:
    response = client.get("/api/stats", query_string={"since": text}, headers=bearer(app))
    assert response.status_code == (200 if taken else 400), response.json
    for name in ("since", "until"):
        assert valid(parameter(spec, "/api/stats", name)["schema"], text) is taken


# -------------------------------------------------------------------- the feed


def test_the_feed_takes_up_to_18_digits_and_the_spec_says_so(
    app: Flask, client: FlaskClient, spec: dict[str, Any]
) -> None:
    run_id = seed_runs(app, 1, with_media=False).records[0].run_id
    schema = parameter(spec, "/api/runs/{run_id}/events", "since")["schema"]
    largest = "9" * 18
    response = client.get(f"/api/runs/{run_id}/events?since={largest}")
    assert response.status_code == 200
    response.close()
    assert valid(schema, int(largest))
    huge = "1" + "0" * 30  # 31 digits
    response = client.get(f"/api/runs/{run_id}/events?since={huge}")
    assert response.status_code == 400 and error_code(response) == "invalid_since"
    assert not valid(schema, int(huge))
    header = parameter(spec, "/api/runs/{run_id}/events", "Last-Event-ID")
    assert header["in"] == "header" and header["schema"] == schema
    response = client.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": huge})
    assert response.status_code == 400
    for since in (" 5", "5 "):  # the spec's integer has no blanks around it
        response = client.get(f"/api/runs/{run_id}/events", query_string={"since": since})
        assert response.status_code == 400, since
    response = client.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": ""})
    assert response.status_code == 400  # an empty header is no integer either


@pytest.mark.parametrize(("limit", "status"), [("1", 200), ("500", 200), (" 5", 400), ("+5", 400)])
def test_limit_is_the_specs_integer(
    app: Flask, client: FlaskClient, spec: dict[str, Any], limit: str, status: int
) -> None:
    response = client.get("/api/runs", query_string={"limit": limit}, headers=bearer(app))
    assert response.status_code == status
    schema = parameter(spec, "/api/runs", "limit")["schema"]
    assert schema == {"type": "integer", "minimum": 1, "maximum": 500}


def test_a_bad_since_is_refused_even_when_last_event_id_wins(
    app: Flask, client: FlaskClient
) -> None:
    # Found by the stateful fuzzing: a valid header used to hide whatever ?since= held.
    run_id = seed_runs(app, 1, with_media=False).records[0].run_id
    url = f"/api/runs/{run_id}/events?since=" + "2" * 34
    response = client.get(url, headers={"Last-Event-ID": "3"})
    assert response.status_code == 400 and error_code(response) == "invalid_since"
    response = client.get(f"/api/runs/{run_id}/events?since=1", headers={"Last-Event-ID": "3"})
    assert response.status_code == 200
    response.close()


# ----------------------------------------------------------------- starting runs


@pytest.mark.parametrize("wait", ["null", "yes", "1", "True", ""])
def test_wait_is_true_or_false_and_nothing_else(
    app: Flask, client: FlaskClient, spec: dict[str, Any], wait: str
) -> None:
    response = client.post(f"/api/runs?wait={wait}", json={"config": "dada", "input": "Ein Hund"})
    assert response.status_code == 400 and error_code(response) == "invalid_wait"
    assert app.extensions["devserver"].runs.active() == 0  # refused before a run started
    assert parameter(spec, "/api/runs", "wait", "post")["schema"] == {"type": "boolean"}


def test_wait_false_answers_at_once_and_wait_true_when_the_run_ended(client: FlaskClient) -> None:
    body = {"config": "dada", "input": "Ein Hund"}
    assert client.post("/api/runs?wait=false", json=body).status_code == 202
    ended = client.post("/api/runs?wait=true", json=body)
    assert ended.status_code == 200 and ended.json["summary"] is not None
    assert client.post("/api/runs?wait=true&wait=true", json=body).status_code == 400


@pytest.mark.parametrize("language", ["", "xx", "EN", 7])
def test_a_language_the_backend_does_not_know_is_refused_and_not_in_the_spec(
    client: FlaskClient, spec: dict[str, Any], language: object
) -> None:
    body = {"config": "dada", "input": "Ein Hund", "language": language}
    response = client.post("/api/runs", json=body)
    assert response.status_code == 400 and error_code(response) == "invalid_language"
    assert not valid(run_body(spec), body, spec)


def test_the_backends_languages_are_in_the_spec_and_taken(
    app: Flask, client: FlaskClient, spec: dict[str, Any]
) -> None:
    languages = sorted(app.extensions["devserver"].backend.languages)
    assert languages, "the local backend knows some languages"
    schema = spec["components"]["schemas"]["RunBody"]["properties"]["language"]
    assert schema["anyOf"] == [{"type": "string", "enum": languages}, {"type": "null"}]
    for language in (languages[0], None):
        body = {"config": "dada", "input": "Ein Hund", "language": language}
        assert valid(run_body(spec), body, spec)
        assert client.post("/api/runs", json=body).status_code == 202


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"config": "dada", "input": "x", "colour": "red"}, "unknown_field"),
        ({"config": "dada", "input": " \t\u3000\x1c"}, "invalid_input"),
        ({"config": "dada", "input": "a\x00b"}, "invalid_input"),
        ({"config": "dada", "input": "x", "user_id": "  "}, "invalid_user_id"),
        ({"config": "dada", "input": "x", "session_id": ""}, "invalid_session_id"),
        ({"config": "dada", "input": "x", "seed": 1.5}, "invalid_seed"),
    ],
)
def test_bodies_the_server_refuses_are_invalid_by_the_spec(
    client: FlaskClient, spec: dict[str, Any], body: dict[str, Any], code: str
) -> None:
    response = client.post("/api/runs", json=body)
    assert response.status_code == 400 and error_code(response) == code
    assert not valid(run_body(spec), body, spec)


@pytest.mark.parametrize(
    "body",
    [
        {"config": "dada", "input": " Ein Hund "},
        {"config": "dada", "input": "x", "seed": 7.0},  # 7.0 is the integer 7 in JSON
        {"config": "dada", "input": "x", "user_id": " a ", "session_id": "b", "seed": 0},
    ],
)
def test_bodies_the_spec_allows_are_taken(
    client: FlaskClient, spec: dict[str, Any], body: dict[str, Any]
) -> None:
    assert valid(run_body(spec), body, spec)
    assert client.post("/api/runs", json=body).status_code == 202


def test_a_prompt_longer_than_the_server_takes_is_invalid_by_the_spec(
    app: Flask, client: FlaskClient, spec: dict[str, Any]
) -> None:
    longest = app.extensions["devserver"].settings.max_input_chars
    for length, status in ((longest, 202), (longest + 1, 400)):
        body = {"config": "dada", "input": "a" * length}
        assert client.post("/api/runs", json=body).status_code == status
        assert valid(run_body(spec), body, spec) is (status == 202)


# ------------------------------------------------------------------- downloads


def test_every_downloads_content_type_is_documented(
    app: Flask, client: FlaskClient, spec: dict[str, Any]
) -> None:
    # Found by the stateful fuzzing: the spec said octet-stream, a .docx came back as itself.
    run_id = seed_runs(app, 1, with_media=False).records[0].run_id
    documented = operation(spec, "/api/runs/{run_id}/export/{format}")["responses"]["200"]
    formats = client.get("/api/formats").json["formats"]
    exported = 0
    for entry in formats:
        if not entry["available"]:
            continue
        response = client.get(f"/api/runs/{run_id}/export/{entry['name']}")
        assert response.status_code == 200, entry["name"]
        assert response.mimetype in documented["content"], entry["name"]
        exported += 1
    assert exported >= 3  # json, xml and csv need no optional library


# ------------------------------------------------------------------ the 401 path


@pytest.mark.parametrize("path", ["/api/runs", "/api/stats", "/api/exports?format=json"])
def test_without_a_token_the_401_is_the_documented_one(
    client: FlaskClient, spec: dict[str, Any], path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="research"'
    documented = operation(spec, path.split("?")[0])["responses"]["401"]
    assert "WWW-Authenticate" in documented["headers"]
    schema = documented["content"]["application/json"]["schema"]
    assert valid(schema, response.json, spec)
    forbidden = client.get(path, headers={"Authorization": "Bearer " + "x" * 40})
    assert forbidden.status_code == 403
    assert "403" in operation(spec, path.split("?")[0])["responses"]


# ---------------------------------------------------------------------- links


def test_the_links_of_a_started_run_lead_to_its_routes(
    client: FlaskClient, spec: dict[str, Any]
) -> None:
    answer = client.post("/api/runs?wait=true", json={"config": "dada", "input": "Ein Hund"})
    links = operation(spec, "/api/runs", "post")["responses"]["200"]["links"]
    by_id = {op["operationId"]: op for path in spec["paths"].values() for op in path.values()}
    paths = {op["operationId"]: path for path, ops in spec["paths"].items() for op in ops.values()}
    assert set(links) == {"GetRun", "GetProgress", "StreamEvents", "ExportRun"}
    for link in links.values():
        assert link["operationId"] in by_id
        assert link["parameters"] == {"run_id": "$response.body#/run_id"}
        url = paths[link["operationId"]].format(run_id=answer.json["run_id"], format="json")
        response = client.get(url)
        assert response.status_code == 200, url
        response.close()
