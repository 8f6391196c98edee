"""The one view of a record that every format lays out: order, wording, values and times.

Formats decide where things go, never what they say: the verdict words, item
fields and their order, media facts, value formatting (``value_text``) and
times (``_timefmt``) are decided here, so a PDF, a DOCX and a transcript of
the same run say the same thing.

Layout: header, per-stage summary, then sections in pipeline order (stage 0,
stage 1, stage 2 with its iterations, one section for stages 3 and 4 with the
outputs, stage 5), then the integrity block. Every item of the record appears
in exactly one place. Groups (an iteration, an output) stand where their first
item was recorded, and items inside a group keep their recording order, so a
normal run reads 1..n and an odd one still reads as it happened.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from execution_history import (
    STAGE_NAMES,
    ExecutionItem,
    ExecutionRecord,
    Integrity,
    ItemType,
    MediaRef,
    StageSummary,
)

from ._timefmt import duration_human, utc_iso

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
    started_at: str
    ended_at: str
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
            ("Started", self.started_at),
            ("Ended", self.ended_at),
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

    @property
    def title(self) -> str:
        """``Iteration 3 (fr → es)``; the language pair only when both languages are recorded."""
        pair = language_pair(self.items[0]) if self.items else ""
        return f"Iteration {self.number}" + (f" ({pair})" if pair else "")


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
    def title(self) -> str:
        """``Output 2: blocked``."""
        return f"Output {self.loop}: {self.outcome}"

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
        started_at=utc_iso(record.started_at),
        ended_at=utc_iso(record.ended_at),
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


# --------------------------------------------------------------------------- wording of items

#: The words of a safety verdict, the same in every format (and the CSV/XLSX column).
VERDICT_PASSED = "passed"
VERDICT_FAILED = "failed"
VERDICT_BLOCKED = "blocked"


def safety_verdict(item: ExecutionItem) -> str | None:
    """The safety verdict an item records, in the one wording every format uses.

    Args:
        item: any item.

    Returns:
        ``blocked`` for a block item (stage 1 or 3); ``passed`` or ``failed`` for a
        safety check whose metadata holds a boolean ``passed``; None for every other
        item, and for a check that recorded no boolean verdict: a verdict the record
        does not have stays empty, it is never guessed.
    """
    if item.item_type in (ItemType.STAGE1_BLOCKED, ItemType.STAGE3_BLOCKED):
        return VERDICT_BLOCKED
    if item.item_type in (ItemType.STAGE1_SAFETY_CHECK, ItemType.STAGE3_SAFETY_CHECK):
        passed = item.metadata.get("passed")
        if isinstance(passed, bool):
            return VERDICT_PASSED if passed else VERDICT_FAILED
    return None


def value_text(value: object) -> str:
    """A metadata value as text: a string as it is, anything else as compact JSON.

    Args:
        value: a JSON value from a record (the tracker has coerced everything else).

    Returns:
        The string itself, or JSON with sorted keys and non-ASCII kept; ``repr`` for
        the (impossible in a valid record) value JSON cannot encode.
    """
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)


def language_pair(item: ExecutionItem) -> str:
    """``de → fr`` from an item's ``from_lang``/``to_lang``, or "" unless both are recorded."""
    source, target = item.metadata.get("from_lang"), item.metadata.get("to_lang")
    if source is None or target is None:
        return ""
    return f"{value_text(source)} → {value_text(target)}"


def item_scope(item: ExecutionItem) -> str:
    """Stage and groups of an item: ``stage 2, iteration 7`` or ``stage 4, output 1``."""
    parts = [f"stage {item.stage}"]
    if item.stage_iteration is not None:
        parts.append(f"iteration {item.stage_iteration}")
    if item.loop_iteration is not None:
        parts.append(f"output {item.loop_iteration}")
    return ", ".join(parts)


def item_title(item: ExecutionItem) -> str:
    """An item's title line: ``#7 · interception_iteration · stage 2, iteration 1``.

    Formats append `` · <verdict>`` (``safety_verdict``) when there is one.
    """
    return f"#{item.sequence} · {type_name(item.item_type)} · {item_scope(item)}"


def media_facts(media: MediaRef) -> tuple[tuple[str, str], ...]:
    """Label/value rows of a media reference, in this order, only for what is recorded.

    Media file, MIME type, Size (bytes), Pixels (width × height), Media duration
    (seconds), SHA-256.
    """
    rows: list[tuple[str, str]] = [("Media file", media.path)]
    if media.mime_type is not None:
        rows.append(("MIME type", media.mime_type))
    if media.size_bytes is not None:
        rows.append(("Size", f"{media.size_bytes} bytes"))
    if media.width is not None and media.height is not None:
        rows.append(("Pixels", f"{media.width} × {media.height}"))
    if media.duration_s is not None:
        rows.append(("Media duration", f"{media.duration_s:g} s"))
    if media.sha256 is not None:
        rows.append(("SHA-256", media.sha256))
    return tuple(rows)


def item_fields(item: ExecutionItem) -> tuple[tuple[str, str], ...]:
    """Label/value rows of an item, the same in every document format.

    Order: Recorded (UTC, ISO 8601), Media type, Config, Model, Backend, Duration,
    Text length (only when the tracker truncated the text), the media facts
    (``media_facts``), then each metadata entry sorted by key (``value_text``).
    A field the record does not have is left out, never filled in.
    """
    rows: list[tuple[str, str]] = [("Recorded", utc_iso(item.timestamp))]
    for label, value in (
        ("Media type", type_name(item.media_type)),
        ("Config", item.config),
        ("Model", item.model),
        ("Backend", item.backend),
        ("Duration", duration_human(item.duration_ms)),
    ):
        if value:
            rows.append((label, value))
    if item.content_length is not None:
        kept = len(item.content) if item.content is not None else 0
        rows.append(("Text length", f"{item.content_length} characters recorded, {kept} kept"))
    if item.media is not None:
        rows.extend(media_facts(item.media))
    for key in sorted(item.metadata, key=str):
        rows.append((str(key), value_text(item.metadata[key])))
    return tuple(rows)


# --------------------------------------------------------------------------- wording of a run

#: Column headings of the stage summary table.
SUMMARY_HEADINGS = (
    "Stage",
    "Name",
    "Status",
    "Items",
    "Failures",
    "Blocks",
    "Iterations",
    "Loops",
    "Duration",
)


def summary_rows(summary: tuple[StageSummary, ...]) -> tuple[tuple[str, ...], ...]:
    """One row per stage under ``SUMMARY_HEADINGS``; an unknown duration stays empty."""
    return tuple(
        (
            str(stage.stage),
            stage.name,
            type_name(stage.status),
            str(stage.items),
            str(stage.failures),
            str(stage.blocks),
            str(stage.iterations),
            str(stage.loops),
            duration_human(stage.duration_ms),
        )
        for stage in summary
    )


def integrity_rows(integrity: Integrity) -> tuple[tuple[str, str], ...]:
    """Label/value rows of the integrity counters, in this order."""
    return (
        ("Items recorded", str(integrity.items_recorded)),
        ("Items dropped at the cap", str(integrity.items_dropped)),
        ("Items logged after finalising", str(integrity.items_after_finalize)),
        ("Fields truncated", str(integrity.fields_truncated)),
        ("Values coerced to JSON", str(integrity.values_coerced)),
        ("Characters replaced (lone surrogates)", str(integrity.characters_replaced)),
        ("Tracker errors caught", str(integrity.tracker_errors)),
        ("Recovered after a crash", "yes" if integrity.recovered else "no"),
    )


#: Column headings of the sink outcomes table.
SINK_HEADINGS = ("Sink", "Status", "Attempts", "Duration", "Error")


def sink_rows(integrity: Integrity) -> tuple[tuple[str, ...], ...]:
    """One row per sink outcome under ``SINK_HEADINGS``."""
    return tuple(
        (
            sink.name,
            sink.status,
            str(sink.attempts),
            duration_human(sink.duration_ms),
            sink.error or "",
        )
        for sink in integrity.sinks
    )
