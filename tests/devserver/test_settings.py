"""Configuration from the environment, secrets generated once with 0600, journals per process."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from devserver import SettingsError, create_app, get_state
from devserver._settings import read_or_create_secret
from devserver.pipeline._journals import ProcessJournal
from execution_history import ExecutionTracker, ItemType, Journal, SQLiteRecordStore


def test_zero_configuration_uses_instance_in_the_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("DEVSERVER_DATA_DIR", "DEVSERVER_RESEARCH_TOKEN", "DEVSERVER_PSEUDONYM_KEY"):
        monkeypatch.delenv(name, raising=False)
    app = create_app()
    try:
        settings = get_state(app).settings
        assert settings.data_dir == tmp_path / "instance"
        assert settings.database_path == tmp_path / "instance" / "history.sqlite3"
        assert settings.backend == "local"
        for name in ("research_token", "pseudonym_key"):
            mode = stat.S_IMODE((tmp_path / "instance" / name).stat().st_mode)
            assert mode == 0o600
        assert settings.research_token_file == tmp_path / "instance" / "research_token"
    finally:
        get_state(app).close()


def test_secrets_are_stable_across_starts(tmp_path: Path) -> None:
    first = read_or_create_secret(tmp_path / "key")
    assert read_or_create_secret(tmp_path / "key") == first
    assert len(first) >= 32


def test_environment_is_read_and_test_config_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVSERVER_DATA_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("DEVSERVER_RESEARCH_TOKEN", "token-from-env-" + "x" * 32)
    monkeypatch.setenv("DEVSERVER_WORKERS", "3")
    app = create_app({"WORKERS": 2})
    try:
        state = get_state(app)
        assert state.settings.data_dir == tmp_path / "from-env"
        assert state.settings.research_token == "token-from-env-" + "x" * 32
        assert state.settings.research_token_file is None
        assert state.runs.workers == 2
    finally:
        state.close()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"BACKEND": "gpt"}, "DEVSERVER_BACKEND"),
        ({"WORKERS": "many"}, "DEVSERVER_WORKERS must be a number"),
        ({"WORKERS": 0}, "at least 1"),
        ({"DATABASE_URL": "mysql://x/y"}, "DEVSERVER_DATABASE_URL: use sqlite:///"),
        ({"PSEUDONYM_KEY": "short"}, "at least 16 bytes"),
    ],
)
def test_bad_setting_names_its_variable(
    tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        create_app({"DATA_DIR": str(tmp_path), **config})


def test_database_url_chooses_the_sqlite_file(tmp_path: Path) -> None:
    app = create_app({"DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/other.db"})
    try:
        assert get_state(app).settings.database_path == tmp_path / "other.db"
        assert (tmp_path / "other.db").exists()
    finally:
        get_state(app).close()


def test_journals_of_living_processes_are_left_alone(tmp_path: Path) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    alive = ProcessJournal(tmp_path / "journal", damaged_dir=tmp_path / "journal-damaged")
    tracker = ExecutionTracker("dada")
    tracker.start()
    tracker.log(ItemType.USER_INPUT_TEXT, "Ein Hund")
    alive.journal.on_start(tracker.run_log)
    alive.journal.flush()
    newcomer = ProcessJournal(tmp_path / "journal", damaged_dir=tmp_path / "journal-damaged")
    try:
        assert newcomer.recover_dead(store) == []  # the first one holds its lock
        assert store.load(tracker.run_id) is None
    finally:
        tracker.finalize()
        newcomer.close()
        alive.close()
        store.close()


def test_journals_of_dead_processes_become_incomplete_records(tmp_path: Path) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    dead = tmp_path / "journal" / "0123456789abcdef"
    dead.mkdir(parents=True)
    (dead / ".lock").touch()  # nobody holds it: its process is gone
    journal = Journal(dead, interval_s=3600)
    tracker = ExecutionTracker("dada")
    tracker.start()
    tracker.log(ItemType.USER_INPUT_TEXT, "Ein Hund")
    journal.on_start(tracker.run_log)
    journal.close()  # flushes and leaves the file, as a crash would
    tracker.finalize()  # in memory only: no finaliser, so the journal file stays
    starting = ProcessJournal(tmp_path / "journal", damaged_dir=tmp_path / "journal-damaged")
    try:
        assert starting.recover_dead(store) == [tracker.run_id]
        record = store.load(tracker.run_id)
        assert record is not None and record.status == "incomplete"
        assert not dead.exists()
    finally:
        starting.close()
        store.close()


def test_export_settings_reach_the_crate_and_bad_ones_stop_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The licence and publisher a project sets are in its downloaded crates; a URL that is
    not http(s) is refused when the server starts, not at the first export."""
    import io
    import json
    import zipfile

    from devserver import SettingsError, create_app

    for key in [k for k in os.environ if k.startswith("DEVSERVER_")]:
        monkeypatch.delenv(key)
    config = {
        "DATA_DIR": str(tmp_path / "a"),
        "EXPORT_LICENCE": "CC0-1.0",
        "EXPORT_ORGANISATION": "Projekt Kinderkunst",
        "EXPORT_ORGANISATION_URL": "https://example.org/kinderkunst",
    }
    app = create_app(config)
    try:
        client = app.test_client()
        answer = client.post("/api/runs?wait=true", json={"config": "dada", "input": "Ein Hund"})
        run_id = answer.json["run_id"]
        crate = client.get(f"/api/runs/{run_id}/export/rocrate")
        assert crate.status_code == 200
        with zipfile.ZipFile(io.BytesIO(crate.data)) as archive:
            name = next(n for n in archive.namelist() if n.endswith("ro-crate-metadata.json"))
            graph = json.loads(archive.read(name))["@graph"]
    finally:
        app.extensions["devserver"].close()
    root = next(e for e in graph if e.get("@id") == "./")
    assert root["license"] == {"@id": "https://spdx.org/licenses/CC0-1.0"}
    publisher = next(e for e in graph if e.get("@id") == "https://example.org/kinderkunst")
    assert publisher["name"] == "Projekt Kinderkunst"
    with pytest.raises(SettingsError, match="DEVSERVER_EXPORT_ORGANISATION_URL"):
        create_app({**config, "DATA_DIR": str(tmp_path / "b"), "EXPORT_ORGANISATION_URL": "x"})
