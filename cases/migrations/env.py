"""Alembic environment of the cases schema: runs on the connection :func:`cases.store.migrate` passes."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the cases migrations through cases.store.migrate (or `cityeye cases migrate`)")
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
