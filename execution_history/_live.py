"""The registry of runs in progress, so readers can see a running run's record."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._tracker import ExecutionTracker


class LiveRunRegistry:
    """Run id → tracker for every run that started and is not yet stored.

    Only start and finalisation touch the lock; readers use ``get`` and then
    read the tracker's item list by index, never blocking the pipeline.
    """

    def __init__(self) -> None:
        self._runs: dict[str, ExecutionTracker] = {}
        self._lock = threading.Lock()

    def add(self, tracker: ExecutionTracker) -> None:
        """Make a started run visible."""
        with self._lock:
            self._runs[tracker.run_id] = tracker

    def discard(self, run_id: str) -> None:
        """The run's record is stored: remove it (no error when absent)."""
        with self._lock:
            self._runs.pop(run_id, None)

    def get(self, run_id: str) -> ExecutionTracker | None:
        """The live tracker of ``run_id``, or None."""
        return self._runs.get(run_id)

    def run_ids(self) -> list[str]:
        """Ids of the runs in progress."""
        with self._lock:
            return list(self._runs)

    def __len__(self) -> int:
        return len(self._runs)
