"""A finished run's summary read straight from its raw items, without building the record.

A server that answers "the run has ended" with a summary should not pay for
building and validating the whole record (the store does that later). The
summary applies the record builder's own conversions to the few fields it
reads and the record's own stage summariser, so it agrees with the record
built later: same status, same stage summaries, same final text and media.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._build import (
    clean_content,
    int_field,
    media_fields,
    opt_int,
    sequence_key,
    str_field,
    utc_from_ns,
)
from ._coerce import CoercionStats
from ._items import RawItem
from ._summary import StageFigures, StageRow, derive_status, json_time, summarise_stage_rows
from ._taxonomy import ItemType, RunStatus

if TYPE_CHECKING:
    from ._tracker import ExecutionTracker


@dataclass(frozen=True, slots=True)
class OutputMedia:
    """A media file a run produced (``path`` relative to the run's media folder)."""

    loop_iteration: int | None
    item_type: str
    path: str
    mime_type: str | None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a finished run did, in brief: the answer to "run and wait"."""

    run_id: str
    config_name: str | None
    safety_level: str | None
    status: RunStatus
    started_at: datetime
    ended_at: datetime | None
    duration_ms: float | None
    items: int
    stages: list[StageFigures]
    interception_final: str | None
    outputs: list[OutputMedia]

    def to_json(self, media_url: Callable[[str], str | None]) -> dict[str, Any]:
        """The summary as a JSON object, times and stages as the record writes them.

        ``media_url`` makes the address of a media file from its path in the
        run's folder; an output it gives None for is left out.
        """
        outputs = []
        for media in self.outputs:
            url = media_url(media.path)
            if url is not None:
                outputs.append(
                    {
                        "loop_iteration": media.loop_iteration,
                        "item_type": media.item_type,
                        "mime_type": media.mime_type,
                        "url": url,
                    }
                )
        return {
            "config": self.config_name,
            "safety_level": self.safety_level,
            "status": self.status.value,
            "started_at": json_time(self.started_at),
            "ended_at": json_time(self.ended_at),
            "duration_ms": self.duration_ms,
            "items": self.items,
            "stages": [stage.to_json() for stage in self.stages],
            "interception_final": self.interception_final,
            "outputs": outputs,
        }


def summarise_run(tracker: ExecutionTracker) -> RunSummary:
    """The summary of ``tracker``'s run (closed or not: an open run is ``running``)."""
    stats = CoercionStats()  # the record's counters come from the build, not from here
    max_chars = tracker.limits.max_text_chars
    raw_items: list[RawItem] = sorted(tracker.items[: len(tracker.items)], key=sequence_key)
    rows: list[StageRow] = []
    final: str | None = None
    outputs: list[OutputMedia] = []
    for raw in raw_items:
        # The builder's conversions, skipped for the values the tracker itself logs.
        stage, item_type, iteration, loop = raw[2], raw[5], raw[3], raw[4]
        if type(stage) is not int:
            stage = int_field(stage, stats, 0)
        if type(item_type) is not ItemType:
            item_type = str_field(item_type, stats) or ItemType.PIPELINE_ERROR.value
        if iteration is not None and type(iteration) is not int:
            iteration = opt_int(iteration, stats)
        if loop is not None and type(loop) is not int:
            loop = opt_int(loop, stats)
        rows.append((stage, item_type, raw[1] // 1000, iteration, loop))
        if item_type == ItemType.INTERCEPTION_FINAL:
            final = clean_content(raw[6], max_chars, stats)
        if raw[8] is not None:
            media = media_fields(raw[8], {}, stats)
            if media is not None:
                path, mime = media["path"], media.get("mime_type")
                outputs.append(OutputMedia(loop, str(item_type), path, mime))
    status = (
        tracker.status if tracker.closed else derive_status((r[1] for r in rows), finished=False)
    )
    ended_ns = tracker.ended_ns
    return RunSummary(
        run_id=tracker.run_id,
        config_name=tracker.config_name,
        safety_level=tracker.safety_level,
        status=status,
        started_at=utc_from_ns(tracker.started_ns),
        ended_at=utc_from_ns(ended_ns) if ended_ns is not None else None,
        duration_ms=round((ended_ns - tracker.started_ns) / 1e6, 3)
        if ended_ns is not None
        else None,
        items=len(raw_items),
        stages=summarise_stage_rows(
            rows, status, ended_ns // 1000 if ended_ns is not None else None
        ),
        interception_final=final,
        outputs=outputs,
    )


__all__ = ["OutputMedia", "RunSummary", "summarise_run"]
