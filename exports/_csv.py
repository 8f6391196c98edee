"""CSV: the tidy tables (items, runs, data dictionary) as three UTF-8 CSV files in one zip.

One CSV file holds one table, and a researcher needs all three together (the
dictionary explains the columns), so the download is a zip of
``items.csv``, ``runs.csv`` and ``data_dictionary.csv``. Each file is UTF-8 with
a byte order mark (so Excel and LibreOffice detect the encoding), comma
separated, CRLF line ends, fields quoted when they hold a comma, quote or line
break (RFC 4180). Cells are cleaned, neutralised and split as ``_tables``
describes. Many runs stream into the same three files.
"""

from __future__ import annotations

import codecs
import csv
import io
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from execution_history import ExecutionRecord

from ._tables import (
    DICTIONARY_HEADER,
    ITEM_COLUMNS,
    RUN_COLUMNS,
    Cell,
    dictionary_rows,
    header,
    item_rows,
    run_rows,
)

name = "csv"
media_type = "application/zip"
extension = "csv.zip"
description = "Tidy tables (items, runs, data dictionary) as UTF-8 CSV files in a zip"
requires: tuple[str, ...] = ()
extra = ""


def _text(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    return str(cell)


def _csv_row(row: Sequence[Cell]) -> list[str]:
    return [_text(cell) for cell in row]


def _info(filename: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(filename, time.gmtime()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def export(record: ExecutionRecord, stream: BinaryIO, *, media_dir: Path | None = None) -> None:
    """Write one run's tables as a zip of three CSV files.

    Args:
        record: a finished, pseudonymised record.
        stream: a writable binary stream (need not be seekable).
        media_dir: unused; the tables reference media by path and sha256.
    """
    export_batch([(record, media_dir)], stream)


def export_batch(records: Iterable[tuple[ExecutionRecord, Path | None]], stream: BinaryIO) -> None:
    """Write many runs' tables as one zip of three CSV files, streaming.

    Item rows go straight into the zip; run rows wait in a temporary file (the
    zip takes one file at a time), so memory does not grow with the batch.

    Args:
        records: pairs of a pseudonymised record and its media folder (unused).
        stream: a writable binary stream (need not be seekable).
    """
    with (
        zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        tempfile.TemporaryFile() as runs_file,
    ):
        runs_text = io.TextIOWrapper(runs_file, encoding="utf-8", newline="")
        runs = csv.writer(runs_text)
        runs.writerow(_csv_row(header(RUN_COLUMNS)))
        # force_zip64: a batch's items file may pass 2 GiB, and on a stream that
        # cannot seek the size must be declared before writing.
        with archive.open(_info("items.csv"), "w", force_zip64=True) as raw:
            items_text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            items = csv.writer(items_text)
            items.writerow(_csv_row(header(ITEM_COLUMNS)))
            for record, _media_dir in records:
                items.writerows(_csv_row(row) for row in item_rows(record))
                runs.writerows(_csv_row(row) for row in run_rows(record))
            items_text.flush()
            items_text.detach()  # closing the wrapper would close the zip entry twice
        runs_text.flush()
        runs_text.detach()
        runs_file.seek(0)
        with archive.open(_info("runs.csv"), "w", force_zip64=True) as raw:
            raw.write(codecs.BOM_UTF8)
            shutil.copyfileobj(runs_file, raw, 1 << 20)
        with archive.open(_info("data_dictionary.csv"), "w") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            writer = csv.writer(text)
            writer.writerow(list(DICTIONARY_HEADER))
            writer.writerows(_csv_row(row) for row in dictionary_rows())
            text.flush()
            text.detach()
