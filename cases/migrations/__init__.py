"""Alembic migrations of the cases schema (run through cases.store.migrate)."""
