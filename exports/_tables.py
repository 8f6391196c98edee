"""The tidy-table model shared by the csv and xlsx formats: columns, rows, cell safety, dictionary.

Three tables describe a set of runs:

- ``items``: one row per recorded item (the unit of analysis);
- ``runs``: one row per run, with its status and per-stage counts;
- ``data_dictionary``: one row per column of the two tables above.

Every text cell passes through :func:`clean_text`: control characters other than
TAB, LF and CR are removed, characters illegal in XML 1.0 (lone surrogates,
U+FFFE, U+FFFF) become U+FFFD. Then the writer's guard applies: the csv format
gives a text that a spreadsheet would read as a formula one apostrophe in front
(:func:`neutralise`); the xlsx format stores every text as a string cell, which
no spreadsheet evaluates, and keeps the text as it is (:func:`as_is`). A text
longer than a spreadsheet cell holds is never cut: it is split over continuation
rows that repeat the row's key and carry ``part``/``parts`` (see :func:`split_cells`).

Common parameters (``from_lang``, ``to_lang``, ``seed``) get their own item
columns, read from the item's metadata only when they have the expected type;
the full metadata stays in ``parameters``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from execution_history import STAGE_NAMES, ExecutionRecord, ItemType

from ._journey import safety_verdict, type_name
from ._text import sanitise
from ._timefmt import utc_iso

#: Excel's limit on the characters in one cell (counted in UTF-16 code units).
CELL_LIMIT = 32_767
#: A chunk of a split text: one less than the cell limit, so that a neutralising
#: apostrophe still fits.
CHUNK_LIMIT = CELL_LIMIT - 1
#: Texts starting with one of these are read as a formula (or DDE command) by
#: Excel, LibreOffice or Google Sheets; the apostrophe itself is included so that
#: neutralising stays reversible (see ``neutralise``).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")
#: Control characters (Unicode category Cc) except TAB, LF and CR: they have no
#: meaning in a cell and Excel or openpyxl refuse several of them.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

Cell = str | int | float | bool | None
#: What a writer does to each text cell after cleaning (``neutralise`` or ``as_is``).
Guard = Callable[[str], str]
#: The largest integer a spreadsheet (IEEE double) holds exactly; larger seeds are text.
_EXACT_INTEGER = 2**53 - 1

#: The working stages that get per-stage columns in the runs table.
_STAGES = (1, 2, 3, 4)


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table and its entry in the data dictionary.

    Attributes:
        name: the column header.
        type: ``string``, ``integer``, ``number``, ``boolean``, ``datetime`` or ``json``.
        unit: the unit of a number (``ms``) or the format of a text, empty when none.
        allowed: the allowed values or range, empty when any value of the type is allowed.
        meaning: what the column holds, for a researcher.
        key: whether the column identifies the row; keys are repeated on continuation rows.
    """

    name: str
    type: str
    unit: str
    allowed: str
    meaning: str
    key: bool = False


_TEXT_NOTE = (
    " Split over continuation rows when longer than 32,766 characters. In the CSV"
    " files a leading apostrophe was added when the text began with = + - @ TAB CR or"
    " an apostrophe; in the XLSX workbook the text is a string cell, exactly as recorded."
)

ITEM_COLUMNS: tuple[Column, ...] = (
    Column("run_id", "string", "", "32+ hex characters", "The run the item belongs to.", True),
    Column(
        "sequence", "integer", "", ">= 1", "Order of recording within the run (1, 2, 3 …).", True
    ),
    Column(
        "part",
        "integer",
        "",
        ">= 1",
        "1 for the item's row; 2, 3 … for continuation rows carrying the rest of a text"
        " too long for one cell.",
        True,
    ),
    Column(
        "parts", "integer", "", ">= 1", "How many rows the item spans (1 when nothing was split)."
    ),
    Column(
        "user_pseudonym",
        "string",
        "",
        "",
        "Keyed pseudonym of the participant (stable across exports; not reversible).",
    ),
    Column("session_pseudonym", "string", "", "", "Keyed pseudonym of the session (class)."),
    Column("config", "string", "", "", "The pipeline config the run executed."),
    Column("safety_level", "string", "", "kids, teens, adults, research", "The run's age level."),
    Column(
        "stage",
        "integer",
        "",
        "0-5",
        "Pipeline stage: 0 start, 1 translation and safety, 2 interception,"
        " 3 pre-output safety, 4 media generation, 5 end.",
    ),
    Column("stage_name", "string", "", ", ".join(STAGE_NAMES.values()), "Name of the stage."),
    Column(
        "stage_iteration",
        "integer",
        "",
        ">= 0; empty outside an iteration",
        "Iteration of a recursive stage 2 (Stille Post: 1 … 8).",
    ),
    Column(
        "loop_iteration",
        "integer",
        "",
        ">= 0; empty outside an output",
        "Output config number in stages 3 and 4.",
    ),
    Column("item_type", "string", "", ", ".join(t.value for t in ItemType), "What was recorded."),
    Column(
        "media_type",
        "string",
        "",
        "text, image, audio, music, video, 3d, metadata",
        "The kind of content the item carries.",
    ),
    Column(
        "text", "string", "", "", "The item's text content (prompt, translation …)." + _TEXT_NOTE
    ),
    Column(
        "text_original_length",
        "integer",
        "characters",
        "",
        "The text's length before the tracker truncated it; empty when it was not truncated.",
    ),
    Column("media_path", "string", "", "", "Path of the media file inside the run's media folder."),
    Column("media_mime_type", "string", "MIME type", "", "Format of the media file."),
    Column("media_sha256", "string", "hex", "64 hex characters", "SHA-256 of the media file."),
    Column("model", "string", "", "", "The model that produced the item."),
    Column("backend", "string", "", "", "The backend that ran the model."),
    Column(
        "from_lang",
        "string",
        "language code",
        "",
        "Language translated from (metadata from_lang of translations and Stille Post"
        " steps); empty when not recorded or not a text.",
    ),
    Column(
        "to_lang",
        "string",
        "language code",
        "",
        "Language translated into (metadata to_lang); empty when not recorded or not a text.",
    ),
    Column(
        "seed",
        "integer",
        "",
        "",
        "Random seed given to the backend (metadata seed); empty when not recorded or not"
        " an integer. A seed beyond ±(2^53 − 1) is written as text, which spreadsheets"
        " would otherwise round.",
    ),
    Column("item_config", "string", "", "", "The config named on the item itself (output config)."),
    Column(
        "parameters",
        "json",
        "JSON object",
        "",
        "Everything passed to the backend (seed, steps, languages, verdict details …), as"
        " JSON with sorted keys." + _TEXT_NOTE,
    ),
    Column(
        "timestamp_utc",
        "datetime",
        "ISO 8601, UTC",
        "",
        "When the item was recorded (microseconds, Z).",
    ),
    Column("duration_ms", "number", "ms", ">= 0", "How long the step took; empty when unknown."),
    Column(
        "safety_verdict",
        "string",
        "",
        "passed, failed, blocked; empty for other items",
        "The verdict of a safety check or block item.",
    ),
)

_RUN_FIXED: tuple[Column, ...] = (
    Column("run_id", "string", "", "32+ hex characters", "The run.", True),
    Column(
        "part",
        "integer",
        "",
        ">= 1",
        "1 for the run's row; 2, 3 … for continuation rows of a text too long for one cell.",
        True,
    ),
    Column("parts", "integer", "", ">= 1", "How many rows the run spans."),
    Column("user_pseudonym", "string", "", "", "Keyed pseudonym of the participant."),
    Column("session_pseudonym", "string", "", "", "Keyed pseudonym of the session (class)."),
    Column("config", "string", "", "", "The pipeline config the run executed."),
    Column("safety_level", "string", "", "kids, teens, adults, research", "The run's age level."),
    Column(
        "status",
        "string",
        "",
        "running, success, partial, blocked, error, incomplete",
        "How the run ended: partial = some outputs blocked or failed; blocked = stopped at"
        " stage 1; incomplete = recovered after the process died.",
    ),
    Column("started_utc", "datetime", "ISO 8601, UTC", "", "When the run started."),
    Column("ended_utc", "datetime", "ISO 8601, UTC", "", "When the run ended; empty if not."),
    Column("duration_ms", "number", "ms", ">= 0", "How long the run took."),
    Column("items", "integer", "", ">= 0", "Items in the record (rows in the items table)."),
    Column("software_version", "string", "", "", "Version of the pipeline software."),
    Column(
        "model_versions",
        "json",
        "JSON object",
        "",
        "Model name to version, as JSON." + _TEXT_NOTE,
    ),
    Column("taxonomy_version", "string", "", "", "Version of the item-type vocabulary."),
    Column("record_format_version", "string", "", "", "Version of the record layout."),
)


def _stage_columns(stage: int) -> tuple[Column, ...]:
    name = STAGE_NAMES[stage]
    return (
        Column(
            f"stage{stage}_status",
            "string",
            "",
            "pending, running, done, blocked, failed, skipped",
            f"Status of stage {stage} ({name}); empty when the record has no summary for it.",
        ),
        Column(f"stage{stage}_items", "integer", "", ">= 0", f"Items recorded in stage {stage}."),
        Column(
            f"stage{stage}_failures", "integer", "", ">= 0", f"Failures counted in stage {stage}."
        ),
        Column(f"stage{stage}_blocks", "integer", "", ">= 0", f"Blocks counted in stage {stage}."),
        Column(
            f"stage{stage}_iterations",
            "integer",
            "",
            ">= 0",
            f"Distinct stage iterations seen in stage {stage}.",
        ),
        Column(
            f"stage{stage}_loops",
            "integer",
            "",
            ">= 0",
            f"Distinct output loops seen in stage {stage}.",
        ),
        Column(
            f"stage{stage}_duration_ms", "number", "ms", ">= 0", f"Time spent in stage {stage}."
        ),
    )


_RUN_INTEGRITY: tuple[Column, ...] = (
    Column("items_dropped", "integer", "", ">= 0", "Items the tracker refused at its per-run cap."),
    Column("fields_truncated", "integer", "", ">= 0", "Fields the tracker truncated."),
    Column("values_coerced", "integer", "", ">= 0", "Values converted to be stored as JSON."),
    Column(
        "characters_replaced",
        "integer",
        "",
        ">= 0",
        "Lone surrogates the tracker replaced by U+FFFD.",
    ),
    Column("tracker_errors", "integer", "", ">= 0", "Errors of the tracker caught during the run."),
    Column(
        "recovered",
        "boolean",
        "",
        "true, false",
        "Whether the record was rebuilt from the journal after a crash.",
    ),
)

RUN_COLUMNS: tuple[Column, ...] = (
    _RUN_FIXED
    + tuple(column for stage in _STAGES for column in _stage_columns(stage))
    + _RUN_INTEGRITY
)

DICTIONARY_HEADER: tuple[str, ...] = (
    "table",
    "column",
    "type",
    "unit",
    "allowed_values",
    "meaning",
)

#: The tables in the order every writer emits them.
TABLE_NAMES = ("items", "runs", "data_dictionary")


# --------------------------------------------------------------------------- cells


def clean_text(text: str) -> str:
    """Remove control characters and make the rest legal in XML 1.0 and UTF-8.

    TAB, LF and CR are kept (they are text); every other control character is
    removed; lone surrogates, U+FFFE and U+FFFF become U+FFFD.

    Args:
        text: any string.

    Returns:
        The cleaned string (the same object when nothing needed cleaning).
    """
    if _CONTROL.search(text) is not None:
        text = _CONTROL.sub("", text)
    return sanitise(text)


def neutralise(text: str) -> str:
    """Guard one cell's text against formula injection, reversibly.

    A text beginning with ``=``, ``+``, ``-``, ``@``, TAB or CR gets one apostrophe
    in front, so no spreadsheet evaluates it (OWASP's CSV-injection advice). A
    text already beginning with an apostrophe gets one too, which makes the rule
    reversible: the original is the cell without its first character whenever
    the cell begins with an apostrophe (see :func:`restore`).

    Args:
        text: a cleaned cell text.

    Returns:
        The text to store in the cell.
    """
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


def as_is(text: str) -> str:
    """The guard of the xlsx format: the text unchanged (a string cell is never evaluated).

    Args:
        text: a cleaned cell text.

    Returns:
        ``text`` itself.
    """
    return text


def restore(cell: str) -> str:
    """Undo :func:`neutralise` (documented for readers; the inverse of the rule above).

    Args:
        cell: a text cell as read back from the csv or xlsx file.

    Returns:
        The cell's text as recorded (after cleaning).
    """
    return cell[1:] if cell.startswith("'") else cell


def utf16_len(text: str) -> int:
    """The length of ``text`` as Excel counts it (UTF-16 code units).

    Args:
        text: any string.

    Returns:
        Code units: characters outside the Basic Multilingual Plane count twice.
    """
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def split_text(text: str, limit: int = CHUNK_LIMIT) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` UTF-16 code units.

    Chunks never cut a character in two (an emoji stays whole), and joining them
    gives back ``text`` exactly.

    Args:
        text: any string.
        limit: the largest chunk in UTF-16 code units (at least 2).

    Returns:
        At least one chunk (``[""]`` for an empty text).
    """
    if len(text) <= limit // 2 or utf16_len(text) <= limit:
        return [text]
    chunks: list[str] = []
    start = 0
    units = 0
    for index, char in enumerate(text):
        width = 2 if ord(char) > 0xFFFF else 1
        if units + width > limit:
            chunks.append(text[start:index])
            start = index
            units = 0
        units += width
    chunks.append(text[start:])
    return chunks


def _number(value: float | int | None) -> Cell:
    # NaN and infinity are not numbers a spreadsheet can store; show them as text
    # rather than drop them.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


#: Characters json.dumps(ensure_ascii=False) leaves raw but a cell or XML text cannot
#: hold: DEL, C1 controls, U+FFFE and U+FFFF (escaped, so they survive) and lone
#: surrogates (replaced: an escaped pair of them would read back as one other character).
_JSON_ESCAPED = re.compile("[\x7f-\x9f\ufffe\uffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(value: Any) -> str:
    """``value`` as compact JSON with sorted keys that any cell or XML text holds exactly.

    Readable characters stay as they are; DEL, C1 controls, U+FFFE and U+FFFF are
    written as ``\\uXXXX`` escapes, which JSON readers turn back into the same
    characters. Lone surrogates (not text in any encoding) become U+FFFD one for
    one, as everywhere in the exports.

    Args:
        value: JSON-compatible data (anything else is written as its ``str``).

    Returns:
        The JSON text.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        # keys of mixed types cannot be sorted; keep the recorded order instead
        text = json.dumps(value, ensure_ascii=False, default=str)
    text = _SURROGATE.sub("\ufffd", text)
    return _JSON_ESCAPED.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def split_cells(
    values: Sequence[Cell], columns: Sequence[Column], part_index: int, guard: Guard = neutralise
) -> Iterator[list[Cell]]:
    """Turn one logical row into one or more table rows with safe cells.

    Every text cell is cleaned and, when longer than a cell allows, split. The
    first row carries every column (the first chunk of a split text); each
    continuation row repeats the key columns, numbers itself in ``part``, and
    carries the next chunk of each split text, leaving other cells empty.

    Args:
        values: the row's raw values, one per column; ``part``/``parts`` are filled here.
        columns: the table's columns (``part`` at ``part_index``, ``parts`` right after).
        part_index: the position of the ``part`` column.
        guard: applied to every text piece after cleaning (``neutralise`` for csv).

    Returns:
        The rows.
    """
    chunks: list[list[str] | None] = []
    for value in values:
        chunks.append(split_text(clean_text(value)) if isinstance(value, str) else None)
    parts = max((len(c) for c in chunks if c is not None), default=1)
    first: list[Cell] = [
        guard(pieces[0]) if pieces is not None else value
        for value, pieces in zip(values, chunks, strict=True)
    ]
    first[part_index] = 1
    first[part_index + 1] = parts
    yield first
    for part in range(1, parts):
        row: list[Cell] = []
        for index, (column, pieces) in enumerate(zip(columns, chunks, strict=True)):
            if index == part_index:
                row.append(part + 1)
            elif index == part_index + 1:
                row.append(parts)
            elif column.key:
                # keys identify the item on every row (run ids and sequences are short)
                row.append(first[index])
            elif pieces is not None and part < len(pieces):
                row.append(guard(pieces[part]))
            else:
                row.append(None)
        yield row


# ------------------------------------------------------------------------- rows


_ITEM_PART = next(i for i, c in enumerate(ITEM_COLUMNS) if c.name == "part")
_RUN_PART = next(i for i, c in enumerate(RUN_COLUMNS) if c.name == "part")


def _text_parameter(metadata: dict[str, Any], key: str) -> str | None:
    value = metadata.get(key)
    return value if isinstance(value, str) else None


def _seed(metadata: dict[str, Any]) -> Cell:
    value = metadata.get("seed")
    if isinstance(value, bool) or not isinstance(value, int):
        return None  # a seed of another type stays in parameters, as recorded
    return value if abs(value) <= _EXACT_INTEGER else str(value)


def item_rows(record: ExecutionRecord, guard: Guard = neutralise) -> Iterator[list[Cell]]:
    """The rows of the items table for one (pseudonymised) record, in recording order.

    Args:
        record: the record; raw user and session ids are never read.
        guard: what the writer does to each text cell (see ``split_cells``).

    Returns:
        One row per item, plus continuation rows for texts longer than a cell.
    """
    for item in sorted(record.items, key=lambda item: item.sequence):
        media = item.media
        values: list[Cell] = [
            record.run_id,
            item.sequence,
            1,
            1,
            record.user_pseudonym,
            record.session_pseudonym,
            record.config_name,
            record.safety_level,
            item.stage,
            STAGE_NAMES.get(item.stage),
            item.stage_iteration,
            item.loop_iteration,
            type_name(item.item_type),
            type_name(item.media_type) or None,
            item.content,
            item.content_length,
            media.path if media else None,
            media.mime_type if media else None,
            media.sha256 if media else None,
            item.model,
            item.backend,
            _text_parameter(item.metadata, "from_lang"),
            _text_parameter(item.metadata, "to_lang"),
            _seed(item.metadata),
            item.config,
            json_text(item.metadata),
            utc_iso(item.timestamp),
            _number(item.duration_ms),
            safety_verdict(item),
        ]
        yield from split_cells(values, ITEM_COLUMNS, _ITEM_PART, guard)


def run_rows(record: ExecutionRecord, guard: Guard = neutralise) -> Iterator[list[Cell]]:
    """The row (and any continuation rows) of the runs table for one record.

    Args:
        record: the (pseudonymised) record.
        guard: what the writer does to each text cell (see ``split_cells``).

    Returns:
        The run's row; continuation rows only when a text is longer than a cell.
    """
    values: list[Cell] = [
        record.run_id,
        1,
        1,
        record.user_pseudonym,
        record.session_pseudonym,
        record.config_name,
        record.safety_level,
        type_name(record.status),
        utc_iso(record.started_at),
        utc_iso(record.ended_at) or None,
        _number(record.duration_ms),
        len(record.items),
        record.software_version,
        json_text(record.model_versions),
        record.taxonomy_version,
        record.record_format_version,
    ]
    summaries = {summary.stage: summary for summary in record.stages}
    for stage in _STAGES:
        summary = summaries.get(stage)
        if summary is None:
            values.extend([None] * 7)
            continue
        values.extend(
            [
                type_name(summary.status),
                summary.items,
                summary.failures,
                summary.blocks,
                summary.iterations,
                summary.loops,
                _number(summary.duration_ms),
            ]
        )
    integrity = record.integrity
    values.extend(
        [
            integrity.items_dropped,
            integrity.fields_truncated,
            integrity.values_coerced,
            integrity.characters_replaced,
            integrity.tracker_errors,
            integrity.recovered,
        ]
    )
    yield from split_cells(values, RUN_COLUMNS, _RUN_PART, guard)


def dictionary_rows(guard: Guard = neutralise) -> Iterator[list[Cell]]:
    """The rows of the data dictionary: one per column of the items and runs tables.

    Args:
        guard: what the writer does to each text cell (see ``split_cells``).

    Returns:
        Rows of ``DICTIONARY_HEADER``: table, column, type, unit, allowed values, meaning.
    """
    for table, columns in (("items", ITEM_COLUMNS), ("runs", RUN_COLUMNS)):
        for column in columns:
            row: list[Cell] = [
                table,
                column.name,
                column.type,
                column.unit,
                column.allowed,
                column.meaning,
            ]
            yield [guard(clean_text(c)) if isinstance(c, str) else c for c in row]


def header(columns: Sequence[Column]) -> list[Cell]:
    """The header row of a table.

    Args:
        columns: the table's columns.

    Returns:
        The column names in order.
    """
    return [column.name for column in columns]
