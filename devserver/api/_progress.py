"""Blueprint: ``GET /api/runs/<run_id>/progress``, where a run stands, live or stored."""

from __future__ import annotations

from flask import Blueprint, Response

from execution_history import progress_of_record

from .._state import get_state
from ..live._feed import planned_by
from ._errors import ApiError

bp = Blueprint("progress", __name__, url_prefix="/api/runs")


@bp.get("/<run_id:run_id>/progress")
def get_progress(run_id: str) -> Response:
    """The run's ``RunProgress`` (docs/ui.md): live while it runs, else stored."""
    state = get_state()
    found = state.runs.lookup(run_id)
    if found is None:
        raise ApiError(404, "not_found", "There is no run with this id.")
    record = found.record()
    iterations, outputs = planned_by(state.configs)(record.config_name)
    progress = progress_of_record(record, planned_iterations=iterations, planned_outputs=outputs)
    response = Response(progress.model_dump_json(), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response
