"""Every RecordStore, SQLite and PostgreSQL alike: saves, filters, keyset pages, stats, erasure.

The ``store`` and ``database`` fixtures (tests/execution_history/conftest.py)
run each test here once per database; PostgreSQL is a real server the tests
start themselves (tests/pg_cluster.py). Behaviour only one database has is
tested at the end, each test named for it.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import re
import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from execution_history import (
    ExecutionRecord,
    ExecutionTracker,
    Finaliser,
    ItemType,
    RecordStore,
    RunFilter,
    SinkOutcome,
    SQLiteRecordStore,
    StoreSink,
    open_store,
)
from tests.records import stille_post_record


def small_record(config: str = "dada", *, user: str = "u1", session: str = "s1",
                 level: str = "kids", block: bool = False, device: str | None = None,
                 content: str = "hello") -> ExecutionRecord:  # fmt: skip
    with ExecutionTracker(
        config, safety_level=level, user_id=user, session_id=session, device_id=device
    ) as t:
        with t.stage(1):
            t.log_user_input(content)
            if block:
                t.log_blocked("term", metadata={"matched_terms": ["x"]})
    return t.finalize()


def shifted(record: ExecutionRecord, days: float) -> ExecutionRecord:
    delta = dt.timedelta(days=days)
    return record.model_copy(update={"started_at": record.started_at + delta})


def every_page(store: RecordStore, filters: RunFilter, size: int) -> list[str]:
    pages, after = [], None
    while True:
        rows = store.list_runs(filters, limit=size, after=after)
        pages.append(rows)
        if len(rows) < size:
            return [row.run_id for page in pages for row in page]
        after = rows[-1].cursor


def test_save_and_load_round_trip(store: RecordStore, finished_record: ExecutionRecord) -> None:
    """The record comes back equal; its JSON text comes back exactly as written."""
    store.save(finished_record)
    assert store.load(finished_record.run_id) == finished_record
    assert store.load_json(finished_record.run_id) == finished_record.model_dump_json()
    assert store.load("0" * 32) is None and store.load_json("0" * 32) is None
    assert store.run_ids([finished_record.run_id, "0" * 32]) == {finished_record.run_id}


def test_a_fresh_store_on_the_same_database_sees_committed_runs(database: str) -> None:
    """What one connection commits, another store (another process would) reads at once."""
    first, second = open_store(database), open_store(database)
    try:
        record = small_record()
        first.save(record)
        assert second.load(record.run_id) == record
        assert second.count() == 1
    finally:
        first.close()
        second.close()


def test_filters_and_keyset_pagination_visit_every_run_once(store: RecordStore) -> None:
    saved = []
    for n in range(23):
        config = "stillepost" if n % 2 else "dada"
        level = "teens" if n % 5 == 0 else "kids"
        record = small_record(config, session=f"s{n % 3}", level=level, block=n % 4 == 0,
                              device=f"d{n % 2}", user=f"u{n % 4}")  # fmt: skip
        record = shifted(record, -n)
        store.save(record)
        saved.append(record)
    newest_first = [r.run_id for r in sorted(saved, key=lambda r: r.started_at, reverse=True)]
    assert every_page(store, RunFilter(), 5) == newest_first
    assert {row.config_name for row in store.list_runs(RunFilter(config="dada"), 100)} == {"dada"}
    blocked = store.list_runs(RunFilter(status="blocked"), 100)
    assert len(blocked) == 6 and all(row.status == "blocked" for row in blocked)
    assert store.count(RunFilter(session_id="s1")) == len([n for n in range(23) if n % 3 == 1])
    assert store.count(RunFilter(safety_level="teens")) == 5
    assert store.count(RunFilter(device_id="d1")) == 11
    assert store.count(RunFilter(user_id="u2")) == len([n for n in range(23) if n % 4 == 2])
    newest = max(r.started_at for r in saved)
    recent = RunFilter(since=newest - dt.timedelta(days=2, hours=1))
    assert store.count(recent) == 3
    assert store.count(RunFilter(until=newest - dt.timedelta(days=20))) == 2
    both = RunFilter(config="stillepost", session_id="s0")
    expected = [r for r in newest_first if any(
        s.run_id == r and s.config_name == "stillepost" and s.session_id == "s0" for s in saved
    )]  # fmt: skip
    assert every_page(store, both, 2) == expected
    assert list(row.run_id for row in store.iter_runs(both, page=3)) == expected


def test_runs_that_started_at_the_same_moment_are_ordered_by_run_id(store: RecordStore) -> None:
    """The keyset's second half: ties on started_at are broken by run_id, descending."""
    base = small_record()
    same = [base.model_copy(update={"run_id": f"{n:032x}"}) for n in (3, 10, 7, 12, 1)]
    for record in same:
        store.save(record)
    expected = sorted((r.run_id for r in same), reverse=True)
    assert every_page(store, RunFilter(), 2) == expected
    first = store.list_runs(RunFilter(), limit=2)
    assert [r.run_id for r in store.list_runs(RunFilter(), 10, first[-1].cursor)] == expected[2:]


def test_saving_again_replaces_the_run_and_its_stage_rows(store: RecordStore) -> None:
    blocked = small_record(block=True)
    store.save(blocked)
    passed = small_record().model_copy(update={"run_id": blocked.run_id})
    store.save(passed)
    assert store.count() == 1
    assert store.load(blocked.run_id) == passed
    stats = store.stats()
    assert stats.by_status == {"success": 1}
    assert stats.stages[1]["blocks"] == 0 and stats.stages[1]["runs_with_blocks"] == 0


def test_stats_count_by_status_config_level_day_and_per_stage(store: RecordStore) -> None:
    store.save(stille_post_record())
    store.save(small_record(block=True))
    store.save(small_record())
    stats = store.stats()
    assert stats.runs == 3
    assert stats.by_status == {"blocked": 1, "partial": 1, "success": 1}
    assert stats.by_config == {"dada": 2, "stillepost": 1}
    assert stats.by_safety_level == {"kids": 3}
    assert sum(stats.by_day.values()) == 3
    assert stats.stages[1]["blocks"] == 1
    assert stats.stages[3]["blocks"] == 1 and stats.stages[3]["runs_with_blocks"] == 1
    assert stats.integrity["items"] == sum(
        len(r.items) for r in (store.load(row.run_id) for row in store.list_runs()) if r
    )


def test_stats_accept_every_filter_including_status(store: RecordStore) -> None:
    """run_stages has a status column too: the filter's columns must name their table."""
    store.save(small_record(block=True))
    store.save(small_record())
    stats = store.stats(RunFilter(status="blocked", config="dada", safety_level="kids"))
    assert stats.runs == 1 and stats.by_status == {"blocked": 1}
    assert stats.stages[1]["blocks"] == 1
    assert store.stats(RunFilter(config="none such")).runs == 0


def test_erasure_by_user_session_device_and_retention(store: RecordStore) -> None:
    mine = [small_record(user="child-1") for _ in range(3)]
    other = shifted(small_record(user="child-2", session="w2", device="tab-9"), -40)
    workshop = small_record(user="child-3", session="w9")
    for record in [*mine, other, workshop]:
        store.save(record)
    with pytest.raises(ValueError, match="user, session or device"):
        store.delete_people(RunFilter(config="dada"))
    assert sorted(store.delete_user("child-1")) == sorted(r.run_id for r in mine)
    assert store.count() == 2 and store.load(mine[0].run_id) is None
    assert store.delete_people(RunFilter(session_id="w9")) == [workshop.run_id]
    assert store.delete_people(RunFilter(device_id="tab-9", session_id="other")) == []
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    assert store.delete_older_than(cutoff, dry_run=True) == [other.run_id]
    assert store.count() == 1
    assert store.delete_older_than(cutoff) == [other.run_id]
    assert store.count() == 0 and store.stats().stages == {}
    assert store.delete(other.run_id) is False


def test_delete_removes_one_run_and_its_stage_rows(store: RecordStore) -> None:
    keep, drop = small_record(block=True), small_record()
    store.save(keep)
    store.save(drop)
    assert store.delete(drop.run_id) is True
    assert store.run_ids([keep.run_id, drop.run_id]) == {keep.run_id}
    kept_stage_1 = next(s.items for s in keep.stages if s.stage == 1)
    assert store.stats().stages[1]["items"] == kept_stage_1


def test_late_sink_outcomes_are_appended_to_stored_records_only(store: RecordStore) -> None:
    stored, erased = small_record(), small_record()
    store.save(stored)
    store.save(erased)
    store.delete(erased.run_id)
    first = SinkOutcome(name="otlp", status="ok", attempts=1)
    second = SinkOutcome(name="otlp", status="failed", attempts=2, error="collector down")
    updated = store.add_sink_outcomes(
        [(stored.run_id, first), (erased.run_id, first), (stored.run_id, second)]
    )
    assert updated == 2
    assert store.run_ids([erased.run_id]) == set()  # never brought back
    loaded = store.load(stored.run_id)
    assert loaded is not None
    assert loaded.integrity.sinks == [*stored.integrity.sinks, first, second]
    # the text the API answers is the record's one serialisation, outcomes included
    assert store.load_json(stored.run_id) == loaded.model_dump_json()
    assert store.add_sink_outcomes([]) == 0


def _save_many(database: str, count: int) -> None:
    store = open_store(database)
    for _ in range(count):
        store.save(small_record("dada"))
    store.close()


def test_several_processes_write_one_database_safely(database: str) -> None:
    open_store(database).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_save_many, args=(database, 15)) for _ in range(3)]
    for worker in workers:
        worker.start()
    _save_many(database, 15)
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    store = open_store(database)
    try:
        assert store.count() == 60
    finally:
        store.close()


def test_many_threads_share_one_store(store: RecordStore) -> None:
    """More threads than pooled connections: each waits for one, nothing is lost."""
    records = [small_record(user=f"u{n}") for n in range(48)]
    errors: list[BaseException] = []

    def save_and_read(record: ExecutionRecord) -> None:
        try:
            store.save(record)
            assert store.load(record.run_id) == record
            store.count(RunFilter(user_id=record.user_id))
        except BaseException as exc:  # collected: an assert in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=save_and_read, args=(r,)) for r in records]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert store.count() == 48


def test_the_finaliser_stores_runs_through_either_store(store: RecordStore, tmp_path: Path) -> None:
    finaliser = Finaliser([StoreSink(store, tmp_path / "q")])
    with ExecutionTracker("dada", finaliser=finaliser) as tracker, tracker.stage(1):
        tracker.log_user_input("hi")
    assert finaliser.close().clean
    record = store.load(tracker.run_id)
    assert record is not None and record.integrity.sinks[0].status == "ok"


def test_unknown_item_types_survive_the_store(store: RecordStore) -> None:
    with ExecutionTracker("x") as tracker:
        tracker.log("from_the_future", "kept")
    record = tracker.finalize()
    store.save(record)
    loaded = store.load(record.run_id)
    assert loaded is not None
    assert [i.item_type for i in loaded.items if i.content == "kept"] == ["from_the_future"]
    assert ItemType.PIPELINE_COMPLETE in [i.item_type for i in loaded.items]


def test_ping_and_size_and_describe(store: RecordStore, database: str) -> None:
    store.save(small_record())
    assert store.ping() is None
    size = store.size_bytes()
    assert size is not None and size > 0
    described = store.describe()
    assert described == database or described.endswith(Path(database).name)


# --------------------------------------------------------------------- hostile input
# Text PostgreSQL's text and jsonb refuse (U+0000), the escape character the store
# uses for it (U+FFFF), lone surrogates (replaced by the builder), and long text.

HOSTILE = st.text(
    alphabet=st.one_of(
        st.sampled_from(["\x00", "\uffff", "0", "\\", "'", "%", "\ud800", "é", "😀"]),
        st.characters(),
    ),
    max_size=40,
) | st.builds(lambda c, n: c * n, st.sampled_from(["\x00", "x", "😀", "\uffff"]), st.integers(
    100, 1200))  # fmt: skip
SURROGATE = re.compile("[\ud800-\udfff]")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(config=HOSTILE, user=HOSTILE, session=HOSTILE, device=HOSTILE, content=HOSTILE)
def test_hostile_text_in_any_field_round_trips_and_filters_find_it(
    store: RecordStore, config: str, user: str, session: str, device: str, content: str
) -> None:
    """Nothing is lost: the record loads back equal, and a filter on each id finds the run.

    The builder replaces lone surrogates (and caps names at 1,000 characters)
    before the store sees the record; every other character is stored as given.
    """
    record = small_record(config, user=user, session=session, device=device, content=content)
    store.save(record)
    assert store.load(record.run_id) == record
    assert json.loads(store.load_json(record.run_id) or "null") == json.loads(
        record.model_dump_json()
    )
    for name, value in (
        ("config", record.config_name),
        ("user_id", record.user_id),
        ("session_id", record.session_id),
        ("device_id", record.device_id),
    ):
        rows = store.list_runs(RunFilter(**{name: value}), limit=500)
        assert record.run_id in {row.run_id for row in rows}, name
        column = "config_name" if name == "config" else name
        assert {getattr(row, column) for row in rows} == {value}, name
    (row,) = [r for r in store.list_runs(RunFilter(user_id=record.user_id), 500)
              if r.run_id == record.run_id]  # fmt: skip
    assert (row.config_name, row.session_id, row.device_id) == (
        record.config_name, record.session_id, record.device_id)  # fmt: skip
    stats = store.stats(RunFilter(session_id=record.session_id, user_id=record.user_id))
    assert record.config_name in stats.by_config
    erased = store.delete_people(RunFilter(user_id=record.user_id, device_id=record.device_id))
    assert record.run_id in erased
    assert store.load(record.run_id) is None and store.run_ids(erased) == set()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=HOSTILE)
@example(value="a\ud800")
@example(value="\x00")
def test_any_filter_value_answers_without_error(store: RecordStore, value: str) -> None:
    """A value no run can hold (a lone surrogate) matches nothing; it never raises."""
    if not store.count():
        store.save(small_record())
    for name in ("config", "status", "safety_level", "session_id", "device_id", "user_id"):
        selected = RunFilter(**{name: value})
        column = "config_name" if name == "config" else name
        rows = store.list_runs(selected, 10)
        assert all(getattr(row, column) == value for row in rows)
        assert min(store.count(selected), 10) == len(rows)
        assert store.stats(selected).runs == store.count(selected)
        if SURROGATE.search(value):
            assert rows == []
    assert (store.load(value) is None) == (value not in store.run_ids([value]))
    erased = store.delete_people(RunFilter(session_id=value))
    assert store.run_ids(erased) == set()
    if SURROGATE.search(value):
        assert erased == []


# --------------------------------------------------------------- SQLite alone


def test_sqlite_file_is_in_wal_mode_and_readable_by_a_plain_connection(
    tmp_path: Path, finished_record: ExecutionRecord
) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    store.save(finished_record)
    with sqlite3.connect(tmp_path / "h.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT status FROM runs").fetchone()[0] == "partial"
    store.close()
