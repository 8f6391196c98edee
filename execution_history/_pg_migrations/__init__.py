"""The PostgreSQL store's schema migrations (alembic), shipped inside the package.

``execution_history._pg_store.upgrade_schema`` runs them with an alembic
configuration built in code: there is no ``alembic.ini`` to find in the
working directory. A developer adds a revision with::

    python -c "from execution_history._pg_store import new_revision; new_revision('what')"

and then lists it in ``_pg_store.REVISIONS`` (a test checks the two agree).
"""
