"""Alembic environment for the ModelWatch warehouse.

Migrations run through `modelwatch.warehouse.engine.migrate`, which passes an
open connection (inside a locked transaction) in `config.attributes`.
"""

from __future__ import annotations

from alembic import context

from modelwatch.warehouse.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the warehouse migrations run through modelwatch.warehouse.engine.migrate(), "
        "which supplies the database connection"
    )
if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported for the warehouse")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
