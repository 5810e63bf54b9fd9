"""Alembic environment: semsearch always passes an open connection in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from semsearch.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable from a hand-run `alembic` command
    raise RuntimeError("semsearch migrations run through semsearch.store.Store, not the alembic CLI")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
