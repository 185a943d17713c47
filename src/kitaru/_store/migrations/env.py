"""Alembic environment: Kitaru runs migrations programmatically on a given connection."""

from __future__ import annotations

from alembic import context

from kitaru._store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached from a hand-written alembic.ini
    raise RuntimeError("Kitaru migrations run through kitaru._store.migrate(), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="kitaru_alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",
    # Kitaru's progress report for an existing store (see kitaru._store.engine).
    on_version_apply=context.config.attributes.get("on_version_apply", ()),
)
with context.begin_transaction():
    context.run_migrations()
