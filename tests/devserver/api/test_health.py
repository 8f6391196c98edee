"""GET /api/health and the statistics count runs wherever they wait (DESIGN.md §4, §6)."""

from __future__ import annotations

import os
from typing import Any

from execution_history import ExecutionTracker
from tests.devserver.research_support import bearer
from tests.records import log_stille_post

HEALTH_FIELDS = {
    "status", "runs_in_flight", "runs_waiting_to_be_written", "runs_held_in_memory",
    "runs_quarantined", "journal_write_failures", "accepting_runs", "store", "process", "otlp",
}  # fmt: skip


def _quarantine_a_run(app: Any) -> str:
    """A finished run the store did not take, kept in the quarantine folder as the sink does."""
    state = app.extensions["devserver"]
    tracker = ExecutionTracker("stillepost", user_id="child-1")
    log_stille_post(tracker)
    record = tracker.finalize()
    state.store_sink.fallback(record, "OperationalError: disk I/O error")
    return record.run_id


def test_health_of_a_fresh_server_is_ok(client: Any) -> None:
    answer = client.get("/api/health")
    assert answer.status_code == 200
    body = answer.get_json()
    assert set(body) == HEALTH_FIELDS
    assert body["status"] == "ok"
    assert body["store"] == {"reachable": True, "problem": None}
    assert body["accepting_runs"] is True
    assert body["runs_quarantined"] == body["runs_held_in_memory"] == 0
    # one process serving alone: no worker index
    assert body["process"] == {"pid": os.getpid(), "worker": None}
    # No OTLP endpoint in the test environment: the export is off, and says so.
    assert body["otlp"]["enabled"] is False and body["otlp"]["problem"] is None


def test_a_quarantined_run_is_readable_counted_and_reported(app: Any, client: Any) -> None:
    run_id = _quarantine_a_run(app)
    record = client.get(f"/api/runs/{run_id}")
    assert record.status_code == 200
    assert record.get_json()["status"] == "partial"
    assert record.get_json()["user_id"] is None  # pseudonymised like any stored run
    health = client.get("/api/health").get_json()
    assert health["status"] == "degraded"
    assert health["runs_quarantined"] == 1
    stats = client.get("/api/stats", headers=bearer(app)).get_json()
    assert stats["runs"] == 1 and stats["runs_waiting_to_be_written"] == 1
    assert stats["by_status"] == {"partial": 1}
    exported = client.get(f"/api/runs/{run_id}/export/json")
    assert exported.status_code == 200 and exported.get_json()["run_id"] == run_id


def test_status_says_whether_the_store_can_be_written(app: Any, runner: Any, client: Any) -> None:
    client.post("/api/runs?wait=true", json={"config": "dada", "input": "Ein Hund"})
    result = runner.invoke(["status"])
    assert result.exit_code == 0, result.output
    assert "Reachable:    yes, it can be written" in result.output
