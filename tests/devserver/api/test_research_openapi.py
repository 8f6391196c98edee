"""The OpenAPI description: every route documented, schemas valid, answers match them."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient

from devserver.api._openapi import build_spec, openapi_path, routes

from ..research_support import bearer, seed_runs


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    document: dict[str, Any] = response.json
    return document


def test_every_route_is_documented_and_nothing_else(app: Flask, spec: dict[str, Any]) -> None:
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert documented == routes(app)
    assert spec["openapi"] == "3.1.0"


def test_flask_rules_become_openapi_paths() -> None:
    assert openapi_path("/api/runs/<run_id:run_id>/export/<fmt>") == (
        "/api/runs/{run_id}/export/{format}"
    )
    assert openapi_path("/api/runs/<run_id:run_id>/media/<name>") == (
        "/api/runs/{run_id}/media/{name}"
    )


def test_component_schemas_are_valid_json_schema(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert {"ExecutionRecord", "RunList", "StatsAnswer", "FormatList", "ErrorBody"} <= set(schemas)
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def validator(spec: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    """A validator of component ``name`` that resolves the spec's references."""
    root = {"components": spec["components"], "$ref": f"#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(root)


def test_answers_match_their_documented_schemas(
    app: Flask, client: FlaskClient, spec: dict[str, Any]
) -> None:
    run_id = seed_runs(app, 3, with_media=False).records[0].run_id
    cases = [
        ("/api/runs?limit=2", "RunList", bearer(app)),
        ("/api/stats", "StatsAnswer", bearer(app)),
        ("/api/formats", "FormatList", {}),
        (f"/api/runs/{run_id}", "ExecutionRecord", {}),
        ("/api/runs", "ErrorBody", {}),
        ("/api/runs?limit=0", "ErrorBody", bearer(app)),
        (f"/api/runs/{run_id}/export/nope", "ErrorBody", {}),
    ]
    for url, name, headers in cases:
        response = client.get(url, headers=headers)
        validator(spec, name).validate(response.json)
        operation = next(
            ops["get"]
            for path, ops in spec["paths"].items()
            if "get" in ops and _matches(path, url.split("?")[0])
        )
        assert str(response.status_code) in operation["responses"], (url, response.status_code)


def test_the_run_body_lists_this_servers_configs(app: Flask, spec: dict[str, Any]) -> None:
    body = spec["components"]["schemas"]["RunBody"]
    assert body["properties"]["config"]["enum"] == sorted(app.extensions["devserver"].configs)


def test_research_operations_declare_the_bearer_token(spec: dict[str, Any]) -> None:
    assert spec["components"]["securitySchemes"]["researchToken"]["scheme"] == "bearer"
    for path in ("/api/runs", "/api/stats", "/api/exports"):
        assert spec["paths"][path]["get"]["security"] == [{"researchToken": []}]
    assert "security" not in spec["paths"]["/api/runs/{run_id}/export/{format}"]["get"]


def test_the_spec_is_built_once_per_app(app: Flask, client: FlaskClient) -> None:
    client.get("/api/openapi.json")
    assert app.extensions["devserver.openapi"] == build_spec(app)


def _matches(template: str, path: str) -> bool:
    parts, actual = template.strip("/").split("/"), path.strip("/").split("/")
    return len(parts) == len(actual) and all(
        p.startswith("{") or p == a for p, a in zip(parts, actual, strict=True)
    )
