"""The PostgreSQL RecordStore: psycopg 3 with a connection pool, the schema kept by alembic.

psycopg, psycopg_pool and alembic are the ``postgres`` extra: they are imported
when a PostgreSQL store is opened, never by ``import execution_history``.

How values are stored (docs/architecture.md, "The PostgreSQL store"):

- ``record`` holds the record's JSON text exactly as written (``load_json``
  returns it byte for byte; ``load`` parses it), ``document`` the same record
  as ``jsonb`` for researchers' own SQL. jsonb reorders keys and cannot hold
  U+0000, so it is a copy for queries, never what the store reads back.
- PostgreSQL's ``text`` and ``jsonb`` refuse U+0000, which a record may hold
  (a child's prompt is kept as typed). In the indexed columns and in
  ``document`` such strings are escaped one for one and reversibly:
  U+0000 → U+FFFF ``0`` and U+FFFF → U+FFFF U+FFFF (U+FFFF is a
  noncharacter: it does not occur in interchanged text, so nothing real is
  made longer). ``RunRow`` values and filters go through the same mapping, so
  nothing is lost and filters on such values still match.
- A filter value that text cannot hold at all (a lone surrogate) matches no
  run, as no record holds one (the builder replaces them).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from ._record import ExecutionRecord, SinkOutcome
from ._store import RunFilter, RunRow, Stats, utc_text
from ._store import _encodable as _storable

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg_pool import ConnectionPool

#: The schema revisions this version knows, oldest first; the last is what it needs.
#: A test checks that they are exactly the alembic revisions in ``_pg_migrations``.
REVISIONS = ("0001",)
SCHEMA_REVISION = REVISIONS[-1]

#: Characters of a free-text filter column that its index holds (see revision 0001).
KEY_PREFIX = 200
#: The longest run id PostgreSQL can index (a btree entry holds at most 2,704 bytes,
#: the keyset index holds the time too); longer ones are refused before writing.
MAX_RUN_ID_BYTES = 1024

_MIGRATIONS = Path(__file__).resolve().parent / "_pg_migrations"

_COLUMNS = (
    "run_id, config_name, status, safety_level, user_id, session_id, device_id, started_at, "
    "ended_at, duration_ms, item_count, items_dropped, fields_truncated, values_coerced, "
    "tracker_errors, taxonomy_version"
)
#: Columns of ``RunRow`` whose text goes through ``_key``/``_unkey``.
_TEXT_FIELDS = (0, 1, 2, 3, 4, 5, 6, 15)
#: Filter columns indexed on a prefix: compared on the prefix (index) and in full.
_PREFIXED = ("config_name", "safety_level", "session_id", "device_id", "user_id")

#: The default filter: every run (a module constant, not a call in each signature).
_ALL = RunFilter()

_ESCAPE = "\uffff"
_NEEDS_ESCAPE = re.compile("[\x00\uffff]")
_ESCAPED = re.compile("\uffff(.)", re.DOTALL)


class StoreOpenError(RuntimeError):
    """A store that cannot be opened: a missing extra, an unreachable server, a schema."""


class SchemaError(StoreOpenError):
    """The database's schema is not the one this version uses.

    Attributes:
        state: ``missing`` (no schema yet), ``behind`` (older: apply the
            migrations) or ``unknown`` (a revision this version does not know,
            e.g. written by a newer version).
        found: the database's revision (None when it has none).
        expected: the revision this version needs.
    """

    def __init__(self, where: str, state: str, found: str | None, expected: str) -> None:
        self.state, self.found, self.expected = state, found, expected
        if state == "missing":
            detail = "has no schema yet"
        elif state == "behind":
            detail = f"has schema revision {found}, older than the {expected} this version needs"
        else:
            detail = (
                f"has schema revision {found}, which this version does not know (made by a "
                f"newer version?); it needs {expected}"
            )
        super().__init__(f"the database {where} {detail}")


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where a database's schema stands against this version's."""

    found: str | None
    expected: str
    state: Literal["current", "missing", "behind", "unknown"]


def _key(value: str | None) -> str | None:
    """``value`` as PostgreSQL text can hold it: U+0000 and U+FFFF escaped one for one."""
    if value is None or ("\x00" not in value and _ESCAPE not in value):
        return value
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPE + ("0" if m.group() == "\x00" else _ESCAPE), value)


def _unkey(value: str | None) -> str | None:
    """The value ``_key`` escaped, as it was."""
    if value is None or _ESCAPE not in value:
        return value
    return _ESCAPED.sub(lambda m: "\x00" if m.group(1) == "0" else _ESCAPE, value)


def _escape_strings(value: Any) -> Any:
    """``value`` (parsed JSON) with every string, keys included, passed through ``_key``."""
    if isinstance(value, str):
        return _key(value)
    if isinstance(value, list):
        return [_escape_strings(v) for v in value]
    if isinstance(value, dict):
        return {_key(k): _escape_strings(v) for k, v in value.items()}
    return value


def _document(text: str) -> str:
    """The JSON that goes into ``document`` (jsonb): ``text``, escaped only when it must be."""
    if "\\u0000" not in text and _ESCAPE not in text and "\\uffff" not in text.lower():
        return text
    return json.dumps(_escape_strings(json.loads(text)), ensure_ascii=False)


def _where(filters: RunFilter) -> tuple[str, list[Any]]:
    """The SQL condition and parameters of ``filters`` (``%s`` placeholders)."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("config_name", filters.config),
        ("status", filters.status),
        ("safety_level", filters.safety_level),
        ("session_id", filters.session_id),
        ("device_id", filters.device_id),
        ("user_id", filters.user_id),
    ):
        if value is None:
            continue
        if not _storable(value):
            return "FALSE", []  # no stored value holds a lone surrogate
        key = _key(value)
        if column in _PREFIXED:
            # the prefix for the index, then the whole value
            clauses.append(f"left(runs.{column}, {KEY_PREFIX}) = left(%s, {KEY_PREFIX})")
            params.append(key)
        clauses.append(f"runs.{column} = %s")
        params.append(key)
    if filters.since is not None:
        clauses.append("runs.started_at >= %s")
        params.append(utc_text(filters.since))
    if filters.until is not None:
        clauses.append("runs.started_at < %s")
        params.append(utc_text(filters.until))
    return (" AND ".join(clauses) or "TRUE"), params


def _row(values: Sequence[Any]) -> RunRow:
    fields = list(values)
    for index in _TEXT_FIELDS:
        fields[index] = _unkey(fields[index])
    return RunRow(*fields)


def public_url(url: str) -> str:
    """``url`` without its password (in the user part or as a ``password`` parameter)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        users, _, hosts = netloc.rpartition("@")
        netloc = users.partition(":")[0] + "@" + hosts
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "password"], safe="/")
    # by hand: urlunsplit drops the empty host of a socket URL (postgresql:///db?host=…)
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def _require_extra() -> None:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise StoreOpenError(
            f"a PostgreSQL database needs the 'postgres' extra ({exc.name} is missing): "
            "pip install 'execution-history[postgres]'"
        ) from None


def _revision(conn: Connection[Any]) -> str | None:
    """The database's alembic revision; None when it has no schema (no version table)."""
    table = conn.execute("SELECT to_regclass('alembic_version')").fetchone()
    if table is None or table[0] is None:
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def _status_of(found: str | None) -> SchemaStatus:
    if found == SCHEMA_REVISION:
        state: Literal["current", "missing", "behind", "unknown"] = "current"
    elif found is None:
        state = "missing"
    elif found in REVISIONS:
        state = "behind"
    else:
        state = "unknown"
    return SchemaStatus(found=found, expected=SCHEMA_REVISION, state=state)


def schema_status(url: str) -> SchemaStatus:
    """Where the schema of the database ``url`` stands; changes nothing.

    Raises:
        StoreOpenError: the extra is missing or the server cannot be reached.
    """
    _require_extra()
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            return _status_of(_revision(conn))
    except psycopg.Error as exc:
        raise StoreOpenError(f"cannot reach the database {public_url(url)}: {exc}") from None


def upgrade_schema(url: str) -> tuple[SchemaStatus, SchemaStatus]:
    """Apply every pending migration to the database ``url`` (alembic, in one transaction).

    Returns:
        The schema's status before and after.

    Raises:
        StoreOpenError: the extra is missing or the server cannot be reached.
        SchemaError: the database has a revision this version does not know
            (state ``unknown``): it is left as it is.
    """
    before = schema_status(url)
    if before.state == "unknown":
        raise SchemaError(public_url(url), before.state, before.found, before.expected)
    if before.state != "current":
        import psycopg
        from alembic import command
        from alembic.config import Config
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        # libpq parses the URL (as the store's pool does), SQLAlchemy only drives alembic.
        engine = create_engine(
            "postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=NullPool
        )
        try:
            with engine.connect() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                connection.commit()
        finally:
            engine.dispose()
    return before, schema_status(url)


class PostgresRecordStore:
    """Records in a PostgreSQL database, shared by any number of threads and processes.

    A pool of connections (psycopg_pool) serves the threads of one process;
    each process opens its own store (a pool is never carried across a fork).
    Every write is one transaction with ``synchronous_commit = on``: when
    ``save`` returns, the record is on the server's disk. The schema is
    checked when the store opens: it must be the revision this version
    needs (``upgrade_schema`` applies the migrations; the store never
    changes the schema itself, so no server races another over DDL).

    Args:
        url: a libpq URL, ``postgresql://user:password@host:port/database``.
        pool_size: connections open at most; a thread waits for a free one.
        timeout_s: how long opening, or waiting for a connection, may take.

    Raises:
        StoreOpenError: the ``postgres`` extra is missing, or the server
            cannot be reached within ``timeout_s``.
        SchemaError: the schema is missing, behind or unknown.
    """

    def __init__(self, url: str, *, pool_size: int = 8, timeout_s: float = 10.0) -> None:
        _require_extra()
        from psycopg_pool import ConnectionPool, PoolTimeout

        self.url = url
        self._timeout_s = timeout_s
        self._pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"autocommit": True},
            configure=_configure,
            # a connection the server dropped (a restart) is replaced, not handed out
            check=ConnectionPool.check_connection,
            timeout=timeout_s,
            name="execution_history",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreOpenError(
                f"cannot reach the database {public_url(url)} within {timeout_s:g} s: {exc}"
            ) from None
        try:
            with self._pool.connection() as conn:
                status = _status_of(_revision(conn))
        except BaseException:
            self._pool.close()
            raise
        if status.state != "current":
            self._pool.close()
            raise SchemaError(public_url(url), status.state, status.found, status.expected)

    # -------------------------------------------------------------- connections

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection[Any]]:
        with self._pool.connection(timeout=self._timeout_s) as conn:
            yield conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection[Any]]:
        with self._connection() as conn, conn.transaction():
            yield conn

    def close(self) -> None:
        """Close the pool and its connections."""
        self._pool.close()

    # ------------------------------------------------------------------ writes

    def save(self, record: ExecutionRecord) -> None:
        """Store ``record`` durably (one transaction): the run's row and stage rows replaced.

        Raises:
            ValueError: the run id is longer than ``MAX_RUN_ID_BYTES`` (PostgreSQL
                cannot index it; the store sink then quarantines the record).
        """
        run_id = _key(record.run_id) or ""
        if len(run_id.encode("utf-8")) > MAX_RUN_ID_BYTES:
            raise ValueError(
                f"run id of {len(run_id.encode('utf-8'))} bytes: PostgreSQL stores run ids of "
                f"at most {MAX_RUN_ID_BYTES} bytes"
            )
        integrity = record.integrity
        text = record.model_dump_json()
        row = (
            run_id,
            _key(record.config_name),
            _key(str(record.status)),
            _key(record.safety_level),
            _key(record.user_id),
            _key(record.session_id),
            _key(record.device_id),
            utc_text(record.started_at),
            utc_text(record.ended_at) if record.ended_at else None,
            record.duration_ms,
            len(record.items),
            integrity.items_dropped,
            integrity.fields_truncated,
            integrity.values_coerced,
            integrity.tracker_errors,
            _key(record.taxonomy_version),
            text,
            _document(text),
        )
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS.split(", ")[1:])
        with self._transaction() as conn:
            conn.execute(
                f"INSERT INTO runs ({_COLUMNS}, record, document) "
                f"VALUES ({', '.join(['%s'] * 17)}, %s::jsonb) "
                f"ON CONFLICT (run_id) DO UPDATE SET {updates}, "
                "record = EXCLUDED.record, document = EXCLUDED.document",
                row,
            )
            conn.execute("DELETE FROM run_stages WHERE run_id = %s", (run_id,))
            stages = [
                (run_id, s.stage, _key(str(s.status)), s.items, s.failures, s.blocks)
                for s in record.stages
            ]
            if stages:
                with conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO run_stages VALUES (%s, %s, %s, %s, %s, %s)", stages
                    )

    def add_sink_outcomes(self, outcomes: Sequence[tuple[str, SinkOutcome]]) -> int:
        """Append each outcome to its stored record's ``integrity.sinks``; one transaction.

        Only rows that exist are updated (never inserted), so a run erased
        meanwhile stays erased. The record's text is rewritten the way ``save``
        writes it (the JSON ``load_json`` answers stays the one serialisation),
        under a row lock, so two late sinks never lose each other's outcome.
        Returns how many records were updated.
        """
        updated = 0
        with self._transaction() as conn:
            for run_id, outcome in outcomes:
                if not _storable(run_id):
                    continue
                row = conn.execute(
                    "SELECT record FROM runs WHERE run_id = %s FOR UPDATE", (_key(run_id),)
                ).fetchone()
                if row is None:
                    continue
                record = ExecutionRecord.model_validate_json(row[0])
                integrity = record.integrity.model_copy(
                    update={"sinks": [*record.integrity.sinks, outcome]}
                )
                text = record.model_copy(update={"integrity": integrity}).model_dump_json()
                conn.execute(
                    "UPDATE runs SET record = %s, document = %s::jsonb WHERE run_id = %s",
                    (text, _document(text), _key(run_id)),
                )
                updated += 1
        return updated

    def delete(self, run_id: str) -> bool:
        """Remove one run (its stage rows go with it); True when it existed."""
        if not _storable(run_id):
            return False
        with self._transaction() as conn:
            cursor = conn.execute("DELETE FROM runs WHERE run_id = %s", (_key(run_id),))
            return cursor.rowcount > 0

    def delete_user(self, user_id: str) -> list[str]:
        """Remove every run of one person (erasure); returns their run ids."""
        return self.delete_people(RunFilter(user_id=user_id))

    def delete_people(self, filters: RunFilter) -> list[str]:
        """Remove every run of a person, device or workshop in one statement; their run ids.

        Only the people fields of ``filters`` select (user, session, device).

        Raises:
            ValueError: ``filters`` names no user, session or device id.
        """
        people = filters.people_only()
        where, params = _where(people)
        with self._transaction() as conn:
            rows = conn.execute(f"DELETE FROM runs WHERE {where} RETURNING run_id", params)
            return [_unkey(r[0]) or "" for r in rows.fetchall()]

    def delete_older_than(self, moment: datetime, dry_run: bool = False) -> list[str]:
        """Remove runs that started before ``moment`` in one statement; returns their ids."""
        cutoff = utc_text(moment)
        verb = "SELECT run_id FROM runs" if dry_run else "DELETE FROM runs"
        tail = "" if dry_run else " RETURNING run_id"
        with self._transaction() as conn:
            rows = conn.execute(f"{verb} WHERE started_at < %s{tail}", (cutoff,)).fetchall()
        return [_unkey(r[0]) or "" for r in rows]

    # ------------------------------------------------------------------- reads

    def load(self, run_id: str) -> ExecutionRecord | None:
        """The stored record, or None."""
        text = self.load_json(run_id)
        return None if text is None else ExecutionRecord.model_validate_json(text)

    def load_json(self, run_id: str) -> str | None:
        """The stored record's JSON text exactly as written, or None."""
        if not _storable(run_id):
            return None
        with self._connection() as conn:
            row = conn.execute(
                "SELECT record FROM runs WHERE run_id = %s", (_key(run_id),)
            ).fetchone()
        return None if row is None else str(row[0])

    def list_runs(
        self,
        filters: RunFilter = _ALL,
        limit: int = 50,
        after: tuple[str, str] | None = None,
    ) -> list[RunRow]:
        """Runs newest first (started_at, then run_id), at most ``limit``, after ``after``."""
        where, params = _where(filters)
        if after is not None:
            if not (_storable(after[0]) and _storable(after[1])):
                return []
            where += " AND (runs.started_at, runs.run_id) < (%s, %s)"
            params += [after[0], _key(after[1])]
        sql = (
            f"SELECT {_COLUMNS} FROM runs WHERE {where} "
            "ORDER BY started_at DESC, run_id DESC LIMIT %s"
        )
        with self._connection() as conn:
            rows = conn.execute(sql, [*params, max(0, int(limit))]).fetchall()
        return [_row(row) for row in rows]

    def iter_runs(self, filters: RunFilter = _ALL, page: int = 200) -> Iterator[RunRow]:
        """Every matching run, newest first, fetched page by page (flat memory)."""
        after: tuple[str, str] | None = None
        while True:
            rows = self.list_runs(filters, page, after)
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1].cursor

    def count(self, filters: RunFilter = _ALL) -> int:
        """How many runs match."""
        where, params = _where(filters)
        with self._connection() as conn:
            row = conn.execute(f"SELECT count(*) FROM runs WHERE {where}", params).fetchone()
        return int(row[0]) if row is not None else 0

    def stats(self, filters: RunFilter = _ALL) -> Stats:
        """Counts by status, config, safety level and day; per-stage totals; integrity totals.

        Two queries on one connection: the runs in one scan (grouping sets), the
        stage rows joined to the selected runs (without a join when all are).
        """
        where, params = _where(filters)
        day = "left(started_at, 10)"
        runs_sql = (
            f"SELECT GROUPING(status), GROUPING(config_name), GROUPING(safety_level), "
            f"GROUPING({day}), status, config_name, safety_level, {day}, count(*), "
            "sum(item_count), sum(items_dropped), sum(fields_truncated), sum(values_coerced), "
            f"sum(tracker_errors) FROM runs WHERE {where} GROUP BY GROUPING SETS "
            f"((status), (config_name), (safety_level), ({day}), ())"
        )
        join = "" if where == "TRUE" else f" JOIN runs ON runs.run_id = s.run_id WHERE {where}"
        stages_sql = (
            "SELECT s.stage, sum(s.items), sum(s.failures), sum(s.blocks), "
            "count(*) FILTER (WHERE s.failures > 0), count(*) FILTER (WHERE s.blocks > 0) "
            f"FROM run_stages s{join} GROUP BY s.stage ORDER BY s.stage"
        )
        result = Stats()
        groups: list[tuple[dict[str, int], str, int]] = []
        with self._connection() as conn:
            for row in conn.execute(runs_sql, params).fetchall():
                flags, keys, count = row[0:4], row[4:8], int(row[8])
                if all(flags):  # the grand total: every run selected
                    result.runs = count
                    names = (
                        "items",
                        "items_dropped",
                        "fields_truncated",
                        "values_coerced",
                        "tracker_errors",
                    )
                    result.integrity = {
                        n: int(v or 0) for n, v in zip(names, row[9:14], strict=True)
                    }
                    continue
                targets = (
                    result.by_status,
                    result.by_config,
                    result.by_safety_level,
                    result.by_day,
                )
                which = flags.index(0)
                key = _unkey(keys[which])
                groups.append((targets[which], key if key is not None else "", count))
            stage_rows = conn.execute(stages_sql, params if join else []).fetchall()
        # byte order of UTF-8 is code point order: the same order as SQLite's ORDER BY
        for target, key, count in sorted(groups, key=lambda g: g[1]):
            target[key] = target.get(key, 0) + count
        for stage, items, failures, blocks, runs_failed, runs_blocked in stage_rows:
            result.stages[int(stage)] = {
                "items": int(items or 0),
                "failures": int(failures or 0),
                "blocks": int(blocks or 0),
                "runs_with_failures": int(runs_failed or 0),
                "runs_with_blocks": int(runs_blocked or 0),
            }
        return result

    def run_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored."""
        wanted = [_key(i) for i in ids if _storable(i)]
        if not wanted:
            return set()
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT run_id FROM runs WHERE run_id = ANY(%s)", (wanted,)
            ).fetchall()
        return {_unkey(r[0]) or "" for r in rows}

    # ------------------------------------------------------------------ health

    def ping(self) -> str | None:
        """None when the database takes a write now, else the reason.

        A write that changes nothing runs and is rolled back: it fails on a
        read-only server (a standby) or without the privilege to write. Waits
        at most 2 s for a connection, so a health check never hangs.
        """
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection(timeout=2.0) as conn, conn.transaction(force_rollback=True):
                conn.execute("DELETE FROM runs WHERE FALSE")
        except (psycopg.Error, PoolTimeout) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def describe(self) -> str:
        """The database's URL without its password."""
        return public_url(self.url)

    def size_bytes(self) -> int | None:
        """Bytes the tables take with their indexes and TOAST (``pg_total_relation_size``)."""
        with self._connection() as conn:
            row = conn.execute(
                "SELECT pg_total_relation_size('runs') + pg_total_relation_size('run_stages')"
            ).fetchone()
        return int(row[0]) if row is not None else None


def _configure(conn: Connection[Any]) -> None:
    """Every pooled connection: durable commits, whatever the server's default says."""
    conn.execute("SET synchronous_commit TO on")
