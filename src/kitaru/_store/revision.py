"""The schema revision a current store is at, without importing SQLAlchemy.

Bumped with every migration; checked on open so that a current database never
pays for importing Alembic (or, on SQLite, SQLAlchemy: see ``engine.open_direct``).
"""

SCHEMA_REVISION = "0017"
