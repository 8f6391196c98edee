"""The runs and their per-stage rows: records as JSON text and jsonb, a column per filter.

Revision ID: 0001
Revises:
Create Date: 2025-06-01

Text columns use the "C" collation: byte order, as SQLite's, so keyset pages and
statistics come out in the same order on both stores, whatever the cluster's locale.
``started_at`` is the fixed-width UTC text of ``utc_text`` (the cursor's first half),
not a timestamp, so a cursor means the same on both stores.

Free-text filter columns are indexed on their first 200 characters: a btree entry
holds at most 2,704 bytes, and ids may be up to 1,000 characters (4,000 bytes). The
store compares the prefix (indexed) and then the whole value.
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``runs``, ``run_stages`` and every index the research queries use."""
    op.execute(
        """
        CREATE TABLE runs (
            run_id           text COLLATE "C" PRIMARY KEY,
            config_name      text COLLATE "C",
            status           text COLLATE "C" NOT NULL,
            safety_level     text COLLATE "C",
            user_id          text COLLATE "C",
            session_id       text COLLATE "C",
            device_id        text COLLATE "C",
            started_at       text COLLATE "C" NOT NULL,
            ended_at         text COLLATE "C",
            duration_ms      double precision,
            item_count       integer NOT NULL,
            items_dropped    integer NOT NULL DEFAULT 0,
            fields_truncated integer NOT NULL DEFAULT 0,
            values_coerced   integer NOT NULL DEFAULT 0,
            tracker_errors   integer NOT NULL DEFAULT 0,
            taxonomy_version text COLLATE "C",
            record           text NOT NULL,
            document         jsonb NOT NULL
        )
        """
    )
    for name, columns in (
        ("runs_started", "started_at DESC, run_id DESC"),
        ("runs_config", "left(config_name, 200), started_at DESC, run_id DESC"),
        ("runs_status", "status, started_at DESC, run_id DESC"),
        ("runs_safety", "left(safety_level, 200), started_at DESC, run_id DESC"),
        ("runs_session", "left(session_id, 200), started_at DESC, run_id DESC"),
        ("runs_device", "left(device_id, 200), started_at DESC, run_id DESC"),
        ("runs_user", "left(user_id, 200), started_at DESC, run_id DESC"),
    ):
        op.execute(f"CREATE INDEX {name} ON runs ({columns})")
    op.execute(
        """
        CREATE TABLE run_stages (
            run_id   text COLLATE "C" NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            stage    integer NOT NULL,
            status   text COLLATE "C" NOT NULL,
            items    integer NOT NULL,
            failures integer NOT NULL,
            blocks   integer NOT NULL,
            PRIMARY KEY (run_id, stage)
        )
        """
    )


def downgrade() -> None:
    """Drop both tables (a developer's database only: production only goes forward)."""
    op.execute("DROP TABLE run_stages")
    op.execute("DROP TABLE runs")
