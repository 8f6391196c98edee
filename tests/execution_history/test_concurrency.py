"""Many runs at once: no item ever appears in another run's record."""

from __future__ import annotations

import threading
from pathlib import Path

from execution_history import (
    ExecutionTracker,
    Finaliser,
    ItemType,
    SQLiteRecordStore,
    StoreSink,
    current_tracker,
)


def test_64_threads_each_with_its_own_tracker_keep_their_items_apart(tmp_path: Path) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    finaliser = Finaliser([StoreSink(store, tmp_path / "q")])
    barrier = threading.Barrier(64)
    run_ids: dict[int, str] = {}

    def pipeline(worker: int) -> None:
        with ExecutionTracker(f"cfg{worker}", user_id=f"u{worker}", finaliser=finaliser) as t:
            run_ids[worker] = t.run_id
            barrier.wait()
            for step in range(1, 41):
                # half the calls go through the context handle, as helper code would
                target = current_tracker() if step % 2 else t
                with target.stage(2), target.stage_iteration(step):
                    target.log(ItemType.INTERCEPTION_ITERATION, f"w{worker}-s{step}",
                               metadata={"worker": worker})  # fmt: skip

    threads = [threading.Thread(target=pipeline, args=(n,)) for n in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert finaliser.close().clean
    for worker, run_id in run_ids.items():
        record = store.load(run_id)
        assert record is not None, worker
        steps = [i for i in record.items if i.item_type == ItemType.INTERCEPTION_ITERATION]
        assert [i.content for i in steps] == [f"w{worker}-s{s}" for s in range(1, 41)]
        assert {i.metadata["worker"] for i in steps} == {worker}
        assert [i.stage_iteration for i in steps] == list(range(1, 41))
    assert store.count() == 64
