"""XLSX: the tidy tables (items, runs, data dictionary) as three sheets of one workbook (openpyxl).

The sheets hold the rows of the csv format (``_tables``): the same cleaning and
splitting of long texts. Every text is stored as a string cell (never a
formula, error or number), exactly as recorded: a string cell is inert in every
spreadsheet, so unlike the csv format no apostrophe is added to a text that
looks like a formula. Times are ISO 8601 text so microseconds and the UTC mark
survive. Each sheet has a frozen, bold header row and an autofilter over its
columns. The workbook is written in openpyxl's write-only mode, so a batch of
many runs streams through temporary files instead of building every cell in
memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from execution_history import ExecutionRecord

from ._tables import (
    DICTIONARY_HEADER,
    ITEM_COLUMNS,
    RUN_COLUMNS,
    Cell,
    Column,
    as_is,
    dictionary_rows,
    header,
    item_rows,
    run_rows,
)

name = "xlsx"
media_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
extension = "xlsx"
description = "Tidy tables (items, runs, data dictionary) as sheets of an Excel workbook"
requires: tuple[str, ...] = ("openpyxl",)
extra = "research"

#: Column widths (in characters) for the long text columns; others keep the default.
_WIDE = {"text": 60, "parameters": 40, "model_versions": 40, "meaning": 80, "allowed_values": 30}


def _letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return str(get_column_letter(index + 1))


def _sheet(workbook: Any, title: str, names: Sequence[str]) -> Any:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    # typed as Any: types-openpyxl omits the write-only sheet's column_dimensions
    sheet: Any = workbook.create_sheet(title)
    sheet.freeze_panes = "A2"
    for index, column in enumerate(names):
        if column in _WIDE:
            sheet.column_dimensions[_letter(index)].width = _WIDE[column]
    bold = Font(bold=True)
    cells = []
    for column in names:
        cell = WriteOnlyCell(sheet, value=column)
        cell.font = bold
        cells.append(cell)
    sheet.append(cells)
    return sheet


class _Sheet:
    """A write-only sheet that counts its rows, so the autofilter can span them."""

    def __init__(self, workbook: Any, title: str, names: Sequence[str]) -> None:
        self.sheet = _sheet(workbook, title, names)
        self.width = len(names)
        self.rows = 1  # the header
        self._append = _writer(self.sheet)

    def append(self, row: Sequence[Cell]) -> None:
        self._append(row)
        self.rows += 1

    def finish(self) -> None:
        # the filter must name its range; the sheet is written out at save time
        self.sheet.auto_filter.ref = f"A1:{_letter(self.width - 1)}{self.rows}"


def _writer(sheet: Any) -> Callable[[Sequence[Cell]], None]:
    from openpyxl.cell import WriteOnlyCell

    def append(row: Sequence[Cell]) -> None:
        values: list[Any] = []
        for value in row:
            if isinstance(value, str):
                cell = WriteOnlyCell(sheet, value=value)
                # openpyxl would make "=…" a formula and "#N/A" an error cell: every
                # text is a string cell, which no spreadsheet evaluates
                cell.data_type = "s"
                values.append(cell)
            else:
                values.append(value)
        sheet.append(values)

    return append


def export(record: ExecutionRecord, stream: BinaryIO, *, media_dir: Path | None = None) -> None:
    """Write one run's tables as an XLSX workbook with three sheets.

    Args:
        record: a finished, pseudonymised record.
        stream: a writable binary stream.
        media_dir: unused; the tables reference media by path and sha256.
    """
    export_batch([(record, media_dir)], stream)


def export_batch(records: Iterable[tuple[ExecutionRecord, Path | None]], stream: BinaryIO) -> None:
    """Write many runs' tables into one XLSX workbook (sheets items, runs, data_dictionary).

    Args:
        records: pairs of a pseudonymised record and its media folder (unused).
        stream: a writable binary stream.
    """
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    workbook.properties.creator = "execution-history"
    workbook.properties.title = "Execution history: tidy tables"
    items = _Sheet(workbook, "items", _names(ITEM_COLUMNS))
    runs = _Sheet(workbook, "runs", _names(RUN_COLUMNS))
    dictionary = _Sheet(workbook, "data_dictionary", DICTIONARY_HEADER)
    for record, _media_dir in records:
        for row in item_rows(record, as_is):
            items.append(row)
        for row in run_rows(record, as_is):
            runs.append(row)
    for row in dictionary_rows(as_is):
        dictionary.append(row)
    for sheet in (items, runs, dictionary):
        sheet.finish()
    workbook.save(stream)


def _names(columns: Sequence[Column]) -> list[str]:
    return [str(name) for name in header(columns)]
