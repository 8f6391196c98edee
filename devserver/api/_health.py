"""Blueprint: ``GET /api/health``, liveness and what waits where (DESIGN.md §4, §6)."""

from __future__ import annotations

from flask import Blueprint, Response
from pydantic import BaseModel, Field

from .._state import get_state

bp = Blueprint("health", __name__, url_prefix="/api")


class StoreHealth(BaseModel):
    """Whether the store answers a write now."""

    reachable: bool
    problem: str | None = Field(default=None, description="Why not, when it does not.")


class ProcessHealth(BaseModel):
    """Which server process answered (``serve --workers`` runs several)."""

    pid: int = Field(description="The process id.")
    worker: int | None = Field(
        default=None,
        description="Its place among the workers of `serve --workers` (0, 1, …); null when "
        "the process serves alone.",
    )


class OtlpHealth(BaseModel):
    """The OTLP trace export (docs/otel.md): whether it is on, and what became of the runs.

    The counters count runs (one trace each) since the process started; a
    failure here never makes the server ``degraded``: the record is in the store.
    """

    enabled: bool = Field(description="Whether each run is sent as a trace.")
    endpoint: str | None = Field(
        default=None, description="Where traces go (without credentials); None when unset."
    )
    problem: str | None = Field(
        default=None, description="Why the export is off although an endpoint is set."
    )
    capture_content: bool = Field(description="Whether the children's texts are sent.")
    waiting: int = Field(default=0, description="Runs queued or being sent.")
    sent: int = Field(default=0, description="Runs the collector accepted.")
    failed: int = Field(
        default=0, description="Runs not accepted: refused, unreachable or timed out."
    )
    timed_out: int = Field(default=0, description="Of the failed, those past the deadline.")
    dropped: int = Field(
        default=0, description="Runs not sent: the queue was full, or at shutdown."
    )
    outcomes_not_recorded: int = Field(
        default=0, description="Outcome batches that could not be added to stored records."
    )
    last_error: str | None = Field(default=None, description="The latest failure's reason.")


class HealthAnswer(BaseModel):
    """Runs in flight and runs waiting anywhere before they are safe in the store."""

    status: str = Field(
        description="'ok', or 'degraded' when the store cannot be written, runs are held in "
        "memory or quarantined, or the journal cannot be written (new runs are then refused)."
    )
    runs_in_flight: int = Field(description="Runs queued or running.")
    runs_waiting_to_be_written: int = Field(description="Ended runs the writer has not stored yet.")
    runs_held_in_memory: int = Field(
        description="Runs neither the store nor the quarantine took; retried with backoff, "
        "saved to a last-resort place at shutdown."
    )
    runs_quarantined: int = Field(
        description="Runs in the quarantine folder, re-imported at start."
    )
    journal_write_failures: int = Field(description="Failed journal writes since the start.")
    accepting_runs: bool = Field(description="False while the journal cannot be written.")
    store: StoreHealth
    process: ProcessHealth
    otlp: OtlpHealth


@bp.get("/health")
def health() -> Response:
    """Always 200 while the process answers; ``status`` says whether anything waits or fails."""
    answer = HealthAnswer.model_validate(get_state().health())
    response = Response(answer.model_dump_json(), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response
