"""Durable storage of finished records: the RecordStore interface and its SQLite default."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ._build import build_record
from ._media import complete_media
from ._record import ExecutionRecord, SinkOutcome
from ._runlog import RunLog, raw_item_of
from ._taxonomy import RunStatus

logger = logging.getLogger("execution_history")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id          TEXT PRIMARY KEY,
    config_name     TEXT,
    status          TEXT NOT NULL,
    safety_level    TEXT,
    user_id         TEXT,
    session_id      TEXT,
    device_id       TEXT,
    started_at      TEXT NOT NULL,
    ended_at        TEXT,
    duration_ms     REAL,
    item_count      INTEGER NOT NULL,
    items_dropped   INTEGER NOT NULL DEFAULT 0,
    fields_truncated INTEGER NOT NULL DEFAULT 0,
    values_coerced  INTEGER NOT NULL DEFAULT 0,
    tracker_errors  INTEGER NOT NULL DEFAULT 0,
    taxonomy_version TEXT,
    record          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_config ON runs (config_name, started_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, started_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_session ON runs (session_id, started_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_safety ON runs (safety_level, started_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_user ON runs (user_id);
CREATE TABLE IF NOT EXISTS run_stages (
    run_id   TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    stage    INTEGER NOT NULL,
    status   TEXT NOT NULL,
    items    INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    blocks   INTEGER NOT NULL,
    PRIMARY KEY (run_id, stage)
) WITHOUT ROWID;
"""

#: Columns added after a database may have been made: (column, its index's statement).
#: ``CREATE TABLE IF NOT EXISTS`` leaves an existing table as it is, so each is added here.
_ADDED_COLUMNS = (
    (
        "device_id",
        "CREATE INDEX IF NOT EXISTS runs_device ON runs (device_id, started_at DESC, run_id DESC)",
    ),
)

_COLUMNS = (
    "run_id, config_name, status, safety_level, user_id, session_id, device_id, started_at, "
    "ended_at, "
    "duration_ms, item_count, items_dropped, fields_truncated, values_coerced, tracker_errors, "
    "taxonomy_version"
)


def utc_text(moment: datetime) -> str:
    """The fixed-width, sortable UTC form stored in the indexed columns."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _encodable(text: str) -> bool:
    """Whether ``text`` can be sent to a database (a lone surrogate cannot be encoded)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a query selects; None means "any"."""

    config: str | None = None
    status: str | None = None
    safety_level: str | None = None
    session_id: str | None = None
    device_id: str | None = None
    user_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("config_name", self.config),
            ("status", self.status),
            ("safety_level", self.safety_level),
            ("session_id", self.session_id),
            ("device_id", self.device_id),
            ("user_id", self.user_id),
        ):
            if value is not None:
                if not _encodable(value):
                    return "0", []  # no stored value holds a lone surrogate: none match
                # qualified: stats() joins run_stages, which has a status column too
                clauses.append(f"runs.{column} = ?")
                params.append(value)
        if self.since is not None:
            clauses.append("runs.started_at >= ?")
            params.append(utc_text(self.since))
        if self.until is not None:
            clauses.append("runs.started_at < ?")
            params.append(utc_text(self.until))
        return (" AND ".join(clauses) or "1"), params

    @property
    def names_people(self) -> bool:
        """Whether it names a person, a device or a workshop (what erasure selects by)."""
        return any(v is not None for v in (self.user_id, self.session_id, self.device_id))

    def people_only(self) -> RunFilter:
        """Only the people fields (user, session, device): what erasure selects by.

        Raises:
            ValueError: the filter names no user, session or device id (erasure
                never selects everything).
        """
        if not self.names_people:
            raise ValueError("erasure needs a user, session or device id")
        return RunFilter(user_id=self.user_id, session_id=self.session_id, device_id=self.device_id)

    def matches_people(self, user_id: object, session_id: object, device_id: object) -> bool:
        """Whether raw ids (a run log's header, say) are selected by the people filters.

        Only ``user_id``, ``session_id`` and ``device_id`` are compared; False
        when the filter names none of them (erasure never selects everything).
        """
        return self.names_people and all(
            wanted is None or wanted == value
            for wanted, value in (
                (self.user_id, user_id),
                (self.session_id, session_id),
                (self.device_id, device_id),
            )
        )

    def matches(self, record: ExecutionRecord) -> bool:
        """Whether ``record`` is selected (for runs not in a store yet)."""
        started = utc_text(record.started_at)
        return (
            (self.config is None or record.config_name == self.config)
            and (self.status is None or str(record.status) == self.status)
            and (self.safety_level is None or record.safety_level == self.safety_level)
            and (self.session_id is None or record.session_id == self.session_id)
            and (self.device_id is None or record.device_id == self.device_id)
            and (self.user_id is None or record.user_id == self.user_id)
            and (self.since is None or started >= utc_text(self.since))
            and (self.until is None or started < utc_text(self.until))
        )


@dataclass(frozen=True, slots=True)
class RunRow:
    """One stored run as the list sees it (no items, no raw record)."""

    run_id: str
    config_name: str | None
    status: str
    safety_level: str | None
    user_id: str | None
    session_id: str | None
    device_id: str | None
    started_at: str
    ended_at: str | None
    duration_ms: float | None
    item_count: int
    items_dropped: int
    fields_truncated: int
    values_coerced: int
    tracker_errors: int
    taxonomy_version: str | None

    @property
    def cursor(self) -> tuple[str, str]:
        """The keyset position just after this row."""
        return (self.started_at, self.run_id)


@dataclass(slots=True)
class Stats:
    """Counts over the selected runs."""

    runs: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_config: dict[str, int] = field(default_factory=dict)
    by_safety_level: dict[str, int] = field(default_factory=dict)
    by_day: dict[str, int] = field(default_factory=dict)
    stages: dict[int, dict[str, int]] = field(default_factory=dict)
    integrity: dict[str, int] = field(default_factory=dict)

    def add(self, record: ExecutionRecord) -> None:
        """Count one more run (a run not in the store yet: held in memory or quarantined)."""
        self.runs += 1
        day = utc_text(record.started_at)[:10]
        for target, key in (
            (self.by_status, str(record.status)),
            (self.by_config, record.config_name or ""),
            (self.by_safety_level, record.safety_level or ""),
            (self.by_day, day),
        ):
            target[key] = target.get(key, 0) + 1
        for stage in record.stages:
            counts = self.stages.setdefault(
                stage.stage,
                dict.fromkeys(
                    ("items", "failures", "blocks", "runs_with_failures", "runs_with_blocks"), 0
                ),
            )
            counts["items"] += stage.items
            counts["failures"] += stage.failures
            counts["blocks"] += stage.blocks
            counts["runs_with_failures"] += stage.failures > 0
            counts["runs_with_blocks"] += stage.blocks > 0
        integrity = record.integrity
        for name, value in (
            ("items", len(record.items)),
            ("items_dropped", integrity.items_dropped),
            ("fields_truncated", integrity.fields_truncated),
            ("values_coerced", integrity.values_coerced),
            ("tracker_errors", integrity.tracker_errors),
        ):
            self.integrity[name] = self.integrity.get(name, 0) + value


class RecordStore(Protocol):
    """Where finished records live: everything a caller may ask of a store.

    Implementations are safe across threads (and, for a shared database,
    across processes). Nothing outside a store module knows which database
    is behind it. Every method may raise when the database cannot be
    reached; the caller decides what that means (the store sink retries and
    quarantines, a reader answers "unavailable").
    """

    def save(self, record: ExecutionRecord) -> None:
        """Store ``record`` durably, replacing a stored record with the same run id."""

    def add_sink_outcomes(self, outcomes: Sequence[tuple[str, SinkOutcome]]) -> int:
        """Append a late sink's outcome to stored records' integrity block (one write).

        For sinks that learn their outcome after the store kept the record (the
        OTLP sink). A run that is not stored (erased meanwhile, quarantined) is
        left alone: this never brings a record back. Returns how many were updated.
        """

    def load(self, run_id: str) -> ExecutionRecord | None:
        """The stored record, or None when there is none."""

    def load_json(self, run_id: str) -> str | None:
        """The stored record's JSON text as written, or None."""

    def list_runs(
        self, filters: RunFilter = ..., limit: int = 50, after: tuple[str, str] | None = None
    ) -> list[RunRow]:
        """Runs newest first, ``limit`` at most, strictly after the keyset position ``after``."""

    def iter_runs(self, filters: RunFilter = ..., page: int = 200) -> Iterator[RunRow]:
        """Every matching run, newest first, fetched page by page (flat memory)."""

    def count(self, filters: RunFilter = ...) -> int:
        """How many runs match."""

    def stats(self, filters: RunFilter = ...) -> Stats:
        """Counts by status, config, safety level, day; per-stage failures; integrity totals."""

    def delete(self, run_id: str) -> bool:
        """Remove one run; True when it existed."""

    def delete_user(self, user_id: str) -> list[str]:
        """Remove every run of one person; returns their run ids."""

    def delete_people(self, filters: RunFilter) -> list[str]:
        """Remove every run of a person, device or workshop (erasure); returns their run ids.

        Raises:
            ValueError: ``filters`` names no user, session or device id.
        """

    def delete_older_than(self, moment: datetime, dry_run: bool = False) -> list[str]:
        """Remove runs that started before ``moment`` (retention); returns their ids."""

    def run_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored."""

    def ping(self) -> str | None:
        """None when the store can be read and written now, else why not (for health)."""

    def describe(self) -> str:
        """Where the store is, for people (a path or a URL without its password)."""

    def size_bytes(self) -> int | None:
        """Bytes the store takes, when it can tell."""

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""


class SQLiteRecordStore:
    """The embedded default store: one SQLite file in WAL mode with durable commits.

    Each thread gets its own connection; several processes may share the file
    (SQLite's locking, a busy timeout). Records are stored whole as JSON with
    indexed columns for the filters and a per-stage table for statistics.

    Args:
        path: the database file; its folder is created when missing.
        busy_timeout_s: how long a writer waits for another process's lock.
        pragmas: extra SQLite pragmas for every connection (e.g. ``cache_size``,
            ``max_page_count`` to cap the file's size).
        pool_size: connections open at most; a thread that needs one while all
            are in use waits for one. However many request threads a server
            runs, the store holds this many database handles, not one each.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_s: float = 10.0,
        pragmas: Mapping[str, int | str] | None = None,
        pool_size: int = 8,
    ) -> None:
        self.path = Path(path)
        self._pragmas = dict(pragmas or {})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_ms = int(busy_timeout_s * 1000)
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(max(1, pool_size))
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        #: Set when the database can only be read (see ``_open_read_only``).
        self._read_only_uri: str | None = None
        try:
            with contextlib.closing(sqlite3.connect(self.path, timeout=busy_timeout_s)) as conn:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)
                _add_columns(conn)
        except sqlite3.OperationalError as exc:
            self._open_read_only(exc)
        else:
            _build_legacy_captures(self)

    def _open_read_only(self, error: sqlite3.OperationalError) -> None:
        """Open an existing database in a folder that cannot be written, for reading only.

        In WAL mode SQLite needs its index file (``-shm``) beside the database;
        in a read-only folder (a read-only data dir) it cannot make one, so the
        normal open fails. Stored runs must stay readable: the database is then
        opened immutable and read-only, every write fails (the store sink
        quarantines, ``ping`` says why). Only when there is no ``-wal`` file,
        whose committed pages an immutable reader would not see; any other
        failure is raised as it is.
        """
        folder_writable = os.access(self.path.parent, os.W_OK)
        wal = Path(f"{self.path}-wal")
        if folder_writable or not self.path.is_file() or wal.exists():
            raise error
        uri = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            conn.execute("SELECT COUNT(*) FROM runs").fetchone()  # ours, and readable
        self._read_only_uri = uri
        logger.error("the database %s cannot be written (%s); opened read-only", self.path, error)

    # -------------------------------------------------------------- connections

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._read_only_uri or self.path,
            timeout=self._busy_ms / 1000,
            isolation_level=None,
            uri=self._read_only_uri is not None,
            check_same_thread=False,  # pooled: used by one thread at a time, never at once
        )
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk when save() returns (WAL's NORMAL may lose the last one).
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        for name, value in self._pragmas.items():
            if not name.isidentifier():
                raise ValueError(f"not a pragma name: {name!r}")
            conn.execute(
                f"PRAGMA {name} = {int(value) if isinstance(value, int) else repr(str(value))}"
            )
        with self._lock:
            self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection from the pool for the length of the block (opened when none is idle)."""
        self._slots.acquire()
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._open()
            try:
                yield conn
            finally:
                if conn.in_transaction:  # a block that left one open: never hand it on
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                self._idle.put(conn)
        finally:
            self._slots.release()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        while True:
            try:
                self._idle.get_nowait()
            except queue.Empty:
                break

    # ------------------------------------------------------------------ writes

    def save(self, record: ExecutionRecord) -> None:
        """Store ``record`` durably (one transaction); replaces an earlier version."""
        with self._transaction() as conn:
            _write(conn, record)

    def add_sink_outcomes(self, outcomes: Sequence[tuple[str, SinkOutcome]]) -> int:
        """Append each outcome to its stored record's ``integrity.sinks``; one transaction.

        Only rows that exist are updated (an UPDATE, never an insert), so a run
        erased meanwhile stays erased. Returns how many records were updated.
        """
        if not outcomes:
            return 0
        # json_insert with '[#]' appends inside SQLite: no read, parse and rewrite of the
        # whole record in Python for a few bytes of outcome.
        rows = [(outcome.model_dump_json(), run_id) for run_id, outcome in outcomes]
        with self._transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                "UPDATE runs SET record = json_insert(record, '$.integrity.sinks[#]', json(?)) "
                "WHERE run_id = ?",
                rows,
            )
            return conn.total_changes - before

    def delete(self, run_id: str) -> bool:
        """Remove one run; True when it existed."""
        if not _encodable(run_id):
            return False
        with self._transaction() as conn:
            conn.execute("DELETE FROM run_stages WHERE run_id = ?", (run_id,))
            deleted = conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
            return deleted.rowcount > 0

    def delete_user(self, user_id: str) -> list[str]:
        """Remove every run of one person (erasure); returns their run ids."""
        return self.delete_people(RunFilter(user_id=user_id))

    def delete_people(self, filters: RunFilter) -> list[str]:
        """Remove every run of a person, device or workshop (erasure); returns their run ids.

        Only the people fields of ``filters`` select (user, session, device).

        Raises:
            ValueError: ``filters`` names no user, session or device id.
        """
        people = filters.people_only()
        where, params = people.where()
        with self._transaction() as conn:
            ids = [r[0] for r in conn.execute(f"SELECT run_id FROM runs WHERE {where}", params)]
            conn.executemany("DELETE FROM run_stages WHERE run_id = ?", [(i,) for i in ids])
            conn.execute(f"DELETE FROM runs WHERE {where}", params)
        return ids

    def delete_older_than(self, moment: datetime, dry_run: bool = False) -> list[str]:
        """Remove runs that started before ``moment`` (retention); returns their ids."""
        cutoff = utc_text(moment)
        with self._transaction() as conn:
            ids = [
                r[0]
                for r in conn.execute("SELECT run_id FROM runs WHERE started_at < ?", (cutoff,))
            ]
            if not dry_run:
                conn.executemany("DELETE FROM run_stages WHERE run_id = ?", [(i,) for i in ids])
                conn.execute("DELETE FROM runs WHERE started_at < ?", (cutoff,))
        return ids

    # ------------------------------------------------------------------- reads

    def load(self, run_id: str) -> ExecutionRecord | None:
        """The stored record, or None. Records of older taxonomies load as they are."""
        text = self.load_json(run_id)
        return None if text is None else ExecutionRecord.model_validate_json(text)

    def load_json(self, run_id: str) -> str | None:
        """The stored record's JSON text as written, or None."""
        if not _encodable(run_id):
            return None
        with self._connection() as conn:
            row = conn.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else str(row[0])

    def list_runs(
        self,
        filters: RunFilter = RunFilter(),
        limit: int = 50,
        after: tuple[str, str] | None = None,
    ) -> list[RunRow]:
        """Runs newest first (started_at, then run_id), at most ``limit``, after ``after``."""
        where, params = filters.where()
        if after is not None:
            where += " AND (runs.started_at, runs.run_id) < (?, ?)"
            params += [after[0], after[1]]
        sql = (
            f"SELECT {_COLUMNS} FROM runs WHERE {where} "
            "ORDER BY started_at DESC, run_id DESC LIMIT ?"
        )
        with self._connection() as conn:
            rows = conn.execute(sql, [*params, int(limit)]).fetchall()
        return [RunRow(*row) for row in rows]

    def iter_runs(self, filters: RunFilter = RunFilter(), page: int = 200) -> Iterator[RunRow]:
        """Every matching run, newest first, fetched page by page (flat memory)."""
        after: tuple[str, str] | None = None
        while True:
            rows = self.list_runs(filters, page, after)
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1].cursor

    def count(self, filters: RunFilter = RunFilter()) -> int:
        """How many runs match."""
        where, params = filters.where()
        with self._connection() as conn:
            row = conn.execute(f"SELECT COUNT(*) FROM runs WHERE {where}", params).fetchone()
        return int(row[0])

    def stats(self, filters: RunFilter = RunFilter()) -> Stats:
        """Counts by status, config, safety level and day; per-stage totals; integrity totals."""
        with self._connection() as conn:  # one connection: never two from the pool at once
            return self._stats(conn, filters)

    def _stats(self, conn: sqlite3.Connection, filters: RunFilter) -> Stats:
        where, params = filters.where()
        count = conn.execute(f"SELECT COUNT(*) FROM runs WHERE {where}", params).fetchone()
        result = Stats(runs=int(count[0]))
        for column, target in (
            ("status", result.by_status),
            ("config_name", result.by_config),
            ("safety_level", result.by_safety_level),
            ("substr(started_at, 1, 10)", result.by_day),
        ):
            sql = f"SELECT {column}, COUNT(*) FROM runs WHERE {where} GROUP BY 1 ORDER BY 1"
            for key, count in conn.execute(sql, params):
                target[str(key) if key is not None else ""] = int(count)
        sql = (
            "SELECT s.stage, SUM(s.items), SUM(s.failures), SUM(s.blocks), "
            "SUM(s.failures > 0), SUM(s.blocks > 0) FROM run_stages s "
            f"JOIN runs ON runs.run_id = s.run_id WHERE {where} GROUP BY s.stage ORDER BY s.stage"
        )
        for stage, items, failures, blocks, runs_failed, runs_blocked in conn.execute(sql, params):
            result.stages[int(stage)] = {
                "items": int(items or 0),
                "failures": int(failures or 0),
                "blocks": int(blocks or 0),
                "runs_with_failures": int(runs_failed or 0),
                "runs_with_blocks": int(runs_blocked or 0),
            }
        sql = (
            "SELECT SUM(item_count), SUM(items_dropped), SUM(fields_truncated), "
            f"SUM(values_coerced), SUM(tracker_errors) FROM runs WHERE {where}"
        )
        totals = conn.execute(sql, params).fetchone()
        names = ("items", "items_dropped", "fields_truncated", "values_coerced", "tracker_errors")
        result.integrity = {
            name: int(value or 0) for name, value in zip(names, totals, strict=True)
        }
        return result

    def ping(self) -> str | None:
        """None when the database takes a write now, else the reason.

        On a connection of its own with a short busy timeout, so a health check
        never waits long behind another process's lock. ``BEGIN IMMEDIATE`` and
        reads succeed on a read-only database file; only a write statement
        finds out, so one that changes nothing runs and is rolled back. A full
        disk shows when a commit fails (the store sink then quarantines).
        """
        target = self._read_only_uri or str(self.path)
        try:
            with contextlib.closing(
                sqlite3.connect(
                    target, timeout=0.5, isolation_level=None, uri=self._read_only_uri is not None
                )
            ) as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute("DELETE FROM runs WHERE 0")
                finally:
                    conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def describe(self) -> str:
        """The database file's path."""
        return str(self.path)

    def size_bytes(self) -> int:
        """Bytes on disk of the database and its WAL."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            candidate = Path(str(self.path) + suffix)
            if candidate.exists():
                total += candidate.stat().st_size
        return total

    def run_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored."""
        found: set[str] = set()
        ids = [i for i in ids if _encodable(i)]
        with self._connection() as conn:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                sql = f"SELECT run_id FROM runs WHERE run_id IN ({','.join('?' * len(chunk))})"
                found.update(row[0] for row in conn.execute(sql, chunk))
        return found


def _write(conn: sqlite3.Connection, record: ExecutionRecord) -> None:
    """Insert or replace ``record``'s row and stage rows (inside the caller's transaction)."""
    integrity = record.integrity
    row = (
        record.run_id,
        record.config_name,
        str(record.status),
        record.safety_level,
        record.user_id,
        record.session_id,
        record.device_id,
        utc_text(record.started_at),
        utc_text(record.ended_at) if record.ended_at else None,
        record.duration_ms,
        len(record.items),
        integrity.items_dropped,
        integrity.fields_truncated,
        integrity.values_coerced,
        integrity.tracker_errors,
        record.taxonomy_version,
        record.model_dump_json(),
    )
    stages = [
        (record.run_id, s.stage, str(s.status), s.items, s.failures, s.blocks)
        for s in record.stages
    ]
    conn.execute(
        f"INSERT OR REPLACE INTO runs ({_COLUMNS}, record) VALUES ({','.join('?' * 17)})", row
    )
    conn.execute("DELETE FROM run_stages WHERE run_id = ?", (record.run_id,))
    conn.executemany("INSERT INTO run_stages VALUES (?, ?, ?, ?, ?, ?)", stages)


def _add_columns(conn: sqlite3.Connection) -> None:
    """Add the columns (and their indexes) a database made by an earlier version lacks.

    Runs stored before a column existed have no value for it (NULL), which is
    the truth: their records do not carry it either.
    """
    have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for column, index in _ADDED_COLUMNS:
        if column not in have:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")
        conn.execute(index)


def _build_legacy_captures(store: SQLiteRecordStore) -> None:
    """Turn runs an earlier version stored as raw captures (``captured_runs``) into records.

    That version stored each run's raw items and built the record when it was
    read; a database it left may still hold such runs. Each is built by the
    one builder and stored; a capture that cannot be read stays in its table
    (logged), so nothing is lost.
    """
    with store._connection() as conn:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'captured_runs'"
        ).fetchone()
        rows = (
            conn.execute("SELECT run_id, payload FROM captured_runs").fetchall() if exists else []
        )
    for run_id, payload in rows:
        try:
            log = _log_of_capture(payload)
            record = complete_media(build_record(log), log.media_dir)
            sinks = [SinkOutcome(name="store", status="ok", attempts=1)]
            record = record.model_copy(
                update={"integrity": record.integrity.model_copy(update={"sinks": sinks})}
            )
        except Exception as exc:
            logger.error("stored capture of run %s cannot be built: %s", run_id, exc)
            continue
        with store._transaction() as tx:
            _write(tx, record)
            tx.execute("DELETE FROM captured_runs WHERE run_id = ?", (run_id,))


def _log_of_capture(payload: bytes | str) -> RunLog:
    """The run log of one capture of the earlier format (format 1)."""
    data = json.loads(payload)
    if not isinstance(data, dict) or data.get("capture") != 1:
        raise ValueError("not a run capture of format 1")
    log = RunLog.from_header(data)  # the capture's header has the run log's fields
    log.items.extend(raw_item_of(raw) for raw in data["items"])
    counters = data.get("counters") or {}
    log.items_dropped = int(counters.get("items_dropped", 0))
    log.items_after_end = int(counters.get("items_after_finalize", 0))
    log.tracker_errors = int(counters.get("tracker_errors", 0))
    log.error_messages = [str(m) for m in data.get("error_messages") or []]
    if data.get("ended_ns") is not None:
        log.end(RunStatus(data["status"]), int(data["ended_ns"]))
    return log
