"""Schemathesis against a live server: the OpenAPI description and the server agree.

Every operation is fuzzed with valid (positive) and invalid (negative) requests, and
a stateful run follows the spec's links from a started run to its GET routes. Each
answer goes through schemathesis' checks: no 5xx, a status code the spec lists, a
body matching its schema, no valid request refused with a 400, no invalid one
accepted with a 2xx, research operations refusing a missing or wrong token.

Reproducible: Hypothesis is derandomised (the same cases every run) and no example
database is kept. ``FUZZ_EXAMPLES`` scales the examples per operation and mode (and
the stateful scenarios); ``make test`` uses the default, a bigger run is e.g.
``FUZZ_EXAMPLES=1000 python -m pytest tests/devserver/test_schemathesis.py -s``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation

from devserver.api._openapi import build_spec
from devserver.research._cursor import CursorCodec
from devserver.research._queries import QueryError, parse_filters

from ..research_support import bearer, live_server, seed_runs

#: Examples per operation and generation mode.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "80"))
#: Starting runs costs real pipeline work, and the feed of a running run streams until it
#: ends: fewer of those.
SLOW = {"startRun": max(EXAMPLES // 10, 4), "streamEvents": max(EXAMPLES // 4, 4)}
#: Stateful scenarios (each a chain of up to STEPS calls following the spec's links).
SCENARIOS = max(EXAMPLES // 2, 5)
STEPS = 6
#: A keyset position for genuine cursors: an old start time and a made-up run id.
POSITION = ("2024-05-01T08:00:00.000000Z", "0" * 32)
#: Requests sent per test, printed at the end of the module (pytest -s shows it).
SENT: Counter[str] = Counter()

# The suite's 300 s per test guards against hangs at the default size; a big manual run
# (FUZZ_EXAMPLES in the thousands) needs more, in proportion.
pytestmark = pytest.mark.timeout(max(300, EXAMPLES))


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
        single = sum(n for k, n in SENT.items() if not k.startswith("stateful"))
        stateful = sum(n for k, n in SENT.items() if k.startswith("stateful "))
        print(
            f"\nschemathesis (FUZZ_EXAMPLES={EXAMPLES}): {single} single cases, {stateful} "
            f"stateful calls; {dict(sorted(SENT.items()))}"
        )


def load_schema(app: Flask) -> Any:
    # The default configuration, never a schemathesis.toml found by walking up from the cwd.
    return schemathesis.openapi.from_dict(build_spec(app), config=SchemathesisConfig())


def operations(app: Flask) -> list[Any]:
    return [result.ok() for result in load_schema(app).get_all_operations()]


def name_of(operation: Any) -> str:
    return str(operation.definition.raw.get("operationId", operation.label))


def is_research(operation: Any) -> bool:
    return "security" in operation.definition.raw


def what_the_schema_cannot_say(app: Flask, case: Any) -> None:
    """Adjust a *positive* case for the two rules JSON Schema cannot express.

    Both are in the spec's descriptions and pinned by plain tests (test_spec_agreement):
    ``until`` must be later than ``since`` (a rule across two parameters), and a cursor
    must be one this server issued for the same filters (an authenticated token). A
    generated cursor is replaced by a genuine one, so the page after it is fuzzed too.
    """
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not case.query:
        return
    query = case.query
    if "since" in query and "until" in query:
        try:
            parse_filters({"since": str(query["since"]), "until": str(query["until"])})
        except QueryError:
            del query["until"]
    if "cursor" in query:
        given = {k: str(v) for k, v in query.items() if k not in ("cursor", "limit")}
        filters = parse_filters(given)
        key = app.extensions["devserver"].settings.pseudonym_key
        query["cursor"] = CursorCodec(key).encode(POSITION, filters)


def token_for(app: Flask, case: Any) -> dict[str, str] | None:
    """The research token for a research operation, unless the case is about the header.

    A negative case that left out or garbled ``Authorization`` is sent as generated, so
    the refusals without a valid token (401, 403) are fuzzed and checked as well.
    """
    if not is_research(case.operation):
        return None
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
        return None
    return bearer(app)


def call(app: Flask, base: str, session: requests.Session, case: Any) -> list[str]:
    """Send ``case`` with every check; the failures as text (empty when it passed)."""
    what_the_schema_cannot_say(app, case)
    headers = token_for(app, case)
    SENT[case.operation.label] += 1
    try:
        case.call_and_validate(base_url=base, session=session, headers=headers, timeout=60)
    except FailureGroup as group:
        curl = case.as_curl_command(headers=headers)
        sent = f"query {case.query!r}, headers {sorted(case.headers or {})}"
        label = case.operation.label
        return [f"{label}: {f.title}: {f.message} -- {sent} -- {curl}" for f in group.exceptions]
    return []


def test_the_schema_loads_and_covers_every_operation(served: tuple[Flask, str]) -> None:
    app, _ = served
    ids = {name_of(op) for op in operations(app)}
    assert {"listRuns", "getStats", "exportRuns", "exportRun", "listFormats", "getRun"} <= ids


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_agrees_with_the_spec(
    served: tuple[Flask, str], mode: GenerationMode
) -> None:
    app, base = served
    session = requests.Session()
    failures: list[str] = []
    sent_before = sum(SENT.values())
    for operation in operations(app):
        name = name_of(operation)

        @settings(
            max_examples=SLOW.get(name, EXAMPLES),
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            failures.extend(call(app, base, session, case))

        try:
            check()
        except Unsatisfiable:
            # An operation without parameters or body has nothing to make invalid.
            assert mode is GenerationMode.NEGATIVE, name
            assert not operation.definition.raw.get("parameters"), name
            assert "requestBody" not in operation.definition.raw, name
        except Exception as exc:  # a generation problem is a failure too, named per operation
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    session.close()
    assert not failures, f"{len(failures)} disagreements:\n" + "\n".join(failures[:20])
    # Guards against a run that generated (almost) nothing and so proved nothing.
    assert sum(SENT.values()) - sent_before >= EXAMPLES


def test_stateful_runs_follow_the_links_and_agree(served: tuple[Flask, str]) -> None:
    """Start runs, then read them through the links of the answer, valid and invalid."""
    app, base = served
    schema = load_schema(app)
    links = schema.raw_schema["paths"]["/api/runs"]["post"]["responses"]["202"]["links"]
    assert {link["operationId"] for link in links.values()} == {
        "getRun",
        "getProgress",
        "streamEvents",
        "exportRun",
    }
    session = requests.Session()
    issued: set[str] = set()  # run ids the server answered with
    followed: Counter[str] = Counter()

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            what_the_schema_cannot_say(app, case)
            SENT[f"stateful {case.operation.label}"] += 1
            if case.meta is not None:
                SENT[f"stateful, {case.meta.generation.mode.value}"] += 1
            if (case.path_parameters or {}).get("run_id") in issued:
                followed[name_of(case.operation)] += 1

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            if name_of(case.operation) == "startRun" and response.status_code in (200, 202):
                issued.add(response.json()["run_id"])

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            headers = token_for(app, case)
            return {"base_url": base, "session": session, "headers": headers, "timeout": 60}

    Machine.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
    session.close()
    print(f"\nstateful: {len(issued)} runs started, linked calls {dict(followed)}")
    # The links were followed: a run's GET routes were called with ids the server gave.
    assert issued and followed, "no linked call was made"
