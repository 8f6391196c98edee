"""The registry of runs not yet safe in a store, so readers find a run wherever it waits."""

from __future__ import annotations

import threading

from ._runlog import RunLog


class LiveRunRegistry:
    """Run id → run log for every run accepted and not yet stored; a processor.

    A run enters at ``on_start`` and leaves at ``on_stored``: while it runs,
    while it waits for the writer, and while a store that cannot be written
    keeps it in memory, its link still reads it from here. Only start and
    store touch the lock; readers use ``get`` and read the log's items by
    index, never blocking the pipeline.
    """

    name = "live registry"

    def __init__(self) -> None:
        self._runs: dict[str, RunLog] = {}
        self._lock = threading.Lock()

    def on_start(self, log: RunLog) -> None:
        """Make a run visible."""
        with self._lock:
            self._runs[log.run_id] = log

    def on_end(self, log: RunLog) -> None:
        """Nothing: an ended run stays visible until it is stored."""

    def on_stored(self, log: RunLog) -> None:
        """The run's record is safe: it is read from the store now."""
        with self._lock:
            if self._runs.get(log.run_id) is log:
                del self._runs[log.run_id]

    def get(self, run_id: str) -> RunLog | None:
        """The run log of ``run_id``, or None."""
        return self._runs.get(run_id)

    def logs(self) -> list[RunLog]:
        """Every run log here."""
        with self._lock:
            return list(self._runs.values())

    def run_ids(self) -> list[str]:
        """Ids of the runs here."""
        with self._lock:
            return list(self._runs)

    def __len__(self) -> int:
        return len(self._runs)
