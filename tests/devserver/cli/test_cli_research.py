"""The research commands on the data dir, no server: status, runs, show, export, forget, prune."""

from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from execution_history import ExecutionRecord, new_run_id

from ..research_support import RAW_SESSIONS, RAW_USERS, Seeded, assert_no_raw_ids, seed_runs


@pytest.fixture
def seeded(app: Flask) -> Seeded:
    return seed_runs(app, 6)


def one_sentence(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ") and lines[0].endswith(".")
    return lines[0]


def store_recent(app: Flask, template: ExecutionRecord) -> ExecutionRecord:
    record = template.model_copy(
        update={"run_id": new_run_id(), "started_at": datetime.now(UTC) - timedelta(hours=1)}
    )
    app.extensions["devserver"].store.save(record)
    return record


# ------------------------------------------------------------------------ status


def test_status_gives_the_overview(app: Flask, runner: Any, seeded: Seeded) -> None:
    state = app.extensions["devserver"]
    data_dir: Path = state.settings.data_dir
    (data_dir / "quarantine").mkdir(exist_ok=True)
    (data_dir / "quarantine" / f"{new_run_id()}.json").write_text("{}")
    # A run journaled by this (living) process, and one left by a dead process.
    (state.journal.folder / f"{new_run_id()}.jsonl").write_text("{}\n")
    dead = data_dir / "journal" / "0123456789abcdef"
    dead.mkdir()
    (dead / ".lock").write_bytes(b"")
    (dead / f"{new_run_id()}.jsonl").write_text("{}\n")
    result = runner.invoke(["status"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"Data dir:     {data_dir}" in out
    assert "6 run(s)" in out
    assert "By status:    blocked 1, error 1, partial 2, success 2" in out
    assert "By config:    dada 2, stillepost 2, triptych 2" in out
    assert "In flight:    1 run(s)" in out
    assert "Incomplete:   0 stored, 1 waiting for recovery" in out
    assert "Quarantined:  1 record(s)" in out
    assert "  3: " in out and "blocks (6 runs)" in out
    assert "Last errors:" in out and seeded.ids(status="error")[0] in out
    assert_no_raw_ids(out)


def test_status_without_a_data_dir_is_exit_1(tmp_path: Path, runner: Any) -> None:
    result = runner.invoke(["status"], env={"DEVSERVER_DATA_DIR": str(tmp_path / "none")})
    assert result.exit_code == 1
    assert "There is no data dir at" in one_sentence(result.stderr)
    assert not (tmp_path / "none").exists()  # a read-only command creates nothing


# -------------------------------------------------------------------------- runs


def test_runs_prints_a_table_newest_first_with_pseudonyms(
    app: Flask, runner: Any, seeded: Seeded
) -> None:
    result = runner.invoke(["runs"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["RUN", "ID", "STARTED", "(UTC)", "CONFIG", "STATUS", "LEVEL",
                                "ITEMS", "USER"]  # fmt: skip
    assert [line.split()[0] for line in lines[1:]] == seeded.ids()
    pseudonym = app.extensions["devserver"].pseudonymiser.user(RAW_USERS[0])
    assert pseudonym in result.stdout
    assert_no_raw_ids(result.stdout)


def test_runs_filters_and_limit(runner: Any, seeded: Seeded) -> None:
    result = runner.invoke(["runs", "--config", "dada", "--limit", "1"])
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == seeded.ids(
        config_name="dada"
    )[:1]
    result = runner.invoke(["runs", "--session-id", RAW_SESSIONS[1], "--json"])
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["run_id"] for r in rows] == seeded.ids(session_id=RAW_SESSIONS[1])
    result = runner.invoke(
        ["runs", "--since", "2024-05-01T10:00:00Z", "--until", "2024-05-01T12:00"]
    )
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == [
        r.run_id for r in seeded.records if r.started_at.hour in (11,)
    ]


def test_runs_nothing_found_is_exit_1_and_bad_usage_exit_2(runner: Any, seeded: Seeded) -> None:
    result = runner.invoke(["runs", "--status", "incomplete"])
    assert result.exit_code == 1 and result.stdout == ""
    assert one_sentence(result.stderr) == "Error: No stored run matches these filters."
    result = runner.invoke(["runs", "--since", "last tuesday"])
    assert result.exit_code == 2
    assert "--since must be an ISO 8601 date" in one_sentence(result.stderr)
    assert runner.invoke(["runs", "--status", "finished"]).exit_code == 2
    assert runner.invoke(["runs", "--limit", "0"]).exit_code == 2


# -------------------------------------------------------------------------- show


def test_show_prints_the_journey_stage_by_stage(runner: Any, seeded: Seeded) -> None:
    run_id = seeded.ids(config_name="stillepost")[0]
    result = runner.invoke(["show", run_id])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"Run {run_id}\n")
    for stage in (1, 2, 3, 4):
        assert f"== Stage {stage}:" in out
    steps = [line for line in out.splitlines() if line.startswith("  [")]
    assert [s.split("]")[0] for s in steps] == [f"  [{i}/8" for i in range(1, 9)]
    assert "BLOCKED: not suitable for kids" in out
    assert "Integrity: " in out
    assert_no_raw_ids(out)


def test_show_json_is_pseudonymised(app: Flask, runner: Any, seeded: Seeded) -> None:
    result = runner.invoke(["show", seeded.ids()[0], "--json"])
    document = json.loads(result.stdout)
    assert document["user_id"] is None and document["user_pseudonym"].startswith("user-")
    assert_no_raw_ids(result.stdout)


@pytest.mark.parametrize(
    ("run_id", "code"),
    [("../../etc/passwd", 2), ("A" * 32, 2), ("x" * 10_000, 2), ("0" * 32, 1)],
)
def test_show_refuses_bad_ids_and_reports_unknown_ones(
    runner: Any, seeded: Seeded, run_id: str, code: int
) -> None:
    result = runner.invoke(["show", run_id])
    assert result.exit_code == code
    one_sentence(result.stderr)


# ------------------------------------------------------------------------ export


def test_export_one_run_to_a_file(
    runner: Any, seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = seeded.ids()[0]
    target = tmp_path / "one.json"
    result = runner.invoke(["export", run_id, "--format", "json", "-o", str(target)])
    assert result.exit_code == 0, result.stderr
    document = json.loads(target.read_text())
    assert document["run_id"] == run_id
    assert_no_raw_ids(target.read_bytes())
    # Refuses to overwrite without --force.
    result = runner.invoke(["export", run_id, "--format", "json", "-o", str(target)])
    assert result.exit_code == 2 and "--force" in one_sentence(result.stderr)
    assert (
        runner.invoke(["export", run_id, "-f", "xml", "-o", str(target), "--force"]).exit_code == 0
    )
    assert target.read_bytes().startswith(b"<?xml")
    # Without -o: a safe name in the working folder.
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(["export", run_id, "--format", "pdf"])
    record = next(r for r in seeded.records if r.run_id == run_id)
    assert (tmp_path / f"{run_id}_{record.config_name}.pdf").read_bytes().startswith(b"%PDF")


def test_export_to_stdout(runner: Any, seeded: Seeded) -> None:
    result = runner.invoke(["export", seeded.ids()[0], "--format", "json", "-o", "-"])
    assert result.exit_code == 0
    assert json.loads(result.stdout_bytes)["run_id"] == seeded.ids()[0]


def test_export_usage_errors(runner: Any, seeded: Seeded, tmp_path: Path) -> None:
    run_id = seeded.ids()[0]
    cases = [
        (["export", run_id, "--format", "gif"], 2, "Unknown format; choose one of: csv"),
        (["export", "--format", "json"], 2, "A batch export needs -o FILE.zip."),
        (["export", "--format", "json", "-o", str(tmp_path / "x.tar")], 2, "-o FILE.zip"),
        (["export", run_id, "-f", "json", "--status", "error"], 2, "leave them out"),
        (["export", "0" * 32, "-f", "json"], 1, "No run with this id is stored"),
        (["export", "-f", "json", "--config", "nope", "-o", str(tmp_path / "n.zip")], 1,
         "No stored run matches"),
    ]  # fmt: skip
    for args, code, text in cases:
        result = runner.invoke(args)
        assert result.exit_code == code, (args, result.stderr)
        assert text in one_sentence(result.stderr)
    assert not (tmp_path / "n.zip").exists()


def test_batch_export_writes_a_checkable_zip_with_progress_and_a_summary(
    app: Flask, runner: Any, seeded: Seeded, tmp_path: Path
) -> None:
    target = tmp_path / "runs.zip"
    result = runner.invoke(["export", "--format", "json", "--status", "partial", "-o", str(target)])
    assert result.exit_code == 0, result.stderr
    assert "Exporting" in result.stderr  # the progress bar
    expected = seeded.ids(status="partial")
    assert result.stdout.startswith(f"Exported {len(expected)} run(s) as json with 4 media file(s)")
    with zipfile.ZipFile(target) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        for entry in manifest["files"]:
            data = archive.read(entry["path"])
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            assert_no_raw_ids(data)
    assert manifest["filters"] == {"status": "partial"}
    assert [e["run_id"] for e in manifest["files"] if e["kind"] == "export"] == expected
    assert not list(tmp_path.glob(".*partial"))


# ---------------------------------------------------------------- forget, prune


def test_forget_asks_and_a_no_keeps_everything(app: Flask, runner: Any, seeded: Seeded) -> None:
    result = runner.invoke(["forget", "--user-id", RAW_USERS[0]], input="n\n")
    assert result.exit_code == 1
    assert "Erase 3 run(s) of user-" in result.stderr
    assert app.extensions["devserver"].store.count() == 6


def test_forget_erases_runs_media_and_waiting_copies(
    app: Flask, runner: Any, seeded: Seeded
) -> None:
    state = app.extensions["devserver"]
    victims = seeded.ids(user_id=RAW_USERS[0])
    quarantined = state.settings.data_dir / "quarantine"
    quarantined.mkdir(exist_ok=True)
    copy = next(r for r in seeded.records if r.user_id == RAW_USERS[0])
    (quarantined / f"{new_run_id()}.json").write_text(copy.model_dump_json())
    result = runner.invoke(["forget", "--user-id", RAW_USERS[0]], input="y\n")
    assert result.exit_code == 0, result.stderr
    pseudonym = state.pseudonymiser.user(RAW_USERS[0])
    assert (
        f"Erased 3 run(s) of {pseudonym} and 3 media folder(s), and 1 unfinished" in result.stdout
    )
    assert sorted(line.strip() for line in result.stdout.splitlines()[1:]) == sorted(victims)
    assert RAW_USERS[0] not in result.output
    for run_id in victims:
        assert state.store.load(run_id) is None
        assert not state.runs.media_dir(run_id).exists()
    assert not list(quarantined.glob("*.json"))
    assert state.store.count() == 3  # the other person's runs stay
    for run_id in seeded.ids(user_id=RAW_USERS[1]):
        assert state.runs.media_dir(run_id).is_dir()
    again = runner.invoke(["forget", "--user-id", RAW_USERS[0], "--yes"])
    assert again.exit_code == 1 and "No stored run belongs to this person" in again.stderr


def test_forget_with_yes_does_not_ask(app: Flask, runner: Any, seeded: Seeded) -> None:
    result = runner.invoke(["forget", "--user-id", RAW_USERS[1], "--yes"])
    assert result.exit_code == 0 and "Erase " not in result.output
    assert app.extensions["devserver"].store.count() == 3


def test_prune_dry_run_then_prune(app: Flask, runner: Any, seeded: Seeded) -> None:
    state = app.extensions["devserver"]
    recent = store_recent(app, seeded.records[0])
    dry = runner.invoke(["prune", "--older-than", "30", "--dry-run"])
    assert dry.exit_code == 0
    assert dry.stdout.startswith("Would erase 6 run(s) started before ")
    assert state.store.count() == 7
    result = runner.invoke(["prune", "--older-than", "30"])
    assert result.exit_code == 0
    assert "Erased 6 run(s)" in result.stdout and "6 media folder(s)" in result.stdout
    assert [r.run_id for r in state.store.list_runs()] == [recent.run_id]
    assert not any(state.runs.media_dir(i).exists() for i in seeded.ids())
    nothing = runner.invoke(["prune", "--older-than", "30"])
    assert nothing.exit_code == 1 and "No stored run started before" in nothing.stderr
    assert runner.invoke(["prune", "--older-than", "0"]).exit_code == 2
    assert runner.invoke(["prune", "--older-than", "-3"]).exit_code == 2
    assert runner.invoke(["prune"]).exit_code == 2
