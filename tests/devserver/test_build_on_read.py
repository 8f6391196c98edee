"""The server stores each run's capture at once and builds its record when it is read.

Both settings of ``DEVSERVER_BUILD_ON_READ`` keep the promise of ``?wait=true``:
when the answer comes, the run is in the SQLite file (checked with an
independent ``sqlite3`` reader), and its summary agrees with the record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from devserver import get_state
from devserver._settings import SettingsError


def _in_database(path: Path, run_id: str) -> str | None:
    """Where an independent reader finds ``run_id``: 'runs', 'captured_runs' or None."""
    with sqlite3.connect(path) as conn:
        for table in ("runs", "captured_runs"):
            sql = f"SELECT 1 FROM {table} WHERE run_id = ?"
            if conn.execute(sql, (run_id,)).fetchone():
                return table
    return None


@pytest.mark.parametrize("build_on_read", [True, False])
def test_wait_answers_once_the_run_is_stored_and_its_summary_matches_the_record(
    make_app: Callable[..., Flask], build_on_read: bool
) -> None:
    app = make_app(BUILD_ON_READ=build_on_read)
    state = get_state(app)
    client = app.test_client()
    for config, text in [("stillepost", "Ein Hund spielt im Garten"), ("triptych", "Ein Baum")]:
        answer = client.post("/api/runs?wait=true", json={"config": config, "input": text}).json
        run_id = answer["run_id"]
        where = _in_database(state.settings.database_path, run_id)
        assert where == ("captured_runs" if build_on_read else "runs")
        record = client.get(f"/api/runs/{run_id}").json
        assert _in_database(state.settings.database_path, run_id) == "runs"
        summary = answer["summary"]
        assert answer["status"] == summary["status"] == record["status"]
        assert summary["stages"] == record["stages"]
        assert summary["items"] == len(record["items"])
        assert summary["duration_ms"] == record["duration_ms"]
        assert summary["started_at"] == record["started_at"]
        assert summary["ended_at"] == record["ended_at"]
        media = [i["media"]["path"] for i in record["items"] if i["media"]]
        assert [o["url"].rsplit("/", 1)[1] for o in summary["outputs"]] == media
        assert all(i["media"]["sha256"] for i in record["items"] if i["media"])
        assert record["integrity"]["sinks"][0]["status"] == "ok"


def test_research_queries_see_runs_not_yet_built(make_app: Callable[..., Flask]) -> None:
    app = make_app(RESEARCH_TOKEN="t" * 40)
    client = app.test_client()
    ids = {
        client.post("/api/runs?wait=true", json={"config": "dada", "input": f"Wort {n}"}).json[
            "run_id"
        ]
        for n in range(3)
    }
    headers = {"Authorization": "Bearer " + "t" * 40}
    listed = client.get("/api/runs", headers=headers).json
    assert {run["run_id"] for run in listed["runs"]} >= ids
    assert client.get("/api/stats", headers=headers).json["runs"] >= 3


@pytest.mark.parametrize("value", ["maybe", "2", ""])
def test_a_bad_build_on_read_value_names_the_variable(
    make_app: Callable[..., Flask], value: str
) -> None:
    with pytest.raises(SettingsError, match="DEVSERVER_BUILD_ON_READ"):
        make_app(BUILD_ON_READ=value)


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("0", False), ("on", True)])
def test_build_on_read_is_read_from_the_environment(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    from devserver._settings import defaults_from_environment

    monkeypatch.setenv("DEVSERVER_BUILD_ON_READ", value)
    config: dict[str, Any] = defaults_from_environment()
    app = make_app(BUILD_ON_READ=config["BUILD_ON_READ"])
    assert get_state(app).settings.build_on_read is expected
    assert (get_state(app).finaliser.capture_store is not None) is expected
