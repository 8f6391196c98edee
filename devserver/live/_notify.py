"""The live feed across processes on PostgreSQL: ``NOTIFY`` says a run grew, ``LISTEN`` wakes.

Processes of one server (``serve --workers``) share the data dir, so a worker
follows another worker's run through that run's journal file (``pipeline._journals.OtherRun``).
What PostgreSQL adds is *when* to look: after each journal write the writing
process sends ``NOTIFY devserver_run_items, '<run_id>:<sequence>'`` (small: a
run id and the highest sequence number written, never the item), and every
process's listener wakes the feed of that run at once instead of at its next
poll.

Notifications are not replayed: one sent while a listener was reconnecting is
lost. Nothing depends on one arriving: a woken feed reads the journal from
where it stopped, by sequence number, and every feed of another process's run
is also looked at every ``FeedSettings.other_poll_s``. After a reconnection
the listener wakes every such feed at once (``FeedHub.notify_all``).

One connection per process listens, on a thread of its own; it reconnects
with a growing pause (``RECONNECT_S``) when the database restarts. The writing
side uses one more connection, opened when first needed and again after an
error; a failed ``NOTIFY`` is counted and logged, never raised into the journal.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from execution_history import is_run_id

logger = logging.getLogger("devserver")

#: A sequence number as the notifier writes it (ASCII digits only: str.isdigit takes "²").
_SEQUENCE = re.compile(r"[0-9]{1,18}")
#: The channel every process of one database listens on.
CHANNEL = "devserver_run_items"
#: Pauses between reconnection attempts of the listener (the last one repeats).
RECONNECT_S = (0.2, 0.5, 1.0, 2.0, 5.0)
#: How long the listener waits for a notification before it checks whether to stop.
WAIT_S = 1.0


def _connect(url: str, *, autocommit: bool) -> Any:
    import psycopg  # imported here: the PostgreSQL extra is optional

    return psycopg.connect(url, autocommit=autocommit, connect_timeout=5)


def _close_quietly(conn: Any) -> None:
    """Close ``conn`` (None: nothing); a connection a dead server broke may raise: ignored."""
    if conn is None:
        return
    with contextlib.suppress(Exception):
        conn.close()


def parse_payload(payload: str) -> tuple[str, int] | None:
    """``'<run_id>:<sequence>'`` as (run id, sequence); None for anything else."""
    run_id, _, sequence = payload.partition(":")
    if not is_run_id(run_id) or not _SEQUENCE.fullmatch(sequence):
        return None
    return run_id, int(sequence)


class RunNotifier:
    """Sends one ``NOTIFY`` per run that got new journal lines (the journal's ``on_written``).

    Args:
        url: the PostgreSQL database's URL (the store's).
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: Any = None
        self._lock = threading.Lock()
        self.sent = 0
        self.failures = 0
        self._last_error_log = 0.0

    def __call__(self, written: list[tuple[str, int]]) -> None:
        """Notify every listener that ``written`` runs grew (one transaction for all)."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = _connect(self._url, autocommit=True)
                    # A NOTIFY's commit gets a transaction id and so a WAL flush; a wake-up is
                    # transient (never replayed), so waiting for the disk buys nothing.
                    self._conn.execute("SET synchronous_commit = off")
                with self._conn.transaction():
                    cursor = self._conn.cursor()
                    for run_id, sequence in written:
                        cursor.execute(
                            "SELECT pg_notify(%s, %s)", (CHANNEL, f"{run_id}:{sequence}")
                        )
                self.sent += len(written)
            except Exception as exc:  # the database is away: feeds fall back to polling
                self.failures += 1
                self._drop_connection()
                now = time.monotonic()
                if now - self._last_error_log >= 10.0:
                    self._last_error_log = now
                    logger.warning(
                        "live-feed notification not sent (%d so far): %s", self.failures, exc
                    )

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        _close_quietly(conn)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._drop_connection()


class RunListener:
    """Listens for ``NOTIFY`` on a thread of its own and wakes the feeds of the runs named.

    Args:
        url: the PostgreSQL database's URL.
        wake: called with a run id when another process wrote items of it.
        wake_all: called after (re)connecting, when notifications may have been lost.
    """

    def __init__(self, url: str, wake: Callable[[str], None], wake_all: Callable[[], None]) -> None:
        self._url = url
        self._wake = wake
        self._wake_all = wake_all
        self._stop = threading.Event()
        self._conn: Any = None
        self.connected = threading.Event()
        self.received = 0
        self.reconnections = 0
        self._thread = threading.Thread(target=self._run, name="devserver-listen", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self._conn = _connect(self._url, autocommit=True)
                self._conn.execute(f"LISTEN {CHANNEL}")
                if attempt:
                    self.reconnections += 1
                    logger.warning("live-feed listener connected again")
                attempt = 0
                self.connected.set()
                self._wake_all()  # whatever was sent while it was away
                while not self._stop.is_set():
                    for notice in self._conn.notifies(timeout=WAIT_S):
                        parsed = parse_payload(notice.payload)
                        if parsed is not None:
                            self.received += 1
                            self._wake(parsed[0])
            except Exception as exc:
                self.connected.clear()
                if self._stop.is_set():
                    return
                pause = RECONNECT_S[min(attempt, len(RECONNECT_S) - 1)]
                if attempt == 0:
                    logger.warning("live-feed listener lost its connection (%s); reconnecting", exc)
                attempt += 1
                self._stop.wait(pause)
            finally:
                conn, self._conn = self._conn, None
                _close_quietly(conn)

    def close(self) -> None:
        """Stop listening (returns within about ``WAIT_S``)."""
        self._stop.set()
        self._thread.join(WAIT_S + 2.0)
