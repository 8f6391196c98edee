"""The frozen record of a finished run: pydantic models with a published JSON Schema."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ._taxonomy import TAXONOMY_VERSION, ItemType, MediaType, RunStatus, StageStatus

logger = logging.getLogger("execution_history")

#: Version of the record's JSON layout; independent of the taxonomy version.
RECORD_FORMAT_VERSION = "1.3"  # 1.1: safety_level_set_by; 1.2: item input_sequence; 1.3: device_id

_FROZEN = ConfigDict(frozen=True, extra="ignore", use_enum_values=False)


class MediaRef(BaseModel):
    """Where a media file of the run lives: a path inside the run's media folder, never bytes."""

    model_config = _FROZEN

    path: str = Field(description="Path relative to the run's media folder, '/'-separated.")
    mime_type: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None


class ExecutionItem(BaseModel):
    """One recorded step of a run."""

    model_config = _FROZEN

    sequence: int = Field(ge=1, description="1, 2, 3 … in order of recording.")
    timestamp: datetime = Field(description="When it was recorded, UTC.")
    stage: int = Field(ge=0, le=5)
    stage_iteration: int | None = Field(
        default=None, description="Iteration inside a recursive stage (Stille Post); None outside."
    )
    loop_iteration: int | None = Field(
        default=None, description="Output config number in stages 3 and 4; None outside."
    )
    # left_to_right: a known name becomes the enum member, an unknown one (from a newer
    # taxonomy) is kept as a string; done by pydantic-core, no Python call per item.
    item_type: ItemType | str = Field(
        union_mode="left_to_right",
        description="An ItemType; an unknown type from a newer taxonomy is kept as a string.",
    )
    media_type: MediaType | str | None = Field(default=None, union_mode="left_to_right")
    content: str | None = None
    content_length: int | None = Field(
        default=None, description="The original length in characters when content was truncated."
    )
    media: MediaRef | None = None
    config: str | None = None
    model: str | None = None
    backend: str | None = None
    duration_ms: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    input_sequence: int | None = Field(
        default=None,
        ge=1,
        description=(
            "The sequence number of the item whose content this step consumed, as the"
            " pipeline told it (provenance); None when it consumed no recorded item or"
            " the pipeline did not say."
        ),
    )


class StageSummary(BaseModel):
    """What happened in one stage; the same model serves live progress."""

    model_config = _FROZEN

    stage: int
    name: str
    status: StageStatus
    items: int = 0
    failures: int = 0
    blocks: int = 0
    iterations: int = Field(default=0, description="Distinct stage_iteration values seen.")
    loops: int = Field(default=0, description="Distinct loop_iteration values seen.")
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: float | None = None


class SinkOutcome(BaseModel):
    """How one sink (store, live feed, …) dealt with the finished record."""

    model_config = _FROZEN

    name: str
    status: str = Field(description="'ok', 'failed', 'timeout' or 'quarantined'.")
    attempts: int = 1
    duration_ms: float | None = Field(
        default=None,
        description=(
            "How long the sink took. The store's own outcome is written inside the record"
            " it stores, so for the store it is the time before its successful write began"
            " (failed tries and their backoff)."
        ),
    )
    error: str | None = None


class Integrity(BaseModel):
    """Everything the tracker had to cap, cut, coerce or catch: nothing is lost silently."""

    model_config = _FROZEN

    items_recorded: int = 0
    items_dropped: int = Field(default=0, description="Items refused at the per-run cap.")
    items_after_finalize: int = Field(default=0, description="log() calls after finalisation.")
    fields_truncated: int = 0
    values_coerced: int = 0
    characters_replaced: int = Field(
        default=0, description="Lone surrogates replaced one for one by U+FFFD."
    )
    tracker_errors: int = 0
    tracker_error_messages: list[str] = Field(default_factory=list)
    sinks: list[SinkOutcome] = Field(default_factory=list)
    recovered: bool = Field(default=False, description="Rebuilt from the journal after a crash.")


class ExecutionRecord(BaseModel):
    """The complete, frozen history of one run."""

    model_config = _FROZEN

    record_format_version: str = RECORD_FORMAT_VERSION
    taxonomy_version: str = TAXONOMY_VERSION
    run_id: str
    config_name: str | None = None
    safety_level: str | None = None
    safety_level_set_by: str | None = Field(
        default=None,
        description="Who chose the level: 'workshop' (the server's), 'request' (a stricter one "
        "the run asked for), 'research token' (a less protective one, allowed by the token), "
        "'command line'; None when not recorded.",
    )
    user_id: str | None = Field(default=None, description="Raw id; only inside the store.")
    session_id: str | None = Field(
        default=None, description="Raw id of the workshop; only inside the store."
    )
    device_id: str | None = Field(
        default=None, description="Raw id the page gave its device; only inside the store."
    )
    user_pseudonym: str | None = None
    session_pseudonym: str | None = None
    device_pseudonym: str | None = None
    started_at: datetime
    ended_at: datetime | None = None
    duration_ms: float | None = None
    status: RunStatus
    stages: list[StageSummary] = Field(default_factory=list)
    software_version: str | None = None
    model_versions: dict[str, str | None] = Field(default_factory=dict)
    items: list[ExecutionItem] = Field(default_factory=list)
    integrity: Integrity = Field(default_factory=Integrity)

    @field_validator("status", mode="before")
    @classmethod
    def _unknown_status(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in RunStatus.__members__.values():
            logger.warning("record holds status %r unknown to this version; read as error", value)
            return RunStatus.ERROR
        return value

    @model_validator(mode="after")
    def _log_unknown_types(self) -> ExecutionRecord:
        for item in self.items:
            if type(item.item_type) is str or type(item.media_type) is str:
                logger.warning(
                    "record %s holds item type %r or media type %r unknown to this version; kept",
                    self.run_id,
                    item.item_type,
                    item.media_type,
                )
                break
        return self

    def pseudonymised(self, pseudonymise: Any) -> ExecutionRecord:
        """A copy safe to show outside the store: raw ids replaced by keyed pseudonyms.

        Args:
            pseudonymise: a ``Pseudonymiser`` (anything with ``user(id)``,
                ``session(id)`` and ``device(id)`` returning pseudonyms), or None
                to drop the ids.
        """
        if self.user_id is None and self.session_id is None and self.device_id is None:
            return self
        user = session = device = None
        if pseudonymise is not None:
            user = pseudonymise.user(self.user_id) if self.user_id is not None else None
            session = pseudonymise.session(self.session_id) if self.session_id is not None else None
            device = pseudonymise.device(self.device_id) if self.device_id is not None else None
        return self.model_copy(
            update={
                "user_id": None,
                "session_id": None,
                "device_id": None,
                "user_pseudonym": user or self.user_pseudonym,
                "session_pseudonym": session or self.session_pseudonym,
                "device_pseudonym": device or self.device_pseudonym,
            }
        )
