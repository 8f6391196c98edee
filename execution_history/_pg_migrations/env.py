"""Alembic's entry point: runs the revisions on the connection the caller hands over.

``upgrade_schema`` puts a SQLAlchemy connection (made from a psycopg connection, so
libpq reads the URL exactly as the store does) into ``config.attributes``. The
pending revisions run in one transaction (PostgreSQL's DDL is transactional: an
upgrade that fails changes nothing), after an advisory lock, so two
``devserver db upgrade`` at once apply each revision once.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

#: Any fixed number: the advisory lock's key that migrations of this schema share.
_LOCK_KEY = 7_015_150_001


def _run() -> None:
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        # Released at the end of the transaction; a second upgrader waits here, then finds
        # the revisions applied (alembic reads the version after the lock is taken).
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        context.run_migrations()


_run()
