"""Tables as researchers use them: filterable parameter columns, autofilter, inert formula texts.

The files are reopened with pandas (its own CSV parser) and openpyxl, never
compared with what the exporter produced in memory.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import openpyxl
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import exports
from execution_history import ExecutionRecord, ExecutionTracker, Pseudonymiser
from tests.exports._support import HOSTILE_FRAGMENTS
from tests.exports.test_tables import cleaned

PSEUDONYMS = Pseudonymiser("tables-research-pseudonym-key-01")
#: What a csv cell may begin with only behind an apostrophe (the documented rule).
CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")


def export_bytes(fmt: str, record: ExecutionRecord) -> bytes:
    stream = io.BytesIO()
    exports.export(record, fmt, stream, pseudonymiser=PSEUDONYMS)
    return stream.getvalue()


def csv_frame(data: bytes, table: str = "items") -> Any:
    """One table of a csv export as a pandas DataFrame of strings, as docs/exports.md says."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        raw = archive.read(f"{table}.csv")
    return pd.read_csv(io.BytesIO(raw), encoding="utf-8-sig", keep_default_na=False, dtype=str)


def xlsx_frame(data: bytes, table: str = "items") -> Any:
    return pd.read_excel(io.BytesIO(data), sheet_name=table, dtype=object)


def test_languages_seed_model_and_verdict_are_columns_to_filter_on(
    finished_record: ExecutionRecord,
) -> None:
    """A researcher filters Stille Post steps by language pair and seed without parsing JSON."""
    steps = [i for i in finished_record.items if i.item_type == "interception_iteration"]
    expected = [(i.metadata["from_lang"], i.metadata["to_lang"]) for i in steps]
    assert len(expected) == 8
    for frame in (
        csv_frame(export_bytes("csv", finished_record)),
        xlsx_frame(export_bytes("xlsx", finished_record)),
    ):
        iterations = frame[frame["item_type"] == "interception_iteration"]
        assert list(zip(iterations["from_lang"], iterations["to_lang"], strict=True)) == expected
        from_german = frame[frame["from_lang"] == "de"]
        assert set(from_german["item_type"]) == {"translation_result", "interception_iteration"}
        images = frame[frame["item_type"] == "output_image"]
        seeds = [int(s) for s in images["seed"]]
        assert seeds == [i.metadata["seed"] for i in finished_record.items if i.media]
        assert set(images["model"]) == {"procedural-image"}
        assert set(images["backend"]) == {"local"}
        verdicts = frame[frame["safety_verdict"].isin(["passed", "blocked"])]
        assert len(verdicts) == 4


def test_every_new_column_is_in_the_data_dictionary(finished_record: ExecutionRecord) -> None:
    """The dictionary sheet describes from_lang, to_lang and seed with type and meaning."""
    dictionary = xlsx_frame(export_bytes("xlsx", finished_record), "data_dictionary")
    items = dictionary[dictionary["table"] == "items"].set_index("column")
    assert items.loc["from_lang", "type"] == "string"
    assert items.loc["to_lang", "type"] == "string"
    assert items.loc["seed", "type"] == "integer"
    assert all(isinstance(items.loc[c, "meaning"], str) for c in ("from_lang", "to_lang", "seed"))


def test_a_seed_is_empty_when_it_is_not_an_integer_and_text_when_too_large() -> None:
    """No invented seeds: a string or float seed stays in parameters only; 2^60 is not rounded."""
    tracker = ExecutionTracker("dada")
    seeds: list[Any] = ["42", 1.5, True, 2**60, -7, None]
    with tracker, tracker.stage(1):
        for seed in seeds:
            tracker.log_user_input("x", metadata={"seed": seed, "from_lang": 3})
    record = tracker.finalize()
    workbook = openpyxl.load_workbook(io.BytesIO(export_bytes("xlsx", record)))
    sheet = workbook["items"]
    names = [c.value for c in sheet[1]]
    rows = [dict(zip(names, (c.value for c in row), strict=True)) for row in sheet.iter_rows(2)]
    inputs = [r for r in rows if r["item_type"] == "user_input_text"]
    assert [r["seed"] for r in inputs] == [None, None, None, str(2**60), -7, None]
    assert all(r["from_lang"] is None for r in inputs)  # a number is not a language


@pytest.mark.parametrize("batch_size", [1, 3])
def test_xlsx_sheets_have_a_frozen_bold_header_and_an_autofilter(
    finished_record: ExecutionRecord, batch_size: int
) -> None:
    """Every sheet: header frozen (A2), bold, and an autofilter over all its rows and columns."""
    stream = io.BytesIO()
    exports.export_batch([(finished_record, None)] * batch_size, "xlsx", stream)
    workbook = openpyxl.load_workbook(io.BytesIO(stream.getvalue()))
    for sheet in workbook.worksheets:
        assert sheet.freeze_panes == "A2", sheet.title
        last = openpyxl.utils.get_column_letter(sheet.max_column)
        assert sheet.auto_filter.ref == f"A1:{last}{sheet.max_row}", sheet.title
        assert all(cell.font.bold for cell in sheet[1])
    # the filter is defined for Excel too (the hidden _FilterDatabase name per sheet)
    with zipfile.ZipFile(io.BytesIO(stream.getvalue())) as archive:
        assert archive.read("xl/workbook.xml").count(b"_xlnm._FilterDatabase") == 3


hostile_texts = st.tuples(
    st.sampled_from(["=", "+", "-", "@", "\t", "\r", "'", "#", "|", "\x00=", "\ud800="]),
    st.lists(st.one_of(st.sampled_from(HOSTILE_FRAGMENTS), st.text(max_size=20)), max_size=6),
).map(lambda parts: parts[0] + "".join(parts[1]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=hostile_texts)
def test_formula_looking_texts_are_inert_in_both_formats(text: str) -> None:
    """xlsx: a string cell with the text exactly (cleaned); csv: one apostrophe when needed.

    Texts start with formula triggers and carry tabs, controls and lone surrogates;
    neither file may break, and pandas and openpyxl must read the value back.
    """
    tracker = ExecutionTracker("dada")
    with tracker, tracker.stage(1):
        tracker.log_user_input(text, metadata={"from_lang": text})
    record = tracker.finalize()
    expected = cleaned(text)

    workbook = openpyxl.load_workbook(io.BytesIO(export_bytes("xlsx", record)))
    sheet = workbook["items"]
    names = [c.value for c in sheet[1]]
    found = 0
    for row in sheet.iter_rows(2):
        cells = dict(zip(names, row, strict=True))
        if cells["item_type"].value != "user_input_text":
            continue
        found += 1
        for column in ("text", "from_lang"):
            cell = cells[column]
            if expected == "":
                assert cell.value is None  # openpyxl reads an empty string cell as empty
                continue
            assert cell.data_type == "s"
            assert cell.value == expected
    assert found == 1

    frame = csv_frame(export_bytes("csv", record))
    row = frame[frame["item_type"] == "user_input_text"].iloc[0]
    guarded = "'" + expected if expected.startswith(CSV_TRIGGERS) else expected
    assert row["text"] == guarded
    assert row["from_lang"] == guarded
