"""Finaliser and sinks: isolated, with deadlines; a failed store write is quarantined, not lost."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from execution_history import (
    ExecutionRecord,
    ExecutionTracker,
    Finaliser,
    ItemType,
    LiveRunRegistry,
    SQLiteRecordStore,
    StoreSink,
)


class ListSink:
    def __init__(self, name: str = "list") -> None:
        self.name = name
        self.records: list[ExecutionRecord] = []

    def __call__(self, record: ExecutionRecord) -> None:
        self.records.append(record)


class RaisingSink:
    name = "raising"

    def __call__(self, record: ExecutionRecord) -> None:
        raise RuntimeError("sink broke")


class HangingSink:
    name = "hanging"

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, record: ExecutionRecord) -> None:
        self.release.wait(30)


def run_once(finaliser: Finaliser, text: str = "hello") -> ExecutionTracker:
    with ExecutionTracker("x", finaliser=finaliser) as tracker, tracker.stage(1):
        tracker.log_user_input(text)
    return tracker


def test_sinks_run_in_order_off_the_pipeline_thread(tmp_path: Path) -> None:
    threads: list[str] = []

    class Spy(ListSink):
        def __call__(self, record: ExecutionRecord) -> None:
            threads.append(threading.current_thread().name)
            super().__call__(record)

    first, second = Spy("first"), Spy("second")
    finaliser = Finaliser([first, second])
    tracker = run_once(finaliser)
    record = tracker.finalize(wait=True)
    assert [s.name for s in record.integrity.sinks] == ["first", "second"]
    assert all(s.status == "ok" for s in record.integrity.sinks)
    assert first.records[0].run_id == second.records[0].run_id == tracker.run_id
    assert threading.current_thread().name not in threads
    assert finaliser.close().clean


def test_a_raising_sink_and_a_hanging_sink_do_not_stop_the_others() -> None:
    hanging, after = HangingSink(), ListSink("after")
    finaliser = Finaliser([RaisingSink(), hanging, after], deadline_s=0.3)
    tracker = run_once(finaliser)
    record = tracker.finalize(wait=True)
    outcomes = {s.name: s for s in record.integrity.sinks}
    assert outcomes["raising"].status == "failed"
    assert "sink broke" in (outcomes["raising"].error or "")
    assert outcomes["hanging"].status == "timeout"
    assert outcomes["after"].status == "ok" and len(after.records) == 1
    hanging.release.set()
    assert finaliser.close().clean


def test_a_full_disk_sends_the_record_to_quarantine_and_a_restart_imports_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "h.sqlite3"
    SQLiteRecordStore(db).close()
    # max_page_count caps the file at its current size, so SQLite answers
    # SQLITE_FULL ("database or disk is full"), exactly what a full disk does.
    full = SQLiteRecordStore(db, pragmas={"max_page_count": 1})
    sink = StoreSink(full, tmp_path / "quarantine", attempts=2, backoff_s=0.01)
    finaliser = Finaliser([sink])
    tracker = run_once(finaliser, "a long prompt " * 5000)
    record = tracker.finalize(wait=True)
    outcome = record.integrity.sinks[0]
    assert outcome.status == "quarantined" and "full" in (outcome.error or "")
    saved = json.loads((tmp_path / "quarantine" / f"{tracker.run_id}.json").read_text("utf-8"))
    assert saved["run_id"] == tracker.run_id and len(saved["items"]) == len(record.items)
    finaliser.close()
    healthy = StoreSink(SQLiteRecordStore(db), tmp_path / "quarantine")
    assert healthy.reimport() == [tracker.run_id]
    assert healthy.quarantined() == []
    loaded = healthy.store.load(tracker.run_id)
    assert loaded is not None and loaded.integrity.sinks[0].status == "quarantined"


def test_a_read_only_store_quarantines_too(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    SQLiteRecordStore(db).close()
    read_only = SQLiteRecordStore(db, pragmas={"query_only": 1})
    sink = StoreSink(read_only, tmp_path / "q", attempts=1)
    tracker = run_once(Finaliser([sink], background=False))
    assert tracker.finalize().integrity.sinks[0].status == "quarantined"
    assert (tmp_path / "q" / f"{tracker.run_id}.json").is_file()


def test_close_drains_every_queued_record(tmp_path: Path) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    finaliser = Finaliser([StoreSink(store, tmp_path / "q")])
    ids = [run_once(finaliser).run_id for _ in range(50)]
    assert finaliser.close().clean
    assert store.run_ids(ids) == set(ids)


def test_a_full_queue_makes_the_caller_finalise_instead_of_dropping() -> None:
    hanging, sink = HangingSink(), ListSink()
    finaliser = Finaliser([hanging, sink], deadline_s=0.2, queue_size=1)
    trackers = [run_once(finaliser) for _ in range(4)]
    assert finaliser.inline_runs >= 1
    hanging.release.set()
    for tracker in trackers:
        tracker.finalize(wait=True)
    assert finaliser.close().clean
    assert sorted(r.run_id for r in sink.records) == sorted(t.run_id for t in trackers)


def test_live_registry_holds_a_run_until_it_is_stored(tmp_path: Path) -> None:
    registry = LiveRunRegistry()
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    finaliser = Finaliser([StoreSink(store, tmp_path / "q")], processors=[registry])
    tracker = ExecutionTracker("x", finaliser=finaliser)
    with tracker:
        assert registry.get(tracker.run_id) is tracker.run_log
        tracker.log(ItemType.USER_INPUT_TEXT, "live")
        assert store.load(tracker.run_id) is None
    tracker.finalize(wait=True)
    assert registry.get(tracker.run_id) is None
    assert store.load(tracker.run_id) is not None
    finaliser.close()


def test_media_sizes_and_checksums_are_filled_in_off_the_pipeline(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(b"abc")
    finaliser = Finaliser([])
    with ExecutionTracker("x", finaliser=finaliser, media_dir=tmp_path / "m") as tracker:
        with tracker.stage(4):
            tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": "a.bin"})
            tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": "missing.png"})
            tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": "../../etc/passwd"})
    media = [i.media for i in tracker.finalize().items if i.media]
    assert media[0].size_bytes == 3
    assert media[0].sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert media[1].size_bytes is None and media[1].sha256 is None  # not invented
    assert media[2].size_bytes is None  # outside the media folder: never read
    finaliser.close()


def test_finalize_twice_from_two_threads_runs_the_sinks_once() -> None:
    sink = ListSink()
    finaliser = Finaliser([sink])
    tracker = ExecutionTracker("x", finaliser=finaliser).start()
    results: list[ExecutionRecord] = []
    workers = [
        threading.Thread(target=lambda: results.append(tracker.finalize())) for _ in range(8)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    time.sleep(0.05)
    assert len(sink.records) == 1
    assert len({r.run_id for r in results}) == 1
    finaliser.close()


class FlakyStore:
    """A store whose writes fail until ``healthy`` is set (a real SQLite file behind it)."""

    def __init__(self, path: Path) -> None:
        self.inner = SQLiteRecordStore(path)
        self.healthy = False

    def save(self, record: ExecutionRecord) -> None:
        if not self.healthy:
            raise OSError(28, "No space left on device")
        self.inner.save(record)


def _unwritable_quarantine(tmp_path: Path) -> Path:
    """A quarantine path that is a file: no folder can be made there, root or not."""
    path = tmp_path / "quarantine"
    path.write_text("in the way")
    return path


def test_a_run_neither_store_nor_quarantine_takes_is_held_readable_and_stored_later(
    tmp_path: Path,
) -> None:
    store = FlakyStore(tmp_path / "h.sqlite3")
    registry = LiveRunRegistry()
    sink = StoreSink(store, _unwritable_quarantine(tmp_path), attempts=1)  # type: ignore[arg-type]
    finaliser = Finaliser([sink], processors=[registry], retry_s=0.05)
    tracker = run_once(finaliser, "held")
    record = tracker.finalize(wait=True)
    assert record.integrity.sinks[0].status == "failed"
    assert finaliser.held() == [tracker.run_id]
    log = registry.get(tracker.run_id)  # still readable by its link
    assert log is not None and log.record is not None and log.record.run_id == tracker.run_id
    store.healthy = True
    deadline = time.monotonic() + 10
    while finaliser.held() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert finaliser.held() == []
    assert registry.get(tracker.run_id) is None
    assert store.inner.load(tracker.run_id) is not None
    assert finaliser.close().message() == "every run is recorded"


def test_close_saves_held_runs_to_the_first_writable_last_resort_folder(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path / "h.sqlite3")
    sink = StoreSink(store, _unwritable_quarantine(tmp_path), attempts=1)  # type: ignore[arg-type]
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    finaliser = Finaliser([sink], last_resort_dirs=[blocked, tmp_path / "unwritten"])
    ids = sorted(run_once(finaliser, f"run {i}").run_id for i in range(3))
    report = finaliser.close()
    assert not report.clean and report.unwritten == 3
    assert report.places == [str(tmp_path / "unwritten")]
    assert "3 run(s) could not be written" in report.message()
    saved = sorted(p.stem for p in (tmp_path / "unwritten").glob("*.json"))
    assert saved == ids
    for path in (tmp_path / "unwritten").glob("*.json"):
        assert ExecutionRecord.model_validate_json(path.read_bytes()).run_id == path.stem


def test_close_writes_held_runs_to_standard_error_when_no_folder_is_writable(
    tmp_path: Path, capsys: object
) -> None:
    store = FlakyStore(tmp_path / "h.sqlite3")
    sink = StoreSink(store, _unwritable_quarantine(tmp_path), attempts=1)  # type: ignore[arg-type]
    finaliser = Finaliser([sink], last_resort_dirs=[])
    run_id = run_once(finaliser, "last resort").run_id
    report = finaliser.close()
    assert report.unwritten == 1 and "standard error" in report.message()
    lines = capsys.readouterr().err.splitlines()  # type: ignore[attr-defined]
    assert [json.loads(line)["run_id"] for line in lines] == [run_id]


def test_the_record_readers_get_from_memory_is_the_stored_record(tmp_path: Path) -> None:
    """Between the store's commit and the run leaving the live registry, a reader gets the
    finaliser's record: it must be the one the store holds, outcome included."""
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    finaliser = Finaliser([StoreSink(store, tmp_path / "q")])
    record = run_once(finaliser).finalize(wait=True)
    assert record.integrity.sinks[0].status == "ok"
    assert store.load(record.run_id) == record
    finaliser.close()
