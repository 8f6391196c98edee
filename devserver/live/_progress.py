"""A run's progress side-channel on its live feed: the latest state of the running step, coalesced.

The pipeline's worker writes every report of a backend into the run's
``ProgressBoard`` (two assignments, no I/O). The feed's poller calls ``poll``
on each tick: at most once per ``interval_s`` it encodes the board's latest
state, if it changed, into one SSE frame (``event: progress``) and keeps
only that frame. So:

- the pipeline is never slowed: however often a backend reports, the feed
  encodes at most ``1 / interval_s`` frames per second per run, and the
  latest state always goes out (on the first tick after the interval);
- a subscriber that (re)connects gets the latest state, not the history;
- progress frames carry no ``id:`` and are not items: ``Last-Event-ID``,
  ``?since=`` and the item count are untouched by them.

When the running step ends, the state is cleared and no frame is kept: the
step's item follows on the feed.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from ..pipeline.backends import ProgressBoard


class ProgressChannel:
    """The latest progress frame of one run, made from its board at most every ``interval_s``.

    Args:
        board: the run's progress board.
        run_id: the run, named in every frame.
        interval_s: least time between two frames (0: every change of a tick).
    """

    def __init__(self, board: ProgressBoard, run_id: str, interval_s: float) -> None:
        self._board = board
        self._run_id = run_id
        self._interval_s = interval_s
        self._seen = 0  # the board version the frame was made from
        self._sent_at = float("-inf")
        self._lock = threading.Lock()
        #: Grows with every new frame (or clearing); readers remember the one they sent.
        self.version = 0
        self._frame: bytes | None = None
        #: Frames made so far (for tests and the health of the coalescing).
        self.frames_made = 0

    def poll(self) -> bool:
        """Make a new frame when the board changed and the interval has passed.

        Returns:
            True when readers have something new (a frame, or the state cleared).
        """
        version, state = self._board.snapshot()
        if version == self._seen:
            return False
        now = time.monotonic()
        if state is not None and now - self._sent_at < self._interval_s:
            return False  # coalesced: the next tick after the interval sends the latest
        frame = None if state is None else encode_progress(self._run_id, state)
        with self._lock:
            self._seen = version
            self._frame = frame
            self.version += 1
            if frame is not None:
                self.frames_made += 1
                self._sent_at = now
        return True

    def latest(self, after: int) -> tuple[int, bytes | None]:
        """The frame a reader that has seen version ``after`` should get.

        Returns:
            ``(version, frame)``: the frame is None when there is nothing new
            or no step is running; the reader keeps the version either way.
        """
        with self._lock:
            if self.version <= after:
                return after, None
            return self.version, self._frame


def encode_progress(run_id: str, state: dict[str, Any]) -> bytes:
    """One progress state as an SSE frame: ``event: progress``, no ``id``, JSON data.

    Args:
        run_id: the run.
        state: the board's state (the step's identity, ``kind``, ``events`` and the
            kind's fields).

    Returns:
        The UTF-8 frame, ending in a blank line.
    """
    body = {"run_id": run_id, **state}
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)
    return b"event: progress\ndata: %s\n\n" % text.encode("utf-8", "replace")


__all__ = ["ProgressChannel", "encode_progress"]
