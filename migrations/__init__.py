"""Alembic migrations for the semsearch SQLite schema (installed as ``semsearch.migrations``)."""
