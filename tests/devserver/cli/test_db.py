"""``devserver db upgrade``/``db current``, and the start refused on a schema it cannot use."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from devserver import SettingsError, create_app, get_state
from devserver.cli import main


def devserver(args: list[str], data_dir: Path, database: str | None = None):  # type: ignore[no-untyped-def]
    env = {"DEVSERVER_DATA_DIR": str(data_dir), "DEVSERVER_DATABASE_URL": database}
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


@pytest.fixture(autouse=True)
def _no_developer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("DEVSERVER_"):
            monkeypatch.delenv(name)


def test_sqlite_needs_no_migrations_and_both_commands_say_so(tmp_path: Path) -> None:
    upgraded = devserver(["db", "upgrade"], tmp_path)
    assert upgraded.exit_code == 0, upgraded.output
    assert "SQLite needs no migrations" in upgraded.output
    assert (tmp_path / "history.sqlite3").is_file()
    current = devserver(["db", "current"], tmp_path)
    assert current.exit_code == 0 and "keeps its own schema" in current.output


def test_the_server_refuses_a_database_without_schema_until_db_upgrade(
    tmp_path: Path, postgres_empty_url: str
) -> None:
    config = {"DATA_DIR": str(tmp_path), "DATABASE_URL": postgres_empty_url}
    with pytest.raises(SettingsError, match=r"has no schema yet; .*devserver db upgrade"):
        create_app(config)
    listed = devserver(["runs"], tmp_path, postgres_empty_url)
    assert listed.exit_code == 1 and "devserver db upgrade" in listed.output
    current = devserver(["db", "current"], tmp_path, postgres_empty_url)
    assert current.exit_code == 1
    assert "no schema yet" in current.output and "devserver db upgrade" in current.output

    upgraded = devserver(["db", "upgrade"], tmp_path, postgres_empty_url)
    assert upgraded.exit_code == 0, upgraded.output
    assert "upgraded from no schema to 0001" in upgraded.output
    again = devserver(["db", "upgrade"], tmp_path, postgres_empty_url)
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert devserver(["db", "current"], tmp_path, postgres_empty_url).exit_code == 0

    app = create_app(config)
    try:
        answer = app.test_client().post(
            "/api/runs?wait=true", json={"config": "dada", "input": "Ein Hund", "user_id": "u7"}
        )
        assert answer.status_code == 200, answer.json
        run_id = answer.json["run_id"]
        assert app.test_client().get(f"/api/runs/{run_id}").json["run_id"] == run_id
        assert get_state(app).store.describe().startswith("postgresql://postgres@/")
    finally:
        get_state(app).close()
    listed = devserver(["runs"], tmp_path, postgres_empty_url)
    assert listed.exit_code == 0 and run_id in listed.output
    forgotten = devserver(["forget", "--user-id", "u7", "--yes"], tmp_path, postgres_empty_url)
    assert forgotten.exit_code == 0, forgotten.output
    assert devserver(["show", run_id], tmp_path, postgres_empty_url).exit_code == 1


def test_a_schema_from_a_newer_version_is_refused_and_not_touched(
    tmp_path: Path, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(SettingsError, match="revision 0099, which this version does not know"):
        create_app({"DATA_DIR": str(tmp_path), "DATABASE_URL": postgres_url})
    upgraded = devserver(["db", "upgrade"], tmp_path, postgres_url)
    assert upgraded.exit_code == 1 and "left as it is" in upgraded.output
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0099",)


def test_an_unreachable_database_is_one_clear_sentence(tmp_path: Path) -> None:
    url = f"postgresql://postgres@/x?host={tmp_path}&port=5999&connect_timeout=1"
    current = devserver(["db", "current"], tmp_path, url)
    assert current.exit_code == 1 and "cannot reach the database" in current.output
    assert "Traceback" not in current.output


def test_a_password_in_the_url_is_never_printed(tmp_path: Path) -> None:
    url = f"postgresql://ann:s3cret-pw@/x?host={tmp_path}&port=5999&connect_timeout=1"
    current = devserver(["db", "current"], tmp_path, url)
    assert current.exit_code == 1 and "s3cret-pw" not in current.output
