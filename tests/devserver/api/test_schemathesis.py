"""Schemathesis against a live server: no generated request, valid or not, gets a 5xx."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from devserver.api._openapi import build_spec

from ..research_support import bearer, live_server, seed_runs

#: Examples per operation and generation mode; starting runs costs real work, so less.
BUDGET = {"startRun": 6, "streamEvents": 10}
DEFAULT_BUDGET = 30


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, str]]:
    from devserver import create_app

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("DEVSERVER_")}
    root = tmp_path_factory.mktemp("fuzz")
    # Enough run slots that a handful of generated runs never meet a (legitimate) 503.
    app = create_app({"TESTING": True, "DATA_DIR": str(root), "QUEUE_SIZE": 64})
    try:
        seed_runs(app, 3)
        with live_server(app) as base:
            yield app, base
    finally:
        app.extensions["devserver"].close()
        os.environ.update(saved)


class BearerAuth(requests.auth.AuthBase):
    """Sets the real research token last, over any Authorization schemathesis generated."""

    def __init__(self, header: str) -> None:
        self.header = header

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self.header
        return request


def operations(app: Flask) -> list[Any]:
    schema = schemathesis.openapi.from_dict(build_spec(app))
    return [result.ok() for result in schema.get_all_operations()]


def test_the_schema_loads_and_covers_every_operation(served: tuple[Flask, str]) -> None:
    app, _ = served
    ids = {op.definition.raw.get("operationId") for op in operations(app)}
    assert {"listRuns", "getStats", "exportRuns", "exportRun", "listFormats", "getRun"} <= ids


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_server_error(
    served: tuple[Flask, str], mode: GenerationMode
) -> None:
    app, base = served
    session = requests.Session()
    authed = requests.Session()
    authed.auth = BearerAuth(bearer(app)["Authorization"])
    failures: list[str] = []
    for operation in operations(app):
        name = operation.definition.raw.get("operationId", operation.label)
        budget = BUDGET.get(name, DEFAULT_BUDGET)

        @settings(
            max_examples=budget,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode), with_token=st.booleans())
        def check(case: Any, with_token: bool) -> None:
            # Some requests carry the token, so the research endpoints are fuzzed inside too.
            chosen = authed if with_token else session
            response = case.call(base_url=base, session=chosen, timeout=60)
            if response.status_code >= 500:
                label = case.operation.label
                failures.append(f"{label}: {response.status_code} for {case.as_curl_command()}")

        try:
            check()
        except Unsatisfiable:
            # An operation without parameters or body has nothing to make invalid.
            assert mode is GenerationMode.NEGATIVE and not operation.definition.raw.get(
                "parameters"
            ), name
        except Exception as exc:  # a generation problem is a failure too, named per operation
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    session.close()
    authed.close()
    assert not failures, "\n".join(failures[:20])
