"""Device and workshop ids: stored raw, answered pseudonymised, filterable, erasable."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from devserver._state import get_state
from execution_history import RunFilter

from ..research_support import bearer

DEVICE = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
OTHER_DEVICE = "ffeeddccbbaa99887766554433221100"
WORKSHOP = "4b-dienstag"


def start(client: FlaskClient, **ids: Any) -> dict[str, Any]:
    """One finished dada run with ``ids``; its answer."""
    response = client.post(
        "/api/runs?wait=true", json={"config": "dada", "input": "Ein Hund", **ids}
    )
    assert response.status_code == 200, response.json
    return dict(response.json)


def test_device_id_is_stored_raw_and_answered_only_as_a_pseudonym(
    app: Flask, client: FlaskClient
) -> None:
    run_id = start(client, device_id=DEVICE, session_id=WORKSHOP)["run_id"]
    state = get_state(app)
    stored = state.runs.store.load(run_id)
    assert stored is not None and stored.device_id == DEVICE and stored.session_id == WORKSHOP
    answer = client.get(f"/api/runs/{run_id}")
    assert DEVICE.encode() not in answer.data and WORKSHOP.encode() not in answer.data
    record = answer.json
    assert record["device_id"] is None and record["session_id"] is None
    assert record["device_pseudonym"] == state.pseudonymiser.device(DEVICE)
    assert record["device_pseudonym"].startswith("device-")
    assert record["session_pseudonym"] == state.pseudonymiser.session(WORKSHOP)
    # A download carries the pseudonym where it carries the session's.
    exported = client.get(f"/api/runs/{run_id}/export/json")
    assert DEVICE.encode() not in exported.data
    assert state.pseudonymiser.device(DEVICE).encode() in exported.data


def test_research_list_and_stats_filter_by_device(app: Flask, client: FlaskClient) -> None:
    mine = {start(client, device_id=DEVICE)["run_id"] for _ in range(2)}
    start(client, device_id=OTHER_DEVICE)
    start(client)
    listed = client.get(f"/api/runs?device_id={DEVICE}", headers=bearer(app))
    assert listed.status_code == 200
    assert {run["run_id"] for run in listed.json["runs"]} == mine
    pseudonym = get_state(app).pseudonymiser.device(DEVICE)
    assert {run["device_pseudonym"] for run in listed.json["runs"]} == {pseudonym}
    assert DEVICE.encode() not in listed.data
    stats = client.get(f"/api/stats?device_id={DEVICE}", headers=bearer(app))
    assert stats.status_code == 200 and stats.json["runs"] == 2
    assert DEVICE.encode() not in stats.data


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("x" * 129, "invalid_device_id"),
        ("", "invalid_device_id"),
        ("   ", "invalid_device_id"),
        (42, "invalid_device_id"),
        (["a"], "invalid_device_id"),
    ],
)
def test_unusable_device_ids_are_refused_with_the_field_named(
    client: FlaskClient, value: Any, code: str
) -> None:
    response = client.post("/api/runs", json={"config": "dada", "input": "x", "device_id": value})
    assert response.status_code == 400 and response.json["error"]["code"] == code


def test_a_lone_surrogate_in_the_device_id_is_replaced_and_counted(
    app: Flask, client: FlaskClient
) -> None:
    """DESIGN §6: a value UTF-8 cannot hold is replaced one for one and counted."""
    body = '{"config": "dada", "input": "Ein Hund", "device_id": "ger\\ud800t"}'
    response = client.post("/api/runs?wait=true", data=body, content_type="application/json")
    assert response.status_code == 200, response.json
    stored = get_state(app).runs.store.load(response.json["run_id"])
    assert stored is not None and stored.device_id == "ger\ufffdt"
    assert stored.integrity.characters_replaced == 1
    answer = client.get(f"/api/runs/{response.json['run_id']}").json
    assert answer["device_pseudonym"].startswith("device-")


def test_cli_lists_by_device_and_forgets_a_device_and_a_workshop(
    app: Flask, client: FlaskClient, runner: Any
) -> None:
    on_device = start(client, device_id=DEVICE, session_id="other")["run_id"]
    in_workshop = start(client, device_id=OTHER_DEVICE, session_id=WORKSHOP)["run_id"]
    kept = start(client, device_id=OTHER_DEVICE)["run_id"]
    listed = runner.invoke(["runs", "--device-id", DEVICE, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [row["run_id"] for row in rows] == [on_device]
    assert DEVICE not in listed.output
    erased = runner.invoke(["forget", "--device-id", DEVICE, "--yes"])
    assert erased.exit_code == 0, erased.output
    assert on_device in erased.output and DEVICE not in erased.output
    erased = runner.invoke(["forget", "--session-id", WORKSHOP, "--yes"])
    assert erased.exit_code == 0, erased.output
    assert in_workshop in erased.output and WORKSHOP not in erased.output
    store = get_state(app).runs.store
    assert store.load(on_device) is None and store.load(in_workshop) is None
    assert store.load(kept) is not None
    assert store.count(RunFilter(device_id=OTHER_DEVICE)) == 1
    nothing = runner.invoke(["forget"])
    assert nothing.exit_code == 2 and "--device-id" in nothing.output


def test_devserver_run_records_the_ids_it_is_given(app: Flask, runner: Any) -> None:
    result = runner.invoke(
        [
            "run",
            "dada",
            "Ein Hund",
            "--user-id",
            "kind-1",
            "--session-id",
            WORKSHOP,
            "--device-id",
            DEVICE,
        ]
    )
    assert result.exit_code == 0, result.output
    run_id = result.output.split()[1].rstrip(":")
    stored = get_state(app).runs.store.load(run_id)
    assert stored is not None
    assert (stored.user_id, stored.session_id, stored.device_id) == ("kind-1", WORKSHOP, DEVICE)
