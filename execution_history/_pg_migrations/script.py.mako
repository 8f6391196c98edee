"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from alembic import op

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    """What this revision adds (plain SQL: PostgreSQL's own types and indexes)."""
    ${upgrades if upgrades else "op.execute('SELECT 1')"}


def downgrade() -> None:
    """Undo ``upgrade`` (only for a developer's database: production only goes forward)."""
    ${downgrades if downgrades else "op.execute('SELECT 1')"}
