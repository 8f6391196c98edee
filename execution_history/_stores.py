"""The one place that maps a database name to a store, and keeps each store's schema current."""

from __future__ import annotations

from pathlib import Path

from ._pg_store import (
    PostgresRecordStore,
    SchemaStatus,
    public_url,
    schema_status,
    upgrade_schema,
)
from ._store import RecordStore, SQLiteRecordStore

#: URL schemes of PostgreSQL (libpq takes both).
_POSTGRES = ("postgresql", "postgres")


def _kind(database: str | Path) -> tuple[str, str]:
    """(``sqlite`` or ``postgresql``, the path or URL) of a database name.

    Raises:
        ValueError: a URL scheme this version has no store for (named in the message).
    """
    text = str(database)
    if "://" not in text:
        return "sqlite", text
    scheme, _, rest = text.partition("://")
    if scheme == "sqlite" and rest.startswith("/") and len(rest) > 1:
        return "sqlite", rest[1:]  # sqlite:///relative, sqlite:////absolute
    if scheme in _POSTGRES:
        return "postgresql", text
    raise ValueError(
        f"no store for database URL scheme {scheme!r}: use sqlite:///path/to/file.sqlite3 "
        "or postgresql://user:password@host:port/database"
    )


def open_store(database: str | Path) -> RecordStore:
    """The store a database URL or path names: the one place that maps a name to a store.

    Args:
        database: ``sqlite:///path/to/file.sqlite3``, a plain file path, or
            ``postgresql://user:password@host:port/database`` (the ``postgres``
            extra; its schema must have been made by ``upgrade_store``).

    Raises:
        ValueError: a URL scheme this version has no store for (named in the message).
        StoreOpenError: a PostgreSQL database that cannot be used: the extra is
            missing, the server cannot be reached, or (``SchemaError``) its schema
            is missing, older or newer than this version's.
    """
    kind, where = _kind(database)
    if kind == "sqlite":
        return SQLiteRecordStore(Path(where))
    return PostgresRecordStore(where)


def is_server_database(database: str | Path) -> bool:
    """Whether ``database`` names a database server (not a file of this machine).

    Raises:
        ValueError: a URL scheme this version has no store for.
    """
    return _kind(database)[0] != "sqlite"


def database_name(database: str | Path) -> str:
    """``database`` for people: the SQLite file's path, or the URL without its password.

    Raises:
        ValueError: a URL scheme this version has no store for.
    """
    kind, where = _kind(database)
    return where if kind == "sqlite" else public_url(where)


def store_schema(database: str | Path) -> SchemaStatus | None:
    """Where a server database's schema stands; None for SQLite, whose store keeps its own.

    Raises:
        ValueError: a URL scheme this version has no store for.
        StoreOpenError: the ``postgres`` extra is missing or the server cannot be reached.
    """
    kind, where = _kind(database)
    return None if kind == "sqlite" else schema_status(where)


def upgrade_store(database: str | Path) -> tuple[SchemaStatus, SchemaStatus] | None:
    """Bring a database's schema to this version's; the status before and after.

    PostgreSQL: the pending alembic migrations, in one transaction. SQLite: the
    store makes and upgrades its own schema whenever it opens a file (so a
    single-file install needs no step), and this opens it once; None.

    Raises:
        ValueError: a URL scheme this version has no store for.
        StoreOpenError: the extra is missing or the server cannot be reached;
            ``SchemaError`` when the database has a revision this version does not know.
    """
    kind, where = _kind(database)
    if kind == "sqlite":
        SQLiteRecordStore(Path(where)).close()
        return None
    return upgrade_schema(where)
