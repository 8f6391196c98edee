"""A run's progress (per stage, iterations and outputs), computed in one place for every reader."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from ._build import item_dict
from ._coerce import CoercionStats
from ._record import ExecutionItem, ExecutionRecord, StageSummary
from ._runlog import RawItem
from ._summary import summarise_stages
from ._taxonomy import FAILURE_ITEM_TYPES, OUTPUT_ITEM_TYPES, ItemType, RunStatus

_FROZEN = ConfigDict(frozen=True, extra="ignore")
_INTERCEPTION_STAGE = 2


class IterationProgress(BaseModel):
    """Stage-2 iterations (Stille Post translations, a Dada pass) done of planned."""

    model_config = _FROZEN

    done: int = Field(
        description="Distinct stage_iteration values in stage 2 that recorded something other "
        "than a failure."
    )
    planned: int | None = Field(
        default=None, description="From the run's config; None when the config is unknown."
    )


class OutputProgress(BaseModel):
    """The outputs of stages 3 and 4 (one per loop_iteration): planned, done, blocked, failed."""

    model_config = _FROZEN

    planned: int | None = Field(
        default=None, description="From the run's config; None when the config is unknown."
    )
    done: int = Field(default=0, description="Outputs whose media was generated.")
    blocked: int = Field(default=0, description="Outputs stopped by the stage-3 age check.")
    failed: int = Field(default=0, description="Outputs whose generation failed.")
    remaining: int | None = Field(
        default=None,
        description="Planned outputs not done, blocked or failed: still to come while the run "
        "is going, never made once it has ended. None when nothing is planned.",
    )


class RunProgress(BaseModel):
    """Where a run stands: its status, each stage's summary, iterations and outputs.

    The stage summaries are the record's own (``summarise_stages``), so the
    progress of a finished run agrees with its stored record field for field.
    """

    model_config = _FROZEN

    run_id: str
    config_name: str | None = None
    status: RunStatus
    finished: bool = Field(description="False while the run's status is 'running'.")
    current_stage: int | None = Field(
        default=None, description="The stage of the latest item while running; None after."
    )
    items: int = Field(description="Items recorded so far.")
    last_sequence: int = Field(description="Sequence number of the latest item (0: none).")
    started_at: datetime | None = None
    ended_at: datetime | None = None
    stages: list[StageSummary] = Field(description="Stages 1 to 4, as in the record.")
    iterations: IterationProgress
    outputs: OutputProgress


def build_progress(
    items: Sequence[ExecutionItem],
    status: RunStatus,
    *,
    run_id: str,
    config_name: str | None = None,
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
    planned_iterations: int | None = None,
    planned_outputs: int | None = None,
    stages: Sequence[StageSummary] | None = None,
) -> RunProgress:
    """The progress of a run from its items (in sequence order) and its status.

    Args:
        items: the run's validated items, in order of their sequence numbers.
        status: the run's status (``running`` while it goes on).
        run_id, config_name, started_at, ended_at: copied into the progress.
        planned_iterations: stage-2 iterations the run's config plans (None: unknown).
        planned_outputs: outputs the run's config plans (None: unknown).
        stages: the stage summaries when already computed (a stored record's);
            else they are computed here by ``summarise_stages``.

    Returns:
        A frozen ``RunProgress``.
    """
    summaries = list(stages) if stages is not None else summarise_stages(items, status, ended_at)
    finished = status != RunStatus.RUNNING
    done: set[object] = set()
    blocked: set[object] = set()
    failed: set[object] = set()
    for item in items:
        # An output is one loop iteration; an item outside any loop counts on its own.
        key = item.loop_iteration if item.loop_iteration is not None else ("item", item.sequence)
        if item.item_type in OUTPUT_ITEM_TYPES:
            done.add(key)
        elif item.item_type == ItemType.STAGE3_BLOCKED:
            blocked.add(key)
        elif item.item_type == ItemType.OUTPUT_FAILED:
            failed.add(key)
    # An iteration is done when it recorded something other than a failure: an error
    # item carries the iteration it happened in, which was not done.
    iterations_done = {
        item.stage_iteration
        for item in items
        if item.stage == _INTERCEPTION_STAGE
        and item.stage_iteration is not None
        and item.item_type not in FAILURE_ITEM_TYPES
    }
    remaining = (
        max(planned_outputs - len(done) - len(blocked) - len(failed), 0)
        if planned_outputs is not None
        else None
    )
    return RunProgress(
        run_id=run_id,
        config_name=config_name,
        status=status,
        finished=finished,
        current_stage=items[-1].stage if items and not finished else None,
        items=len(items),
        last_sequence=items[-1].sequence if items else 0,
        started_at=started_at,
        ended_at=ended_at,
        stages=summaries,
        iterations=IterationProgress(done=len(iterations_done), planned=planned_iterations),
        outputs=OutputProgress(
            planned=planned_outputs,
            done=len(done),
            blocked=len(blocked),
            failed=len(failed),
            remaining=remaining,
        ),
    )


def progress_of_record(
    record: ExecutionRecord,
    *,
    planned_iterations: int | None = None,
    planned_outputs: int | None = None,
) -> RunProgress:
    """The progress of a record, live (``build_record`` of a running tracker) or stored.

    The record's own stage summaries are reused, never recomputed.

    Args:
        record: the run's record.
        planned_iterations, planned_outputs: as in ``build_progress``.

    Returns:
        A frozen ``RunProgress``.
    """
    return build_progress(
        record.items,
        record.status,
        run_id=record.run_id,
        config_name=record.config_name,
        started_at=record.started_at,
        ended_at=record.ended_at,
        planned_iterations=planned_iterations,
        planned_outputs=planned_outputs,
        stages=record.stages,
    )


def live_item(raw: RawItem, max_text_chars: int) -> ExecutionItem | None:
    """The validated item of one raw item of a (possibly running) run, for live readers.

    The same conversion the finaliser applies, so a live reader sees what the
    record will hold. Coercions are not counted here (the finaliser counts
    them once, in the record's integrity block).

    Args:
        raw: an item from ``tracker.items``.
        max_text_chars: the tracker's ``limits.max_text_chars``.

    Returns:
        The ``ExecutionItem``, or None when the raw item does not validate
        (the finaliser records that as a tracker error).
    """
    try:
        return ExecutionItem.model_validate(item_dict(raw, max_text_chars, CoercionStats()))
    except Exception:
        return None
