"""SQLiteRecordStore: durable saves, filters, keyset pagination, stats, erasure, processes."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import sqlite3
from pathlib import Path

from execution_history import (
    ExecutionRecord,
    ExecutionTracker,
    ItemType,
    RunFilter,
    SQLiteRecordStore,
)
from tests.records import stille_post_record


def small_record(config: str = "dada", *, user: str = "u1", session: str = "s1",
                 level: str = "kids", block: bool = False) -> ExecutionRecord:  # fmt: skip
    with ExecutionTracker(config, safety_level=level, user_id=user, session_id=session) as t:
        with t.stage(1):
            t.log_user_input("hello")
            if block:
                t.log_blocked("term", metadata={"matched_terms": ["x"]})
    return t.finalize()


def shifted(record: ExecutionRecord, days: int) -> ExecutionRecord:
    delta = dt.timedelta(days=days)
    return record.model_copy(update={"started_at": record.started_at + delta})


def test_save_and_load_round_trip_in_a_real_file(tmp_path: Path, finished_record) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    store.save(finished_record)
    assert store.load(finished_record.run_id) == finished_record
    assert store.load("0" * 32) is None
    # a fresh connection (another process would do the same) sees the committed row
    with sqlite3.connect(tmp_path / "h.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT status FROM runs").fetchone()[0] == "partial"


def test_filters_and_keyset_pagination_visit_every_run_once(tmp_path: Path) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    saved = []
    for n in range(23):
        config = "stillepost" if n % 2 else "dada"
        level = "teens" if n % 5 == 0 else "kids"
        record = small_record(config, session=f"s{n % 3}", level=level, block=n % 4 == 0)
        record = shifted(record, -n)
        store.save(record)
        saved.append(record)
    pages, after = [], None
    while True:
        rows = store.list_runs(RunFilter(), limit=5, after=after)
        pages.append(rows)
        if len(rows) < 5:
            break
        after = rows[-1].cursor
    seen = [row.run_id for page in pages for row in page]
    assert seen == [r.run_id for r in sorted(saved, key=lambda r: r.started_at, reverse=True)]
    assert {row.config_name for row in store.list_runs(RunFilter(config="dada"), 100)} == {"dada"}
    blocked = store.list_runs(RunFilter(status="blocked"), 100)
    assert len(blocked) == 6 and all(row.status == "blocked" for row in blocked)
    assert store.count(RunFilter(session_id="s1")) == len([n for n in range(23) if n % 3 == 1])
    assert store.count(RunFilter(safety_level="teens")) == 5
    newest = max(r.started_at for r in saved)
    recent = RunFilter(since=newest - dt.timedelta(days=2, hours=1))
    assert store.count(recent) == 3
    assert store.count(RunFilter(until=newest - dt.timedelta(days=20))) == 2


def test_stats_count_by_status_config_level_day_and_per_stage(tmp_path: Path) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    store.save(stille_post_record())
    store.save(small_record(block=True))
    store.save(small_record())
    stats = store.stats()
    assert stats.runs == 3
    assert stats.by_status == {"blocked": 1, "partial": 1, "success": 1}
    assert stats.by_config == {"dada": 2, "stillepost": 1}
    assert sum(stats.by_day.values()) == 3
    assert stats.stages[1]["blocks"] == 1
    assert stats.stages[3]["blocks"] == 1 and stats.stages[3]["runs_with_blocks"] == 1
    assert stats.integrity["items"] > 0


def test_erasure_by_user_and_retention(tmp_path: Path) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    mine = [small_record(user="child-1") for _ in range(3)]
    other = shifted(small_record(user="child-2"), -40)
    for record in [*mine, other]:
        store.save(record)
    assert sorted(store.delete_user("child-1")) == sorted(r.run_id for r in mine)
    assert store.count() == 1 and store.load(mine[0].run_id) is None
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    assert store.delete_older_than(cutoff, dry_run=True) == [other.run_id]
    assert store.count() == 1
    assert store.delete_older_than(cutoff) == [other.run_id]
    assert store.count() == 0
    assert store.delete(other.run_id) is False


def _save_many(path: str, count: int) -> None:
    store = SQLiteRecordStore(path)
    for _ in range(count):
        store.save(small_record("dada"))
    store.close()


def test_several_processes_write_one_file_safely(tmp_path: Path) -> None:
    path = str(tmp_path / "h.sqlite3")
    SQLiteRecordStore(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_save_many, args=(path, 15)) for _ in range(3)]
    for worker in workers:
        worker.start()
    _save_many(path, 15)
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert SQLiteRecordStore(path).count() == 60


def test_unknown_item_types_survive_the_store(tmp_path: Path) -> None:
    with ExecutionTracker("x") as tracker:
        tracker.log("from_the_future", "kept")
    record = tracker.finalize()
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    store.save(record)
    loaded = store.load(record.run_id)
    assert loaded is not None
    assert [i.item_type for i in loaded.items if i.content == "kept"] == ["from_the_future"]
    assert ItemType.PIPELINE_COMPLETE in [i.item_type for i in loaded.items]


def test_stats_accept_every_filter_including_status(tmp_path: Path) -> None:
    """run_stages has a status column too: the filter's columns must name their table."""
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    store.save(small_record(block=True))
    store.save(small_record())
    stats = store.stats(RunFilter(status="blocked", config="dada", safety_level="kids"))
    assert stats.runs == 1 and stats.by_status == {"blocked": 1}
    assert stats.stages[1]["blocks"] == 1
