"""What only the PostgreSQL store has: its schema revisions, jsonb copy, indexes, URL, pool."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import psycopg
import pytest

from execution_history import (
    ExecutionTracker,
    RunFilter,
    SchemaError,
    StoreOpenError,
    open_store,
    store_schema,
    upgrade_store,
)
from execution_history._pg_store import (
    REVISIONS,
    SCHEMA_REVISION,
    PostgresRecordStore,
    public_url,
)
from tests.execution_history.test_store import small_record


def test_the_known_revisions_are_exactly_the_shipped_alembic_migrations() -> None:
    from alembic.script import ScriptDirectory

    import execution_history._pg_migrations as migrations

    script = ScriptDirectory(str(Path(migrations.__file__).parent))
    chain = [rev.revision for rev in script.walk_revisions()][::-1]  # oldest first
    assert tuple(chain) == REVISIONS
    assert script.get_current_head() == SCHEMA_REVISION


def test_a_database_without_schema_is_refused_until_upgraded(postgres_empty_url: str) -> None:
    with pytest.raises(SchemaError, match="has no schema yet") as refused:
        open_store(postgres_empty_url)
    assert refused.value.state == "missing" and refused.value.expected == SCHEMA_REVISION
    status = store_schema(postgres_empty_url)
    assert status is not None and status.state == "missing"
    before, after = upgrade_store(postgres_empty_url) or (None, None)
    assert before is not None and before.state == "missing"
    assert after is not None and (after.state, after.found) == ("current", SCHEMA_REVISION)
    again = upgrade_store(postgres_empty_url)  # nothing left to do: nothing done
    assert again is not None and again[0].state == again[1].state == "current"
    store = open_store(postgres_empty_url)
    try:
        store.save(small_record())
        assert store.count() == 1
    finally:
        store.close()


def _set_revision(url: str, revision: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = %s", (revision,))


def test_a_schema_this_version_does_not_know_is_refused_and_left_alone(postgres_url: str) -> None:
    _set_revision(postgres_url, "9999_from_the_future")
    with pytest.raises(SchemaError, match="does not know") as refused:
        open_store(postgres_url)
    assert refused.value.state == "unknown" and refused.value.found == "9999_from_the_future"
    with pytest.raises(SchemaError):
        upgrade_store(postgres_url)
    status = store_schema(postgres_url)
    assert status is not None and status.found == "9999_from_the_future"


def test_an_older_known_revision_is_called_behind(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a second revision shipped, a database at the first is behind (not unknown)."""
    import execution_history._pg_store as pg

    monkeypatch.setattr(pg, "REVISIONS", (*REVISIONS, "0002"))
    monkeypatch.setattr(pg, "SCHEMA_REVISION", "0002")
    with pytest.raises(SchemaError, match="older than the 0002") as refused:
        open_store(postgres_url)
    assert refused.value.state == "behind"


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    url = f"postgresql://postgres@/nothing?host={tmp_path}&port=5999"
    with pytest.raises(StoreOpenError, match="cannot reach the database"):
        PostgresRecordStore(url, timeout_s=1.0)
    with pytest.raises(StoreOpenError, match="cannot reach the database"):
        store_schema(url)


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)  # import now fails
    with pytest.raises(StoreOpenError, match=r"'postgres' extra.*execution-history\[postgres\]"):
        open_store("postgresql://postgres@/x?host=/nowhere")


def test_describe_never_shows_the_password() -> None:
    assert public_url("postgresql://ann:s3cret@db.example:5432/runs?sslmode=require") == (
        "postgresql://ann@db.example:5432/runs?sslmode=require"
    )
    assert "s3cret" not in public_url("postgresql://ann@/runs?host=/run/pg&password=s3cret")
    assert public_url("postgresql:///runs?host=/run/pg") == "postgresql:///runs?host=/run/pg"


def test_commits_are_synchronous_and_the_record_is_also_jsonb(postgres_url: str) -> None:
    """The pool's connections commit durably; ``document`` is queryable jsonb of the record."""
    store = PostgresRecordStore(postgres_url)
    try:
        with store._connection() as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        record = small_record(content="ein \x00 Hund \uffff")
        store.save(record)
        with store._connection() as conn:
            (document,) = conn.execute(
                "SELECT document FROM runs WHERE run_id = %s", (record.run_id,)
            ).fetchone() or (None,)
            (config,) = conn.execute(
                "SELECT document->>'config_name' FROM runs WHERE run_id = %s", (record.run_id,)
            ).fetchone() or (None,)
        assert config == "dada"
        # U+0000 cannot be in jsonb: escaped one for one (U+FFFF "0"; U+FFFF doubled)
        texts = [i["content"] for i in document["items"] if i["item_type"] == "user_input_text"]
        assert texts == ["ein \uffff0 Hund \uffff\uffff"]
        assert store.load(record.run_id) == record  # read from the exact JSON text
        assert json.loads(store.load_json(record.run_id) or "") == json.loads(
            record.model_dump_json()
        )
    finally:
        store.close()


def test_a_run_id_too_long_to_index_is_refused_before_writing(postgres_url: str) -> None:
    """The store sink quarantines what ``save`` refuses: the record is not lost."""
    with ExecutionTracker("dada", run_id="😀" * 300) as tracker:
        tracker.log("user_input_text", "x")
    store = open_store(postgres_url)
    try:
        with pytest.raises(ValueError, match="at most 1024 bytes"):
            store.save(tracker.finalize())
        assert store.count() == 0
    finally:
        store.close()


@pytest.mark.parametrize(
    "filters",
    [
        RunFilter(config="dada"),
        RunFilter(status="blocked"),
        RunFilter(safety_level="teens"),
        RunFilter(session_id="s1"),
        RunFilter(device_id="d1"),
        RunFilter(user_id="u1"),
    ],
    ids=lambda f: next(k for k in f.__slots__ if getattr(f, k) is not None),
)
def test_every_filter_has_an_index_that_also_gives_the_order(
    postgres_url: str, filters: RunFilter
) -> None:
    """With sequential scans priced out, each filtered first page is an index scan, unsorted.

    (On a table this small the planner would rightly scan it; the bench checks
    the plans on 100,000 runs, where it chooses the indexes by itself.)
    """
    from execution_history._pg_store import _where

    store = PostgresRecordStore(postgres_url)
    try:
        store.save(small_record())
        where, params = _where(filters)
        with store._connection() as conn:
            conn.execute("SET enable_seqscan = off")
            plan = "\n".join(
                row[0]
                for row in conn.execute(
                    f"EXPLAIN SELECT run_id FROM runs WHERE {where} "
                    "ORDER BY started_at DESC, run_id DESC LIMIT 50",
                    params,
                )
            )
            conn.execute("RESET enable_seqscan")
        assert re.search(r"Index (Only )?Scan using runs_\w+ on runs", plan), plan
        assert "Sort" not in plan, plan
    finally:
        store.close()
