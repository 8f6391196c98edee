"""Shared fixtures: a finished record, a PostgreSQL cluster, and app/client/runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from execution_history import ExecutionRecord
from tests.records import stille_post_record


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    """The media folder of the ``finished_record`` run."""
    return tmp_path / "media"


@pytest.fixture
def finished_record(media_dir: Path) -> ExecutionRecord:
    """A finished Stille Post record (8 iterations, 3 outputs, one blocked) with real images."""
    return stille_post_record(media_dir)


# --------------------------------------------------------------------------- PostgreSQL
# One throw-away cluster per test session (tests/pg_cluster.py), started when a test
# first asks for it. No server binaries is an error, never a skip: .ci/run installs them.


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[object]:
    """Fresh databases on this session's cluster (``tests.pg_cluster.Databases``)."""
    from tests.pg_cluster import Cluster, Databases

    # fsync off: a test cluster's crash safety is not under test (the store's commits
    # are still synchronous_commit = on, which is what it sets).
    cluster = Cluster({"fsync": "off", "full_page_writes": "off"}).start()
    try:
        yield Databases(cluster)
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_databases) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The URL of a new database with this version's schema, dropped after the test."""
    url = postgres_databases.create()
    yield url
    postgres_databases.drop(url)


@pytest.fixture
def postgres_empty_url(postgres_databases) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The URL of a new database without any schema (``devserver db upgrade`` not run)."""
    url = postgres_databases.create(migrated=False)
    yield url
    postgres_databases.drop(url)


# --------------------------------------------------------------------------- devserver
# The app/client/runner fixtures of the Flask tutorial, each on its own data dir.


@pytest.fixture
def app_config(tmp_path: Path) -> dict[str, object]:
    """The ``create_app`` overrides of the ``app`` fixture; tests may change them first."""
    return {"TESTING": True, "DATA_DIR": str(tmp_path / "instance")}


@pytest.fixture
def app(app_config: dict[str, object], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A devserver app on a fresh data dir; its runs are finished and stored at teardown."""
    import os

    from devserver import create_app

    for name in list(os.environ):  # the developer's settings must not leak into tests
        # OTEL_*: a developer's collector must not receive the tests' runs.
        if name.startswith(("DEVSERVER_", "OTEL_")) or name == "OLLAMA_HOST":
            monkeypatch.delenv(name)
    app = create_app(app_config)
    yield app
    app.extensions["devserver"].close()


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    """A test client of ``app``."""
    return app.test_client()


class DevserverRunner:
    """Invokes the ``devserver`` console script on the ``app`` fixture's data dir."""

    def __init__(self, data_dir: Path) -> None:
        from click.testing import CliRunner

        self.data_dir = data_dir
        self._runner = CliRunner()

    def invoke(self, args: list[str], **kwargs: object):  # type: ignore[no-untyped-def]
        """Run ``devserver *args`` in-process; returns click's ``Result``."""
        from devserver.cli import main

        env = {"DEVSERVER_DATA_DIR": str(self.data_dir), **dict(kwargs.pop("env", {}) or {})}  # type: ignore[call-overload]
        return self._runner.invoke(main, args, env=env, catch_exceptions=False, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def runner(app) -> DevserverRunner:  # type: ignore[no-untyped-def]
    """Runs ``devserver`` commands against the ``app`` fixture's data dir."""
    return DevserverRunner(app.extensions["devserver"].settings.data_dir)
