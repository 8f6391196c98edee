"""Progress inside a step: what a running backend call has done so far, for the live feed.

A backend that streams (a chat model's text, ComfyUI's sampler steps, its
queue) calls ``report(kind, **fields)`` as often as it likes. The call costs a
dict and two assignments: it never waits, never does I/O and never raises, so
it cannot slow or break the pipeline. Coalescing (a few frames per second) is
the live feed's job, not the backend's.

Which step is running is told by the orchestrator, not by the backend: it
wraps each backend call in ``ProgressBoard.step(...)``, which makes that step
the target of ``report`` through a context variable. Backends are shared by
concurrent runs and the ``Backend`` protocol carries no per-run argument
(DESIGN.md §8: a ``contextvars`` handle for code that cannot be passed the
tracker's helpers), so a run's reports can only reach that run's board; a
call outside any step is a no-op.

Progress is not research data. The record keeps the finished step and, on
its item, the number of reports seen (``progress_events``).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Longest text a ``text`` report carries; the finished step holds the whole text.
MAX_PROGRESS_TEXT = 2000


class StepProgress:
    """The reports of one running step (one backend call).

    Attributes:
        events: how many reports the step received.
    """

    __slots__ = ("_board", "events", "identity")

    def __init__(self, board: ProgressBoard, identity: dict[str, Any]) -> None:
        self._board = board
        self.identity = identity
        self.events = 0

    def update(self, kind: str, fields: dict[str, Any]) -> None:
        """Make ``{kind, **fields}`` the step's latest state (replacing the last one)."""
        self.events += 1
        text = fields.get("text")
        if isinstance(text, str) and len(text) > MAX_PROGRESS_TEXT:
            fields = {**fields, "text": text[:MAX_PROGRESS_TEXT], "text_truncated": True}
        self._board._publish({**self.identity, "kind": kind, "events": self.events, **fields})


class ProgressBoard:
    """The latest progress of one run: the running step's last report, or None between steps.

    Written by the run's worker thread, read by the live feed's poller. The
    reader takes ``snapshot()``: a version number that grows with every change
    and the state it belongs to (an immutable dict once published).
    """

    __slots__ = ("_lock", "_state", "_version")

    def __init__(self) -> None:
        self._state: dict[str, Any] | None = None
        self._version = 0
        # Held for two assignments only: the reader must never pair a version with
        # another version's state.
        self._lock = threading.Lock()

    def _publish(self, state: dict[str, Any] | None) -> None:
        with self._lock:
            self._state = state
            self._version += 1

    def snapshot(self) -> tuple[int, dict[str, Any] | None]:
        """``(version, state)``: the state is None when no step is running."""
        with self._lock:
            return self._version, self._state

    @contextmanager
    def step(self, **identity: Any) -> Iterator[StepProgress]:
        """Make the calling thread's ``report`` calls go to a new step with ``identity``.

        ``identity`` names the step for the page (``stage``, ``stage_iteration``,
        ``loop_iteration``, ``output``, ``backend``). On exit the board is cleared
        *before* the caller records the step's item, so a reader never sees a
        finished step's progress after its item.

        Yields:
            The step; its ``events`` go into the item's metadata.
        """
        progress = StepProgress(self, identity)
        token = _current.set(progress)
        try:
            yield progress
        finally:
            _current.reset(token)
            if progress.events:
                self._publish(None)


_current: contextvars.ContextVar[StepProgress | None] = contextvars.ContextVar(
    "devserver_step_progress", default=None
)


def report(kind: str, **fields: Any) -> None:
    """Tell the running step's board what the backend has done so far; never raises.

    Args:
        kind: ``text`` (``text`` so far, ``chars``), ``steps`` (``value`` of ``max``,
            ``node``), ``queue`` (``queue_remaining``), or ``started``.
        fields: the values of that kind; JSON-compatible.
    """
    progress = _current.get()
    if progress is None:
        return
    try:
        progress.update(kind, fields)
    except Exception:  # progress is decoration; the step itself must go on
        pass


__all__ = ["MAX_PROGRESS_TEXT", "ProgressBoard", "StepProgress", "report"]
