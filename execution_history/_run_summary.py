"""A finished run's summary (the answer to "run and wait"), derived from its record.

There is one route from raw items to figures, the builder; the summary only
picks from the record it made, so it can never disagree with the record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._record import ExecutionRecord, StageSummary
from ._summary import json_time
from ._taxonomy import ItemType, RunStatus


@dataclass(frozen=True, slots=True)
class OutputMedia:
    """A media file a run produced (``path`` relative to the run's media folder)."""

    loop_iteration: int | None
    item_type: str
    path: str
    mime_type: str | None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a finished run did, in brief."""

    run_id: str
    config_name: str | None
    safety_level: str | None
    status: RunStatus
    started_at: datetime
    ended_at: datetime | None
    duration_ms: float | None
    items: int
    stages: list[StageSummary]
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
            "stages": [stage.model_dump(mode="json") for stage in self.stages],
            "interception_final": self.interception_final,
            "outputs": outputs,
        }


def summarise_run(record: ExecutionRecord) -> RunSummary:
    """The summary of ``record``'s run."""
    final: str | None = None
    outputs: list[OutputMedia] = []
    for item in record.items:
        if item.item_type == ItemType.INTERCEPTION_FINAL:
            final = item.content
        if item.media is not None:
            outputs.append(
                OutputMedia(
                    item.loop_iteration, str(item.item_type), item.media.path, item.media.mime_type
                )
            )
    return RunSummary(
        run_id=record.run_id,
        config_name=record.config_name,
        safety_level=record.safety_level,
        status=record.status,
        started_at=record.started_at,
        ended_at=record.ended_at,
        duration_ms=record.duration_ms,
        items=len(record.items),
        stages=list(record.stages),
        interception_final=final,
        outputs=outputs,
    )


__all__ = ["OutputMedia", "RunSummary", "summarise_run"]
