"""Blueprint: ``GET /api/configs`` lists the pipeline configs."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from .._state import get_state

bp = Blueprint("configs", __name__, url_prefix="/api")


@bp.get("/configs")
def list_configs() -> Response:
    """Every config: name, description, stages, interception, iterations, outputs."""
    state = get_state()
    return jsonify({"configs": [c.summary() for c in state.configs.values()]})
