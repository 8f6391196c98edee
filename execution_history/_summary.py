"""Run status and the per-stage summary, derived in one place from what was logged."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from ._record import ExecutionItem, StageSummary
from ._taxonomy import (
    BLOCK_ITEM_TYPES,
    FAILURE_ITEM_TYPES,
    OUTPUT_ITEM_TYPES,
    STAGE_NAMES,
    ItemType,
    RunStatus,
    StageStatus,
)

WORKING_STAGES = (1, 2, 3, 4)


def derive_status(item_types: Iterable[object], finished: bool) -> RunStatus:
    """The run's status from the types of its items.

    Args:
        item_types: the item types in recording order (enum members or strings).
        finished: whether the run has ended; an unfinished run is ``running``.

    Returns:
        ``error`` if a pipeline error was recorded, else ``blocked`` for a
        stage-1 block, ``partial`` when some output was blocked or failed,
        ``success`` otherwise; ``running`` while not finished.
    """
    seen = set(item_types)
    if ItemType.PIPELINE_ERROR in seen:
        return RunStatus.ERROR
    if ItemType.STAGE1_BLOCKED in seen:
        return RunStatus.BLOCKED
    if not finished:
        return RunStatus.RUNNING
    if ItemType.STAGE3_BLOCKED in seen or ItemType.OUTPUT_FAILED in seen:
        return RunStatus.PARTIAL
    return RunStatus.SUCCESS


def summarise_stages(
    items: Sequence[ExecutionItem], status: RunStatus, ended_at: datetime | None
) -> list[StageSummary]:
    """Per-stage status, counts and timing for stages 1 to 4.

    Time between one item and the next is attributed to the stage of the
    earlier item, so stages that alternate (3 and 4, once per output) add up
    correctly. Failures and blocks are counted in the stage that recorded them.
    """
    finished = status not in (RunStatus.RUNNING,)
    current_stage = items[-1].stage if items and not finished else None
    summaries: list[StageSummary] = []
    for stage in WORKING_STAGES:
        summaries.append(_summarise_stage(stage, items, finished, current_stage, ended_at))
    return summaries


def _summarise_stage(
    stage: int,
    items: Sequence[ExecutionItem],
    finished: bool,
    current_stage: int | None,
    ended_at: datetime | None,
) -> StageSummary:
    count = failures = blocks = outputs = 0
    iterations: set[int] = set()
    loops: set[int] = set()
    blocked_loops: set[int | None] = set()
    started: datetime | None = None
    last: datetime | None = None
    spent = 0.0
    for index, item in enumerate(items):
        if item.stage != stage:
            continue
        if item.item_type == ItemType.STAGE_TRANSITION:
            # A transition opens the stage but is not work done in it.
            started = started or item.timestamp
        else:
            count += 1
        started = started or item.timestamp
        following = items[index + 1].timestamp if index + 1 < len(items) else ended_at
        last = following or item.timestamp
        if following is not None:
            spent += max(0.0, (following - item.timestamp).total_seconds() * 1000.0)
        if item.stage_iteration is not None:
            iterations.add(item.stage_iteration)
        if item.loop_iteration is not None:
            loops.add(item.loop_iteration)
        if item.item_type in FAILURE_ITEM_TYPES:
            failures += 1
        if item.item_type in BLOCK_ITEM_TYPES:
            blocks += 1
            blocked_loops.add(item.loop_iteration)
        if item.item_type in OUTPUT_ITEM_TYPES:
            outputs += 1
    status = _stage_status(
        stage, count, failures, blocks, outputs, len(loops), finished, current_stage
    )
    return StageSummary(
        stage=stage,
        name=STAGE_NAMES[stage],
        status=status,
        items=count,
        failures=failures,
        blocks=blocks,
        iterations=len(iterations),
        loops=len(loops),
        started_at=started,
        ended_at=last if started else None,
        duration_ms=round(spent, 3) if started else None,
    )


def _stage_status(
    stage: int,
    count: int,
    failures: int,
    blocks: int,
    outputs: int,
    loops: int,
    finished: bool,
    current_stage: int | None,
) -> StageStatus:
    if count == 0 and failures == 0:
        return StageStatus.SKIPPED if finished else StageStatus.PENDING
    if not finished and stage == current_stage:
        return StageStatus.RUNNING
    if blocks and (stage == 1 or blocks >= max(loops, 1)):
        return StageStatus.BLOCKED
    if failures and (stage != 4 or outputs == 0):
        return StageStatus.FAILED
    return StageStatus.DONE
