"""Persistence: SQLAlchemy Core tables, Alembic migrations, the store, and the ports over it."""
