"""The ordered journey of a run that every document format renders, built once from a record.

Layout: header, per-stage summary, then sections in pipeline order (stage 0,
stage 1, stage 2 with its iterations, one section for stages 3 and 4 with the
outputs, stage 5), then the integrity block. Every item of the record appears
in exactly one place. Groups (an iteration, an output) stand where their first
item was recorded, and items inside a group keep their recording order, so a
normal run reads 1..n and an odd one still reads as it happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from execution_history import (
    STAGE_NAMES,
    ExecutionItem,
    ExecutionRecord,
    Integrity,
    ItemType,
    StageSummary,
)

from ._timefmt import duration_human, utc_human, utc_iso

#: Stages rendered together as one section of outputs, grouped by loop_iteration.
OUTPUT_STAGES = (3, 4)


def type_name(value: object) -> str:
    """The plain string of an item type or media type (enum or unknown string).

    Args:
        value: an ``ItemType``/``MediaType`` member, a string, or None.

    Returns:
        The value's string, or an empty string for None.
    """
    if value is None:
        return ""
    return str(getattr(value, "value", value))


@dataclass(frozen=True, slots=True)
class Header:
    """The run's identity and context, every field already formatted as text."""

    run_id: str
    config_name: str
    safety_level: str
    user_pseudonym: str
    session_pseudonym: str
    device_pseudonym: str
    started_at: str
    ended_at: str
    started_human: str
    ended_human: str
    duration_ms: float | None
    duration: str
    status: str
    software_version: str
    model_versions: tuple[tuple[str, str], ...]
    taxonomy_version: str
    record_format_version: str

    def rows(self) -> tuple[tuple[str, str], ...]:
        """Label/value pairs in display order, for a metadata table.

        Returns:
            One pair per header field; model versions become one line each.
        """
        models = "; ".join(f"{name} {version}".strip() for name, version in self.model_versions)
        return (
            ("Run id", self.run_id),
            ("Config", self.config_name),
            ("Safety level", self.safety_level),
            ("User (pseudonym)", self.user_pseudonym),
            ("Session (pseudonym)", self.session_pseudonym),
            ("Device (pseudonym)", self.device_pseudonym),
            ("Started", self.started_human),
            ("Ended", self.ended_human),
            ("Duration", self.duration),
            ("Status", self.status),
            ("Software version", self.software_version),
            ("Model versions", models),
            ("Taxonomy version", self.taxonomy_version),
            ("Record format version", self.record_format_version),
        )


@dataclass(frozen=True, slots=True)
class Iteration:
    """One pass of a recursive stage (a Stille Post translation), ``stage_iteration`` = number."""

    number: int
    items: tuple[ExecutionItem, ...]


@dataclass(frozen=True, slots=True)
class Output:
    """One output config (``loop_iteration`` = loop) from its safety check to its media."""

    loop: int
    items: tuple[ExecutionItem, ...]

    @property
    def checks(self) -> tuple[ExecutionItem, ...]:
        """The output's stage 3 items (safety check, block) in order."""
        return tuple(item for item in self.items if item.stage == 3)

    @property
    def media_items(self) -> tuple[ExecutionItem, ...]:
        """The output's stage 4 items (media, failures) in order."""
        return tuple(item for item in self.items if item.stage == 4)

    @property
    def blocked(self) -> bool:
        """Whether the pre-output safety check blocked this output."""
        return any(item.item_type == ItemType.STAGE3_BLOCKED for item in self.items)

    @property
    def failed(self) -> bool:
        """Whether generating this output failed."""
        return any(item.item_type == ItemType.OUTPUT_FAILED for item in self.items)

    @property
    def outcome(self) -> str:
        """``blocked``, ``failed``, ``generated`` or ``pending`` (nothing produced)."""
        if self.blocked:
            return "blocked"
        if self.failed:
            return "failed"
        if self.media_items and any(item.media is not None for item in self.media_items):
            return "generated"
        return "pending"


Entry = ExecutionItem | Iteration | Output


@dataclass(frozen=True, slots=True)
class Section:
    """A part of the journey: one stage, or stages 3 and 4 together as outputs."""

    stages: tuple[int, ...]
    title: str
    entries: tuple[Entry, ...]

    @property
    def is_outputs(self) -> bool:
        """Whether this is the section of outputs (stages 3 and 4)."""
        return self.stages == OUTPUT_STAGES

    @property
    def iterations(self) -> tuple[Iteration, ...]:
        """The section's iterations, in order."""
        return tuple(entry for entry in self.entries if isinstance(entry, Iteration))

    @property
    def outputs(self) -> tuple[Output, ...]:
        """The section's outputs, in order."""
        return tuple(entry for entry in self.entries if isinstance(entry, Output))

    def items(self) -> Iterator[ExecutionItem]:
        """Every item of the section in display order, groups flattened."""
        for entry in self.entries:
            if isinstance(entry, ExecutionItem):
                yield entry
            else:
                yield from entry.items


@dataclass(frozen=True, slots=True)
class Journey:
    """Everything a document shows, in the order it shows it."""

    header: Header
    summary: tuple[StageSummary, ...]
    sections: tuple[Section, ...]
    integrity: Integrity

    def items(self) -> Iterator[ExecutionItem]:
        """Every item in display order (each exactly once)."""
        for section in self.sections:
            yield from section.items()

    def section(self, stage: int) -> Section:
        """The section holding ``stage`` (3 and 4 share one).

        Raises:
            KeyError: for a stage outside 0..5.
        """
        for section in self.sections:
            if stage in section.stages:
                return section
        raise KeyError(stage)


def build_journey(record: ExecutionRecord) -> Journey:
    """Arrange a (pseudonymised) record into the journey every document renders.

    Args:
        record: a finished record; exports hand over the pseudonymised copy.

    Returns:
        The journey; each of ``record.items`` appears in it exactly once.
    """
    by_stage: dict[int, list[ExecutionItem]] = {stage: [] for stage in STAGE_NAMES}
    for item in sorted(record.items, key=lambda item: item.sequence):
        # stage is validated to 0..5; setdefault keeps any future stage rather than drop it
        by_stage.setdefault(item.stage, []).append(item)
    sections: list[Section] = []
    for stage in sorted(by_stage):
        if stage == OUTPUT_STAGES[1]:
            continue
        if stage == OUTPUT_STAGES[0]:
            merged = sorted(by_stage[3] + by_stage.get(4, []), key=lambda item: item.sequence)
            title = f"Stages 3 and 4: {STAGE_NAMES[3]} and {STAGE_NAMES[4].lower()}"
            sections.append(Section(OUTPUT_STAGES, title, _group(merged, outputs=True)))
            continue
        title = f"Stage {stage}: {STAGE_NAMES.get(stage, 'Stage')}"
        sections.append(Section((stage,), title, _group(by_stage[stage], outputs=False)))
    return Journey(
        header=_header(record),
        summary=tuple(sorted(record.stages, key=lambda summary: summary.stage)),
        sections=tuple(sections),
        integrity=record.integrity,
    )


def _group(items: list[ExecutionItem], *, outputs: bool) -> tuple[Entry, ...]:
    """Group items by loop (outputs) or stage iteration, each group at its first item."""
    groups: dict[int, list[ExecutionItem]] = {}
    order: list[ExecutionItem | int] = []
    for item in items:
        key = item.loop_iteration if outputs else item.stage_iteration
        if key is None:
            order.append(item)
            continue
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(item)
    entries: list[Entry] = []
    for slot in order:
        if isinstance(slot, int):
            group = tuple(groups[slot])
            entries.append(Output(slot, group) if outputs else Iteration(slot, group))
        else:
            entries.append(slot)
    return tuple(entries)


def _header(record: ExecutionRecord) -> Header:
    return Header(
        run_id=record.run_id,
        config_name=record.config_name or "",
        safety_level=record.safety_level or "",
        user_pseudonym=record.user_pseudonym or "",
        session_pseudonym=record.session_pseudonym or "",
        device_pseudonym=record.device_pseudonym or "",
        started_at=utc_iso(record.started_at),
        ended_at=utc_iso(record.ended_at),
        started_human=utc_human(record.started_at),
        ended_human=utc_human(record.ended_at),
        duration_ms=record.duration_ms,
        duration=duration_human(record.duration_ms),
        status=type_name(record.status),
        software_version=record.software_version or "",
        model_versions=tuple(
            (name, version or "") for name, version in sorted(record.model_versions.items())
        ),
        taxonomy_version=record.taxonomy_version,
        record_format_version=record.record_format_version,
    )
