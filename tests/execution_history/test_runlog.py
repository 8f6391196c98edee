"""The run log: one serialisation, read back into the record the one builder makes in memory."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execution_history import (
    DamagedRunLog,
    ExecutionTracker,
    ItemType,
    RawItem,
    RunLog,
    RunStatus,
    SQLiteRecordStore,
    build_record,
)
from tests.records import log_stille_post

#: Text as hostile as a child's keyboard or a model's output gets: lone surrogates included.
TEXT = st.text(
    alphabet=st.characters() | st.sampled_from(["\ud800", "\udfff", "\udc80", "\x00", "😀"]),
    max_size=30,
)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def _comparable(record: Any) -> dict[str, Any]:
    """The record as JSON, without what only the finaliser adds (sinks) or recovery marks."""
    data = json.loads(record.model_dump_json())
    data["integrity"].pop("sinks")
    data["integrity"].pop("recovered")
    return data


def test_a_stille_post_run_read_back_from_its_lines_is_the_same_record(tmp_path: Path) -> None:
    tracker = ExecutionTracker("stillepost", user_id="u1", session_id="s1", media_dir=tmp_path)
    log_stille_post(tracker)
    lines = tracker.run_log.lines()
    assert lines[0].startswith('{"run_log": 1')
    assert json.loads(lines[-1])["end"]["status"] == "partial"
    assert all(line.isascii() for line in lines)
    again = RunLog.from_lines(lines)
    assert _comparable(build_record(again)) == _comparable(build_record(tracker.run_log))


@settings(max_examples=80, deadline=None)
@given(
    ids=st.lists(TEXT, min_size=4, max_size=4),
    content=TEXT,
    metadata=st.dictionaries(TEXT, VALUES, max_size=4),
    model=TEXT,
    versions=st.dictionaries(TEXT, st.none() | TEXT, max_size=3),
)
def test_any_value_in_any_field_survives_the_lines_and_always_serialises(
    ids: list[str], content: str, metadata: dict[str, Any], model: str, versions: dict[str, Any]
) -> None:
    config, level, user, session = ids
    tracker = ExecutionTracker(
        config, safety_level=level, user_id=user, session_id=session, model_versions=versions
    )
    with tracker, tracker.stage(2), tracker.stage_iteration(1):
        tracker.log(ItemType.INTERCEPTION_ITERATION, content, model=model, metadata=metadata)
    in_memory = build_record(tracker.run_log)
    in_memory.model_dump_json()  # never raises: every field was made storable
    read_back = build_record(RunLog.from_lines(tracker.run_log.lines()))
    assert read_back.model_dump_json() == in_memory.model_dump_json()
    surrogates = sum(
        1 for text in (*ids, content, model) for ch in text if "\ud800" <= ch <= "\udfff"
    )
    assert in_memory.integrity.characters_replaced >= surrogates


def test_a_run_cut_short_is_read_as_far_as_it_goes() -> None:
    tracker = ExecutionTracker("dada").start()
    tracker.log_user_input("Ein Hund")
    tracker.log_user_input("eine Katze")
    lines = tracker.run_log.lines()
    cut = [*lines[:-1], lines[-1][:7]]  # the last line half written when the process died
    log = RunLog.from_lines(cut)
    assert log.unreadable_lines == 1 and not log.closed
    record = build_record(log, recovered=True)
    assert record.status == RunStatus.INCOMPLETE
    assert [i.content for i in record.items if i.content] == ["Ein Hund"]
    assert record.integrity.items_dropped == 1 and record.integrity.recovered
    tracker.finalize()


def test_a_run_whose_end_line_was_written_keeps_its_status_when_recovered() -> None:
    tracker = ExecutionTracker("dada")
    with tracker:
        tracker.log_user_input("Ein Hund")
    record = build_record(RunLog.from_lines(tracker.run_log.lines()), recovered=True)
    assert record.status == RunStatus.SUCCESS and record.integrity.recovered


@pytest.mark.parametrize("lines", [[], [""], ['{"run_log": 1, "run_id"'], ["[1, 2, 3]"]])
def test_lines_without_a_header_are_damaged(lines: list[str]) -> None:
    with pytest.raises(DamagedRunLog):
        RunLog.from_lines(lines)


def test_an_item_that_does_not_validate_is_dropped_and_counted_not_the_run() -> None:
    tracker = ExecutionTracker("dada")
    with tracker:
        tracker.log_user_input("kept")
        tracker._stage = 99  # a stage the record does not allow
        tracker.log_user_input("dropped")
        tracker._stage = 1
    record = tracker.finalize()
    assert [i.content for i in record.items if i.content] == ["kept"]
    assert record.integrity.tracker_errors == 1
    assert "not valid" in record.integrity.tracker_error_messages[0]


def test_runs_an_earlier_version_stored_as_captures_are_built_when_the_store_opens(
    tmp_path: Path,
) -> None:
    """That version kept raw captures in ``captured_runs``; none of them may be lost."""
    db = tmp_path / "h.sqlite3"
    SQLiteRecordStore(db).close()
    run_id = "0123456789abcdef0123456789abcdef"
    started = 1_764_547_200_000_000_000
    capture = {
        "capture": 1, "run_id": run_id, "config_name": "dada", "safety_level": "kids",
        "user_id": "u\ud800", "session_id": None, "started_ns": started,
        "software_version": "devserver 0.1.0", "model_versions": {}, "ended_ns": started + 10**6,
        "status": "success", "counters": {"items_dropped": 0, "items_after_finalize": 0,
                                          "tracker_errors": 0},
        "error_messages": [], "max_text_chars": 1000, "media_dir": None,
        "items": [[1, started, 0, None, None, "pipeline_start", None, None, None, None, None,
                   None, None, "dada", None],
                  [2, started + 5, 1, None, None, "user_input_text", "Ein Hund", None, None,
                   None, None, None, None, None, None]],
    }  # fmt: skip
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE captured_runs (run_id TEXT PRIMARY KEY, payload BLOB)")
        conn.execute(
            "INSERT INTO captured_runs VALUES (?, ?)", (run_id, json.dumps(capture).encode())
        )
        conn.execute("INSERT INTO captured_runs VALUES ('f' , 'not json')")
    store = SQLiteRecordStore(db)
    record = store.load(run_id)
    assert record is not None and record.status == RunStatus.SUCCESS
    assert [i.content for i in record.items] == [None, "Ein Hund"]
    assert record.user_id == "u\ufffd" and record.integrity.characters_replaced == 1
    store.close()
    with sqlite3.connect(db) as conn:  # the unreadable capture is kept, never deleted
        assert conn.execute("SELECT run_id FROM captured_runs").fetchall() == [("f",)]


@settings(max_examples=300, deadline=None)
@given(ns=st.integers(min_value=0, max_value=20_000_000_000 * 10**9 - 1))
def test_every_timestamp_is_dated_to_the_microsecond(ns: int) -> None:
    """Unix seconds as a float (before 2106) or a Python datetime (after): exact either way."""
    from datetime import UTC, datetime, timedelta

    log = RunLog("0" * 32, "x", started_ns=ns)
    log.items.append(RawItem(1, ns, 1, None, None, ItemType.USER_INPUT_TEXT, "t", *[None] * 8))
    (item,) = build_record(log).items
    assert item.timestamp == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


@pytest.mark.parametrize("ns", [-1, 20_000_000_000 * 10**9, 10**30, "soon", 1.5e18])
def test_an_impossible_timestamp_drops_that_item_and_counts_it(ns: object) -> None:
    log = RunLog("0" * 32, "x", started_ns=1_764_547_200 * 10**9)
    log.items.append(RawItem(1, 1_764_547_200 * 10**9, 1, None, None, "user_input_text", "kept",
                             *[None] * 8))  # fmt: skip
    log.items.append(RawItem(2, ns, 1, None, None, "user_input_text", "odd", *[None] * 8))
    record = build_record(log)
    contents = [i.content for i in record.items]
    assert "kept" in contents
    if "odd" not in contents:
        assert record.integrity.tracker_errors == 1


def test_the_item_a_step_consumed_is_kept_and_anything_else_is_counted_not_kept() -> None:
    """``log`` returns the sequence number to name as a later step's input; an input that is
    not an earlier item (a later one, itself, not a number, a bool) is left empty and counted."""
    tracker = ExecutionTracker("stillepost")
    with tracker:
        with tracker.stage(1):
            prompt = tracker.log(ItemType.USER_INPUT_TEXT, "Ein Hund")
            told = tracker.log(ItemType.TRANSLATION_RESULT, "A dog", input_sequence=prompt)
            for wrong in (99, "1", True, 0, -1, 1.0):
                tracker.log(ItemType.TRANSLATION_RESULT, "?", input_sequence=wrong)
            untold = tracker.log(ItemType.TRANSLATION_RESULT, "?")
    record = tracker.finalize()
    by_sequence = {item.sequence: item for item in record.items}
    assert isinstance(prompt, int) and isinstance(told, int) and isinstance(untold, int)
    assert by_sequence[told].input_sequence == prompt
    wrong_items = [i for i in record.items if i.content == "?"]
    assert len(wrong_items) == 7 and all(i.input_sequence is None for i in wrong_items)
    assert record.integrity.values_coerced >= 6


def test_item_lines_written_before_input_sequence_existed_still_read() -> None:
    tracker = ExecutionTracker("stillepost")
    with tracker:
        tracker.log(ItemType.USER_INPUT_TEXT, "alt")
    lines = tracker.run_log.lines()
    old = [lines[0]] + [json.dumps(json.loads(line)[:-1]) for line in lines[1:-1]] + [lines[-1]]
    log = RunLog.from_lines(old)
    assert log.unreadable_lines == 0
    record = build_record(log)
    assert [i.content for i in record.items if i.item_type == "user_input_text"] == ["alt"]
    assert all(item.input_sequence is None for item in record.items)
