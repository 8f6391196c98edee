"""Tidy tables (csv zip and xlsx): reopened with the csv module and openpyxl, nothing lost or live.

The checks read the files with independent readers and compare them with the
record, using only the documented rules: control characters other than TAB,
LF and CR are removed; lone surrogates, U+FFFE and U+FFFF read as U+FFFD; a
cell beginning with an apostrophe had one added (drop it); a text split over
continuation rows is joined in ``part`` order.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import unicodedata
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import exports
from execution_history import ExecutionRecord, ExecutionTracker, ItemType, Pseudonymiser
from tests.exports._support import HOSTILE_FRAGMENTS
from tests.records import stille_post_record, write_png, write_wav

PSEUDONYMS = Pseudonymiser("tables-test-pseudonym-key-0123")
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
EXCEL_CELL_LIMIT = 32_767

# ----------------------------------------------------------------- hostile runs
# Shared with test_qdpx.py and test_rocrate.py (imported from here).

FRAGMENTS = HOSTILE_FRAGMENTS
#: 100,000 characters mixing scripts, markup and emoji (so chunk edges fall on emoji too).
LONG_TEXT = ("=Grüße 汉字 مرحبا <&]]> 😀\r\n" * 5000)[:100_000]

hostile_text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=10)), max_size=6
).map("".join)
#: Mostly short hostile texts, sometimes the 100,000-character one.
any_text = st.integers(0, 11).flatmap(lambda n: st.just(LONG_TEXT) if n == 0 else hostile_text)
hostile_metadata = st.dictionaries(
    hostile_text,
    st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), hostile_text),
    max_size=3,
)
MEDIA_NAMES = ["good.png", "corrupt.png", "missing.png", "../escape.png", "photo.webp"]


def make_media(root: Path) -> Path:
    """A media folder with a good PNG, a WebP, a corrupt PNG, a WAV (and a PNG outside it)."""
    from PIL import Image

    media = root / "media"
    write_png(media / "good.png")
    Image.new("RGB", (30, 20), "red").save(media / "photo.webp", format="WEBP")
    (media / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    write_wav(media / "tune.wav")
    write_png(root / "escape.png", colour="red")  # distinct bytes: a copy would show
    return media


@st.composite
def hostile_records(draw: st.DrawFn) -> ExecutionRecord:
    """A run through the real tracker with hostile texts, metadata, media and outcomes.

    Some records then get raw lone surrogates and control characters put back
    into their texts (as a record from elsewhere could hold), so the exporters'
    own cleaning is exercised, not only the tracker's.
    """
    tracker = ExecutionTracker(
        draw(st.one_of(st.none(), hostile_text)),
        safety_level=draw(st.one_of(st.none(), hostile_text)),
        user_id=draw(hostile_text),
        session_id=draw(hostile_text),
        software_version=draw(st.one_of(st.none(), hostile_text)),
        model_versions=draw(st.dictionaries(hostile_text, st.one_of(st.none(), hostile_text))),
    )
    model = st.one_of(st.none(), hostile_text)
    with tracker:
        with tracker.stage(1):
            tracker.log_user_input(draw(any_text), metadata=draw(hostile_metadata))
            tracker.log_translation(draw(any_text), from_lang="de", to_lang="en", model=draw(model))
            if draw(st.booleans()):
                tracker.log_safety_check(passed=draw(st.booleans()))
        with tracker.stage(2):
            for n in range(1, draw(st.integers(0, 3)) + 1):
                with tracker.stage_iteration(n):
                    tracker.log_interception_iteration(
                        draw(any_text),
                        model=draw(model),
                        backend=draw(st.one_of(st.none(), hostile_text)),
                        duration_ms=draw(st.one_of(st.none(), st.floats(0, 1e6))),
                        metadata=draw(hostile_metadata),
                    )
            tracker.log_interception_final(draw(hostile_text))
        for loop in range(1, draw(st.integers(0, 3)) + 1):
            with tracker.loop_iteration(loop):
                with tracker.stage(3):
                    if draw(st.booleans()):
                        tracker.log_blocked(draw(hostile_text))
                        continue
                    tracker.log_safety_check(passed=True, metadata=draw(hostile_metadata))
                with tracker.stage(4):
                    outcome = draw(st.sampled_from(["image", "audio", "failed"]))
                    if outcome == "image":
                        tracker.log_output(
                            ItemType.OUTPUT_IMAGE,
                            {"path": draw(st.sampled_from(MEDIA_NAMES)), "mime_type": "image/png"},
                            content=draw(st.one_of(st.none(), hostile_text)),
                            model=draw(model),
                        )
                    elif outcome == "audio":
                        tracker.log_output(
                            ItemType.OUTPUT_AUDIO,
                            {"path": draw(st.sampled_from(["tune.wav", "gone.wav"]))},
                            model=draw(model),
                        )
                    else:
                        tracker.log_output_failed(draw(hostile_text))
    record = tracker.finalize()
    if draw(st.booleans()):
        raw = st.text(st.sampled_from(["\ud800", "\udfff", "\x00", "\x85", "a", "\r", "="]))
        items = [
            item.model_copy(update={"content": draw(raw)}) if item.content is not None else item
            for item in record.items
        ]
        record = record.model_copy(update={"items": items})
    return record


#: Settings of every hostile-run property test. Examples may hold 100,000-character
#: texts: shrinking those takes minutes, so a failure is reported as found.
HOSTILE_SETTINGS = settings(
    max_examples=20,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Hypothesis warns (an error here) when it prints such an example; let it print.
LARGE_REPR = "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"


def cleaned(text: str) -> str:
    """What a table cell (or XML text) may hold of ``text``, per the documented rule."""
    out = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Cc" and char not in "\t\n\r":
            continue
        if category == "Cs" or char in "\ufffe\uffff":
            out.append("\ufffd")
            continue
        out.append(char)
    return "".join(out)


def without_surrogates(value: Any) -> Any:
    """``value`` with lone surrogates in every string (keys too) read as U+FFFD."""
    if isinstance(value, str):
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    if isinstance(value, dict):
        return {without_surrogates(k): without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_surrogates(v) for v in value]
    return value


def batch(count: int, media_root: Path) -> list[tuple[ExecutionRecord, Path]]:
    """``count`` Stille Post runs of 7 participants, each with its own media folder."""
    runs = []
    for index in range(count):
        media_dir = media_root / f"run{index}"
        record = stille_post_record(
            media_dir, user_id=f"child-{index % 7}", session_id=f"class-{index % 3}"
        )
        runs.append((record, media_dir))
    return runs


# -------------------------------------------------------------------- readers


def read_csv_zip(data: bytes) -> dict[str, list[list[Any]]]:
    """The three tables of a csv export, read with the csv module."""
    tables: dict[str, list[list[Any]]] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == ["data_dictionary.csv", "items.csv", "runs.csv"]
        for member in archive.namelist():
            raw = archive.read(member)
            assert raw.startswith(codecs.BOM_UTF8), f"{member} has no UTF-8 byte order mark"
            text = raw[len(codecs.BOM_UTF8) :].decode("utf-8")
            rows = list(csv.reader(io.StringIO(text, newline="")))
            tables[member.removesuffix(".csv")] = [
                [c if c != "" else None for c in r] for r in rows
            ]
    return tables


def read_xlsx(data: bytes) -> dict[str, list[list[Any]]]:
    """The three sheets of an xlsx export, read with openpyxl; no cell may be a formula."""
    workbook = openpyxl.load_workbook(io.BytesIO(data))
    assert workbook.sheetnames == ["items", "runs", "data_dictionary"]
    tables = {}
    for sheet in workbook.worksheets:
        rows = []
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", f"formula in {sheet.title}!{cell.coordinate}"
                if isinstance(cell.value, str):  # texts are string cells, never errors
                    assert cell.data_type == "s", f"{sheet.title}!{cell.coordinate}"
            rows.append([cell.value for cell in row])
        tables[sheet.title] = rows
    return tables


def records_of(table: list[list[Any]]) -> Iterator[dict[str, Any]]:
    """Each row of a table as a dict by header."""
    header = table[0]
    for row in table[1:]:
        yield dict(zip(header, row, strict=True))


def joined(rows: list[dict[str, Any]], column: str, neutralised: bool = True) -> str:
    """A column's text over a row and its continuation rows (csv: apostrophes undone)."""
    text = ""
    for row in rows:
        value = row[column]
        if value is None:
            continue
        assert isinstance(value, str)
        text += value[1:] if neutralised and value.startswith("'") else value
    return text


def check_tables(
    tables: dict[str, list[list[Any]]], runs: list[ExecutionRecord], fmt: str = "csv"
) -> None:
    """The reopened tables hold exactly the records' items and runs, safely.

    csv: no text begins with a formula trigger (one apostrophe was added);
    xlsx: texts are string cells (checked by ``read_xlsx``) holding the text as is.
    """
    neutralised = fmt == "csv"
    for name, table in tables.items():
        for row in table:
            for value in row:
                if isinstance(value, str):
                    if neutralised:
                        assert not value.startswith(TRIGGERS), f"live formula in {name}: {value!r}"
                    assert len(value.encode("utf-16-le")) // 2 <= EXCEL_CELL_LIMIT
                    assert cleaned(value) == value

    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in records_of(tables["items"]):
        groups[(row["run_id"], int(row["sequence"]))].append(row)
    expected_keys = [(r.run_id, item.sequence) for r in runs for item in r.items]
    assert sorted(groups) == sorted(expected_keys)
    for record in runs:
        for item in record.items:
            rows = sorted(groups[(record.run_id, item.sequence)], key=lambda r: int(r["part"]))
            assert [int(r["part"]) for r in rows] == list(range(1, len(rows) + 1))
            assert all(int(r["parts"]) == len(rows) for r in rows)
            first = rows[0]
            assert joined(rows, "text", neutralised) == cleaned(item.content or "")
            parameters = json.loads(joined(rows, "parameters", neutralised))
            assert parameters == without_surrogates(item.metadata)
            assert first["item_type"] == str(item.item_type.value)
            assert int(first["stage"]) == item.stage
            if item.stage_iteration is not None:
                assert int(first["stage_iteration"]) == item.stage_iteration
            if item.media is not None and item.media.sha256:
                assert first["media_sha256"] == item.media.sha256
            assert joined(rows, "user_pseudonym", neutralised) == cleaned(
                record.user_pseudonym or ""
            )
            for column in ("from_lang", "to_lang"):
                value = item.metadata.get(column)
                expected = cleaned(value) if isinstance(value, str) else ""
                assert joined(rows, column, neutralised) == expected
            seed = item.metadata.get("seed")
            if isinstance(seed, int) and not isinstance(seed, bool):
                assert int(first["seed"]) == seed
            else:
                assert first["seed"] is None

    run_rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in records_of(tables["runs"]):
        run_rows[row["run_id"]].append(row)
    assert sorted(run_rows) == sorted(r.run_id for r in runs)
    for record in runs:
        rows = sorted(run_rows[record.run_id], key=lambda r: int(r["part"]))
        first = rows[0]
        assert first["status"] == record.status.value
        assert int(first["items"]) == len(record.items)
        versions = json.loads(joined(rows, "model_versions", neutralised))
        assert versions == without_surrogates(record.model_versions)
        for summary in record.stages:
            assert first[f"stage{summary.stage}_status"] == summary.status.value
            assert int(first[f"stage{summary.stage}_items"]) == summary.items
            assert int(first[f"stage{summary.stage}_blocks"]) == summary.blocks
            assert int(first[f"stage{summary.stage}_failures"]) == summary.failures

    described = {(row["table"], row["column"]) for row in records_of(tables["data_dictionary"])}
    columns = {("items", c) for c in tables["items"][0]} | {("runs", c) for c in tables["runs"][0]}
    assert described == columns
    for row in records_of(tables["data_dictionary"]):
        assert row["type"] and row["meaning"]


READERS = {"csv": read_csv_zip, "xlsx": read_xlsx}


def export_tables(fmt: str, record: ExecutionRecord, media_dir: Path | None = None) -> bytes:
    stream = io.BytesIO()
    exports.export(record, fmt, stream, media_dir=media_dir, pseudonymiser=PSEUDONYMS)
    return stream.getvalue()


# ---------------------------------------------------------------------- tests


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_stille_post_run_reads_back_item_by_item(
    fmt: str, finished_record: ExecutionRecord
) -> None:
    """Every item is one row with its text, parameters and verdict; runs and dictionary agree."""
    tables = READERS[fmt](export_tables(fmt, finished_record))
    safe = finished_record.pseudonymised(PSEUDONYMS)
    check_tables(tables, [safe], fmt)
    items = list(records_of(tables["items"]))
    assert len(items) == len(finished_record.items) == 26
    iterations = [r["text"] for r in items if r["item_type"] == "interception_iteration"]
    assert iterations[0] == "A dog plays in the garden" and len(iterations) == 8
    verdicts = [r["safety_verdict"] for r in items if r["safety_verdict"]]
    assert verdicts == ["passed", "passed", "blocked", "passed"]
    assert {r["user_pseudonym"] for r in items} == {safe.user_pseudonym}


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_tables_carry_no_raw_ids(fmt: str, finished_record: ExecutionRecord) -> None:
    """Raw user and session ids never reach a table, only their keyed pseudonyms."""
    data = export_tables(fmt, finished_record)
    tables = READERS[fmt](data)
    cells = {str(v) for table in tables.values() for row in table for v in row}
    assert "child-42" not in cells and "class-7b" not in cells
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for member in archive.namelist():
            assert b"child-42" not in archive.read(member)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_formula_injection_is_neutralised_and_reversible(fmt: str) -> None:
    """csv: texts starting with = + - @ TAB CR (or ') come back after dropping one ';
    xlsx: they are string cells holding the text exactly."""
    attacks = ["=cmd|' /C calc'!A0", "+1+1", "-2", "@SUM(A1)", "\tx", "\rx", "'quoted", "=", "#N/A"]
    tracker = ExecutionTracker("dada", model_versions={"=HYPERLINK(1)": "-1"})
    with tracker, tracker.stage(1):
        for attack in attacks:
            tracker.log_user_input(attack, metadata={"k": attack}, model=attack)
    record = tracker.finalize()
    tables = READERS[fmt](export_tables(fmt, record))
    check_tables(tables, [record], fmt)
    rows = list(records_of(tables["items"]))
    texts = [r["text"] for r in rows if r["item_type"] == "user_input_text"]
    if fmt == "csv":
        assert texts == ["'" + a if a != "#N/A" else a for a in attacks]
    else:
        assert texts == attacks
    models = [r["model"] for r in rows if r["item_type"] == "user_input_text"]
    assert models == texts


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_100000_character_text_is_split_never_cut(fmt: str) -> None:
    """A text longer than a cell spans continuation rows that join back to the whole text."""
    tracker = ExecutionTracker("dada")
    with tracker, tracker.stage(1):
        tracker.log_user_input(LONG_TEXT)
        tracker.log_translation("short", from_lang="de", to_lang="en")
    record = tracker.finalize()
    tables = READERS[fmt](export_tables(fmt, record))
    check_tables(tables, [record], fmt)
    parts = [r for r in records_of(tables["items"]) if int(r["sequence"]) == 3]
    assert parts[0]["item_type"] == "user_input_text"
    assert len(parts) == 4  # 100,000 characters (emoji count twice) need four cells
    assert [int(r["part"]) for r in parts] == [1, 2, 3, 4]
    assert all(r["run_id"] == record.run_id and int(r["sequence"]) == 3 for r in parts)
    assert parts[1]["item_type"] is None  # continuation rows carry the key and the text only


def test_csv_is_a_zip_of_three_utf8_tables_with_bom_and_crlf(
    finished_record: ExecutionRecord,
) -> None:
    """Each CSV is UTF-8 with BOM and CRLF line ends; the zip streams to an unseekable sink."""

    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.data.extend(b)
            return len(b)

    sink = Unseekable()
    exports.export(finished_record, "csv", sink)  # type: ignore[arg-type]
    with zipfile.ZipFile(io.BytesIO(bytes(sink.data))) as archive:
        items = archive.read("items.csv")
    assert items.startswith(codecs.BOM_UTF8 + b"run_id,sequence,part,parts,")
    assert items.count(b"\r\n") >= len(finished_record.items) + 1
    check_tables(read_csv_zip(bytes(sink.data)), [finished_record])


@pytest.mark.filterwarnings(LARGE_REPR)
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_hostile_runs_read_back_exactly(fmt: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Any hostile run exports, and every text and parameter reads back (cleaned, joined)."""
    media_dir = make_media(tmp_path_factory.mktemp("media"))

    @HOSTILE_SETTINGS
    @given(record=hostile_records())
    def run(record: ExecutionRecord) -> None:
        tables = READERS[fmt](export_tables(fmt, record, media_dir))
        check_tables(tables, [record.pseudonymised(PSEUDONYMS)], fmt)

    run()


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_batch_of_100_runs_passes_the_same_checks(fmt: str, tmp_path: Path) -> None:
    """100 runs in one file: every item row and run row is there and reads back."""
    runs = batch(100, tmp_path)
    stream = io.BytesIO()
    exports.export_batch(runs, fmt, stream, pseudonymiser=PSEUDONYMS)
    tables = READERS[fmt](stream.getvalue())
    check_tables(tables, [record.pseudonymised(PSEUDONYMS) for record, _ in runs], fmt)
    assert len(tables["runs"]) == 101
    assert len({r["user_pseudonym"] for r in records_of(tables["runs"])}) == 7
