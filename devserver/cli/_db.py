"""``devserver db upgrade`` and ``devserver db current``: the database's schema.

PostgreSQL's schema is kept by migrations (alembic, shipped in the package):
a new version that changes it refuses to start until ``devserver db upgrade``
has applied them, so no server process changes a shared schema under another.
A SQLite file needs no step (its store makes and upgrades its own schema when
it opens the file); both commands say so. Exit codes: 0 done, 1 the database
cannot be reached or has a schema this version does not know, 2 bad setting.
"""

from __future__ import annotations

import click

from execution_history import (
    SchemaError,
    SchemaStatus,
    StoreOpenError,
    database_name,
    store_schema,
    upgrade_store,
)

from .._settings import SettingsError, database_of, defaults_from_environment


class DbFailure(click.ClickException):
    """The database cannot be reached or upgraded; exit code 1."""

    exit_code = 1


def _database() -> tuple[str, str]:
    """(what the store opens, how to name it for people) from the environment."""
    try:
        database, path = database_of(defaults_from_environment())
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    kind = "SQLite" if path is not None else "PostgreSQL"
    return database, f"{kind} database {database_name(database)}"


def _describe(status: SchemaStatus) -> str:
    found = status.found or "none"
    words = {
        "current": "current",
        "missing": "no schema yet",
        "behind": f"behind (this version needs {status.expected})",
        "unknown": f"unknown to this version (it needs {status.expected})",
    }
    return f"revision {found}: {words[status.state]}"


@click.group("db")
def db() -> None:
    """The database's schema: see where it stands, apply migrations."""


@db.command("current")
def current() -> None:
    """Say which schema revision the database has and whether this version can use it."""
    database, name = _database()
    try:
        status = store_schema(database)
    except StoreOpenError as exc:
        raise DbFailure(str(exc)) from None
    if status is None:
        click.echo(f"{name}: SQLite keeps its own schema (made and upgraded when opened).")
        return
    click.echo(f"{name}: {_describe(status)}")
    if status.state != "current":
        raise DbFailure(
            "the server will not start on this schema"
            + ("; run: devserver db upgrade" if status.state != "unknown" else "")
        )


@db.command("upgrade")
def upgrade() -> None:
    """Apply every pending migration (one transaction; safe to run twice, or at once)."""
    database, name = _database()
    try:
        result = upgrade_store(database)
    except SchemaError as exc:
        raise DbFailure(f"{exc}; left as it is (use the version that made it)") from None
    except StoreOpenError as exc:
        raise DbFailure(str(exc)) from None
    if result is None:
        click.echo(f"{name}: schema made or upgraded in place (SQLite needs no migrations).")
        return
    before, after = result
    if before.state == "current":
        click.echo(f"{name}: already at {_describe(after)}; nothing to do.")
    else:
        click.echo(f"{name}: upgraded from {before.found or 'no schema'} to {after.found}.")


def register(main: click.Group) -> None:
    """Attach ``db`` to the ``devserver`` group."""
    main.add_command(db)
