"""Run status and the per-stage summary, derived in one place from what was logged."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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
        stage-1 block; when some output was blocked or failed, ``no_output``
        if not one output was made, else ``partial``; ``success`` otherwise;
        ``running`` while not finished.
    """
    seen = set(item_types)
    if ItemType.PIPELINE_ERROR in seen:
        return RunStatus.ERROR
    if ItemType.STAGE1_BLOCKED in seen:
        return RunStatus.BLOCKED
    if not finished:
        return RunStatus.RUNNING
    if ItemType.STAGE3_BLOCKED in seen or ItemType.OUTPUT_FAILED in seen:
        # A run that made nothing is not "partly" done: a child saw no output at all.
        return RunStatus.PARTIAL if seen & OUTPUT_ITEM_TYPES else RunStatus.NO_OUTPUT
    return RunStatus.SUCCESS


#: One item as the stage summary sees it: (stage, item_type, timestamp in µs since
#: the epoch, stage_iteration, loop_iteration). Records and raw items both map to it.
StageRow = tuple[int, Any, int, int | None, int | None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware (or UTC-naive) datetime."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def utc_from_us(us: int) -> datetime:
    """The UTC datetime ``us`` microseconds after the epoch."""
    return _EPOCH + timedelta(microseconds=us)


def summarise_stages(
    items: Sequence[ExecutionItem], status: RunStatus, ended_at: datetime | None
) -> list[StageSummary]:
    """Per-stage status, counts and timing for stages 1 to 4 of a record's items."""
    rows = [
        (i.stage, i.item_type, epoch_us(i.timestamp), i.stage_iteration, i.loop_iteration)
        for i in items
    ]
    figures = summarise_stage_rows(rows, status, epoch_us(ended_at) if ended_at else None)
    return [StageSummary.model_validate(f, from_attributes=True) for f in figures]


def summarise_stage_rows(
    rows: Sequence[StageRow], status: RunStatus, ended_us: int | None
) -> list[StageFigures]:
    """Per-stage status, counts and timing for stages 1 to 4, in one pass over ``rows``.

    Time between one item and the next is attributed to the stage of the
    earlier item, so stages that alternate (3 and 4, once per output) add up
    correctly. Failures and blocks are counted in the stage that recorded them.
    """
    finished = status not in (RunStatus.RUNNING,)
    current_stage = rows[-1][0] if rows and not finished else None
    tallies = {stage: _Tally() for stage in WORKING_STAGES}
    last_index = len(rows) - 1
    for index, (stage, item_type, at, iteration, loop) in enumerate(rows):
        tally = tallies.get(stage)
        if tally is None:
            continue
        # A transition opens the stage but is not work done in it: it is counted in no
        # figure (items, iterations, loops), only in the stage's timing.
        work = item_type != ItemType.STAGE_TRANSITION
        if work:
            tally.count += 1
        if tally.started is None:
            tally.started = at
        following = rows[index + 1][2] if index < last_index else ended_us
        tally.last = following if following is not None else at
        if following is not None and following > at:
            tally.spent_us += following - at
        if iteration is not None and work:
            tally.iterations.add(iteration)
        if loop is not None and work:
            tally.loops.add(loop)
        if item_type in FAILURE_ITEM_TYPES:
            tally.failures += 1
        if item_type in BLOCK_ITEM_TYPES:
            tally.blocks += 1
        if item_type in OUTPUT_ITEM_TYPES:
            tally.outputs += 1
    return [_figures(stage, tallies[stage], finished, current_stage) for stage in WORKING_STAGES]


class _Tally:
    __slots__ = (
        "blocks", "count", "failures", "iterations", "last", "loops", "outputs", "spent_us",
        "started",
    )  # fmt: skip

    def __init__(self) -> None:
        self.count = self.failures = self.blocks = self.outputs = self.spent_us = 0
        self.iterations: set[int] = set()
        self.loops: set[int] = set()
        self.started: int | None = None
        self.last: int | None = None


@dataclass(frozen=True, slots=True)
class StageFigures:
    """One stage's summary as plain values: the fields of ``StageSummary``, cheap to make."""

    stage: int
    name: str
    status: StageStatus
    items: int
    failures: int
    blocks: int
    iterations: int
    loops: int
    started_at: datetime | None
    ended_at: datetime | None
    duration_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict, for ``StageSummary.model_validate``."""
        return {
            "stage": self.stage,
            "name": self.name,
            "status": self.status,
            "items": self.items,
            "failures": self.failures,
            "blocks": self.blocks,
            "iterations": self.iterations,
            "loops": self.loops,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_ms": self.duration_ms,
        }


def json_time(moment: datetime | None) -> str | None:
    """A UTC datetime as the record's JSON writes it (ISO 8601 ending in "Z"), or None."""
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _figures(stage: int, t: _Tally, finished: bool, current_stage: int | None) -> StageFigures:
    started = t.started
    status = _stage_status(
        stage, t.count, t.failures, t.blocks, t.outputs, len(t.loops), finished, current_stage
    )
    return StageFigures(
        stage,
        STAGE_NAMES[stage],
        status,
        t.count,
        t.failures,
        t.blocks,
        len(t.iterations),
        len(t.loops),
        utc_from_us(started) if started is not None else None,
        utc_from_us(t.last) if started is not None and t.last is not None else None,
        round(t.spent_us / 1000.0, 3) if started is not None else None,
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
