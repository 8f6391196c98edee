"""Honest outcomes: a run that made no output is ``no_output``, not ``partial``, and says why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ..fakes import NoImageBackend
from ..outcomes import OUTCOME_CONFIGS, OUTCOMES
from ..research_support import bearer


@pytest.fixture
def outcome_app(config_dir: Path, make_app: Any) -> Any:
    """``outcome_app(fail_widths)``: the outcome configs served; images of those widths fail."""
    for config in OUTCOME_CONFIGS:
        (config_dir / f"{config['name']}.json").write_text(json.dumps(config), encoding="utf-8")
    return lambda fail_widths: make_app(BACKEND_INSTANCE=NoImageBackend(fail_widths=fail_widths))


@pytest.mark.parametrize("case", list(OUTCOMES))
def test_each_outcome_has_its_status_and_stage_counts_that_say_why(
    outcome_app: Any, case: str
) -> None:
    config, fail_widths, status, outputs = OUTCOMES[case]
    client = outcome_app(fail_widths).test_client()
    response = client.post("/api/runs?wait=true", json={"config": config, "input": "Ein Hund"})
    assert response.status_code == 200, response.json
    assert response.json["status"] == status
    run_id = response.json["run_id"]
    record = client.get(f"/api/runs/{run_id}").json
    assert record["status"] == status
    stages = {s["stage"]: s for s in record["stages"]}
    assert stages[3]["blocks"] == outputs["blocked"]
    assert stages[4]["failures"] == outputs["failed"]
    progress = client.get(f"/api/runs/{run_id}/progress").json
    assert progress["status"] == status
    assert {k: progress["outputs"][k] for k in outputs} == outputs


def test_stats_tell_no_output_from_partial_and_blocked_from_failed(outcome_app: Any) -> None:
    app = outcome_app({72, 88})
    client = app.test_client()
    for config in ("zombies", "pair", "mixed"):  # all blocked, all failed, one of two blocked
        response = client.post("/api/runs?wait=true", json={"config": config, "input": "Ein Hund"})
        assert response.status_code == 200, response.json
    stats = client.get("/api/stats", headers=bearer(app)).json
    assert stats["by_status"] == {"no_output": 2, "partial": 1}
    none = client.get("/api/stats?status=no_output", headers=bearer(app)).json
    assert none["runs"] == 2
    assert none["stages"]["3"]["runs_with_blocks"] == 1  # zombies
    assert none["stages"]["4"]["runs_with_failures"] == 1  # pair
    listed = client.get("/api/runs?status=no_output", headers=bearer(app)).json
    assert len(listed["runs"]) == 2
