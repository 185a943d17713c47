"""SQLite keeps ``kitaru_events`` in its primary key's B-tree alone (``WITHOUT ROWID``).

A rowid table stores each event twice: the row under its rowid, and the primary key
``(exec_id, seq)`` again in an index pointing at it. Clustered on the key, the row is
stored once: about 45 bytes less per checkpoint, one B-tree fewer for every batch of
events to write, and a read of the stream walks the rows themselves. The rows are
copied over as they are. PostgreSQL is unchanged.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_COLUMNS = "exec_id, seq, kind, call_id, checkpoint, correlation_id, idx, payload, ts"


def _rebuild(without_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        "CREATE TABLE kitaru_events_new (\n"
        "\texec_id VARCHAR(36) NOT NULL, \n"
        "\tseq INTEGER NOT NULL, \n"
        "\tkind VARCHAR(255) NOT NULL, \n"
        "\tcall_id VARCHAR(512), \n"
        "\tcheckpoint VARCHAR(255), \n"
        "\tcorrelation_id VARCHAR(255), \n"
        "\tidx INTEGER, \n"
        "\tpayload TEXT NOT NULL, \n"
        "\tts FLOAT NOT NULL, \n"
        "\tPRIMARY KEY (exec_id, seq)\n"
        ")" + (" WITHOUT ROWID" if without_rowid else "")
    )
    # In key order: the new B-tree is filled page after page.
    op.execute(
        f"INSERT INTO kitaru_events_new ({_COLUMNS}) "
        f"SELECT {_COLUMNS} FROM kitaru_events ORDER BY exec_id, seq"
    )
    op.execute("DROP TABLE kitaru_events")
    op.execute("ALTER TABLE kitaru_events_new RENAME TO kitaru_events")


def upgrade() -> None:
    _rebuild(without_rowid=True)


def downgrade() -> None:
    _rebuild(without_rowid=False)
