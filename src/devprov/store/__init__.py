"""Persistence: SQLAlchemy Core tables, Alembic migrations, and the store over them."""
