"""A process killed with SIGKILL mid-run: the next start finds the run as ``incomplete``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from execution_history import ItemType, Journal, RunStatus, SQLiteRecordStore, StoreSink

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from execution_history import (ExecutionTracker, Finaliser, ItemType, Journal,
                                   SQLiteRecordStore, StoreSink)
    data = Path(sys.argv[1])
    store = SQLiteRecordStore(data / "h.sqlite3")
    journal = Journal(data / "journal", interval_s=0.05)
    finaliser = Finaliser([StoreSink(store, data / "q")], processors=[journal])
    # one run that finishes normally, then one that is killed half-way
    with ExecutionTracker("dada", finaliser=finaliser) as done:
        done.log(ItemType.USER_INPUT_TEXT, "finished run")
    done.finalize(wait=True)
    tracker = ExecutionTracker("stillepost", user_id="u1", finaliser=finaliser).start()
    with tracker.stage(1):
        tracker.log_user_input("Ein Hund spielt im Garten")
    with tracker.stage(2):
        for i in range(1, 4):
            with tracker.stage_iteration(i):
                tracker.log_interception_iteration(f"step {i}", from_lang="de", to_lang="en")
    time.sleep(0.3)  # the journal thread writes what was recorded so far
    print(done.run_id, tracker.run_id, flush=True)
    time.sleep(60)   # killed here, mid-run
    """
)


def test_sigkill_mid_run_leaves_an_incomplete_record_after_restart(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert child.stdout is not None
        done_id, killed_id = child.stdout.readline().split()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    assert store.load(killed_id) is None  # not stored before the restart
    journal = Journal(tmp_path / "journal")
    assert journal.recover(store).recovered == [killed_id]
    journal.close()
    record = store.load(killed_id)
    assert record is not None
    assert record.status == RunStatus.INCOMPLETE
    assert record.integrity.recovered is True
    assert record.user_id == "u1"
    steps = [i.content for i in record.items if i.item_type == ItemType.INTERCEPTION_ITERATION]
    assert steps == ["step 1", "step 2", "step 3"]
    assert {s.stage: s.status for s in record.stages}[2] == "done"
    finished = store.load(done_id)
    assert finished is not None and finished.status == RunStatus.SUCCESS
    # nothing is left to recover a second time, and the finished run left no journal
    assert list((tmp_path / "journal").glob("*.jsonl")) == []
    assert StoreSink(store, tmp_path / "q").quarantined() == []


def test_journal_keeps_items_whose_metadata_json_cannot_hold(tmp_path: Path) -> None:
    """Bytes, sets, cycles and media refs in a journal all come back in the recovered record."""
    from execution_history import ExecutionTracker

    cyclic: dict[str, object] = {}
    cyclic["me"] = cyclic
    journal = Journal(tmp_path / "journal", interval_s=3600)
    tracker = ExecutionTracker("x", user_id="u").start()
    journal.on_start(tracker.run_log)
    with tracker.stage(4), tracker.loop_iteration(0):
        tracker.log(ItemType.OUTPUT_IMAGE, "a", media={"path": "a.png"}, metadata={"b": b"\x01"})
        tracker.log(ItemType.OUTPUT_FAILED, "b", metadata={"s": {1, 2}, "c": cyclic})
    journal.flush()
    # the process "dies": a fresh journal on the same folder recovers the run
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    assert Journal(tmp_path / "journal").recover(store).recovered == [tracker.run_id]
    record = store.load(tracker.run_id)
    assert record is not None and record.status == RunStatus.INCOMPLETE
    kept = {i.content: i for i in record.items if i.content in ("a", "b")}
    assert kept["a"].media is not None and kept["a"].media.path == "a.png"
    assert kept["a"].loop_iteration == 0
    assert "b" in kept and kept["b"].metadata["s"]
    journal.close()


def test_recovery_never_overwrites_a_run_the_store_already_has(tmp_path: Path) -> None:
    """Death after the store had the run, before its journal was removed: the run stays whole."""
    from execution_history import ExecutionTracker

    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    journal = Journal(tmp_path / "journal", interval_s=3600)
    saved = ExecutionTracker("dada")
    saved.start()
    journal.on_start(saved.run_log)
    saved.log_user_input("Ein Hund spielt im Garten")
    journal.flush()  # the journal has the run, as a dying process would leave it
    saved.end()
    store.save(saved.finalize())
    journal.close()  # the file stays: nobody called on_stored()

    restarted = Journal(tmp_path / "journal", interval_s=3600)
    try:
        assert restarted.recover(store).recovered == []
    finally:
        restarted.close()
    assert list((tmp_path / "journal").glob("*.jsonl")) == []
    record = store.load(saved.run_id)
    assert record is not None and record.status == RunStatus.SUCCESS
    assert not record.integrity.recovered
